/* SPDX-License-Identifier: MIT */
/*
 * QEMU hot-plug: every disk and NIC sits alone on a pcie-root-port of its own, at addr=0.
 * Adding is blockdev-add + device_add (netdev_add + device_add); removing is device_del,
 * which only asks: the guest lets go when it is ready and DEVICE_DELETED says so, and only
 * then are the backend nodes freed. Until then the VM is busy; a guest that does not let
 * go in time is reported and asked again.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>

#include "qemu-vm.h"
#include "spec-json.h"
#include "util.h"

/* Ports and devices */

static Port *port_of(QemuVm *v, const char *device)
{
	for (unsigned i = 0; i < v->n_ports; i++)
		if (streq(v->ports[i].device, device))
			return &v->ports[i];
	return NULL;
}

static int port_free(QemuVm *v)
{
	for (unsigned i = 0; i < v->n_ports; i++)
		if (!v->ports[i].device[0])
			return (int)i;
	return -ENOSPC;
}

bool qemu_vm_is_busy(const QemuVm *v)
{
	for (unsigned i = 0; i < v->n_ports; i++)
		if (v->ports[i].unplug == UNPLUG_IN_FLIGHT)
			return true;
	return false;
}

/*
 * The devices QEMU has, by id: /machine/peripheral holds every device added with an id,
 * from boot on. (query-pci lists a device behind a root port only once the guest has
 * numbered the port's bus: not during early boot.)
 */
static int query_devices(QemuVm *v, json_t **ret_ids)
{
	_cleanup_(json_decrefp) json_t *list = NULL, *ids = json_object();
	json_t *e;
	size_t i;
	int r;

	if (!ids)
		return -ENOMEM;
	r = qmp_call(v->qmp, "qom-list", json_pack("{s:s}", "path", "/machine/peripheral"),
		     QMP_TIMEOUT_USEC, &list, NULL);
	if (r < 0)
		return r;
	json_array_foreach(list, i, e)
	{
		const char *name = json_string_value(json_object_get(e, "name"));
		const char *type = json_string_value(json_object_get(e, "type"));

		if (name && type && strncmp(type, "child<", 6) == 0)
			json_object_set_new(ids, name, json_true());
	}
	*ret_ids = TAKE_PTR(ids);
	return 0;
}

void qemu_device_name(char buf[static DEVICE_NAME_MAX], const char *prefix, const char *id)
{
	snprintf(buf, DEVICE_NAME_MAX, "%s%s", prefix, id);
}

/* What the VM has: its config, less the devices QEMU does not show on a root port. */
int qemu_observed_config(QemuVm *v, SandboxSpec **ret)
{
	_cleanup_(json_decrefp) json_t *present = NULL;
	_cleanup_(sandbox_spec_freep) SandboxSpec *s = NULL;
	char dev[DEVICE_NAME_MAX];
	int r;

	r = spec_copy(v->vm.config, &s);
	if (r < 0)
		return r;
	if (qmp_is_connected(v->qmp) && v->vm.state != VM_STOPPING &&
	    query_devices(v, &present) == 0) {
		for (size_t i = s->n_disks; i-- > 0;) {
			qemu_device_name(dev, QEMU_DISK_DEVICE, s->disks[i].id);
			if (!json_object_get(present, dev))
				(void)spec_remove_disk(s, s->disks[i].id);
		}
		for (size_t i = s->n_networks; i-- > 0;) {
			qemu_device_name(dev, QEMU_NET_DEVICE, s->networks[i].id);
			if (!json_object_get(present, dev))
				(void)spec_remove_net(s, s->networks[i].id);
		}
	}
	*ret = TAKE_PTR(s);
	return 0;
}

char *qemu_progress(const QemuVm *v)
{
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	char *p = NULL;

	for (unsigned i = 0; i < v->n_ports; i++) {
		const Port *port = &v->ports[i];
		uint64_t started = port->unplug_deadline - QEMU_UNPLUG_TIMEOUT_USEC;

		if (port->unplug == UNPLUG_IN_FLIGHT)
			(void)asprintf(&p,
				       "waiting for the guest to release %s (asked %" PRIu64
				       " s ago, attempt %u)",
				       port->device, (now - started) / 1000000,
				       port->unplug_attempts);
		else if (port->unplug == UNPLUG_TIMED_OUT)
			(void)asprintf(&p,
				       "the guest did not release %s within %llu s (paused, or not "
				       "booted far enough?); asking again",
				       port->device, QEMU_UNPLUG_TIMEOUT_USEC / 1000000);
		if (p)
			return p;
	}
	return NULL;
}

/* Removal */

