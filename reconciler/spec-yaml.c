/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <sys/stat.h>

#include "after-spec.h"
#include "spec-yaml-provision.h"
#include "disk-image.h"
#include "spec-yaml.h"
#include "yaml-decode.h"

/* What the sandbox file's decoders share, beside the generic Decoder. */
typedef struct SpecContext {
	bool backend_invalid;	/* reported; the backend's rules are not run */
	bool skip_images;	/* SpecLoadOptions.skip_images */
	const YNode *name_node; /* metadata.name, to compare with the file name */
} SpecContext;

#define SPEC_CTX(d) ((SpecContext *)(d)->userdata)

static void decode_name(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	char buf[80];
	const char *s;

	if (!decode_get_string(d, n, &s))
		return;
	if (!spec_name_is_valid(s)) {
		decode_error(
			d, n,
			"%s is not a valid sandbox name: expected 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit",
			decode_show(n, buf));
		return;
	}
	strcpy(FIELD_AT(obj, f, char), s);
	SPEC_CTX(d)->name_node = n;
}

static void decode_id(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	char buf[80];
	const char *s;

	if (!decode_get_string(d, n, &s))
		return;
	if (!spec_id_is_valid(s)) {
		decode_error(
			d, n,
			"%s is not a valid id: expected 1 to 31 lowercase letters, digits and '-', starting with a letter or digit",
			decode_show(n, buf));
		return;
	}
	strcpy(FIELD_AT(obj, f, char), s);
}

static void decode_ifname(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	char buf[80];
	const char *s;

	if (!decode_get_string(d, n, &s))
		return;
	if (!spec_ifname_is_valid(s)) {
		decode_error(
			d, n,
			"%s is not a valid interface name: expected 1 to 15 printable ASCII characters without '/', ':' or spaces",
			decode_show(n, buf));
		return;
	}
	strcpy(FIELD_AT(obj, f, char), s);
}

static void decode_mac(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	NetSpec *net = obj;
	char buf[80];
	const char *s;

	assert(f->offset == offsetof(NetSpec, mac));
	if (!decode_get_string(d, n, &s))
		return;
	if (spec_mac_parse(s, net->mac) < 0) {
		decode_error(
			d, n,
			"%s is not a MAC address: expected six hex pairs separated by ':', such as \"52:54:00:12:34:56\"",
			decode_show(n, buf));
		return;
	}
	if (!spec_mac_is_unicast(net->mac)) {
		decode_error(
			d, n,
			"%s is a multicast address; a NIC needs a unicast MAC (the lowest bit of the first byte clear)",
			decode_show(n, buf));
		return;
	}
	net->mac_derived = false;
}

void spec_decode_string_map(Decoder *d, const YNode *n, const StringMap *m, Label **ret, size_t *ret_n)
{
	char buf[80];

	if (n->type == YNODE_INVALID)
		return;
	if (n->type != YNODE_MAP) {
		decode_error(d, n, "expected a mapping of strings to strings, got %s",
			     decode_show(n, buf));
		return;
	}
	if (n->n_pairs > m->max) {
		decode_error(d, n, "has %zu %s; at most %zu are allowed", n->n_pairs, m->many,
			     m->max);
		return;
	}
	*ret = calloc(n->n_pairs ?: 1, sizeof(Label));
	if (!*ret) {
		d->diags->error = -ENOMEM;
		return;
	}

	for (size_t i = 0; i < n->n_pairs; i++) {
		const YNode *k = n->pairs[i].key, *v = n->pairs[i].value;
		const char *key, *value;
		bool key_ok = decode_get_string(d, k, &key), value_ok;
		size_t old = decode_where_push(d, ".%s", k->value);

		value_ok = decode_get_string(d, v, &value);
		decode_where_pop(d, old);

		if (key_ok && !*key) {
			decode_error(d, k, "a %s key is empty", m->what);
			key_ok = false;
		}
		if (key_ok && utf8_length(key) > m->key_max) {
			decode_error(d, k, "%s key %s is longer than %zu characters", m->what,
				     decode_show(k, buf), m->key_max);
			key_ok = false;
		}
		if (key_ok && m->key_check)
			key_ok = m->key_check(d, k);
		if (value_ok && utf8_length(value) > m->value_max) {
			decode_error(d, v, "%s value %s is longer than %zu characters", m->what,
				     decode_show(v, buf), m->value_max);
			value_ok = false;
		}
		if (!key_ok || !value_ok)
			continue;
		Label *l = &(*ret)[*ret_n];
		if (!decode_dup(d, key, &l->key) || !decode_dup(d, value, &l->value)) {
			free(l->key);
			*l = (Label){};
			return;
		}
		(*ret_n)++;
	}
}

