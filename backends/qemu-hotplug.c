/* SPDX-License-Identifier: MIT */
/*
 * QEMU hot-plug: every disk and NIC sits alone on a pcie-root-port of its own, at addr=0.
 * Adding is blockdev-add + device_add (netdev_add + device_add), undone if a step fails;
 * removing is device_del, which only asks: the guest lets go when it is ready and
 * DEVICE_DELETED says so, and only then are the backend nodes freed (the job's release and
 * cleanup phases). A guest that does not let go in time fails the removal, which the daemon
 * asks for again later.
 */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>

#include "log.h"
#include "netdev.h"
#include "qemu-vm.h"
#include "spec-json.h"
#include "util.h"

/* Ports and devices */

void qemu_device_name(char buf[static DEVICE_NAME_MAX], const char *prefix, const char *id)
{
	snprintf(buf, DEVICE_NAME_MAX, "%s%s", prefix, id);
}

bool qemu_is_device_name(const char *s)
{
	if (strncmp(s, QEMU_DISK_DEVICE, strlen(QEMU_DISK_DEVICE)) == 0)
		return spec_id_is_valid(s + strlen(QEMU_DISK_DEVICE));
	if (strncmp(s, QEMU_NET_DEVICE, strlen(QEMU_NET_DEVICE)) == 0)
		return spec_id_is_valid(s + strlen(QEMU_NET_DEVICE));
	return false;
}

static Port *port_of(QemuVm *v, const char *device)
{
	for (unsigned i = 0; i < v->n_ports; i++)
		if (streq(v->ports[i].device, device))
			return &v->ports[i];
	return NULL;
}

int qemu_vm_save_disk_names(const QemuVm *v, json_t *j)
{
	json_t *names = json_object(), *fdsets = json_object(), *legacy = json_array();

	if (!names || !fdsets || !legacy || json_object_set_new(names, "fdsets", fdsets) < 0 ||
	    json_object_set_new(names, "legacy", legacy) < 0) {
		json_decref(names);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < v->n_ports; i++) {
		const Port *p = &v->ports[i];

		if (p->device[0] && p->fdset)
			json_object_set_new(fdsets, p->device, json_integer(p->fdset));
		if (p->device[0] && p->legacy)
			json_array_append_new(legacy, json_string(p->device));
	}
	json_object_set_new(names, "lastFdset", json_integer(v->last_fdset));
	return json_object_set_new(j, "diskNames", names) < 0 ? -ENOMEM : 0;
}

int qemu_vm_load_disk_names(QemuVm *v, const json_t *j)
{
	const json_t *names = json_object_get(j, "diskNames"), *e;
	const char *key;
	size_t k;

	/* A record without them: a vmd before named every disk's nodes after its id. */
	for (unsigned i = 0; i < v->n_ports; i++)
		v->ports[i].legacy = !names && v->ports[i].device[0];
	if (!names)
		return 0;
	v->last_fdset = (unsigned)json_integer_value(json_object_get(names, "lastFdset"));
	json_object_foreach((json_t *)json_object_get(names, "fdsets"), key, e)
	{
		Port *p = port_of(v, key);

		if (!p || !json_is_integer(e) || json_integer_value(e) < QEMU_FDSET_HOTADD ||
		    json_integer_value(e) > v->last_fdset)
			return -EBADMSG;
		p->fdset = (unsigned)json_integer_value(e);
	}
	json_array_foreach(json_object_get(names, "legacy"), k, e)
	{
		Port *p = json_is_string(e) ? port_of(v, json_string_value(e)) : NULL;

		if (!p)
			return -EBADMSG;
		p->legacy = true;
	}
	return 0;
}

/*
 * The counter of hot-added fdsets is saved with vm.json only: a vmd that crashed between
 * an add-fd and that save left a set in QEMU that its record does not name, and an add-fd
 * into that id would add a second descriptor to it (QEMU 7.2 monitor/fds.c
 * monitor_fdset_add_fd() adds to the set of the id given, if there is one), of which
 * /dev/fdset/N may open the old one. So an adopted QEMU is asked what it holds (query-fdsets:
 * every set, whatever its descriptors, monitor/fds.c qmp_query_fdsets()), and the counter
 * moves past all of them.
 */
