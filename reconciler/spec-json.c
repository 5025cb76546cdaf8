/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "after-spec.h"
#include "spec-json.h"

static int set_opt_string(json_t *o, const char *key, const char *value)
{
	return value ? json_object_set_new(o, key, json_string(value)) : 0;
}

/* A disk from an image has its image's fields; path only once its backend named the copy. */
static json_t *disk_to_json(const DiskSpec *d)
{
	json_t *j = json_pack("{s:s, s:s*, s:b, s:s}", "id", d->id, "path", d->path, "readOnly",
			      d->read_only, "format", disk_format_to_string(d->format));

	if (j && d->image &&
	    json_object_update_missing_new(
		    j, json_pack("{s:s, s:s, s:I, s:b}", "image", d->image, "imageFormat",
				 disk_format_to_string(d->image_format), "sizeBytes",
				 (json_int_t)d->size, "ephemeral", d->ephemeral)) < 0)
		return json_decref(j), NULL;
	/* Only said when it is not a file: the copies of vmd before it stay equal. */
	if (j && d->device != DISK_DEVICE_FILE &&
	    json_object_set_new(j, "device", json_string(disk_device_to_string(d->device))) < 0)
		return json_decref(j), NULL;
	return j;
}

/* spec.resources, only what the file set: absent in the copies of vmd before it. */
static const struct {
	const char *key;
	size_t offset;
} resources_keys[] = {
	{ "cpuWeight", offsetof(ResourcesSpec, cpu_weight) },
	{ "cpuQuotaPercent", offsetof(ResourcesSpec, cpu_quota) },
	{ "ioWeight", offsetof(ResourcesSpec, io_weight) },
};

static int resources_to_json(const ResourcesSpec *res, json_t *j)
{
	json_t *o = json_object();
	int r = o ? 0 : -1;

	for (size_t i = 0; o && i < ELEMENTSOF(resources_keys); i++) {
		unsigned v = *(const unsigned *)((const char *)res + resources_keys[i].offset);

		if (v > 0)
			r |= json_object_set_new(o, resources_keys[i].key, json_integer(v));
	}
	if (o && json_object_size(o) == 0) {
		json_decref(o);
		return r;
	}
	return r | json_object_set_new(j, "resources", o);
}

static void resources_from_json(const json_t *o, ResourcesSpec *res)
{
	for (size_t i = 0; json_is_object(o) && i < ELEMENTSOF(resources_keys); i++)
		*(unsigned *)((char *)res + resources_keys[i].offset) =
			(unsigned)json_integer_value(json_object_get(o, resources_keys[i].key));
}

/* readiness and liveness, when the spec has them. */
static int probes_to_json(json_t *j, const SandboxSpec *s)
{
	const struct {
		const char *key;
		const ProbeSpec *p;
	} probes[] = { { "readiness", &s->readiness }, { "liveness", &s->liveness } };
	int r = 0;

	for (size_t i = 0; i < ELEMENTSOF(probes); i++) {
		json_t *v = probe_spec_to_json(probes[i].p);

		if (probes[i].p->kind != PROBE_NONE)
			r |= v ? json_object_set_new(j, probes[i].key, v) : -ENOMEM;
	}
	return r;
}