static void decode_labels(Decoder *d, const YNode *n, const Field *f _unused_, void *obj)
{
	static const StringMap labels = { .what = "label",
					  .many = "labels",
					  .max = SPEC_LABELS_MAX,
					  .key_max = SPEC_LABEL_KEY_MAX,
					  .value_max = SPEC_LABEL_VALUE_MAX };
	SandboxSpec *s = obj;

	spec_decode_string_map(d, n, &labels, &s->labels, &s->n_labels);
}

static const Field metadata_fields[] = {
	{ "name", decode_name, offsetof(SandboxSpec, name) },
	{ "labels", decode_labels, 0 },
};

static void decode_metadata(Decoder *d, const YNode *n, const Field *f _unused_, void *obj)
{
	decode_fields(d, n, n, metadata_fields, ELEMENTSOF(metadata_fields), obj);
}

static const Field disk_fields[] = {
	{ "id", decode_id, offsetof(DiskSpec, id), .required = true },
	{ "path", decode_path, offsetof(DiskSpec, path), .max = SPEC_PATH_MAX },
	{ "readOnly", decode_bool, offsetof(DiskSpec, read_only) },
	{ "format", decode_enum, offsetof(DiskSpec, format), .table = disk_format_table,
	  .table_len = _DISK_FORMAT_MAX },
	{ "image", decode_path, offsetof(DiskSpec, image), .max = SPEC_PATH_MAX },
	{ "imageFormat", decode_enum, offsetof(DiskSpec, image_format), .table = disk_format_table,
	  .table_len = _DISK_FORMAT_MAX },
	{ "size", decode_size, offsetof(DiskSpec, size), .min = 1ull << 20 },
	{ "ephemeral", decode_bool, offsetof(DiskSpec, ephemeral) },
	{ "device", decode_enum, offsetof(DiskSpec, device), .table = disk_device_table,
	  .table_len = _DISK_DEVICE_MAX },
};

/* A field only a disk from an image has, or only one from a path: refused on the other. */
static void refuse_disk_field(Decoder *d, const YNode *item, const char *field, const char *why)
{
	const YNode *n = ynode_map_get(item, field);
	size_t old;

	if (!n)
		return;
	old = decode_where_push(d, ".%s", field);
	decode_error(d, n, "%s", why);
	decode_where_pop(d, old);
}

/* The image is there, readable, of the format stated, and no larger than size. */
static void check_image(Decoder *d, const YNode *item, DiskSpec *disk)
{
	const YNode *image = ynode_map_get(item, "image"), *size = ynode_map_get(item, "size");
	_cleanup_free_ char *why = NULL;
	uint64_t virtual_size = 0;
	size_t old;
	int r;

	if (!disk->image || SPEC_CTX(d)->skip_images)
		return; /* refused already, or not to be opened here */
	r = disk_image_probe(disk->image, disk->image_format, &virtual_size, &why);
	if (r >= 0)
		disk_image_identity(disk->image, &disk->checked);
	old = decode_where_push(d, ".image");
	if (r == -ENOMEM)
		d->diags->error = r;
	else if (r < 0)
		decode_error(d, image, "image '%s' %s", disk->image, why ?: strerror(-r));
	decode_where_pop(d, old);
	if (r < 0 || !size || disk->size == 0 || disk->size >= virtual_size)
		return;
	old = decode_where_push(d, ".size");
	decode_error(d, size,
		     "%" PRIu64 "Mi is smaller than the image's virtual size (%" PRIu64
		     " bytes); a disk from an image is at least its size: %" PRIu64 "Mi or more",
		     disk->size >> 20, virtual_size, (virtual_size + (UINT64_C(1) << 20) - 1) >> 20);
	decode_where_pop(d, old);
}

/*
 * The file a disk's path names now, as it is (a regular file, or the block device that
 * `device: block` says), recorded: the start opens only that file (spec.h FileIdentity).
 * A path that is not there yet is the start's to find.
 */
