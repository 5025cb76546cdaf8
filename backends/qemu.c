/* SPDX-License-Identifier: MIT */
/*
 * The QEMU backend. Each VM is one qemu-system-x86_64 process that vmd starts (vmm.c) and
 * drives over one persistent QMP connection (qmp.c). Its runtime dir, <run-dir>/<name>/,
 * holds:
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

#define QEMU_START_TIMEOUT_USEC (30ull * 1000000) /* spawn to QMP ready */
#define QEMU_ADOPT_TIMEOUT_USEC (2ull * 1000000)  /* connect and greeting */
#define QEMU_QUIT_GRACE_USEC (3ull * 1000000)	  /* quit to SIGKILL */

typedef struct Qemu {
	Hashmap *vms; /* name -> QemuVm: the VMs this vmd drives */
	char *binary; /* absolute, NULL if not found */
	int binary_error;
	QemuAccel accel;
	char boot_id[64];
} Qemu;

#define QEMU(b) ((Qemu *)(b)->data)

static QemuVm *vm_free(QemuVm *v)
{
	if (!v)
		return NULL;
	sd_event_source_disable_unref(v->pid_source);
	sd_event_source_disable_unref(v->kill_timer);
	sd_event_source_disable_unref(v->unplug_timer);
	sd_event_source_disable_unref(v->ready_timer);
	qmp_free(v->qmp);
	if (v->pidfd >= 0)
		close(v->pidfd);
	sandbox_spec_free(v->config);
	free(v->dir);
	free(v->name);
	return mfree(v);
}
DEFINE_POINTER_CLEANUP(QemuVm, vm_free)

static QemuVm *vm_new(Backend *b, const char *name)
{
	_cleanup_(vm_freep) QemuVm *v = calloc(1, sizeof(QemuVm));

	if (!v)
		return NULL;
	v->b = b;
	v->pidfd = -EBADF;
	v->name = strdup(name);
	if (!v->name || asprintf(&v->dir, "%s/%s", b->run_dir, name) < 0)
		return NULL;
	return TAKE_PTR(v);
}

char *qemu_vm_path(const Backend *b, const char *name, const char *file)
{
	char *p = NULL;

	return asprintf(&p, "%s/%s/%s", b->run_dir, name, file) < 0 ? NULL : p;
}

void qemu_vm_changed(QemuVm *v)
{
	if (v->b->callbacks.vm_changed)
		v->b->callbacks.vm_changed(v->b->callbacks.userdata, v->name);
}

/* The record */

int qemu_vm_save(QemuVm *v)
{
	_cleanup_(json_decrefp) json_t *j = NULL, *ports = json_object();
	_cleanup_free_ char *path = qemu_vm_path(v->b, v->name, "vm.json"), *text = NULL;
	json_t *config = v->config ? spec_to_json(v->config) : json_null();

	if (!path || !ports || !config) {
		json_decref(config);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < v->n_ports; i++)
		if (v->ports[i].device[0])
			json_object_set_new(ports, v->ports[i].device, json_integer(i));
	j = json_pack("{s:s, s:s, s:i, s:I, s:s, s:s, s:I, s:I, s:i, s:O, s:i, s:o}", "vmm", "qemu",
		      "bootId", v->boot_id, "pid", (int)v->id.pid, "startTime",
		      (json_int_t)v->id.start_time, "exe", v->id.exe, "state",
		      vm_state_to_string(v->state), "generation", (json_int_t)v->generation,
		      "startedAtUsec", (json_int_t)v->started_at_usec, "exitStatus", v->exit_status,
		      "ports", ports, "nPorts", (int)v->n_ports, "config", config);
	if (!j)
		return -ENOMEM;
	text = json_dumps(j, JSON_SORT_KEYS | JSON_INDENT(1));
	if (!text)
		return -ENOMEM;
	return write_file_atomic(path, text, strlen(text), 0600, false);
}

static int record_load(const Backend *b, const char *name, json_t **ret)
{
	_cleanup_free_ char *path = qemu_vm_path(b, name, "vm.json");
	json_t *j;

	if (!path)
		return -ENOMEM;
	j = json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
	if (!j)
		return access(path, F_OK) < 0 ? -ENOENT : -EBADMSG;
	if (!streq_ptr(json_string_value(json_object_get(j, "vmm")), "qemu")) {
		json_decref(j);
		return -EBADMSG;
	}
	*ret = j;
	return 0;
}

