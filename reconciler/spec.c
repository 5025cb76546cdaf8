/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>

#include "spec.h"

const char *const backend_kind_table[_BACKEND_KIND_MAX] = {
	[BACKEND_QEMU] = "qemu",
	[BACKEND_CLOUD_HYPERVISOR] = "cloud-hypervisor",
	[BACKEND_FIRECRACKER] = "firecracker",
	[BACKEND_NOOP] = "noop",
};
DEFINE_STRING_TABLE(backend_kind, BackendKind, _BACKEND_KIND_MAX)

const char *const sandbox_state_table[_SANDBOX_STATE_MAX] = {
	[SANDBOX_RUNNING] = "running",
	[SANDBOX_PAUSED] = "paused",
	[SANDBOX_STOPPED] = "stopped",
	[SANDBOX_SUSPENDED] = "suspended",
};
DEFINE_STRING_TABLE(sandbox_state, SandboxState, _SANDBOX_STATE_MAX)

const char *const restart_policy_table[_RESTART_POLICY_MAX] = {
	[RESTART_ALWAYS] = "always",
	[RESTART_ON_FAILURE] = "on-failure",
	[RESTART_NEVER] = "never",
};
DEFINE_STRING_TABLE(restart_policy, RestartPolicy, _RESTART_POLICY_MAX)

const char *const start_from_table[_START_FROM_MAX] = {
	[START_FROM_BOOT] = "boot",
	[START_FROM_SNAPSHOT] = "snapshot",
};
DEFINE_STRING_TABLE(start_from, StartFrom, _START_FROM_MAX)

const char *const update_policy_table[_UPDATE_POLICY_MAX] = {
	[UPDATE_RESTART] = "restart",
	[UPDATE_ON_NEXT_BOOT] = "on-next-boot",
};
DEFINE_STRING_TABLE(update_policy, UpdatePolicy, _UPDATE_POLICY_MAX)

const char *const disk_format_table[_DISK_FORMAT_MAX] = {
	[DISK_FORMAT_RAW] = "raw",
	[DISK_FORMAT_QCOW2] = "qcow2",
};
DEFINE_STRING_TABLE(disk_format, DiskFormat, _DISK_FORMAT_MAX)

const char *const disk_device_table[_DISK_DEVICE_MAX] = {
	[DISK_DEVICE_FILE] = "file",
	[DISK_DEVICE_BLOCK] = "block",
};
DEFINE_STRING_TABLE(disk_device, DiskDevice, _DISK_DEVICE_MAX)

const char *const port_protocol_table[_PORT_PROTOCOL_MAX] = {
	[PORT_TCP] = "tcp",
	[PORT_UDP] = "udp",
};
DEFINE_STRING_TABLE(port_protocol, PortProtocol, _PORT_PROTOCOL_MAX)

const char *const net_type_table[_NET_TYPE_MAX] = {
	[NET_TAP] = "tap",
	[NET_USER] = "user",
	[NET_BRIDGE] = "bridge",
	[NET_MACVTAP] = "macvtap",
};
DEFINE_STRING_TABLE(net_type, NetType, _NET_TYPE_MAX)

SandboxSpec *sandbox_spec_free(SandboxSpec *s)
{
	if (!s)
		return NULL;
	for (size_t i = 0; i < s->n_labels; i++) {
		free(s->labels[i].key);
		free(s->labels[i].value);
	}
	free(s->labels);
	free(s->kernel);
	free(s->initrd);
	free(s->cmdline);
	for (size_t i = 0; i < s->n_disks; i++) {
		free(s->disks[i].path);
		free(s->disks[i].image);
	}
	free(s->disks);
	free(s->networks);
	cloud_init_spec_free(s->cloud_init);
	for (size_t i = 0; i < s->n_credentials; i++)
		free(s->credentials[i].from_file);
	free(s->credentials);
	probe_spec_done(&s->readiness);
	probe_spec_done(&s->liveness);
	free(s->after);
	free(s);
	return NULL;
}