void qemu_unplug_done(QemuVm *v, const char *device)
{
	Port *p = port_of(v, device);
	const char *id;

	if (!p)
		return;
	if (strncmp(device, QEMU_DISK_DEVICE, strlen(QEMU_DISK_DEVICE)) == 0) {
		char node[DEVICE_NAME_MAX + 16];

		id = device + strlen(QEMU_DISK_DEVICE);
		/* The format node, then the file node: each fails while something uses it. */
		snprintf(node, sizeof(node), QEMU_DISK_NODE "%s", id);
		(void)qmp_call(v->qmp, "blockdev-del", json_pack("{s:s}", "node-name", node),
			       QMP_TIMEOUT_USEC, NULL, NULL);
		snprintf(node, sizeof(node), QEMU_DISK_FILE "%s", id);
		(void)qmp_call(v->qmp, "blockdev-del", json_pack("{s:s}", "node-name", node),
			       QMP_TIMEOUT_USEC, NULL, NULL);
		(void)spec_remove_disk(v->vm.config, id);
	} else {
		char netdev[DEVICE_NAME_MAX + 16];

		id = device + strlen(QEMU_NET_DEVICE);
		snprintf(netdev, sizeof(netdev), QEMU_NETDEV "%s", id);
		(void)qmp_call(v->qmp, "netdev_del", json_pack("{s:s}", "id", netdev),
			       QMP_TIMEOUT_USEC, NULL, NULL);
		(void)spec_remove_net(v->vm.config, id);
	}
	*p = (Port){};
	(void)vmm_vm_save(&v->vm);
	vmm_vm_changed(&v->vm);
}

/* A free root port for a new device, or a clear reason. */
static int take_port(QemuVm *v, const char *device)
{
	int p;

	if (port_of(v, device)) {
		backend_set_error(v->vm.b, "%s is still attached (its removal has not completed)",
				  device);
		return -EBUSY;
	}
	p = port_free(v);
	if (p < 0)
		backend_set_error(v->vm.b,
				  "all %u hot-plug ports are taken; a restart of the VM makes room",
				  v->n_ports);
	return p;
}

static int plugged(QemuVm *v, int port, const char *device, uint64_t generation)
{
	snprintf(v->ports[port].device, DEVICE_NAME_MAX, "%s", device);
	v->vm.generation = generation;
	return vmm_vm_save(&v->vm);
}

int qemu_disk_add(Backend *b, const char *name, const DiskSpec *d, uint64_t generation)
{
	char dev[DEVICE_NAME_MAX], node[DEVICE_NAME_MAX + 16], file[DEVICE_NAME_MAX + 16], bus[32];
	QemuVm *v;
	int r, port;

	r = qemu_vm_for_command(b, name, &v);
	if (r < 0)
		return r;
	qemu_device_name(dev, QEMU_DISK_DEVICE, d->id);
	port = take_port(v, dev);
	if (port < 0)
		return port;
	snprintf(node, sizeof(node), QEMU_DISK_NODE "%s", d->id);
	snprintf(file, sizeof(file), QEMU_DISK_FILE "%s", d->id);
	snprintf(bus, sizeof(bus), QEMU_PORT "%d", port);

	r = qemu_command(v, "blockdev-add",
			 json_pack("{s:s, s:s, s:s, s:b}", "driver", "file", "node-name", file,
				   "filename", d->path, "read-only", d->read_only));
	if (r < 0)
		return r;
	r = qemu_command(v, "blockdev-add",
			 json_pack("{s:s, s:s, s:s, s:b}", "driver", disk_format_to_string(d->format),
				   "node-name", node, "file", file, "read-only", d->read_only));
	if (r >= 0)
		/* addr=0: elsewhere on the port, the guest would never see the device. */
		r = qemu_command(v, "device_add",
				 json_pack("{s:s, s:s, s:s, s:s, s:s}", "driver", "virtio-blk-pci",
					   "id", dev, "drive", node, "bus", bus, "addr", "0"));
	if (r < 0) {
		(void)qmp_call(v->qmp, "blockdev-del", json_pack("{s:s}", "node-name", node),
			       QMP_TIMEOUT_USEC, NULL, NULL);
		(void)qmp_call(v->qmp, "blockdev-del", json_pack("{s:s}", "node-name", file),
			       QMP_TIMEOUT_USEC, NULL, NULL);
		return r;
	}
	r = spec_add_disk(v->vm.config, d);
	if (r < 0)
		return r;
	return plugged(v, port, dev, generation);
}