/* A QemuVm from its record: identity, generation, config, ports. */
static int vm_from_record(Backend *b, const char *name, const json_t *j, QemuVm **ret)
{
	_cleanup_(vm_freep) QemuVm *v = vm_new(b, name);
	const char *key, *exe = json_string_value(json_object_get(j, "exe"));
	json_t *port;
	int r;

	if (!v)
		return -ENOMEM;
	v->id.pid = (pid_t)json_integer_value(json_object_get(j, "pid"));
	v->id.start_time = (uint64_t)json_integer_value(json_object_get(j, "startTime"));
	snprintf(v->id.exe, sizeof(v->id.exe), "%s", exe ?: "");
	snprintf(v->boot_id, sizeof(v->boot_id), "%s",
		 json_string_value(json_object_get(j, "bootId")) ?: "");
	v->state = vm_state_from_string(json_string_value(json_object_get(j, "state")));
	if (v->state < 0)
		return -EBADMSG;
	v->exit_status = (int)json_integer_value(json_object_get(j, "exitStatus"));
	v->generation = (uint64_t)json_integer_value(json_object_get(j, "generation"));
	v->started_at_usec = (uint64_t)json_integer_value(json_object_get(j, "startedAtUsec"));
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
	r = spec_from_json(json_object_get(j, "config"), &v->config);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(v);
	return 0;
}

/* Backend setup */

static int qemu_init(Backend *b)
{
	Qemu *q = QEMU(b);
	_cleanup_free_ char *id = NULL;

	q->vms = hashmap_new();
	if (!q->vms)
		return -ENOMEM;
	q->accel = b->options.qemu_accel ? qemu_accel_from_string(b->options.qemu_accel)
					 : QEMU_ACCEL_AUTO;
	if (q->accel < 0)
		return -EINVAL;
	/* A missing QEMU fails the starts, with a clear reason, not the daemon. */
	q->binary_error = vmm_find_binary(b->options.qemu_binary ?: "qemu-system-x86_64", &q->binary);
	if (read_file("/proc/sys/kernel/random/boot_id", 64, &id, NULL) >= 0)
		snprintf(q->boot_id, sizeof(q->boot_id), "%.*s", (int)strcspn(id, "\n"), id);
	return 0;
}

static void qemu_done(Backend *b)
{
	void *v;

	/* The VMs keep running: the next vmd adopts them. */
	for (size_t i = 0; hashmap_next(QEMU(b)->vms, &i, &v);)
		vm_free(v);
	hashmap_free(QEMU(b)->vms);
	free(QEMU(b)->binary);
}

QemuVm *qemu_vm_get(Backend *b, const char *name)
{
	return hashmap_get(QEMU(b)->vms, name);
}

static void vm_forget(Backend *b, const char *name)
{
	vm_free(hashmap_remove(QEMU(b)->vms, name));
}

/* Observe */

static int observe_record(Backend *b, const char *name, VmObserved *ret)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	_cleanup_(vm_freep) QemuVm *v = NULL;
	VmObserved o = { .state = VM_ABSENT };
	int r;

	r = record_load(b, name, &j);
	if (r == -ENOENT) {
		*ret = o;
		return 0;
	}
	if (r < 0)
		return r;
	r = vm_from_record(b, name, j, &v);
	if (r < 0)
		return r;
	o.state = v->state;
	o.exit_status = v->exit_status;
	if (o.state != VM_EXITED &&
	    (!streq(v->boot_id, QEMU(b)->boot_id) || !vmm_identity_matches(&v->id))) {
		/* It ended while no vmd watched it. */
		o.state = VM_EXITED;
		o.exit_status = -1;
	}
	if (o.state != VM_EXITED)
		o.pid = v->id.pid;
	o.generation = v->generation;
	o.started_at_usec = v->started_at_usec;
	o.config = TAKE_PTR(v->config);
	*ret = o;
	return 0;
}