static void check_path(Decoder *d, const YNode *item, DiskSpec *disk)
{
	const YNode *path = ynode_map_get(item, "path");
	bool block = disk->device == DISK_DEVICE_BLOCK;
	struct stat st;
	size_t old;

	if (!disk->path || SPEC_CTX(d)->skip_images || stat(disk->path, &st) < 0)
		return;
	old = decode_where_push(d, ".path");
	if (block && !S_ISBLK(st.st_mode))
		decode_error(d, path, "'%s' is not a block device, and device: block says it is",
			     disk->path);
	else if (!block && S_ISBLK(st.st_mode))
		decode_error(d, path, "'%s' is a block device: say device: block to use one",
			     disk->path);
	else if (!block && !S_ISREG(st.st_mode))
		decode_error(d, path, "'%s' is not a regular file", disk->path);
	else
		disk->checked = (FileIdentity){ .set = true, .dev = st.st_dev, .ino = st.st_ino };
	decode_where_pop(d, old);
}

static void check_disk(Decoder *d, const YNode *item, void *obj)
{
	bool has_path = ynode_map_get(item, "path"), has_image = ynode_map_get(item, "image");
	DiskSpec *disk = obj;

	if (has_path && has_image)
		refuse_disk_field(d, item, "image",
				  "a disk has a path or an image, not both; remove one");
	else if (!has_path && !has_image)
		decode_error(
			d, item,
			"missing field 'path': a disk needs the path of its file, or an image to make its own copy of");
	if (!has_image) {
		check_path(d, item, disk);
		refuse_disk_field(d, item, "imageFormat", "only a disk from an image has one");
		refuse_disk_field(d, item, "size", "only a disk from an image has one");
		refuse_disk_field(d, item, "ephemeral", "only a disk from an image has one");
		return;
	}
	refuse_disk_field(
		d, item, "format",
		"the format of a disk from an image is vmd's (its copy's); the image's is imageFormat");
	refuse_disk_field(d, item, "device", "a disk from an image is a file of vmd's");
	if (!has_path)
		check_image(d, item, disk);
}

static void decode_port_number(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	uint64_t v;

	if (decode_uint_value(d, n, f, &v))
		*FIELD_AT(obj, f, uint16_t) = (uint16_t)v;
	if (f->offset == offsetof(PortSpec, host)) {
		((PortSpec *)obj)->line = n->line;
		((PortSpec *)obj)->column = n->column;
	}
}

static void decode_ipv4(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	struct in_addr a;
	char buf[80];
	const char *s;

	if (!decode_get_string(d, n, &s))
		return;
	if (inet_pton(AF_INET, s, &a) != 1) {
		decode_error(d, n, "%s is not an IPv4 address, such as 127.0.0.1 or 0.0.0.0",
			     decode_show(n, buf));
		return;
	}
	snprintf(FIELD_AT(obj, f, char), sizeof(((PortSpec *)0)->address), "%s", s);
}

static const Field port_fields[] = {
	{ "host", decode_port_number, offsetof(PortSpec, host), .required = true, .min = 1,
	  .max = 65535 },
	{ "guest", decode_port_number, offsetof(PortSpec, guest), .required = true, .min = 1,
	  .max = 65535 },
	{ "protocol", decode_enum, offsetof(PortSpec, protocol), .table = port_protocol_table,
	  .table_len = _PORT_PROTOCOL_MAX },
	{ "address", decode_ipv4, offsetof(PortSpec, address) },
};

static const ListDesc port_list = {
	.what = "port",
	.fields = port_fields,
	.n_fields = ELEMENTSOF(port_fields),
	.item_size = sizeof(PortSpec),
	.max = SPEC_PORTS_MAX,
};

static void decode_ports(Decoder *d, const YNode *n, const Field *f _unused_, void *obj)
{
	NetSpec *net = obj;
	size_t len = n->type == YNODE_SEQ ? MIN(n->n_items, (size_t)SPEC_PORTS_MAX) : 0;

	/* Until the file says otherwise: tcp, on the host's loopback only. */
	for (size_t i = 0; i < len; i++)
		net->ports[i] = (PortSpec){ .protocol = PORT_TCP, .address = "127.0.0.1" };
	net->n_ports = decode_list(d, n, &port_list, net->ports);
}