json_t *spec_to_json(const SandboxSpec *s)
{
	json_t *j = json_object(), *labels = json_object(), *disks = json_array(),
	       *nets = json_array();
	int r = 0;

	if (!j || !labels || !disks || !nets)
		goto fail;
	for (size_t i = 0; i < s->n_labels; i++)
		r |= json_object_set_new(labels, s->labels[i].key, json_string(s->labels[i].value));
	for (size_t i = 0; i < s->n_disks; i++)
		r |= json_array_append_new(disks, disk_to_json(&s->disks[i]));
	for (size_t i = 0; i < s->n_networks; i++) {
		const NetSpec *n = &s->networks[i];
		json_t *ports = n->n_ports ? json_array() : NULL;
		char mac[18];

		for (size_t k = 0; k < n->n_ports; k++) {
			const PortSpec *p = &n->ports[k];

			r |= json_array_append_new(ports,
						   json_pack("{s:i, s:i, s:s, s:s}", "host",
							     p->host, "guest", p->guest, "protocol",
							     port_protocol_to_string(p->protocol),
							     "address", p->address));
		}
		spec_mac_format(n->mac, mac);
		r |= json_array_append_new(
			nets, json_pack("{s:s, s:s, s:s, s:s, s:s*, s:s*, s:o*}", "id", n->id,
					"type", net_type_to_string(n->type), "tap", n->tap, "mac",
					mac, "bridge", n->bridge[0] ? n->bridge : NULL, "link",
					n->link[0] ? n->link : NULL, "ports", ports));
	}
	r |= json_object_set_new(j, "name", json_string(s->name));
	r |= json_object_set_new(j, "labels", labels);
	labels = NULL;
	r |= json_object_set_new(j, "backend", json_string(backend_kind_to_string(s->backend)));
	r |= json_object_set_new(j, "state", json_string(sandbox_state_to_string(s->state)));
	r |= json_object_set_new(j, "restartPolicy",
				 json_string(restart_policy_to_string(s->restart_policy)));
	r |= json_object_set_new(j, "updatePolicy",
				 json_string(update_policy_to_string(s->update_policy)));
	r |= json_object_set_new(j, "vcpus", json_integer(s->vcpus));
	r |= json_object_set_new(j, "memoryBytes", json_integer((json_int_t)s->memory));
	r |= set_opt_string(j, "kernel", s->kernel);
	r |= set_opt_string(j, "initrd", s->initrd);
	r |= set_opt_string(j, "cmdline", s->cmdline);
	r |= json_object_set_new(j, "stopTimeoutMs", json_integer((json_int_t)s->stop_timeout_ms));
	if (s->suspend_after_idle_ms) /* absent: never, as in copies of vmd before it */
		r |= json_object_set_new(j, "suspendAfterIdleMs",
					 json_integer((json_int_t)s->suspend_after_idle_ms));
	if (s->guest_agent) /* absent in the state dir's copies of vmd before it, and false */
		r |= json_object_set_new(j, "guestAgent", json_true());
	r |= json_object_set_new(j, "disks", disks);
	disks = NULL;
	if (s->delete_disks_on_remove)
		r |= json_object_set_new(j, "deleteDisksOnRemove", json_true());
	r |= json_object_set_new(j, "networks", nets);
	nets = NULL;
	r |= resources_to_json(&s->resources, j);
	r |= spec_provision_to_json(s, j);
	r |= probes_to_json(j, s);
	r |= spec_after_to_json(s, j);
	if (s->start_from != START_FROM_BOOT) /* absent in the copies of vmd before it */
		r |= json_object_set_new(j, "startFrom",
					 json_string(start_from_to_string(s->start_from)));
	if (s->rollback != SPEC_ROLLBACK_DEFAULT) /* absent in the copies of vmd before it */
		r |= json_object_set_new(j, "rollback",
					 json_boolean(s->rollback == SPEC_ROLLBACK_ON));
	if (r == 0)
		return j;
fail:
	json_decref(j);
	json_decref(labels);
	json_decref(disks);
	json_decref(nets);
	return NULL;
}

static int get_enum(const json_t *j, const char *key, const char *const *table, size_t n, int *ret)
{
	ssize_t i = string_table_lookup(table, n, json_string_value(json_object_get(j, key)));

	if (i < 0)
		return -EINVAL;
	*ret = (int)i;
	return 0;
}

static int dup_opt(const json_t *j, const char *key, char **ret)
{
	const json_t *v = json_object_get(j, key);

	if (!v)
		return 0;
	if (!json_is_string(v))
		return -EINVAL;
	*ret = strdup(json_string_value(v));
	return *ret ? 0 : -ENOMEM;
}

static int copy_fixed(char *dst, size_t size, const char *src)
{
	if (!src || strlen(src) >= size)
		return -EINVAL;
	strcpy(dst, src);
	return 0;
}