static int qemu_observe(Backend *b, const char *name, VmObserved *ret)
{
	QemuVm *v = qemu_vm_get(b, name);
	VmObserved o = {};
	int r;

	if (!v)
		return observe_record(b, name, ret);
	o.state = v->state;
	o.pid = v->state == VM_EXITED ? 0 : v->id.pid;
	o.generation = v->generation;
	o.started_at_usec = v->started_at_usec;
	o.exit_status = v->exit_status;
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

static int qemu_list(Backend *b, char ***ret_names, size_t *ret_n)
{
	return backend_list_runtime_dirs(b, "vm.json", ret_names, ret_n);
}

/* Exit */

static char *start_error(Backend *b, const char *name, const char *what);

static void vm_exited(QemuVm *v, int status)
{
	Backend *b = v->b;
	_cleanup_free_ char *sock = qemu_vm_path(b, v->name, "qmp.sock"), *reason = NULL;

	if (v->state == VM_STARTING)
		reason = start_error(b, v->name, "QEMU exited while starting");
	v->pid_source = sd_event_source_disable_unref(v->pid_source);
	v->kill_timer = sd_event_source_disable_unref(v->kill_timer);
	v->unplug_timer = sd_event_source_disable_unref(v->unplug_timer);
	v->ready_timer = sd_event_source_disable_unref(v->ready_timer);
	v->qmp = qmp_free(v->qmp);
	if (v->pidfd >= 0)
		v->pidfd = (close(v->pidfd), -EBADF);
	for (unsigned i = 0; i < v->n_ports; i++)
		v->ports[i].unplug = UNPLUG_NONE;
	v->state = VM_EXITED;
	v->exit_status = status;
	(void)qemu_vm_save(v);
	if (sock)
		(void)vmm_remove_stale_socket(b->run_dir, sock);
	if (b->callbacks.vm_exited)
		b->callbacks.vm_exited(b->callbacks.userdata, v->name, status, reason);
}

static int on_pidfd(sd_event_source *s _unused_, int fd _unused_, uint32_t revents _unused_,
		    void *userdata)
{
	QemuVm *v = userdata;
	int status = -1, r;

	r = v->child ? vmm_reap(v->pidfd, &status) : -ECHILD;
	if (r == 0)
		return 0; /* not yet */
	if (r < 0)
		/* Not ours to reap (adopted): a stop vmd asked for or the guest's own power-off is clean. */
		status = v->stop_requested || v->guest_shutdown ? 0 : -1;
	vm_exited(v, status);
	return 0;
}

static int watch_exit(QemuVm *v)
{
	return sd_event_add_io(v->b->event, &v->pid_source, v->pidfd, EPOLLIN, on_pidfd, v);
}

/* QMP events */

static void on_event(Qmp *q _unused_, const char *event, json_t *data, uint64_t ts _unused_,
		     void *userdata)
{
	QemuVm *v = userdata;

	if (streq(event, "STOP") && v->state == VM_RUNNING) {
		v->state = VM_PAUSED;
		(void)qemu_vm_save(v);
		qemu_vm_changed(v);
	} else if (streq(event, "RESUME") && v->state == VM_PAUSED) {
		v->state = VM_RUNNING;
		(void)qemu_vm_save(v);
		qemu_vm_changed(v);
	} else if (streq(event, "SHUTDOWN")) {
		v->guest_shutdown = json_is_true(json_object_get(data, "guest"));
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
	if (!v->stop_requested && !v->guest_shutdown && !vmm_has_exited(v->pidfd))
		log_fields(LOG_WARNING,
			   &(LogFields){ .sandbox = v->name, .backend = "qemu", .error = -error },
			   "lost the QMP connection to a running QEMU");
	qemu_vm_changed(v);
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
	if (!streq_ptr(json_string_value(json_object_get(name, "name")), v->name))
		return -ESTALE;
	r = qmp_call(q, "query-status", NULL, QMP_TIMEOUT_USEC, &status, NULL);
	if (r < 0)
		return r;
	s = json_string_value(json_object_get(status, "status"));
	if (streq_ptr(s, "running") || streq_ptr(s, "prelaunch"))
		v->state = v->state == VM_STOPPING ? VM_STOPPING : VM_RUNNING;
	else if (streq_ptr(s, "shutdown"))
		v->state = VM_STOPPING;
	else if (v->state != VM_STOPPING)
		v->state = VM_PAUSED; /* paused, prelaunch, io-error, suspended, ... */
	if (v->b->event) {
		r = qmp_attach(q, v->b->event, on_event, on_qmp_close, v);
		if (r < 0)
			return r;
	}
	v->qmp = TAKE_PTR(q);
	return 0;
}

static int vm_connect(QemuVm *v, uint64_t timeout_usec)
{
	_cleanup_free_ char *sock = qemu_vm_path(v->b, v->name, "qmp.sock");
	Qmp *q = NULL;
	int r;

	if (!sock)
		return -ENOMEM;
	r = qmp_connect(sock, timeout_usec, &q);
	if (r < 0)
		return r;
	return vm_take_qmp(v, q);
}

/* Adopt */

static int watch_start(QemuVm *v);

static int qemu_adopt(Backend *b, const char *name)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	_cleanup_(vm_freep) QemuVm *v = NULL;
	int r;

	if (!b->event)
		return -EROFS;
	vm_forget(b, name);
	r = record_load(b, name, &j);
	if (r < 0)
		return r == -ENOENT ? -ESTALE : r;
	r = vm_from_record(b, name, j, &v);
	if (r < 0)
		return r;
	/* Ours: this boot, and the very process vmd started (pid reuse is caught here). */
	if (!streq(v->boot_id, QEMU(b)->boot_id) || !vmm_identity_matches(&v->id))
		return -ESTALE;
	v->pidfd = vmm_pidfd_open(v->id.pid);
	if (v->pidfd < 0)
		return v->pidfd;
	if (!vmm_identity_matches(&v->id)) /* the pid was reused before the pidfd was taken */
		return -ESTALE;
	if (v->state == VM_STARTING)
		/* The vmd before died while it started: see it through, from the loop. */
		r = watch_start(v);
	else
		r = vm_connect(v, QEMU_ADOPT_TIMEOUT_USEC);
	if (r < 0) {
		/* A live QEMU vmd cannot talk to: never start a second one beside it. */
		backend_set_error(b, "cannot reach the QMP socket of QEMU pid %d: %s",
				  (int)v->id.pid, strerror(-r));
		return r == -ESTALE ? r : -EHOSTUNREACH;
	}
	r = watch_exit(v);
	if (r < 0)
		return r;
	r = hashmap_put(QEMU(b)->vms, v->name, v);
	if (r < 0)
		return r;
	TAKE_PTR(v);
	return 0;
}

/* Start */

/* What went wrong, in QEMU's own words if it left any: the last line of qemu.log. */
static char *start_error(Backend *b, const char *name, const char *what)
{
	_cleanup_free_ char *path = qemu_vm_path(b, name, "qemu.log"), *log = NULL;
	char *line, *end, *m = NULL;

	if (path && read_file(path, 64 * 1024, &log, NULL) >= 0) {
		end = log + strlen(log);
		while (end > log && (end[-1] == '\n' || end[-1] == ' '))
			*--end = '\0';
		line = strrchr(log, '\n');
		line = line ? line + 1 : log;
		if (*line && asprintf(&m, "%s: %s", what, line) >= 0)
			return m;
	}
	return strdup(what);
}

static int ready_timer_fired(sd_event_source *s, uint64_t usec, void *userdata);

/* Look for QMP again in 2 ms, or wake at the deadline while a handshake is under way. */
static int arm_ready_timer(QemuVm *v, bool at_deadline)
{
	v->ready_timer = sd_event_source_disable_unref(v->ready_timer);
	if (at_deadline)
		return sd_event_add_time(v->b->event, &v->ready_timer, CLOCK_MONOTONIC,
					 v->ready_deadline, 1000, ready_timer_fired, v);
	return sd_event_add_time_relative(v->b->event, &v->ready_timer, CLOCK_MONOTONIC, 2000, 500,
					  ready_timer_fired, v);
}

static void start_timed_out(QemuVm *v, int error)
{
	log_fields(LOG_ERR,
		   &(LogFields){
			   .sandbox = v->name, .backend = "qemu", .error = -error, .result = "killed" },
		   "QEMU did not answer on QMP within %llu s; killing it",
		   QEMU_START_TIMEOUT_USEC / 1000000);
	(void)vmm_kill(v->pidfd, SIGKILL);
}

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
	if (r == 0) {
		v->ready_timer = sd_event_source_disable_unref(v->ready_timer);
		(void)qemu_vm_save(v);
		qemu_vm_changed(v);
	} else if (now_usec(CLOCK_MONOTONIC) >= v->ready_deadline || r == -ESTALE)
		start_timed_out(v, r);
	else
		(void)arm_ready_timer(v, false);
}

