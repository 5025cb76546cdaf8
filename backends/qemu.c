/* SPDX-License-Identifier: MIT */
/*
 * The QEMU backend. Each VM is one qemu-system-x86_64 process that vmd starts with its
 * vCPUs stopped (-S) and watches like every VMM (vmm-vm.c), and drives over one QMP
 * connection (qmp.c) through the job machinery (vmm-job.c). Its runtime dir,
 * <run-dir>/<name>/, holds:
 *   vm.json       vmd's record: the process's identity (pid, start time, binary, boot id),
 *                 the spec generation and config it runs, which root port each device is on
 *   qmp.sock      QEMU's QMP socket: vmd makes it and passes it listening, as serial.sock
 *   serial.sock   the serial console: a socket vmd makes and passes to QEMU listening
 *   console.sock  where vmd console attaches, served by the daemon (console.c)
 *   console.log   what the serial console printed, capped (console.log.1: the part before)
 *   qemu.log      QEMU's own messages (why it refused to start)
 *
 * A start is: QMP answers query-name with the sandbox's name (api-up), then `cont` (boot);
 * with -S, QMP answers at once, before the guest's kernel keeps the vCPU thread busy. A
 * restarted vmd adopts a VM only when pid, start time, binary and boot id agree with the
 * record and QMP's query-name names the sandbox. QEMU runs in the foreground as vmd's child
 * (vmd is its subreaper either way): QEMU 7.2 cannot -daemonize under -sandbox spawn=deny,
 * and the sandbox is worth more than the fork. Hot-plug is in qemu-hotplug.c.
 */
#include <jansson.h>
#include <stdio.h>
#include <unistd.h>

#include "netdev.h"
#include "provision.h"
#include "qemu-vm.h"
#include "spec-json.h"
#include "util.h"

typedef struct Qemu {
	VmmBackend vmm; /* first: the VMs, the binary, the boot id */
	QemuAccel accel;
} Qemu;

#define QEMU(b) ((Qemu *)(b)->data)

static const VmmVmType qemu_type;

/* The record: which root port each device is on, beside what every VMM records. */

static int qemu_vm_save_ports(VmmVm *vm, json_t *j)
{
	QemuVm *v = (QemuVm *)vm;
	json_t *ports = json_object();

	if (!ports)
		return -ENOMEM;
	for (unsigned i = 0; i < v->n_ports; i++)
		if (v->ports[i].device[0])
			json_object_set_new(ports, v->ports[i].device, json_integer(i));
	if (json_object_set_new(j, "ports", ports) < 0 ||
	    json_object_set_new(j, "nPorts", json_integer(v->n_ports)) < 0 ||
	    (v->vmgenid && json_object_set_new(j, "vmgenid", json_true()) < 0))
		return -ENOMEM;
	return qemu_vm_save_disk_names(v, j);
}

static int qemu_vm_load_ports(VmmVm *vm, const json_t *j)
{
	QemuVm *v = (QemuVm *)vm;
	const char *key;
	json_t *port;

	v->n_ports = (unsigned)json_integer_value(json_object_get(j, "nPorts"));
	/* Absent: a QEMU of a vmd before, without one. */
	v->vmgenid = json_is_true(json_object_get(j, "vmgenid"));
	if (v->n_ports > QEMU_PORTS_MAX)
		return -EBADMSG;
	json_object_foreach((json_t *)json_object_get(j, "ports"), key, port)
	{
		json_int_t i = json_integer_value(port);

		if (!json_is_integer(port) || i < 0 || i >= v->n_ports ||
		    strlen(key) >= DEVICE_NAME_MAX || !qemu_is_device_name(key))
			return -EBADMSG;
		strcpy(v->ports[i].device, key);
	}
	return qemu_vm_load_disk_names(v, j);
}

/* Backend setup */

static int qemu_init(Backend *b)
{
	Qemu *q = QEMU(b);

	q->accel = b->options.qemu_accel ? qemu_accel_from_string(b->options.qemu_accel)
					 : QEMU_ACCEL_AUTO;
	if (q->accel < 0)
		return -EINVAL;
	return vmm_backend_init(b, &qemu_type, b->options.qemu_binary, "qemu-system-x86_64");
}

/* QMP events */

static void set_state(VmmVm *v, VmState s)
{
	if (v->state == s || !IN_SET(v->state, VM_RUNNING, VM_PAUSED))
		return;
	v->state = s;
	(void)vmm_vm_save(v);
	vmm_vm_changed(v);
}