int qemu_net_add(Backend *b, const char *name, const NetSpec *n, uint64_t generation)
{
	char dev[DEVICE_NAME_MAX], netdev[DEVICE_NAME_MAX + 16], bus[32], mac[18];
	QemuVm *v;
	json_t *args;
	int r, port;

	r = qemu_vm_for_command(b, name, &v);
	if (r < 0)
		return r;
	qemu_device_name(dev, QEMU_NET_DEVICE, n->id);
	port = take_port(v, dev);
	if (port < 0)
		return port;
	snprintf(netdev, sizeof(netdev), QEMU_NETDEV "%s", n->id);
	snprintf(bus, sizeof(bus), QEMU_PORT "%d", port);
	spec_mac_format(n->mac, mac);

	if (n->type == NET_TAP)
		args = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "tap", "id", netdev, "ifname",
				 n->tap, "script", "no", "downscript", "no");
	else
		args = json_pack("{s:s, s:s}", "type", "user", "id", netdev);
	r = qemu_command(v, "netdev_add", args);
	if (r < 0)
		return r;
	r = qemu_command(v, "device_add",
			 json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "driver", "virtio-net-pci",
				   "id", dev, "netdev", netdev, "mac", mac, "bus", bus, "addr", "0"));
	if (r < 0) {
		(void)qmp_call(v->qmp, "netdev_del", json_pack("{s:s}", "id", netdev),
			       QMP_TIMEOUT_USEC, NULL, NULL);
		return r;
	}
	r = spec_add_net(v->vm.config, n);
	if (r < 0)
		return r;
	return plugged(v, port, dev, generation);
}

static int unplug_timer_fired(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata);

static void arm_unplug_timer(QemuVm *v)
{
	uint64_t next = 0;

	v->unplug_timer = sd_event_source_disable_unref(v->unplug_timer);
	for (unsigned i = 0; i < v->n_ports; i++)
		if (v->ports[i].unplug == UNPLUG_IN_FLIGHT &&
		    (next == 0 || v->ports[i].unplug_deadline < next))
			next = v->ports[i].unplug_deadline;
	if (next)
		(void)sd_event_add_time(v->vm.b->event, &v->unplug_timer, CLOCK_MONOTONIC, next,
					100000, unplug_timer_fired, v);
}

static int unplug_timer_fired(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	QemuVm *v = userdata;
	uint64_t now = now_usec(CLOCK_MONOTONIC);

	for (unsigned i = 0; i < v->n_ports; i++)
		if (v->ports[i].unplug == UNPLUG_IN_FLIGHT && v->ports[i].unplug_deadline <= now)
			v->ports[i].unplug = UNPLUG_TIMED_OUT;
	arm_unplug_timer(v);
	vmm_vm_changed(&v->vm);
	return 0;
}

/*
 * device_del only asks: the guest releases the device when it is ready to, and
 * DEVICE_DELETED says it did (unplug_done). Until then the VM is busy; a guest that does
 * not let go in time (paused, still booting) is reported and asked again.
 */
static int unplug(Backend *b, const char *name, const char *prefix, const char *id)
{
	char dev[DEVICE_NAME_MAX];
	QemuVm *v;
	Port *p;
	int r;

	r = qemu_vm_for_command(b, name, &v);
	if (r < 0)
		return r;
	qemu_device_name(dev, prefix, id);
	p = port_of(v, dev);
	if (!p)
		return 0; /* not there: nothing to remove */
	if (p->unplug == UNPLUG_IN_FLIGHT)
		return 1;
	if (p->unplug == UNPLUG_TIMED_OUT) {
		p->unplug = UNPLUG_NONE;
		backend_set_error(b,
				  "the guest did not release %s within %llu s (is it paused, or not "
				  "booted far enough to handle hot-unplug?)",
				  dev, QEMU_UNPLUG_TIMEOUT_USEC / 1000000);
		return -ETIMEDOUT;
	}
	r = qemu_command(v, "device_del", json_pack("{s:s}", "id", dev));
	/* Asked before and still pending in QEMU: that is the same request, still in flight. */
	if (r < 0 && p->unplug_attempts == 0)
		return r;
	p->unplug = UNPLUG_IN_FLIGHT;
	p->unplug_deadline = now_usec(CLOCK_MONOTONIC) + QEMU_UNPLUG_TIMEOUT_USEC;
	p->unplug_attempts++;
	free(backend_take_error(b));
	arm_unplug_timer(v);
	return 1;
}

int qemu_disk_remove(Backend *b, const char *name, const char *id, uint64_t generation)
{
	int r = unplug(b, name, QEMU_DISK_DEVICE, id);

	if (r == 0) {
		QemuVm *v = qemu_vm_get(b, name);

		(void)spec_remove_disk(v->vm.config, id);
		v->vm.generation = generation;
		return vmm_vm_save(&v->vm);
	}
	return r;
}

int qemu_net_remove(Backend *b, const char *name, const char *id, uint64_t generation)
{
	int r = unplug(b, name, QEMU_NET_DEVICE, id);

	if (r == 0) {
		QemuVm *v = qemu_vm_get(b, name);

		(void)spec_remove_net(v->vm.config, id);
		v->vm.generation = generation;
		return vmm_vm_save(&v->vm);
	}
	return r;
}
