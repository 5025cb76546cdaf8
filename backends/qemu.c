/* SPDX-License-Identifier: MIT */
/*
 * The QEMU backend. Each VM is one qemu-system-x86_64 process that vmd starts and
 * watches like every VMM (vmm-vm.c: record, adoption, start, exit) and drives over one
 * persistent QMP connection (qmp.c). Its runtime dir, <run-dir>/<name>/, holds:
 *   vm.json       vmd's record: the process's identity (pid, start time, binary, boot id),
 *                 the spec generation and config it runs, which root port each device is on
 *   qmp.sock      QEMU's QMP socket, held by vmd
 *   console.log   the serial console (console.log.1: the boot before)
 *   qemu.log      QEMU's own messages (why it refused to start)
 *   qemu.pid      QEMU's pid file, for operators
 *
 * A restarted vmd adopts a VM only when pid, start time, binary, boot id and QMP's
 * query-name all agree with the record. QEMU runs in the foreground as vmd's child (vmd is
 * its subreaper either way): QEMU 7.2 cannot -daemonize under -sandbox spawn=deny, and
 * the sandbox is worth more than the fork. Hot-plug is in qemu-hotplug.c.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>

#include "hashmap.h"
#include "log.h"
#include "qemu-vm.h"
#include "spec-json.h"
#include "util.h"

#define QEMU_ADOPT_TIMEOUT_USEC (2ull * 1000000) /* connect and greeting */

typedef struct Qemu {
	VmmBackend vmm; /* first: the VMs, the binary, the boot id */
	QemuAccel accel;
} Qemu;

#define QEMU(b) ((Qemu *)(b)->data)

static const VmmVmType qemu_type;

QemuVm *qemu_vm_get(Backend *b, const char *name)
{
	return (QemuVm *)vmm_vm_get(b, name);
}

static void qemu_vm_free(VmmVm *vm)
{
	QemuVm *v = (QemuVm *)vm;

	sd_event_source_disable_unref(v->unplug_timer);
	qmp_free(v->qmp);
}

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
	    json_object_set_new(j, "nPorts", json_integer(v->n_ports)) < 0)
		return -ENOMEM;
	return 0;
}