/*
 * A starting QEMU, from the event loop, never blocking it: look for its QMP socket every
 * 2 ms; once it accepts, greeting and capabilities come through the loop (on_qmp_ready).
 * If QEMU exits first, its pidfd says so, with QEMU's reason; if it does neither in time,
 * it is killed.
 */
static int ready_timer_fired(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	QemuVm *v = userdata;
	_cleanup_free_ char *sock = qemu_vm_path(v->b, v->name, "qmp.sock");
	int r;

	v->ready_timer = sd_event_source_disable_unref(v->ready_timer);
	if (v->state != VM_STARTING || vmm_has_exited(v->pidfd) || !sock)
		return 0;
	if (now_usec(CLOCK_MONOTONIC) >= v->ready_deadline) {
		start_timed_out(v, -ETIMEDOUT);
		return 0;
	}
	if (v->qmp)
		return arm_ready_timer(v, true); /* a handshake is under way */
	r = qmp_connect_async(sock, v->b->event, on_qmp_ready, v, &v->qmp);
	if (r == 0)
		return arm_ready_timer(v, true);
	if (IN_SET(-r, ENOENT, ECONNREFUSED))
		return arm_ready_timer(v, false);
	start_timed_out(v, r);
	return 0;
}

/* Watch a starting QEMU until QMP answers (or it gives up). */
static int watch_start(QemuVm *v)
{
	v->ready_deadline = now_usec(CLOCK_MONOTONIC) + QEMU_START_TIMEOUT_USEC;
	return arm_ready_timer(v, false);
}