static const Field network_fields[] = {
	{ "id", decode_id, offsetof(NetSpec, id), .required = true },
	{ "type", decode_enum, offsetof(NetSpec, type), .table = net_type_table,
	  .table_len = _NET_TYPE_MAX },
	{ "tap", decode_ifname, offsetof(NetSpec, tap) },
	{ "bridge", decode_ifname, offsetof(NetSpec, bridge) },
	{ "link", decode_ifname, offsetof(NetSpec, link) },
	{ "mac", decode_mac, offsetof(NetSpec, mac) },
	{ "ports", decode_ports, 0 },
};

/* A field only some types of network have: refused, naming the types that do, elsewhere. */
static void refuse_field(Decoder *d, const YNode *item, const char *field, const char *type,
			 const char *which)
{
	const YNode *n = ynode_map_get(item, field);
	size_t old;

	if (!n)
		return;
	old = decode_where_push(d, ".%s", field);
	decode_error(d, n, "a network of type %s has no '%s'; only %s; remove it or change the type",
		     type, field, which);
	decode_where_pop(d, old);
}

/* The field each type of network needs, and why, as the error says it. */
static const struct {
	const char *field, *why;
} network_needs[_NET_TYPE_MAX] = {
	[NET_TAP] = { "tap",
		      "a network of type tap needs the name of a tap device that exists (type bridge makes one)" },
	[NET_BRIDGE] = { "bridge", "a network of type bridge needs the bridge its tap goes on" },
	[NET_MACVTAP] = { "link",
			  "a network of type macvtap needs the link it sits on, such as eth0" },
};

/* A host port (and protocol) is forwarded once: QEMU could listen on it only once. */
static void check_ports(Decoder *d, const YNode *item, const NetSpec *net)
{
	const YNode *ports = ynode_map_get(item, "ports");

	for (size_t i = 0; ports && i < net->n_ports; i++)
		for (size_t k = 0; k < i; k++) {
			const PortSpec *a = &net->ports[k], *b = &net->ports[i];
			size_t old;

			if (a->host != b->host || a->protocol != b->protocol)
				continue;
			old = decode_where_push(d, ".ports[%zu].host", i);
			decode_error(d, ynode_map_get(ports->items[i], "host") ?: ports->items[i],
				     "host port %u/%s is forwarded already, by ports[%zu]",
				     (unsigned)b->host, port_protocol_to_string(b->protocol), k);
			decode_where_pop(d, old);
			break;
		}
}

static void check_network(Decoder *d, const YNode *item, void *obj)
{
	const YNode *type = ynode_map_get(item, "type");
	/* As written, not as decoded: a refused type must not add a second error. */
	const char *t = !type ? "tap" : type->type == YNODE_SCALAR ? type->value : NULL;
	int k = t ? net_type_from_string(t) : -EINVAL;

	if (k < 0)
		return;
	if (network_needs[k].field && !ynode_map_get(item, network_needs[k].field))
		decode_error(d, item, "missing field '%s': %s", network_needs[k].field,
			     network_needs[k].why);
	if (k == NET_USER)
		refuse_field(d, item, "tap", t, "tap, bridge and macvtap networks have a device");
	if (k != NET_BRIDGE)
		refuse_field(d, item, "bridge", t, "a network of type bridge has one");
	if (k != NET_MACVTAP)
		refuse_field(d, item, "link", t, "a network of type macvtap has one");
	if (k != NET_USER)
		refuse_field(d, item, "ports", t, "a network of type user forwards ports");
	else
		check_ports(d, item, obj);
}

static const ListDesc disk_list = {
	.what = "disk",
	.fields = disk_fields,
	.n_fields = ELEMENTSOF(disk_fields),
	.item_size = sizeof(DiskSpec),
	.max = SPEC_DISKS_MAX,
	.unique = { "id", "path" },
	.check = check_disk,
};

static const ListDesc network_list = {
	.what = "network",
	.fields = network_fields,
	.n_fields = ELEMENTSOF(network_fields),
	.item_size = sizeof(NetSpec),
	.max = SPEC_NETWORKS_MAX,
	.unique = { "id", "tap" },
	.check = check_network,
};

/* How many items of a list will be decoded: room is made for that many, no more. */
static size_t list_length(const YNode *n, size_t max)
{
	if (n->type != YNODE_SEQ)
		return 0;
	return n->n_items < max ? n->n_items : max;
}

static void decode_disks(Decoder *d, const YNode *n, const Field *f _unused_, void *obj)
{
	SandboxSpec *s = obj;

	size_t len = list_length(n, SPEC_DISKS_MAX);

	if (sandbox_spec_reserve(s, len, 0) < 0) {
		d->diags->error = -ENOMEM;
		return;
	}
	/* Until the file says otherwise: an image is qcow2. */
	for (size_t i = 0; i < len; i++)
		s->disks[i].image_format = DISK_FORMAT_QCOW2;
	s->n_disks = decode_list(d, n, &disk_list, s->disks);
}