static void qemu_event(VmmVm *vm, const char *event, json_t *data)
{
	if (streq(event, "STOP"))
		set_state(vm, VM_PAUSED);
	else if (streq(event, "RESUME"))
		set_state(vm, VM_RUNNING);
	else if (streq(event, "DEVICE_DELETED")) {
		const char *dev = json_string_value(json_object_get(data, "device"));

		/* The virtio backend of a device goes first, without a "device": skip it. */
		if (dev)
			qemu_device_deleted((QemuVm *)vm, dev);
	}
}

/* What the replies mean */

/* The QEMU that answers must be this sandbox's: -ESTALE if not. */
static int check_name(VmmVm *v, VmmJob *j, const VmmReply *r)
{
	const char *name = json_string_value(json_object_get(r->json, "name"));

	if (r->error < 0)
		return r->error;
	if (!streq_ptr(name, v->name)) {
		vmm_job_fail_message(j, "query-name answers '%s', not '%s'", name ?: "", v->name);
		return -ESTALE;
	}
	/* The version its QMP greeting gave: no request of its own. */
	if (qmp_version(v->qmp) && vmm_vm_set_version(v, "qemu %s", qmp_version(v->qmp)) < 0)
		return -ENOMEM;
	return VMM_NEXT;
}

static const char *run_state(const VmmReply *r)
{
	return json_string_value(json_object_get(r->json, "status"));
}

/* Boot: `cont` a QEMU still in prelaunch (-S); one that runs (or was paused) already is up. */
static int check_prelaunch(VmmVm *v, VmmJob *j _unused_, const VmmReply *r)
{
	const char *s = run_state(r);

	if (r->error < 0)
		return r->error;
	if (streq_ptr(s, "prelaunch"))
		return VMM_NEXT;
	if (!streq_ptr(s, "running"))
		v->state = VM_PAUSED;
	return VMM_SKIP;
}

/* What runs: "running"; anything else (paused, prelaunch, io-error, suspended...) is paused. */
static int observe_status(VmmVm *v, VmmJob *j _unused_, const VmmReply *r)
{
	const char *s = run_state(r);

	if (r->error < 0)
		return r->error;
	if (streq_ptr(s, "shutdown"))
		v->guest_shutdown = true;
	else
		set_state(v, streq_ptr(s, "running") ? VM_RUNNING : VM_PAUSED);
	return VMM_NEXT;
}

static int qemu_build(VmmVm *vm, VmmJob *j, VmmRequests *rq)
{
	QemuVm *v = (QemuVm *)vm;
	int r = 0;

	if (IN_SET(j->type, BACKEND_OP_SUSPEND, BACKEND_OP_RESTORE) &&
	    !IN_SET(j->phase, VMM_PHASE_API_UP, VMM_PHASE_QUIT))
		return qemu_build_snapshot(v, j, rq);
	switch (j->phase) {
	case VMM_PHASE_API_UP:
		return vmm_request_add(rq, NULL, NULL, check_name, "query-name");
	case VMM_PHASE_HANDSHAKE:
		r = vmm_request_add(rq, NULL, NULL, check_name, "query-name");
		/* Adopted: the fdsets it holds, which a vmd that crashed may not have recorded. */
		return r < 0 ? r
			     : vmm_request_add(rq, NULL, NULL, qemu_observe_fdsets, "query-fdsets");
	case VMM_PHASE_CONFIGURE:
		return 0; /* all of it is on the command line */
	case VMM_PHASE_BOOT:
		r = vmm_request_add(rq, NULL, NULL, check_prelaunch, "query-status");
		return r < 0 ? r : vmm_request_add(rq, NULL, NULL, NULL, "cont");
	case VMM_PHASE_OBSERVE:
		r = vmm_request_add(rq, NULL, NULL, observe_status, "query-status");
		if (r < 0)
			return r;
		/* Every device added with an id, from boot on: query-pci would miss them early. */
		return vmm_request_add(rq, NULL, json_pack("{s:s}", "path", "/machine/peripheral"),
				       qemu_observe_devices, "qom-list");
	case VMM_PHASE_GRACEFUL:
		/* A paused guest cannot hear the button: it runs again first. */
		if (j->was_paused)
			r = vmm_request_add(rq, NULL, NULL, NULL, "cont");
		return r < 0 ? r : vmm_request_add(rq, NULL, NULL, NULL, "system_powerdown");
	case VMM_PHASE_QUIT:
		return vmm_request_add(rq, NULL, NULL, NULL, "quit");
	case VMM_PHASE_REQUEST:
		if (j->type == BACKEND_OP_PAUSE)
			return vmm_request_add(rq, NULL, NULL, NULL, "stop");
		if (j->type == BACKEND_OP_RESUME)
			return vmm_request_add(rq, NULL, NULL, NULL, "cont");
		return qemu_build_hotplug(v, j, rq);
	case VMM_PHASE_RELEASE:
	case VMM_PHASE_CLEANUP:
	case VMM_PHASE_ROLLBACK:
		return qemu_build_hotplug(v, j, rq);
	default:
		return 0;
	}
}