static void prepare_dir(Backend *b, const char *name)
{
	_cleanup_free_ char *console = qemu_vm_path(b, name, "console.log"),
			    *old = qemu_vm_path(b, name, "console.log.1"),
			    *log = qemu_vm_path(b, name, "qemu.log"),
			    *sock = qemu_vm_path(b, name, "qmp.sock");

	if (console && old)
		(void)rename(console, old); /* the boot before, for whoever looks into a crash */
	if (log)
		(void)unlink(log);
	if (sock)
		(void)vmm_remove_stale_socket(b->run_dir, sock);
}

static void assign_ports(QemuVm *v)
{
	const SandboxSpec *s = v->config;

	v->n_ports = (unsigned)(s->n_disks + s->n_networks + QEMU_SPARE_PORTS);
	if (v->n_ports > QEMU_PORTS_MAX)
		v->n_ports = QEMU_PORTS_MAX;
	memset(v->ports, 0, sizeof(v->ports));
	for (size_t i = 0; i < s->n_disks; i++)
		qemu_device_name(v->ports[i].device, QEMU_DISK_DEVICE, s->disks[i].id);
	for (size_t i = 0; i < s->n_networks; i++)
		qemu_device_name(v->ports[s->n_disks + i].device, QEMU_NET_DEVICE, s->networks[i].id);
}