static void decode_networks(Decoder *d, const YNode *n, const Field *f _unused_, void *obj)
{
	SandboxSpec *s = obj;
	size_t len = list_length(n, SPEC_NETWORKS_MAX);

	if (sandbox_spec_reserve(s, 0, len) < 0) {
		d->diags->error = -ENOMEM;
		return;
	}
	/* Until the file says otherwise: type tap, MAC derived. */
	for (size_t i = 0; i < len; i++)
		s->networks[i] = (NetSpec){ .type = NET_TAP, .mac_derived = true };
	s->n_networks = decode_list(d, n, &network_list, s->networks);
}

static void decode_unsigned(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	uint64_t v;

	if (decode_uint_value(d, n, f, &v))
		*FIELD_AT(obj, f, unsigned) = (unsigned)v;
}

/* "200%": a share of one CPU's time, as systemd's CPUQuota= takes it. */
static void decode_cpu_quota(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	const char *s = n->type == YNODE_SCALAR ? n->value : "";
	char buf[80];
	uint64_t v = 0;
	size_t i;

	/* Any other scalar (200, "200"), a list or a mapping: the same message, it says what to write. */
	if (n->type == YNODE_INVALID)
		return;
	for (i = 0; s[i] >= '0' && s[i] <= '9' && i < 6; i++)
		v = v * 10 + (uint64_t)(s[i] - '0');
	if (i == 0 || s[0] == '0' || !streq(s + i, "%") || v < f->min || v > f->max) {
		decode_error(
			d, n,
			"expected a percentage of one CPU's time, such as 50%% or 200%% (two CPUs' worth), from %" PRIu64
			"%% to %" PRIu64 "%%, without a leading zero; got %s",
			f->min, f->max, decode_show(n, buf));
		return;
	}
	*FIELD_AT(obj, f, unsigned) = (unsigned)v;
}

static const Field resources_fields[] = {
	{ "cpuWeight", decode_unsigned, offsetof(SandboxSpec, resources.cpu_weight), .min = 1,
	  .max = SPEC_WEIGHT_MAX },
	{ "cpuQuota", decode_cpu_quota, offsetof(SandboxSpec, resources.cpu_quota), .min = 1,
	  .max = SPEC_CPU_QUOTA_MAX },
	{ "ioWeight", decode_unsigned, offsetof(SandboxSpec, resources.io_weight), .min = 1,
	  .max = SPEC_WEIGHT_MAX },
};

static void decode_resources(Decoder *d, const YNode *n, const Field *f _unused_, void *obj)
{
	decode_fields(d, n, n, resources_fields, ELEMENTSOF(resources_fields), obj);
}

static void decode_backend(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	SandboxSpec *s = obj;
	int v;

	if (!decode_enum_value(d, n, f, &v)) {
		SPEC_CTX(d)->backend_invalid = true;
		return;
	}
	s->backend = v;
	s->backend_explicit = true;
}

/* rollback: true or false; absent leaves it to the daemon's --rollback. */
static void decode_rollback(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	SandboxSpec *s = obj;
	union {
		bool b;
		uint8_t u;
	} v = { .u = 2 }; /* 2: not a boolean (decode_bool said so), left as it was */

	decode_bool(d, n, &(Field){ .name = f->name }, &v);
	if (v.u <= 1)
		s->rollback = v.b ? SPEC_ROLLBACK_ON : SPEC_ROLLBACK_OFF;
}

/* suspendAfterIdle: a duration as stopTimeout's, of 1s at least (idle.c). */
static void decode_idle(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	uint64_t *v = FIELD_AT(obj, f, uint64_t);
	char buf[80];

	*v = UINT64_MAX; /* left so if decode_duration refused it, and said why */
	decode_duration(d, n, f, obj);
	if (*v == UINT64_MAX)
		*v = 0;
	else if (*v < SPEC_IDLE_MIN_MS)
		decode_error(d, n, "%s is too short: at least 1s (leave it out for never)",
			     decode_show(n, buf));
}