/* Start */

static void assign_ports(QemuVm *v)
{
	const SandboxSpec *s = v->vm.config;

	v->n_ports = (unsigned)(s->n_disks + s->n_networks + QEMU_SPARE_PORTS);
	if (v->n_ports > QEMU_PORTS_MAX)
		v->n_ports = QEMU_PORTS_MAX;
	memset(v->ports, 0, sizeof(v->ports));
	for (size_t i = 0; i < s->n_disks; i++)
		qemu_device_name(v->ports[i].device, QEMU_DISK_DEVICE, s->disks[i].id);
	for (size_t i = 0; i < s->n_networks; i++)
		qemu_device_name(v->ports[s->n_disks + i].device, QEMU_NET_DEVICE, s->networks[i].id);
}

/* The root port device prefix+id is on, or fallback if none names it. */
static unsigned port_of(const QemuVm *v, const char *prefix, const char *id, unsigned fallback)
{
	char name[DEVICE_NAME_MAX];

	qemu_device_name(name, prefix, id);
	for (unsigned i = 0; i < v->n_ports; i++)
		if (streq(v->ports[i].device, name))
			return i;
	return fallback;
}

/* What netdev_open() made for the networks that outlives QEMU (macvtaps): gone. */
static void release_nets(const SandboxSpec *s)
{
	for (size_t i = 0; s && i < s->n_networks; i++)
		(void)netdev_release(&s->networks[i]);
}

/*
 * Every network's device, made and opened by vmd, for QEMU to inherit; vhost-net where
 * KVM runs the guest (under TCG it would only slow QEMU down).
 */
bool qemu_wants_vhost(const Backend *b)
{
	QemuAccel accel = QEMU(b)->accel;

	return accel == QEMU_ACCEL_KVM ||
	       (accel == QEMU_ACCEL_AUTO && access("/dev/kvm", R_OK | W_OK) == 0);
}

static int qemu_prepare(VmmVm *vm)
{
	QemuVm *v = (QemuVm *)vm;
	const SandboxSpec *s = vm->config;
	bool vhost = qemu_wants_vhost(vm->b);
	char why[256];
	int r;

	/* QMP's socket, which vmd makes as it makes the serial console's: QEMU binds nothing. */
	v->qmp_fd = vmm_vm_pass_listener(vm, "qmp.sock", "the QMP");
	if (v->qmp_fd < 0)
		return v->qmp_fd;
	v->agent_fd = -1;
	if (s->guest_agent) {
		v->agent_fd = vmm_vm_pass_listener(vm, GUEST_AGENT_SOCKET, "the guest agent's");
		if (v->agent_fd < 0)
			return v->agent_fd;
	}

	for (size_t i = 0; i < s->n_networks; i++) {
		const NetSpec *n = &s->networks[i];
		int tap, vfd;

		v->net_fds[i] = v->vhost_fds[i] = -1;
		if (n->type == NET_USER)
			continue;
		r = netdev_open(n, vm->dir, vhost, &tap, &vfd, why, sizeof(why));
		if (r < 0) {
			backend_set_error(vm->b, "network '%s': %s", n->id, why);
			release_nets(s);
			return r;
		}
		v->net_fds[i] = vmm_vm_pass_fd(vm, tap);
		if (vfd >= 0)
			v->vhost_fds[i] = vmm_vm_pass_fd(vm, vfd);
		if (v->net_fds[i] < 0 || (vfd >= 0 && v->vhost_fds[i] < 0)) {
			release_nets(s);
			return -E2BIG;
		}
	}
	/* Disks, images, kernel, initrd, seed, credentials: opened by vmd, as descriptors. */
	r = qemu_prepare_files(v);
	if (r < 0)
		release_nets(s);
	return r;
}

static void qemu_exited(VmmVm *vm)
{
	release_nets(vm->config);
}