static int spawn(Backend *b, QemuVm *v)
{
	_cleanup_(strv_freep) char **argv = NULL;
	_cleanup_free_ char *log = qemu_vm_path(b, v->name, "qemu.log");
	unsigned disk_ports[SPEC_DISKS_MAX], net_ports[SPEC_NETWORKS_MAX];
	const SandboxSpec *s = v->config;
	QemuLaunch l = {
		.binary = QEMU(b)->binary,
		.accel = QEMU(b)->accel,
		.dir = v->dir,
		.spec = s,
		.disk_ports = disk_ports,
		.net_ports = net_ports,
		.n_ports = v->n_ports,
	};
	int r;

	if (!log)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_disks; i++)
		disk_ports[i] = (unsigned)i;
	for (size_t i = 0; i < s->n_networks; i++)
		net_ports[i] = (unsigned)(s->n_disks + i);
	r = qemu_build_argv(&l, &argv);
	if (r < 0)
		return r;
	r = vmm_spawn(argv, log, &v->id.pid, &v->pidfd);
	if (r < 0) {
		backend_set_error(b, "cannot run %s: %s", argv[0], strerror(-r));
		return r;
	}
	v->child = true;
	return vmm_identity(v->id.pid, &v->id);
}

/* Undo a start that did not get through: no process, no record. */
static void start_failed(QemuVm *v)
{
	_cleanup_free_ char *rec = qemu_vm_path(v->b, v->name, "vm.json");
	int status;

	if (v->pidfd >= 0 && !vmm_has_exited(v->pidfd))
		(void)vmm_kill(v->pidfd, SIGKILL);
	if (v->pidfd >= 0) {
		struct pollfd p = { .fd = v->pidfd, .events = POLLIN };

		(void)poll(&p, 1, 5000);
		(void)vmm_reap(v->pidfd, &status);
	}
	if (rec)
		(void)unlink(rec);
}

/*
 * Start QEMU and return: the event loop sees it through (watch_start). 1 for "started,
 * not up yet": the VM is VM_STARTING until QMP answers, then vm_changed; if QEMU gives up,
 * vm_exited says why.
 */
static int qemu_start(Backend *b, const SandboxSpec *spec, uint64_t generation)
{
	_cleanup_(vm_freep) QemuVm *v = NULL;
	_cleanup_(json_decrefp) json_t *j = NULL;
	int r;

	if (!b->event)
		return -EROFS;
	if (!QEMU(b)->binary) {
		backend_set_error(b, "cannot find %s: %s",
				  b->options.qemu_binary ?: "qemu-system-x86_64 in $PATH",
				  strerror(-QEMU(b)->binary_error));
		return QEMU(b)->binary_error;
	}
	if (!spec->kernel) {
		backend_set_error(b, "spec.kernel is required for qemu");
		return -EINVAL;
	}
	vm_forget(b, spec->name);
	v = vm_new(b, spec->name);
	if (!v || !(j = spec_to_json(spec)))
		return -ENOMEM;
	r = spec_from_json(j, &v->config);
	if (r < 0)
		return r;
	r = mkdir_p(v->dir, 0750);
	if (r < 0)
		return r;
	prepare_dir(b, v->name);
	assign_ports(v);
	memcpy(v->boot_id, QEMU(b)->boot_id, sizeof(v->boot_id));
	v->generation = generation;
	v->started_at_usec = now_usec(CLOCK_REALTIME);
	v->state = VM_STARTING;

	r = spawn(b, v);
	if (r >= 0)
		/* Recorded before QMP is up: a vmd that dies now finds it, and adopts it. */
		r = qemu_vm_save(v);
	if (r >= 0)
		r = watch_exit(v);
	if (r >= 0)
		r = watch_start(v);
	if (r >= 0)
		r = hashmap_put(QEMU(b)->vms, v->name, v);
	if (r < 0) {
		start_failed(v);
		return r;
	}
	TAKE_PTR(v);
	return 1;
}

/* Commands on a running VM */