int qemu_observe_fdsets(VmmVm *vm, VmmJob *j _unused_, const VmmReply *r)
{
	QemuVm *v = (QemuVm *)vm;
	const json_t *e;
	size_t i;

	if (r->error < 0 && r->answered) {
		/*
		 * A QEMU that refuses the command (every QEMU since 1.2 has it) is adopted all
		 * the same, with the counter its record has: not managing a running VM is worse.
		 */
		log_fields(LOG_WARNING,
			   &(LogFields){ .sandbox = vm->name,
					 .backend = "qemu",
					 .message_id = LOG_MESSAGE_VMM },
			   "query-fdsets failed (%s); hot-added disks count on from fdset %u, as its record says",
			   r->message ?: strerror(-r->error), v->last_fdset + 1);
		return VMM_NEXT;
	}
	if (r->error < 0)
		return r->error;
	json_array_foreach(r->json, i, e)
	{
		json_int_t id = json_integer_value(json_object_get(e, "fdset-id"));

		if (id >= QEMU_FDSET_HOTADD && id > (json_int_t)v->last_fdset && id < INT_MAX)
			v->last_fdset = (unsigned)id;
	}
	return VMM_NEXT;
}

/* The names of what backs the disk id on port i (-1: not known): its nodes and its fdset. */
typedef struct DiskNames {
	char node[QEMU_NODE_NAME_MAX + DEVICE_NAME_MAX], file[QEMU_NODE_NAME_MAX + DEVICE_NAME_MAX];
	int fdset; /* -1: none known */
} DiskNames;

static void disk_names(const QemuVm *v, int i, const char *id, DiskNames *ret)
{
	const Port *p = i >= 0 ? &v->ports[i] : NULL;

	if (!p || p->legacy) {
		snprintf(ret->node, sizeof(ret->node), QEMU_LEGACY_DISK_NODE "%s", id);
		snprintf(ret->file, sizeof(ret->file), QEMU_LEGACY_DISK_FILE "%s", id);
	} else {
		snprintf(ret->node, sizeof(ret->node), QEMU_DISK_NODE "%d", i);
		snprintf(ret->file, sizeof(ret->file), QEMU_DISK_FILE "%d", i);
	}
	ret->fdset = !p ? -1 : p->fdset ? (int)p->fdset : QEMU_FDSET_DISK + i;
}

static bool is_disk(const VmmJob *j)
{
	return IN_SET(j->type, BACKEND_OP_DISK_ADD, BACKEND_OP_DISK_REMOVE);
}

/* The job's device as QEMU names it: "disk-ID", "net-ID". */
static void job_device(const VmmJob *j, char buf[static DEVICE_NAME_MAX])
{
	qemu_device_name(buf, is_disk(j) ? QEMU_DISK_DEVICE : QEMU_NET_DEVICE, j->device);
}

/* A free root port for the job's new device (taken now), or a clear reason. */
static int take_port(QemuVm *v, VmmJob *j, const char *device)
{
	if (port_of(v, device)) {
		vmm_job_fail_message(j, "%s is still attached (its removal has not completed)",
				     device);
		return -EBUSY;
	}
	for (unsigned i = 0; i < v->n_ports; i++)
		if (!v->ports[i].device[0]) {
			snprintf(v->ports[i].device, DEVICE_NAME_MAX, "%s", device);
			v->add_port = i + 1;
			return (int)i;
		}
	vmm_job_fail_message(j, "all %u hot-plug ports are taken; a restart of the VM makes room",
			     v->n_ports);
	return -ENOSPC;
}

static void free_port(QemuVm *v, const char *device)
{
	Port *p = port_of(v, device);

	if (p)
		*p = (Port){};
}

/*
 * vmd opens the disk's file (qemu-fds.c, in the job's files phase) and hands it over with add-fd,
 * into the fdset of the port (QEMU 7.2 monitor/fds.c qmp_add_fd(): the descriptor comes with the
 * command, SCM_RIGHTS); the file node opens /dev/fdset/N, a dup of it. QEMU opens no path.
 */