static int qemu_vm_load_ports(VmmVm *vm, const json_t *j)
{
	QemuVm *v = (QemuVm *)vm;
	const char *key;
	json_t *port;

	v->n_ports = (unsigned)json_integer_value(json_object_get(j, "nPorts"));
	if (v->n_ports > QEMU_PORTS_MAX)
		return -EBADMSG;
	json_object_foreach((json_t *)json_object_get(j, "ports"), key, port)
	{
		json_int_t i = json_integer_value(port);

		if (i < 0 || i >= v->n_ports || strlen(key) >= DEVICE_NAME_MAX)
			return -EBADMSG;
		strcpy(v->ports[i].device, key);
	}
	return 0;
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

/* Observe */

static int qemu_observe(Backend *b, const char *name, VmObserved *ret)
{
	QemuVm *v = qemu_vm_get(b, name);
	VmObserved o = {};
	int r;

	r = vmm_vm_observe(b, name, &o);
	if (r < 0 || !v) {
		*ret = o;
		return r;
	}
	o.busy = qemu_vm_is_busy(v);
	o.progress = qemu_progress(v);
	r = qemu_observed_config(v, &o.config);
	if (r < 0) {
		vm_observed_done(&o);
		return r;
	}
	*ret = o;
	return 0;
}

/* Exit: QMP goes with QEMU, and so does any unplug in flight. */
static void qemu_vm_exited(VmmVm *vm)
{
	QemuVm *v = (QemuVm *)vm;

	v->unplug_timer = sd_event_source_disable_unref(v->unplug_timer);
	v->qmp = qmp_free(v->qmp);
	for (unsigned i = 0; i < v->n_ports; i++)
		v->ports[i].unplug = UNPLUG_NONE;
}

/* QMP events */

static void on_event(Qmp *q _unused_, const char *event, json_t *data, uint64_t ts _unused_,
		     void *userdata)
{
	QemuVm *v = userdata;

	if (streq(event, "STOP") && v->vm.state == VM_RUNNING) {
		v->vm.state = VM_PAUSED;
		(void)vmm_vm_save(&v->vm);
		vmm_vm_changed(&v->vm);
	} else if (streq(event, "RESUME") && v->vm.state == VM_PAUSED) {
		v->vm.state = VM_RUNNING;
		(void)vmm_vm_save(&v->vm);
		vmm_vm_changed(&v->vm);
	} else if (streq(event, "SHUTDOWN")) {
		v->vm.guest_shutdown = json_is_true(json_object_get(data, "guest"));
	} else if (streq(event, "DEVICE_DELETED")) {
		const char *dev = json_string_value(json_object_get(data, "device"));

		/* The virtio backend of a device goes first, without a "device": skip it. */
		if (dev)
			qemu_unplug_done(v, dev);
	}
}

static void on_qmp_close(Qmp *q _unused_, int error, void *userdata)
{
	QemuVm *v = userdata;

	/*
	 * QEMU is exiting (its pidfd tells when) or broke the protocol: the next command
	 * connects again.
	 */
	if (!v->vm.stop_requested && !v->vm.guest_shutdown && !vmm_has_exited(v->vm.pidfd))
		log_fields(LOG_WARNING,
			   &(LogFields){ .sandbox = v->vm.name, .backend = "qemu", .error = -error },
			   "lost the QMP connection to a running QEMU");
	vmm_vm_changed(&v->vm);
}

/* Take a QMP connection for v once it proved to be v's QEMU, and learn its run state. */
static int vm_take_qmp(QemuVm *v, Qmp *q_in)
{
	_cleanup_(json_decrefp) json_t *name = NULL, *status = NULL;
	_cleanup_(qmp_freep) Qmp *q = q_in;
	const char *s;
	int r;

	r = qmp_call(q, "query-name", NULL, QMP_TIMEOUT_USEC, &name, NULL);
	if (r < 0)
		return r;
	if (!streq_ptr(json_string_value(json_object_get(name, "name")), v->vm.name))
		return -ESTALE;
	r = qmp_call(q, "query-status", NULL, QMP_TIMEOUT_USEC, &status, NULL);
	if (r < 0)
		return r;
	s = json_string_value(json_object_get(status, "status"));
	if (streq_ptr(s, "running") || streq_ptr(s, "prelaunch"))
		v->vm.state = v->vm.state == VM_STOPPING ? VM_STOPPING : VM_RUNNING;
	else if (streq_ptr(s, "shutdown"))
		v->vm.state = VM_STOPPING;
	else if (v->vm.state != VM_STOPPING)
		v->vm.state = VM_PAUSED; /* paused, prelaunch, io-error, suspended, ... */
	if (v->vm.b->event) {
		r = qmp_attach(q, v->vm.b->event, on_event, on_qmp_close, v);
		if (r < 0)
			return r;
	}
	v->qmp = TAKE_PTR(q);
	return 0;
}

static int vm_connect(QemuVm *v, uint64_t timeout_usec)
{
	_cleanup_free_ char *sock = vmm_vm_path(v->vm.b, v->vm.name, "qmp.sock");
	Qmp *q = NULL;
	int r;

	if (!sock)
		return -ENOMEM;
	r = qmp_connect(sock, timeout_usec, &q);
	if (r < 0)
		return r;
	return vm_take_qmp(v, q);
}

/* Adopt: QMP must answer, and answer with the sandbox's name. */
static int qemu_reconnect(VmmVm *vm)
{
	return vm_connect((QemuVm *)vm, QEMU_ADOPT_TIMEOUT_USEC);
}

/* Start */

/* QMP of a starting QEMU answered (or not): it runs, or vmd looks again. */
static void on_qmp_ready(Qmp *q, int error, void *userdata)
{
	QemuVm *v = userdata;
	int r = error;

	v->qmp = NULL;
	if (r == 0)
		r = vm_take_qmp(v, q);
	else
		qmp_free(q);
	vmm_vm_start_done(&v->vm, r);
}

/*
 * Whether QEMU is up: once its QMP socket accepts, greeting and capabilities come
 * through the loop (on_qmp_ready), never blocking it.
 */
static int qemu_poll_start(VmmVm *vm)
{
	QemuVm *v = (QemuVm *)vm;
	_cleanup_free_ char *sock = vmm_vm_path(vm->b, vm->name, "qmp.sock");
	int r;

	if (!sock)
		return -ENOMEM;
	if (v->qmp)
		return 2; /* a handshake is under way */
	r = qmp_connect_async(sock, vm->b->event, on_qmp_ready, v, &v->qmp);
	if (r == 0)
		return 2;
	if (IN_SET(-r, ENOENT, ECONNREFUSED))
		return 0;
	return r;
}

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

static int qemu_argv(VmmVm *vm, char ***ret)
{
	QemuVm *v = (QemuVm *)vm;
	unsigned disk_ports[SPEC_DISKS_MAX], net_ports[SPEC_NETWORKS_MAX];
	const SandboxSpec *s = vm->config;
	QemuLaunch l = {
		.binary = QEMU(vm->b)->vmm.binary,
		.accel = QEMU(vm->b)->accel,
		.dir = vm->dir,
		.spec = s,
		.disk_ports = disk_ports,
		.net_ports = net_ports,
	};

	assign_ports(v);
	l.n_ports = v->n_ports;
	for (size_t i = 0; i < s->n_disks; i++)
		disk_ports[i] = (unsigned)i;
	for (size_t i = 0; i < s->n_networks; i++)
		net_ports[i] = (unsigned)(s->n_disks + i);
	return qemu_build_argv(&l, ret);
}

/* 1 for "started, not up yet": VM_STARTING until QMP answers (vmm-vm.c sees it through). */
/* Commands on a running VM */

/* The VM, when vmd drives it and can talk to it. */
int qemu_vm_for_command(Backend *b, const char *name, QemuVm **ret)
{
	QemuVm *v = qemu_vm_get(b, name);
	int r;

	if (!v || v->vm.state == VM_EXITED)
		return -ESRCH;
	if (!qmp_is_connected(v->qmp)) {
		v->qmp = qmp_free(v->qmp);
		r = vm_connect(v, QEMU_ADOPT_TIMEOUT_USEC);
		if (r < 0) {
			backend_set_error(b, "cannot reach the QMP socket of QEMU pid %d: %s",
					  (int)v->vm.id.pid, strerror(-r));
			return -ENOTCONN;
		}
	}
	*ret = v;
	return 0;
}

/* Run a command; a QMP error becomes the message of the failure. */
int qemu_command(QemuVm *v, const char *cmd, json_t *args)
{
	_cleanup_free_ char *err = NULL;
	int r;

	r = qmp_call(v->qmp, cmd, args, QMP_TIMEOUT_USEC, NULL, &err);
	if (r == -EREMOTEIO)
		backend_set_error(v->vm.b, "%s: %s", cmd, err ?: "failed");
	else if (r < 0)
		backend_set_error(v->vm.b, "%s: %s", cmd, strerror(-r));
	return r;
}

static int qemu_set_paused(VmmVm *vm, bool paused)
{
	QemuVm *v;
	int r;

	r = qemu_vm_for_command(vm->b, vm->name, &v);
	if (r < 0)
		return r;
	/* The STOP or RESUME event says the same; it may come later than the reply. */
	return qemu_command(v, paused ? "stop" : "cont", NULL);
}

static int qemu_power_button(VmmVm *vm)
{
	QemuVm *v = (QemuVm *)vm;

	if (!qmp_is_connected(v->qmp))
		return -ENOTCONN;
	return qemu_command(v, "system_powerdown", NULL);
}

static int qemu_quit(VmmVm *vm)
{
	QemuVm *v = (QemuVm *)vm;

	if (!qmp_is_connected(v->qmp))
		return -ENOTCONN;
	return qmp_call(v->qmp, "quit", NULL, QMP_TIMEOUT_USEC, NULL, NULL);
}

static const VmmVmType qemu_type = {
	.vmm = "qemu",
	.display = "QEMU",
	.socket = "qmp.sock",
	.log = "qemu.log",
	.extra_files = (const char *const[]){ "qemu.pid", NULL },
	.size = sizeof(QemuVm),
	.free = qemu_vm_free,
	.save = qemu_vm_save_ports,
	.load = qemu_vm_load_ports,
	.argv = qemu_argv,
	.poll_start = qemu_poll_start,
	.reconnect = qemu_reconnect,
	.exited = qemu_vm_exited,
	.set_paused = qemu_set_paused,
	.power_button = qemu_power_button,
	.quit = qemu_quit,
};

/* QEMU takes every disk format and network type of the file; it boots the file's kernel. */
static int qemu_validate(const SandboxSpec *spec, SpecCheck *check)
{
	backend_require_kernel(spec, check);
	return spec_check_result(check);
}

const BackendOps backend_qemu_ops = {
	.name = "qemu",
	.caps = BACKEND_CAP_PAUSE | BACKEND_CAP_DISK_HOTPLUG | BACKEND_CAP_NET_HOTPLUG,
	.data_size = sizeof(Qemu),
	.validate = qemu_validate,
	.init = qemu_init,
	.done = vmm_backend_done,
	.observe = qemu_observe,
	.list = vmm_vm_list,
	.adopt = vmm_vm_adopt,
	.start = vmm_vm_start,
	.stop = vmm_vm_stop,
	.pause = vmm_vm_pause,
	.resume = vmm_vm_resume,
	.disk_add = qemu_disk_add,
	.disk_remove = qemu_disk_remove,
	.net_add = qemu_net_add,
	.net_remove = qemu_net_remove,
	.cleanup = vmm_vm_cleanup,
};