static const Field spec_fields[] = {
	{ "backend", decode_backend, offsetof(SandboxSpec, backend), .table = backend_kind_table,
	  .table_len = _BACKEND_KIND_MAX },
	{ "state", decode_enum, offsetof(SandboxSpec, state), .table = sandbox_state_table,
	  .table_len = _SANDBOX_STATE_MAX },
	{ "restartPolicy", decode_enum, offsetof(SandboxSpec, restart_policy),
	  .table = restart_policy_table, .table_len = _RESTART_POLICY_MAX },
	{ "updatePolicy", decode_enum, offsetof(SandboxSpec, update_policy),
	  .table = update_policy_table, .table_len = _UPDATE_POLICY_MAX },
	{ "startFrom", decode_enum, offsetof(SandboxSpec, start_from), .table = start_from_table,
	  .table_len = _START_FROM_MAX },
	{ "vcpus", decode_unsigned, offsetof(SandboxSpec, vcpus), .min = 1, .max = SPEC_VCPUS_MAX },
	{ "memory", decode_size, offsetof(SandboxSpec, memory), .required = true,
	  .min = SPEC_MEMORY_MIN },
	{ "kernel", decode_path, offsetof(SandboxSpec, kernel), .max = SPEC_PATH_MAX },
	{ "initrd", decode_path, offsetof(SandboxSpec, initrd), .max = SPEC_PATH_MAX },
	{ "cmdline", decode_string, offsetof(SandboxSpec, cmdline), .max = SPEC_CMDLINE_MAX },
	{ "stopTimeout", decode_duration, offsetof(SandboxSpec, stop_timeout_ms),
	  .max = SPEC_STOP_TIMEOUT_MAX_MS },
	{ "suspendAfterIdle", decode_idle, offsetof(SandboxSpec, suspend_after_idle_ms),
	  .max = SPEC_IDLE_MAX_MS },
	{ "guestAgent", decode_bool, offsetof(SandboxSpec, guest_agent) },
	{ "disks", decode_disks, 0 },
	{ "networks", decode_networks, 0 },
	{ "cloudInit", spec_decode_cloud_init, 0 },
	{ "credentials", spec_decode_credentials, 0 },
	{ "deleteDisksOnRemove", decode_bool, offsetof(SandboxSpec, delete_disks_on_remove) },
	{ "resources", decode_resources, 0 },
	{ "readiness", decode_probe, offsetof(SandboxSpec, readiness) },
	{ "liveness", decode_probe, offsetof(SandboxSpec, liveness) },
	{ "after", decode_after, 0 },
	{ "rollback", decode_rollback, 0 },
};

static void decode_spec(Decoder *d, const YNode *n, const Field *f _unused_, void *obj)
{
	decode_fields(d, n, n, spec_fields, ELEMENTSOF(spec_fields), obj);
}

static const Field root_fields[] = {
	{ "apiVersion", decode_exact, 0, .required = true,
	  .table = (const char *const[]){ SPEC_API_VERSION } },
	{ "kind", decode_exact, 0, .required = true, .table = (const char *const[]){ SPEC_KIND } },
	{ "metadata", decode_metadata, 0 },
	{ "spec", decode_spec, 0, .required = true },
};

static void spec_defaults(SandboxSpec *s, const SpecLoadOptions *opts)
{
	s->backend = opts->default_backend;
	s->state = SANDBOX_RUNNING;
	s->restart_policy = RESTART_ALWAYS;
	s->update_policy = UPDATE_ON_NEXT_BOOT;
	s->vcpus = 1;
	s->stop_timeout_ms = 30 * 1000;
}

/* The file's name is the sandbox's name; metadata.name, when given, must agree. */
static void check_name(Decoder *d, const char *path, SandboxSpec *s)
{
	_cleanup_free_ char *stem = NULL, *shown = NULL;
	const YNode *at = SPEC_CTX(d)->name_node;
	int r;

	r = spec_name_from_path(path, &stem);
	if (r == -ENOMEM) {
		d->diags->error = r;
		return;
	}
	if (r < 0) {
		diag_add(d->diags, 1, 1, "file name must end in .yaml or .yml");
		return;
	}
	if (!spec_name_is_valid(stem)) {
		/* A file's name may hold anything but '/' and NUL: shown escaped. */
		shown = text_escape(stem);
		if (!shown) {
			d->diags->error = -ENOMEM;
			return;
		}
		diag_add(d->diags, at ? at->line : 1, at ? at->column : 1,
			 "the file name gives the sandbox name '%s', which is not valid: expected 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit; rename the file",
			 shown);
		return;
	}
	if (at && !streq(s->name, stem)) {
		diag_add(d->diags, at->line, at->column,
			 "metadata.name: '%s' does not match the file name; a sandbox's name is its file's name, so rename the file to '%s.yaml' or set name: %s",
			 s->name, s->name, stem);
		return;
	}
	strcpy(s->name, stem);
}