/* The VM, when vmd drives it and can talk to it. */
int qemu_vm_for_command(Backend *b, const char *name, QemuVm **ret)
{
	QemuVm *v = qemu_vm_get(b, name);
	int r;

	if (!v || v->state == VM_EXITED)
		return -ESRCH;
	if (!qmp_is_connected(v->qmp)) {
		v->qmp = qmp_free(v->qmp);
		r = vm_connect(v, QEMU_ADOPT_TIMEOUT_USEC);
		if (r < 0) {
			backend_set_error(b, "cannot reach the QMP socket of QEMU pid %d: %s",
					  (int)v->id.pid, strerror(-r));
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
		backend_set_error(v->b, "%s: %s", cmd, err ?: "failed");
	else if (r < 0)
		backend_set_error(v->b, "%s: %s", cmd, strerror(-r));
	return r;
}

static int kill_timer_fired(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	QemuVm *v = userdata;

	v->kill_timer = sd_event_source_disable_unref(v->kill_timer);
	if (v->pidfd >= 0 && !vmm_has_exited(v->pidfd)) {
		log_fields(LOG_WARNING,
			   &(LogFields){ .sandbox = v->name, .backend = "qemu", .result = "killed" },
			   "QEMU did not quit; sending SIGKILL");
		(void)vmm_kill(v->pidfd, SIGKILL);
	}
	return 0;
}

static int qemu_stop(Backend *b, const char *name, uint64_t timeout_ms _unused_, bool force)
{
	QemuVm *v = qemu_vm_get(b, name);
	int r;

	if (!v || v->state == VM_EXITED)
		return -ESRCH;
	v->stop_requested = true;
	if (!force && qmp_is_connected(v->qmp)) {
		/* A paused guest cannot hear the power button: let it run to shut down. */
		if (v->state == VM_PAUSED && (r = qemu_command(v, "cont", NULL)) < 0)
			return r;
		r = qemu_command(v, "system_powerdown", NULL);
		if (r < 0)
			return r;
		v->state = VM_STOPPING;
		return qemu_vm_save(v);
	}
	/* Forced: quit, and SIGKILL if QEMU does not go in time. */
	v->state = VM_STOPPING;
	(void)qemu_vm_save(v);
	if (qmp_is_connected(v->qmp) &&
	    qmp_call(v->qmp, "quit", NULL, QMP_TIMEOUT_USEC, NULL, NULL) == 0) {
		if (!v->kill_timer)
			(void)sd_event_add_time_relative(b->event, &v->kill_timer, CLOCK_MONOTONIC,
							 QEMU_QUIT_GRACE_USEC, 100000,
							 kill_timer_fired, v);
		return 0;
	}
	return vmm_kill(v->pidfd, SIGKILL);
}

static int set_paused(Backend *b, const char *name, bool paused)
{
	QemuVm *v;
	int r;

	r = qemu_vm_for_command(b, name, &v);
	if (r < 0)
		return r;
	r = qemu_command(v, paused ? "stop" : "cont", NULL);
	if (r < 0)
		return r;
	/* The STOP or RESUME event says the same; it may come later than the reply. */
	v->state = paused ? VM_PAUSED : VM_RUNNING;
	return qemu_vm_save(v);
}

static int qemu_pause(Backend *b, const char *name)
{
	return set_paused(b, name, true);
}

static int qemu_resume(Backend *b, const char *name)
{
	return set_paused(b, name, false);
}

static int qemu_cleanup(Backend *b, const char *name)
{
	static const char *const files[] = {
		"vm.json", "qmp.sock", "qemu.pid", "qemu.log", "console.log", "console.log.1",
	};
	QemuVm *v = qemu_vm_get(b, name);

	if (v && v->state != VM_EXITED)
		return -EBUSY;
	vm_forget(b, name);
	/* vmd's own files only: never a disk image, never anything outside the dir. */
	for (size_t i = 0; i < ELEMENTSOF(files); i++) {
		_cleanup_free_ char *p = qemu_vm_path(b, name, files[i]);

		if (!p)
			return -ENOMEM;
		if (unlink(p) < 0 && errno != ENOENT)
			return -errno;
	}
	return 0;
}

const BackendOps backend_qemu_ops = {
	.name = "qemu",
	.caps = BACKEND_CAP_PAUSE | BACKEND_CAP_DISK_HOTPLUG | BACKEND_CAP_NET_HOTPLUG,
	.data_size = sizeof(Qemu),
	.init = qemu_init,
	.done = qemu_done,
	.observe = qemu_observe,
	.list = qemu_list,
	.adopt = qemu_adopt,
	.start = qemu_start,
	.stop = qemu_stop,
	.pause = qemu_pause,
	.resume = qemu_resume,
	.disk_add = qemu_disk_add,
	.disk_remove = qemu_disk_remove,
	.net_add = qemu_net_add,
	.net_remove = qemu_net_remove,
	.cleanup = qemu_cleanup,
};