CloudInitSpec *cloud_init_spec_free(CloudInitSpec *c)
{
	if (!c)
		return NULL;
	free(c->user_data);
	free(c->user_data_file);
	for (size_t i = 0; i < c->n_meta_data; i++) {
		free(c->meta_data[i].key);
		free(c->meta_data[i].value);
	}
	free(c->meta_data);
	free(c->network_config);
	strv_free(c->ssh_keys);
	strv_free(c->ssh_key_files);
	free(c);
	return NULL;
}

bool spec_credential_name_is_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SPEC_CREDENTIAL_NAME_MAX || streq(s, ".") || streq(s, ".."))
		return false;
	for (const char *c = s; *c; c++)
		if (*c < 0x20 || *c >= 0x7F || *c == '/' || *c == ':')
			return false;
	return true;
}

int sandbox_spec_reserve(SandboxSpec *s, size_t more_disks, size_t more_networks)
{
	if (more_disks > 0) {
		DiskSpec *d = reallocarray(s->disks, s->n_disks + more_disks, sizeof(DiskSpec));

		if (!d)
			return -ENOMEM;
		memset(d + s->n_disks, 0, more_disks * sizeof(DiskSpec));
		s->disks = d;
	}
	if (more_networks > 0) {
		NetSpec *n =
			reallocarray(s->networks, s->n_networks + more_networks, sizeof(NetSpec));

		if (!n)
			return -ENOMEM;
		memset(n + s->n_networks, 0, more_networks * sizeof(NetSpec));
		s->networks = n;
	}
	return 0;
}

const DiskSpec *spec_find_disk(const SandboxSpec *s, const char *id)
{
	for (size_t i = 0; i < s->n_disks; i++)
		if (streq(s->disks[i].id, id))
			return &s->disks[i];
	return NULL;
}

const NetSpec *spec_find_net(const SandboxSpec *s, const char *id)
{
	for (size_t i = 0; i < s->n_networks; i++)
		if (streq(s->networks[i].id, id))
			return &s->networks[i];
	return NULL;
}

int spec_add_disk(SandboxSpec *s, const DiskSpec *d)
{
	if (spec_find_disk(s, d->id))
		return -EEXIST;
	if (s->n_disks >= SPEC_DISKS_MAX)
		return -ENOSPC;
	if (sandbox_spec_reserve(s, 1, 0) < 0)
		return -ENOMEM;
	s->disks[s->n_disks] = *d;
	s->disks[s->n_disks].path = d->path ? strdup(d->path) : NULL;
	s->disks[s->n_disks].image = d->image ? strdup(d->image) : NULL;
	if ((d->path && !s->disks[s->n_disks].path) || (d->image && !s->disks[s->n_disks].image)) {
		free(s->disks[s->n_disks].path);
		free(s->disks[s->n_disks].image);
		return -ENOMEM;
	}
	s->n_disks++;
	return 0;
}

int spec_remove_disk(SandboxSpec *s, const char *id)
{
	const DiskSpec *d = spec_find_disk(s, id);
	size_t i;

	if (!d)
		return -ENOENT;
	i = (size_t)(d - s->disks);
	free(s->disks[i].path);
	free(s->disks[i].image);
	memmove(&s->disks[i], &s->disks[i + 1], (s->n_disks - i - 1) * sizeof(DiskSpec));
	s->n_disks--;
	return 0;
}

int spec_add_net(SandboxSpec *s, const NetSpec *n)
{
	if (spec_find_net(s, n->id))
		return -EEXIST;
	if (s->n_networks >= SPEC_NETWORKS_MAX)
		return -ENOSPC;
	if (sandbox_spec_reserve(s, 0, 1) < 0)
		return -ENOMEM;
	s->networks[s->n_networks++] = *n;
	return 0;
}

int spec_remove_net(SandboxSpec *s, const char *id)
{
	const NetSpec *n = spec_find_net(s, id);
	size_t i;

	if (!n)
		return -ENOENT;
	i = (size_t)(n - s->networks);
	memmove(&s->networks[i], &s->networks[i + 1], (s->n_networks - i - 1) * sizeof(NetSpec));
	s->n_networks--;
	return 0;
}

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool spec_name_is_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SPEC_NAME_MAX || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