/*
 * startFrom: snapshot restores the guest as it was at template time, with its disks as
 * they are now: sound only if no disk it writes outlives a restore. Refused otherwise.
 */
static void check_start_from(Decoder *d, const YNode *root, const SandboxSpec *s)
{
	const YNode *spec = root && root->type == YNODE_MAP ? ynode_map_get(root, "spec") : NULL;
	const YNode *at = spec && spec->type == YNODE_MAP ? ynode_map_get(spec, "startFrom") : NULL;

	if (s->start_from != START_FROM_SNAPSHOT || !at)
		return;
	for (size_t i = 0; i < s->n_disks; i++)
		if (!s->disks[i].read_only && !s->disks[i].ephemeral) {
			decode_error(
				d, at,
				"startFrom: snapshot restores the guest's memory as it was when its template was saved, but disk '%s' is writable and outlives a restore: the guest's cached view of it would no longer match it. Make it readOnly: true, or an ephemeral disk from an image, or start from boot",
				s->disks[i].id);
			return;
		}
}

int spec_load_buffer(const char *path, const char *buf, size_t len, const SpecLoadOptions *opts,
		     SandboxSpec **ret, DiagList *diags)
{
	_cleanup_(ynode_freep) YNode *root = NULL;
	_cleanup_(sandbox_spec_freep) SandboxSpec *s = NULL;
	size_t before = diags->n + diags->n_dropped;
	SpecContext ctx = { .skip_images = opts->skip_images };
	Decoder d = { .diags = diags, .userdata = &ctx };
	char sbuf[80];
	int r;

	r = ytree_parse(buf, len, &root, diags);
	if (r < 0)
		goto finish;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	spec_defaults(s, opts);

	if (!root)
		diag_add(diags, 1, 1,
			 "file is empty: expected a Sandbox with apiVersion, kind and spec");
	else if (root->type != YNODE_MAP && root->type != YNODE_INVALID)
		decode_error(&d, root,
			     "expected a Sandbox mapping with apiVersion, kind and spec, got %s",
			     decode_show(root, sbuf));
	else
		decode_fields(&d, root, root, root_fields, ELEMENTSOF(root_fields), s);
	check_name(&d, path, s);
	spec_after_check_self(s, diags);
	check_start_from(&d, root, s);

	for (size_t i = 0; i < s->n_networks; i++) {
		NetSpec *n = &s->networks[i];

		if (n->mac_derived)
			spec_mac_derive(s->name, n->id, n->mac);
		n->tap_derived = !n->tap[0] && IN_SET(n->type, NET_BRIDGE, NET_MACVTAP);
		if (n->tap_derived)
			spec_tap_derive(s->name, n->id, n->tap);
	}

	/*
	 * What the backend cannot take, on the spec as far as it was decoded: a field that was
	 * refused kept its default, which no backend refuses. A refused backend has no rules.
	 */
	if (opts->check && !ctx.backend_invalid) {
		SpecCheck check = { .root = root, .diags = diags };

		(void)opts->check(s, &check); /* the reasons are in diags */
	}

finish:
	if (diags->error < 0)
		return diags->error;
	if (diags->n + diags->n_dropped > before) {
		diag_list_sort(diags);
		return -EINVAL;
	}
	*ret = TAKE_PTR(s);
	return 0;
}

int spec_load_file(const char *path, const SpecLoadOptions *opts, SandboxSpec **ret, DiagList *diags)
{
	_cleanup_free_ char *buf = NULL;
	_cleanup_close_ int fd = -EBADF;
	size_t len = 0;
	struct stat st;
	int r;

	/* O_NONBLOCK: a FIFO dropped into the directory must not hang us. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	if (!S_ISREG(st.st_mode))
		return -EBADFD;

	/* Read one byte past the limit, so that the parser can tell a file that is too large. */
	r = read_fd(fd, YTREE_MAX_BYTES + 1, &buf, &len);
	if (r < 0)
		return r;
	return spec_load_buffer(path, buf, len, opts, ret, diags);
}