static int disks_from_json(const json_t *a, SandboxSpec *s)
{
	size_t i;
	json_t *d;

	if (!json_is_array(a) || json_array_size(a) > SPEC_DISKS_MAX)
		return -EINVAL;
	if (sandbox_spec_reserve(s, json_array_size(a), 0) < 0)
		return -ENOMEM;
	json_array_foreach(a, i, d)
	{
		DiskSpec *disk = &s->disks[s->n_disks++];
		int f, imf = DISK_FORMAT_QCOW2, dev = DISK_DEVICE_FILE, r;

		r = copy_fixed(disk->id, sizeof(disk->id),
			       json_string_value(json_object_get(d, "id")));
		if (r == 0)
			r = dup_opt(d, "path", &disk->path);
		if (r == 0)
			r = dup_opt(d, "image", &disk->image);
		if (r == 0)
			r = get_enum(d, "format", disk_format_table, _DISK_FORMAT_MAX, &f);
		if (r == 0 && disk->image)
			r = get_enum(d, "imageFormat", disk_format_table, _DISK_FORMAT_MAX, &imf);
		if (r < 0 || (!disk->path && !disk->image))
			return r < 0 ? r : -EINVAL;
		if (r == 0 && json_object_get(d, "device"))
			r = get_enum(d, "device", disk_device_table, _DISK_DEVICE_MAX, &dev);
		if (r < 0)
			return r;
		disk->device = dev;
		disk->format = f;
		disk->image_format = imf;
		disk->read_only = json_is_true(json_object_get(d, "readOnly"));
		disk->size = (uint64_t)json_integer_value(json_object_get(d, "sizeBytes"));
		disk->ephemeral = json_is_true(json_object_get(d, "ephemeral"));
	}
	return 0;
}

static int ports_from_json(const json_t *a, NetSpec *net)
{
	size_t i;
	json_t *p;

	if (!a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > SPEC_PORTS_MAX)
		return -EINVAL;
	json_array_foreach(a, i, p)
	{
		PortSpec *port = &net->ports[net->n_ports++];
		json_int_t host = json_integer_value(json_object_get(p, "host")),
			   guest = json_integer_value(json_object_get(p, "guest"));
		int t, r;

		if (host < 1 || host > 65535 || guest < 1 || guest > 65535)
			return -EINVAL;
		port->host = (uint16_t)host;
		port->guest = (uint16_t)guest;
		r = get_enum(p, "protocol", port_protocol_table, _PORT_PROTOCOL_MAX, &t);
		if (r == 0)
			r = copy_fixed(port->address, sizeof(port->address),
				       json_string_value(json_object_get(p, "address")));
		if (r < 0)
			return r;
		port->protocol = t;
	}
	return 0;
}

static int nets_from_json(const json_t *a, SandboxSpec *s)
{
	size_t i;
	json_t *n;

	if (!json_is_array(a) || json_array_size(a) > SPEC_NETWORKS_MAX)
		return -EINVAL;
	if (sandbox_spec_reserve(s, 0, json_array_size(a)) < 0)
		return -ENOMEM;
	json_array_foreach(a, i, n)
	{
		NetSpec *net = &s->networks[s->n_networks++];
		int t, r;

		r = copy_fixed(net->id, sizeof(net->id), json_string_value(json_object_get(n, "id")));
		if (r == 0)
			r = copy_fixed(net->tap, sizeof(net->tap),
				       json_string_value(json_object_get(n, "tap")));
		if (r == 0 && json_object_get(n, "bridge"))
			r = copy_fixed(net->bridge, sizeof(net->bridge),
				       json_string_value(json_object_get(n, "bridge")));
		if (r == 0 && json_object_get(n, "link"))
			r = copy_fixed(net->link, sizeof(net->link),
				       json_string_value(json_object_get(n, "link")));
		if (r == 0)
			r = ports_from_json(json_object_get(n, "ports"), net);
		if (r == 0)
			r = get_enum(n, "type", net_type_table, _NET_TYPE_MAX, &t);
		if (r == 0)
			r = spec_mac_parse(json_string_value(json_object_get(n, "mac")) ?: "",
					   net->mac);
		if (r < 0)
			return r;
		net->type = t;
	}
	return 0;
}

int spec_labels_from_json(const json_t *o, size_t max, Label **ret, size_t *ret_n)
{
	const char *k;
	json_t *v;

	if (!json_is_object(o) || json_object_size(o) > max)
		return -EINVAL;
	*ret = calloc(json_object_size(o) ?: 1, sizeof(Label));
	if (!*ret)
		return -ENOMEM;
	json_object_foreach((json_t *)o, k, v)
	{
		Label *l = &(*ret)[*ret_n];

		if (!json_is_string(v))
			return -EINVAL;
		l->key = strdup(k);
		l->value = strdup(json_string_value(v));
		(*ret_n)++;
		if (!l->key || !l->value)
			return -ENOMEM;
	}
	return 0;
}