static int qemu_argv(VmmVm *vm, char ***ret)
{
	QemuVm *v = (QemuVm *)vm;
	unsigned disk_ports[SPEC_DISKS_MAX], net_ports[SPEC_NETWORKS_MAX];
	const SandboxSpec *s = vm->config;
	QemuLaunch l = {
		.binary = QEMU(vm->b)->vmm.binary,
		.accel = QEMU(vm->b)->accel,
		.dir = vm->dir,
		.serial_fd = vm->serial_fd,
		.qmp_fd = v->qmp_fd,
		.agent_fd = v->agent_fd,
		.spec = s,
		.disk_ports = disk_ports,
		.net_ports = net_ports,
		.net_fds = v->net_fds,
		.vhost_fds = v->vhost_fds,
		.disk_fds = v->disk_fds,
		.base_fds = v->base_fds,
		.credential_fds = v->credential_fds,
		.kernel_fd = v->kernel_fd,
		.initrd_fd = v->initrd_fd,
		.seed_fd = v->seed_fd,
	};

	l.incoming = vm->job.snapshot_dir != NULL;
	/* A fresh boot has a vmgenid; a wake has it if the save had it (qemu-ports.json says). */
	v->vmgenid = !l.incoming;
	/* Restored: each device on the port it had when it was saved, as the stream says. */
	if (!l.incoming || qemu_snapshot_ports(v, vm->job.snapshot_dir) < 0)
		assign_ports(v);
	l.n_ports = v->n_ports;
	l.vmgenid = v->vmgenid;
	for (size_t i = 0; i < s->n_disks; i++)
		disk_ports[i] = port_of(v, QEMU_DISK_DEVICE, s->disks[i].id, (unsigned)i);
	for (size_t i = 0; i < s->n_networks; i++)
		net_ports[i] =
			port_of(v, QEMU_NET_DEVICE, s->networks[i].id, (unsigned)(s->n_disks + i));
	return qemu_build_argv(&l, ret);
}

/*
 * A QEMU of vmd's has its QMP socket as an fd (qemu-argv.c) and its stderr in the runtime
 * dir's qemu.log, which /proc/PID/fd/2 names: QEMU writes no pid file there, which an
 * unprivileged QEMU could not. One started by an older vmd names the dir in -pidfile.
 */
static int qemu_argv_name(const Backend *b, pid_t pid, char *const *argv, char **ret)
{
	static const char qmp[] = "socket,id=vmd-qmp,fd=";
	_cleanup_free_ char *log = NULL;
	bool ours = false;
	int r;

	r = vmm_argv_names_dir(b, argv, "-pidfile", "", "qemu.pid", ret);
	if (r != 0)
		return r;
	for (size_t i = 0; argv[i] && argv[i + 1]; i++)
		ours = ours || (streq(argv[i], "-chardev") &&
				strncmp(argv[i + 1], qmp, sizeof(qmp) - 1) == 0);
	if (!ours || vmm_process_link(pid, "fd/2", &log) < 0)
		return 0;
	/* Its log removed under it is still its log. */
	if (strlen(log) > 10 && streq(log + strlen(log) - 10, " (deleted)"))
		log[strlen(log) - 10] = '\0';
	return vmm_argv_names_dir(b, (char *[]){ (char *)"-stderr", log, NULL }, "-stderr", "",
				  "qemu.log", ret);
}

static const VmmVmType qemu_type = {
	.files = qemu_files,
	.vmm = "qemu",
	.display = "QEMU",
	.api = VMM_API_QMP,
	.socket = "qmp.sock",
	.log = "qemu.log",
	/* qemu.pid: an older vmd's QEMU wrote one */
	.extra_files = (const char *const[]){ "qemu.pid", GUEST_AGENT_SOCKET, NULL },
	.serial_socket = true,
	.size = sizeof(QemuVm),
	.save = qemu_vm_save_ports,
	.load = qemu_vm_load_ports,
	.prepare = qemu_prepare,
	.argv = qemu_argv,
	.exited = qemu_exited,
	.argv_name = qemu_argv_name,
	.build = qemu_build,
	.event = qemu_event,
};

/* QEMU takes every disk format and network type of the file; it boots the file's kernel. */
static int qemu_validate(const SandboxSpec *spec, SpecCheck *check)
{
	backend_require_kernel(spec, check);
	return spec_check_result(check);
}

const BackendOps backend_qemu_ops = {
	.name = "qemu",
	.takes_host_resources = true,
	.caps = BACKEND_CAP_PAUSE | BACKEND_CAP_DISK_HOTPLUG | BACKEND_CAP_NET_HOTPLUG |
		BACKEND_CAP_SUSPEND,
	.data_size = sizeof(Qemu),
	.validate = qemu_validate,
	.init = qemu_init,
	.done = vmm_backend_done,
	.observe = vmm_vm_observe,
	.list = vmm_vm_list,
	.adopt = vmm_vm_adopt,
	.refresh = vmm_vm_refresh,
	.reload = vmm_backend_reload,
	.start = vmm_vm_start,
	.stop = vmm_vm_stop,
	.pause = vmm_vm_pause,
	.resume = vmm_vm_resume,
	.disk_add = vmm_vm_disk_add,
	.disk_remove = vmm_vm_disk_remove,
	.net_add = vmm_vm_net_add,
	.net_remove = vmm_vm_net_remove,
	.suspend = vmm_vm_suspend,
	.restore = vmm_vm_restore,
	.cleanup = vmm_vm_cleanup,
	.activity = vmm_vm_activity,
	.agent_ping = vmm_vm_agent_ping,
};