static int add_disk(QemuVm *v, VmmJob *j, VmmRequests *rq, const char *dev, int port)
{
	const DiskSpec *d = &j->disk;
	DiskNames names;
	char why[512];
	int fd, r;

	/* Opened by the job's files phase (qemu_files()), in a worker. */
	fd = vmm_files_take(&v->vm, VMM_KEY_DISK, j->device, why, sizeof(why));
	if (fd < 0) {
		vmm_job_fail_message(j, "%s", why);
		return fd;
	}
	/* A set of its own: one a failed remove-fd left on this port is never added to. */
	v->last_fdset = MAX(v->last_fdset + 1, (unsigned)QEMU_FDSET_HOTADD);
	v->ports[port].fdset = v->last_fdset;
	disk_names(v, port, d->id, &names);
	r = vmm_request_add(rq, NULL,
			    json_pack("{s:i, s:s+}", "fdset-id", names.fdset, "opaque",
				      QEMU_DISK_DEVICE, d->id),
			    NULL, "add-fd");
	if (r < 0) {
		close(fd);
		return r;
	}
	r = vmm_request_pass_fd(rq, fd);
	if (r >= 0) {
		char file[32];

		snprintf(file, sizeof(file), "/dev/fdset/%d", names.fdset);
		r = vmm_request_add(rq, NULL,
				    json_pack("{s:s, s:s, s:s, s:b}", "driver",
					      d->device == DISK_DEVICE_BLOCK ? "host_device" : "file",
					      "node-name", names.file, "filename", file,
					      "read-only", d->read_only),
				    NULL, "blockdev-add");
	}
	if (r >= 0)
		r = vmm_request_add(rq, NULL,
				    json_pack("{s:s, s:s, s:s, s:b}", "driver",
					      disk_format_to_string(d->format), "node-name",
					      names.node, "file", names.file, "read-only",
					      d->read_only),
				    NULL, "blockdev-add");
	if (r >= 0) {
		char bus[32];

		/* addr=0: elsewhere on the port, the guest would never see the device. */
		snprintf(bus, sizeof(bus), QEMU_PORT "%d", port);
		r = vmm_request_add(rq, NULL,
				    json_pack("{s:s, s:s, s:s, s:s, s:s}", "driver",
					      "virtio-blk-pci", "id", dev, "drive", names.node,
					      "bus", bus, "addr", "0"),
				    NULL, "device_add");
	}
	return r;
}

/* getfd NAME, with fd (taken) sent along. */
static int give_fd(QemuVm *v, VmmRequests *rq, const char *name, int fd)
{
	int r = vmm_request_add(rq, NULL, json_pack("{s:s}", "fdname", name), NULL, "getfd");

	if (r < 0) {
		close(fd);
		return r;
	}
	r = vmm_request_pass_fd(rq, fd);
	if (r >= 0)
		v->add_fds++;
	return r;
}

/*
 * The device vmd made and opened (netdev.c) goes to QEMU as descriptors named by getfd,
 * which netdev_add takes: QEMU opens no network device by name.
 */
static int add_net(QemuVm *v, VmmJob *j, VmmRequests *rq, const char *dev, int port)
{
	const NetSpec *n = &j->net;
	char bus[32], mac[18], tap_name[64], vhost_name[64], why[256];
	json_t *args;
	int tap, vfd, r;

	spec_mac_format(n->mac, mac);
	v->add_fds = 0;
	if (n->type == NET_USER) {
		json_t *fwd = n->n_ports ? json_array() : NULL;

		for (size_t i = 0; fwd && i < n->n_ports; i++) {
			_cleanup_free_ char *one = spec_port_format(&n->ports[i]);

			if (!one || json_array_append_new(fwd, json_pack("{s:s}", "str", one)) < 0)
				fwd = (json_decref(fwd), NULL);
		}
		if (n->n_ports && !fwd)
			return -ENOMEM;
		args = json_pack("{s:s, s:s+, s:o*}", "type", "user", "id", QEMU_NETDEV, n->id,
				 "hostfwd", fwd);
	} else {
		r = netdev_open(n, v->vm.dir, qemu_wants_vhost(v->vm.b), &tap, &vfd, why,
				sizeof(why));
		if (r < 0) {
			vmm_job_fail_message(j, "network '%s': %s", n->id, why);
			return r;
		}
		snprintf(tap_name, sizeof(tap_name), "vmd-tap-%s", n->id);
		snprintf(vhost_name, sizeof(vhost_name), "vmd-vhost-%s", n->id);
		r = give_fd(v, rq, tap_name, tap);
		if (vfd >= 0)
			r = r < 0 ? (close(vfd), r) : give_fd(v, rq, vhost_name, vfd);
		if (r < 0)
			return r;
		args = vfd >= 0 ? json_pack("{s:s, s:s+, s:s, s:b, s:s}", "type", "tap", "id",
					    QEMU_NETDEV, n->id, "fd", tap_name, "vhost", 1,
					    "vhostfd", vhost_name)
				: json_pack("{s:s, s:s+, s:s}", "type", "tap", "id", QEMU_NETDEV,
					    n->id, "fd", tap_name);
	}
	r = vmm_request_add(rq, NULL, args, NULL, "netdev_add");
	if (r < 0)
		return r;
	snprintf(bus, sizeof(bus), QEMU_PORT "%d", port);
	return vmm_request_add(rq, NULL,
			       json_pack("{s:s, s:s, s:s+, s:s, s:s, s:s}", "driver",
					 "virtio-net-pci", "id", dev, "netdev", QEMU_NETDEV, n->id,
					 "mac", mac, "bus", bus, "addr", "0"),
			       NULL, "device_add");
}