int spec_from_json(const json_t *j, SandboxSpec **ret)
{
	_cleanup_(sandbox_spec_freep) SandboxSpec *s = calloc(1, sizeof(SandboxSpec));
	int backend, state, restart, update, r;

	if (!s)
		return -ENOMEM;
	if (!json_is_object(j) ||
	    copy_fixed(s->name, sizeof(s->name), json_string_value(json_object_get(j, "name"))) < 0)
		return -EINVAL;
	r = get_enum(j, "backend", backend_kind_table, _BACKEND_KIND_MAX, &backend);
	if (r == 0)
		r = get_enum(j, "state", sandbox_state_table, _SANDBOX_STATE_MAX, &state);
	if (r == 0)
		r = get_enum(j, "restartPolicy", restart_policy_table, _RESTART_POLICY_MAX, &restart);
	if (r == 0)
		r = get_enum(j, "updatePolicy", update_policy_table, _UPDATE_POLICY_MAX, &update);
	if (r == 0)
		r = dup_opt(j, "kernel", &s->kernel);
	if (r == 0)
		r = dup_opt(j, "initrd", &s->initrd);
	if (r == 0)
		r = dup_opt(j, "cmdline", &s->cmdline);
	if (r == 0)
		r = spec_labels_from_json(json_object_get(j, "labels"), SPEC_LABELS_MAX, &s->labels,
					  &s->n_labels);
	if (r == 0)
		r = disks_from_json(json_object_get(j, "disks"), s);
	if (r == 0)
		r = nets_from_json(json_object_get(j, "networks"), s);
	if (r == 0)
		r = spec_provision_from_json(j, s);
	if (r == 0)
		r = probe_spec_from_json(json_object_get(j, "readiness"), &s->readiness);
	if (r == 0)
		r = probe_spec_from_json(json_object_get(j, "liveness"), &s->liveness);
	if (r == 0)
		r = spec_after_from_json(j, s);
	if (r < 0)
		return r;
	s->guest_agent = json_is_true(json_object_get(j, "guestAgent"));
	s->backend = backend;
	s->state = state;
	s->restart_policy = restart;
	s->update_policy = update;
	s->vcpus = (unsigned)json_integer_value(json_object_get(j, "vcpus"));
	s->memory = (uint64_t)json_integer_value(json_object_get(j, "memoryBytes"));
	s->stop_timeout_ms = (uint64_t)json_integer_value(json_object_get(j, "stopTimeoutMs"));
	s->suspend_after_idle_ms =
		(uint64_t)json_integer_value(json_object_get(j, "suspendAfterIdleMs"));
	s->delete_disks_on_remove = json_is_true(json_object_get(j, "deleteDisksOnRemove"));
	resources_from_json(json_object_get(j, "resources"), &s->resources);
	s->start_from = streq_ptr(json_string_value(json_object_get(j, "startFrom")), "snapshot")
				? START_FROM_SNAPSHOT
				: START_FROM_BOOT;
	if (json_is_boolean(json_object_get(j, "rollback")))
		s->rollback = json_is_true(json_object_get(j, "rollback")) ? SPEC_ROLLBACK_ON
									   : SPEC_ROLLBACK_OFF;
	*ret = TAKE_PTR(s);
	return 0;
}

bool spec_equal(const SandboxSpec *a, const SandboxSpec *b)
{
	json_t *ja = spec_to_json(a), *jb = spec_to_json(b);
	bool eq = ja && jb && json_equal(ja, jb);

	json_decref(ja);
	json_decref(jb);
	return eq;
}

int spec_copy(const SandboxSpec *s, SandboxSpec **ret)
{
	_cleanup_(json_decrefp) json_t *j = spec_to_json(s);
	SandboxSpec *c = NULL;
	int r = j ? spec_from_json(j, &c) : -ENOMEM;

	if (r < 0)
		return r;
	/* What the loader checked is no part of the JSON: the copy keeps it all the same. */
	for (size_t i = 0; i < c->n_disks && i < s->n_disks; i++)
		c->disks[i].checked = s->disks[i].checked;
	*ret = c;
	return r;
}