bool spec_id_is_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SPEC_ID_MAX || !is_lower_alnum(s[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

bool spec_ifname_is_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SPEC_IFNAME_MAX || streq(s, ".") || streq(s, ".."))
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] >= 0x7F || s[i] == '/' || s[i] == ':')
			return false;
	return true;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -EINVAL;
}

int spec_mac_parse(const char *s, uint8_t ret[6])
{
	uint8_t mac[6];

	if (strlen(s) != 17)
		return -EINVAL;
	for (size_t i = 0; i < 6; i++) {
		int hi = hex_value(s[3 * i]), lo = hex_value(s[3 * i + 1]);

		if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':'))
			return -EINVAL;
		mac[i] = (uint8_t)(hi << 4 | lo);
	}
	memcpy(ret, mac, sizeof(mac));
	return 0;
}

void spec_mac_derive(const char *name, const char *id, uint8_t ret[6])
{
	uint64_t h = fnv1a64(FNV1A64_INIT, name, strlen(name));

	h = fnv1a64(h, "/", 1);
	h = fnv1a64(h, id, strlen(id));
	for (size_t i = 0; i < 6; i++)
		ret[i] = (uint8_t)(h >> (8 * (5 - i)));
	ret[0] = (uint8_t)((ret[0] & 0xFC) | 0x02); /* unicast, locally administered */
}

void spec_tap_derive(const char *name, const char *id, char ret[static SPEC_IFNAME_MAX + 1])
{
	uint64_t h = fnv1a64(FNV1A64_INIT, "tap:", 4);

	h = fnv1a64(h, name, strlen(name));
	h = fnv1a64(h, "/", 1);
	h = fnv1a64(h, id, strlen(id));
	snprintf(ret, SPEC_IFNAME_MAX + 1, "vmd%012" PRIx64, h & UINT64_C(0xffffffffffff));
}

char *spec_port_format(const PortSpec *p)
{
	char *s = NULL;

	/* PROTO:HOSTADDR:HOSTPORT-GUESTADDR:GUESTPORT; the guest's address is the DHCP one. */
	if (asprintf(&s, "%s:%s:%u-:%u", port_protocol_to_string(p->protocol), p->address,
		     (unsigned)p->host, (unsigned)p->guest) < 0)
		return NULL;
	return s;
}

char *spec_ports_format(const NetSpec *n)
{
	char *all = NULL;

	for (size_t i = 0; i < n->n_ports; i++) {
		_cleanup_free_ char *one = spec_port_format(&n->ports[i]);
		char *next = NULL;

		if (!one || asprintf(&next, "%s%s%s", all ?: "", all ? "," : "", one) < 0) {
			free(all);
			return NULL;
		}
		free(all);
		all = next;
	}
	return all;
}

int spec_name_from_path(const char *path, char **ret)
{
	const char *base = strrchr(path, '/');
	size_t n;
	char *s;

	base = base ? base + 1 : path;
	n = strlen(base);
	if (n > 5 && streq(base + n - 5, ".yaml"))
		n -= 5;
	else if (n > 4 && streq(base + n - 4, ".yml"))
		n -= 4;
	else
		return -EINVAL;

	s = strndup(base, n);
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

void spec_mac_format(const uint8_t mac[6], char buf[static 18])
{
	snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
		 mac[5]);
}

char *spec_disks_dir(const char *state_dir, const char *name)
{
	char *p = NULL;

	return asprintf(&p, "%s/disks/%s", state_dir, name) < 0 ? NULL : p;
}

char *spec_disk_overlay_path(const char *state_dir, const char *name, const char *id,
			     DiskFormat format)
{
	char *p = NULL;

	return asprintf(&p, "%s/disks/%s/%s.%s", state_dir, name, id,
			disk_format_to_string(format)) < 0
		       ? NULL
		       : p;
}