/*
 * What backed the device, of the first made ones (a disk: 1 its fdset, 2 and its file
 * node, 3 and its format node; a NIC: 1 netdev): the format node goes first, as QEMU
 * refuses to free what is used, and the fdset last, once no node has a dup of it (QEMU
 * closes a removed set's descriptors then, monitor/fds.c monitor_fdset_cleanup()).
 */
static int free_backend(const VmmJob *j, VmmRequests *rq, size_t made, const DiskNames *names)
{
	int r = 0;

	if (!is_disk(j))
		return made < 1 ? 0
				: vmm_request_add(rq, NULL,
						  json_pack("{s:s+}", "id", QEMU_NETDEV, j->device),
						  NULL, "netdev_del");
	if (made >= 3)
		r = vmm_request_add(rq, NULL, json_pack("{s:s}", "node-name", names->node), NULL,
				    "blockdev-del");
	if (r >= 0 && made >= 2)
		r = vmm_request_add(rq, NULL, json_pack("{s:s}", "node-name", names->file), NULL,
				    "blockdev-del");
	if (r >= 0 && made >= 1 && names->fdset >= 0) {
		r = vmm_request_add(rq, NULL, json_pack("{s:i}", "fdset-id", names->fdset), NULL,
				    "remove-fd");
		/* A QEMU of a vmd before fdsets has none: nothing to free. */
		if (r >= 0)
			rq->items[rq->n - 1].best_effort = true;
	}
	return r;
}

/*
 * A failed NIC add: the requests were getfd (add_fds of them), netdev_add, device_add;
 * j->undo of them went through. Descriptors netdev_add did not take are closed in QEMU.
 */
static int undo_net(QemuVm *v, const VmmJob *j, VmmRequests *rq)
{
	static const char *const kinds[] = { "tap", "vhost" };
	char name[64];
	int r = 0;

	if (j->undo > v->add_fds)
		return free_backend(j, rq, j->undo - v->add_fds, NULL);
	for (size_t i = 0; i < j->undo && i < ELEMENTSOF(kinds) && r >= 0; i++) {
		snprintf(name, sizeof(name), "vmd-%s-%s", kinds[i], j->device);
		r = vmm_request_add(rq, NULL, json_pack("{s:s}", "fdname", name), NULL, "closefd");
	}
	return r;
}

/* device_del of a device QEMU is unplugging already: that is the same request, in flight. */
static int check_unplug(VmmVm *v _unused_, VmmJob *j _unused_, const VmmReply *r)
{
	if (r->error == -EREMOTEIO && r->message &&
	    strstr(r->message, "already in the process of unplug"))
		return VMM_NEXT;
	return r->error < 0 ? r->error : VMM_NEXT;
}

int qemu_build_hotplug(QemuVm *v, VmmJob *j, VmmRequests *rq)
{
	char dev[DEVICE_NAME_MAX];
	DiskNames names;
	int port;

	job_device(j, dev);
	switch (j->phase) {
	case VMM_PHASE_REQUEST:
		if (IN_SET(j->type, BACKEND_OP_DISK_REMOVE, BACKEND_OP_NET_REMOVE))
			return vmm_request_add(rq, NULL, json_pack("{s:s}", "id", dev),
					       check_unplug, "device_del");
		if (!IN_SET(j->type, BACKEND_OP_DISK_ADD, BACKEND_OP_NET_ADD))
			return -EOPNOTSUPP;
		v->add_port = 0;
		port = take_port(v, j, dev);
		if (port < 0)
			return port;
		return is_disk(j) ? add_disk(v, j, rq, dev, port) : add_net(v, j, rq, dev, port);
	case VMM_PHASE_RELEASE:
		return 0; /* DEVICE_DELETED ends it */
	case VMM_PHASE_CLEANUP:
		/* Gone from the guest: its port is free again, and all that backed it goes. */
		port = port_of(v, dev) ? (int)(port_of(v, dev) - v->ports) : -1;
		disk_names(v, port, j->device, &names);
		free_port(v, dev);
		if (j->type == BACKEND_OP_NET_REMOVE && spec_find_net(v->vm.config, j->device))
			(void)netdev_release(spec_find_net(v->vm.config, j->device));
		return free_backend(j, rq, 3, &names);
	case VMM_PHASE_ROLLBACK:
		/*
		 * Never quite added: the port this add took is free again, and what its requests
		 * made goes. An add that took none (the device is still attached) made nothing.
		 */
		if (!v->add_port)
			return 0;
		port = (int)v->add_port - 1;
		disk_names(v, port, j->device, &names);
		v->ports[port] = (Port){};
		v->add_port = 0;
		if (is_disk(j))
			return free_backend(j, rq, j->undo, &names);
		(void)netdev_release(&j->net); /* a macvtap made for it */
		return undo_net(v, j, rq);
	default:
		return 0;
	}
}

void qemu_device_deleted(QemuVm *v, const char *device)
{
	VmmJob *u = &v->vm.unplug;
	char dev[DEVICE_NAME_MAX] = "";
	bool disk = strncmp(device, QEMU_DISK_DEVICE, strlen(QEMU_DISK_DEVICE)) == 0;
	const char *id;

	if (u->type != BACKEND_OP_NONE)
		job_device(u, dev);
	if (streq(dev, device)) {
		vmm_job_phase_done(&v->vm, u);
		return;
	}
	/* Only a device of vmd's own naming, on a port of the record's: not any string QEMU says. */
	if (!qemu_is_device_name(device) || !port_of(v, device) || u->type != BACKEND_OP_NONE)
		return;
	id = device + strlen(disk ? QEMU_DISK_DEVICE : QEMU_NET_DEVICE);
	/* Let go after its removal had given up on it: free what backed it now. */
	snprintf(u->device, sizeof(u->device), "%s", id);
	u->generation = v->vm.generation;
	(void)vmm_job_begin(&v->vm, u, disk ? BACKEND_OP_DISK_REMOVE : BACKEND_OP_NET_REMOVE,
			    VMM_PHASE_CLEANUP);
}

int qemu_observe_devices(VmmVm *vm, VmmJob *j _unused_, const VmmReply *r)
{
	QemuVm *v = (QemuVm *)vm;
	_cleanup_(json_decrefp) json_t *present = json_object();
	SandboxSpec *s = vm->config;
	char dev[DEVICE_NAME_MAX];
	bool changed = false;
	json_t *e;
	size_t i;

	if (r->error < 0)
		return r->error;
	if (!present)
		return -ENOMEM;
	json_array_foreach(r->json, i, e)
	{
		const char *name = json_string_value(json_object_get(e, "name"));
		const char *type = json_string_value(json_object_get(e, "type"));

		if (name && type && strncmp(type, "child<", 6) == 0)
			json_object_set_new(present, name, json_true());
	}
	for (size_t k = s->n_disks; k-- > 0;) {
		qemu_device_name(dev, QEMU_DISK_DEVICE, s->disks[k].id);
		if (!json_object_get(present, dev)) {
			free_port(v, dev);
			changed |= spec_remove_disk(s, s->disks[k].id) >= 0;
		}
	}
	for (size_t k = s->n_networks; k-- > 0;) {
		qemu_device_name(dev, QEMU_NET_DEVICE, s->networks[k].id);
		if (!json_object_get(present, dev)) {
			free_port(v, dev);
			changed |= spec_remove_net(s, s->networks[k].id) >= 0;
		}
	}
	if (changed) {
		(void)vmm_vm_save(vm);
		vmm_vm_changed(vm);
	}
	return VMM_NEXT;
}
