/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>

#include "log.h"
#include "spec-json.h"
#include "util.h"
#include "vmm-vm.h"

/* Setup */

int vmm_backend_init(Backend *b, const VmmVmType *t, const char *binary, const char *default_binary)
{
	VmmBackend *vb = VMM_BACKEND(b);

	vb->type = t;
	_cleanup_free_ char *id = NULL;

	vb->vms = hashmap_new();
	if (!vb->vms)
		return -ENOMEM;
	/* A missing VMM fails the starts, with a clear reason, not the daemon. */
	vb->binary_name = binary ?: default_binary;
	vb->binary_error = vmm_find_binary(vb->binary_name, &vb->binary);
	if (read_file("/proc/sys/kernel/random/boot_id", 64, &id, NULL) >= 0)
		snprintf(vb->boot_id, sizeof(vb->boot_id), "%.*s", (int)strcspn(id, "\n"), id);
	return 0;
}

VmmVm *vmm_vm_free(VmmVm *v)
{
	if (!v)
		return NULL;
	if (v->type->free)
		v->type->free(v);
	sd_event_source_disable_unref(v->pid_source);
	sd_event_source_disable_unref(v->kill_timer);
	sd_event_source_disable_unref(v->ready_timer);
	if (v->pidfd >= 0)
		close(v->pidfd);
	sandbox_spec_free(v->config);
	free(v->start_failure);
	free(v->dir);
	free(v->name);
	return mfree(v);
}

void vmm_backend_done(Backend *b)
{
	VmmBackend *vb = VMM_BACKEND(b);
	void *v;

	for (size_t i = 0; hashmap_next(vb->vms, &i, &v);)
		vmm_vm_free(v);
	hashmap_free(vb->vms);
	free(vb->binary);
}

static VmmVm *vm_new(Backend *b, const VmmVmType *t, const char *name)
{
	_cleanup_(vmm_vm_freep) VmmVm *v = NULL;

	assert(t->size >= sizeof(VmmVm));
	v = calloc(1, t->size);
	if (!v)
		return NULL;
	v->b = b;
	v->type = t;
	v->pidfd = -EBADF;
	v->name = strdup(name);
	if (!v->name || asprintf(&v->dir, "%s/%s", b->run_dir, name) < 0)
		return NULL;
	return TAKE_PTR(v);
}

char *vmm_vm_path(const Backend *b, const char *name, const char *file)
{
	char *p = NULL;

	return asprintf(&p, "%s/%s/%s", b->run_dir, name, file) < 0 ? NULL : p;
}

VmmVm *vmm_vm_get(Backend *b, const char *name)
{
	return hashmap_get(VMM_BACKEND(b)->vms, name);
}

static void vm_forget(Backend *b, const char *name)
{
	vmm_vm_free(hashmap_remove(VMM_BACKEND(b)->vms, name));
}

void vmm_vm_changed(VmmVm *v)
{
	if (v->b->callbacks.vm_changed)
		v->b->callbacks.vm_changed(v->b->callbacks.userdata, v->name);
}

/* The record */

int vmm_vm_save(VmmVm *v)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	_cleanup_free_ char *path = vmm_vm_path(v->b, v->name, "vm.json"), *text = NULL;
	json_t *config = v->config ? spec_to_json(v->config) : json_null();
	int r;

	if (!path || !config) {
		json_decref(config);
		return -ENOMEM;
	}
	j = json_pack("{s:s, s:s, s:i, s:I, s:s, s:s, s:I, s:I, s:i, s:o}", "vmm", v->type->vmm,
		      "bootId", v->boot_id, "pid", (int)v->id.pid, "startTime",
		      (json_int_t)v->id.start_time, "exe", v->id.exe, "state",
		      vm_state_to_string(v->state), "generation", (json_int_t)v->generation,
		      "startedAtUsec", (json_int_t)v->started_at_usec, "exitStatus", v->exit_status,
		      "config", config);
	if (!j)
		return -ENOMEM;
	if (v->type->save) {
		r = v->type->save(v, j);
		if (r < 0)
			return r;
	}
	text = json_dumps(j, JSON_SORT_KEYS | JSON_INDENT(1));
	if (!text)
		return -ENOMEM;
	return write_file_atomic(path, text, strlen(text), 0600, false);
}

/* The record of name, if it is one of type t's. */
static int record_load(const Backend *b, const VmmVmType *t, const char *name, json_t **ret)
{
	_cleanup_free_ char *path = vmm_vm_path(b, name, "vm.json");
	_cleanup_(json_decrefp) json_t *j = NULL;

	if (!path)
		return -ENOMEM;
	j = json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
	if (!j)
		return access(path, F_OK) < 0 ? -ENOENT : -EBADMSG;
	if (!streq_ptr(json_string_value(json_object_get(j, "vmm")), t->vmm))
		return -EMEDIUMTYPE;
	*ret = TAKE_PTR(j);
	return 0;
}

/* A VM from its record: identity, generation, config, and the backend's own fields. */
static int vm_from_record(Backend *b, const VmmVmType *t, const char *name, const json_t *j,
			  VmmVm **ret)
{
	_cleanup_(vmm_vm_freep) VmmVm *v = vm_new(b, t, name);
	const char *exe = json_string_value(json_object_get(j, "exe"));
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
	r = spec_from_json(json_object_get(j, "config"), &v->config);
	if (r < 0)
		return r;
	if (t->load) {
		r = t->load(v, j);
		if (r < 0)
			return r;
	}
	*ret = TAKE_PTR(v);
	return 0;
}

/* Whether v's record names a process that still runs: this boot, the very same process. */
static bool vm_is_alive(const VmmVm *v)
{
	return streq(v->boot_id, VMM_BACKEND(v->b)->boot_id) && vmm_identity_matches(&v->id);
}

int vmm_vm_list(Backend *b, char ***ret_names, size_t *ret_n)
{
	const VmmVmType *t = VMM_BACKEND(b)->type;
	char **names = NULL;
	size_t n = 0, k = 0;
	int r;

	r = backend_list_runtime_dirs(b, "vm.json", &names, &n);
	if (r < 0)
		return r;
	/* The runtime dirs of the other VMMs are theirs to list. */
	for (size_t i = 0; i < n; i++) {
		json_t *j = NULL;

		if (record_load(b, t, names[i], &j) == -EMEDIUMTYPE) {
			free(names[i]);
			continue;
		}
		json_decref(j);
		names[k++] = names[i];
	}
	*ret_names = names;
	*ret_n = k;
	return 0;
}

/* Observe */

static int observe_record(Backend *b, const VmmVmType *t, const char *name, VmObserved *ret)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	_cleanup_(vmm_vm_freep) VmmVm *v = NULL;
	VmObserved o = { .state = VM_ABSENT };
	int r;

	r = record_load(b, t, name, &j);
	if (IN_SET(-r, ENOENT, EMEDIUMTYPE)) {
		*ret = o;
		return 0;
	}
	if (r < 0)
		return r;
	r = vm_from_record(b, t, name, j, &v);
	if (r < 0)
		return r;
	o.state = v->state;
	o.exit_status = v->exit_status;
	if (o.state != VM_EXITED && !vm_is_alive(v)) {
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

int vmm_vm_observe(Backend *b, const char *name, VmObserved *ret)
{
	const VmmVmType *t = VMM_BACKEND(b)->type;
	VmmVm *v = vmm_vm_get(b, name);
	VmObserved o = {};

	if (!v)
		return observe_record(b, t, name, ret);
	o.state = v->state;
	o.pid = v->state == VM_EXITED ? 0 : v->id.pid;
	o.generation = v->generation;
	o.started_at_usec = v->started_at_usec;
	o.exit_status = v->exit_status;
	*ret = o;
	return 0;
}

/* Exit */

/* What went wrong, in the VMM's own words if it left any: the last line of its log. */
static char *start_error(VmmVm *v, const char *what)
{
	_cleanup_free_ char *path = vmm_vm_path(v->b, v->name, v->type->log), *log = NULL;
	char *line, *end, *m = NULL;

	if (v->start_failure)
		return asprintf(&m, "%s: %s", what, v->start_failure) < 0 ? NULL : m;
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

static void vm_exited(VmmVm *v, int status)
{
	Backend *b = v->b;
	_cleanup_free_ char *sock = vmm_vm_path(b, v->name, v->type->socket), *reason = NULL,
			    *what = NULL;

	if (v->state == VM_STARTING &&
	    asprintf(&what, "%s exited while starting", v->type->display) >= 0)
		reason = start_error(v, what);
	if (v->type->exited)
		v->type->exited(v);
	v->pid_source = sd_event_source_disable_unref(v->pid_source);
	v->kill_timer = sd_event_source_disable_unref(v->kill_timer);
	v->ready_timer = sd_event_source_disable_unref(v->ready_timer);
	if (v->pidfd >= 0)
		v->pidfd = (close(v->pidfd), -EBADF);
	v->start_failure = mfree(v->start_failure);
	v->state = VM_EXITED;
	v->exit_status = status;
	(void)vmm_vm_save(v);
	if (sock)
		(void)vmm_remove_stale_socket(b->run_dir, sock);
	if (b->callbacks.vm_exited)
		b->callbacks.vm_exited(b->callbacks.userdata, v->name, status, reason);
}

static int on_pidfd(sd_event_source *s _unused_, int fd _unused_, uint32_t revents _unused_,
		    void *userdata)
{
	VmmVm *v = userdata;
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

static int watch_exit(VmmVm *v)
{
	return sd_event_add_io(v->b->event, &v->pid_source, v->pidfd, EPOLLIN, on_pidfd, v);
}

/* Start */

static int ready_timer_fired(sd_event_source *s, uint64_t usec, void *userdata);

/* Look again in 2 ms, or wake at the deadline while an answer is under way. */
static int arm_ready_timer(VmmVm *v, bool at_deadline)
{
	v->ready_timer = sd_event_source_disable_unref(v->ready_timer);
	if (at_deadline)
		return sd_event_add_time(v->b->event, &v->ready_timer, CLOCK_MONOTONIC,
					 v->ready_deadline, 1000, ready_timer_fired, v);
	return sd_event_add_time_relative(v->b->event, &v->ready_timer, CLOCK_MONOTONIC, 2000, 500,
					  ready_timer_fired, v);
}

static void start_given_up(VmmVm *v, int error)
{
	if (error == -ETIMEDOUT)
		log_fields(LOG_ERR,
			   &(LogFields){ .sandbox = v->name,
					 .backend = v->type->vmm,
					 .error = -error,
					 .result = "killed" },
			   "%s did not answer within %llu s; killing it", v->type->display,
			   VMM_START_TIMEOUT_USEC / 1000000);
	else
		log_fields(LOG_ERR,
			   &(LogFields){ .sandbox = v->name,
					 .backend = v->type->vmm,
					 .error = -error,
					 .result = "killed" },
			   "%s did not start the VM: %s; killing it", v->type->display,
			   v->start_failure ?: strerror(-error));
	(void)vmm_kill(v->pidfd, SIGKILL);
}

void vmm_vm_start_done(VmmVm *v, int error)
{
	VmmIdentity id;

	if (error == 0) {
		/*
		 * What answers may be another binary than the one started (a jailer execs
		 * Firecracker): the same process, so record what it runs now.
		 */
		if (vmm_identity(v->id.pid, &id) == 0 && id.start_time == v->id.start_time)
			v->id = id;
		v->ready_timer = sd_event_source_disable_unref(v->ready_timer);
		(void)vmm_vm_save(v);
		vmm_vm_changed(v);
	} else if (now_usec(CLOCK_MONOTONIC) >= v->ready_deadline || error == -ESTALE)
		start_given_up(v, error == -ESTALE ? error : -ETIMEDOUT);
	else
		(void)arm_ready_timer(v, false);
}

/*
 * A starting VMM, from the event loop: ask the backend every 2 ms whether it is up. If
 * the VMM exits first, its pidfd says so, with its reason; if it is not up in time, or the
 * backend gives up on it, it is killed.
 */
static int ready_timer_fired(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	VmmVm *v = userdata;
	int r;

	v->ready_timer = sd_event_source_disable_unref(v->ready_timer);
	if (v->state != VM_STARTING || vmm_has_exited(v->pidfd))
		return 0;
	if (now_usec(CLOCK_MONOTONIC) >= v->ready_deadline) {
		start_given_up(v, -ETIMEDOUT);
		return 0;
	}
	r = v->type->poll_start(v);
	if (r == 1) {
		vmm_vm_start_done(v, 0);
		return 0;
	}
	if (r >= 0)
		return arm_ready_timer(v, r == 2);
	start_given_up(v, r);
	return 0;
}

static int watch_start(VmmVm *v)
{
	v->ready_deadline = now_usec(CLOCK_MONOTONIC) + VMM_START_TIMEOUT_USEC;
	return arm_ready_timer(v, false);
}

static void prepare_dir(VmmVm *v)
{
	_cleanup_free_ char *console = vmm_vm_path(v->b, v->name, "console.log"),
			    *old = vmm_vm_path(v->b, v->name, "console.log.1"),
			    *log = vmm_vm_path(v->b, v->name, v->type->log),
			    *sock = vmm_vm_path(v->b, v->name, v->type->socket);

	if (console && old)
		(void)rename(console, old); /* the boot before, for whoever looks into a crash */
	if (log)
		(void)unlink(log);
	if (sock)
		(void)vmm_remove_stale_socket(v->b->run_dir, sock);
}

static int spawn(VmmVm *v)
{
	_cleanup_(strv_freep) char **argv = NULL;
	_cleanup_free_ char *log = vmm_vm_path(v->b, v->name, v->type->log);
	int r;

	if (!log)
		return -ENOMEM;
	if (v->type->prepare) {
		r = v->type->prepare(v);
		if (r < 0)
			return r;
	}
	r = v->type->argv(v, &argv);
	if (r < 0)
		return r;
	r = vmm_spawn(argv, log, &v->id.pid, &v->pidfd);
	if (r < 0) {
		backend_set_error(v->b, "cannot run %s: %s", argv[0], strerror(-r));
		return r;
	}
	v->child = true;
	return vmm_identity(v->id.pid, &v->id);
}

/* Undo a start that did not get through: no process, no record. */
static void start_failed(VmmVm *v)
{
	_cleanup_free_ char *rec = vmm_vm_path(v->b, v->name, "vm.json");
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

int vmm_vm_start(Backend *b, const SandboxSpec *spec, uint64_t generation)
{
	const VmmVmType *t = VMM_BACKEND(b)->type;
	VmmBackend *vb = VMM_BACKEND(b);
	_cleanup_(vmm_vm_freep) VmmVm *v = NULL;
	int r;

	if (!b->event)
		return -EROFS;
	if (!vb->binary) {
		backend_set_error(b, "cannot find %s: %s", vb->binary_name,
				  strerror(-vb->binary_error));
		return vb->binary_error;
	}
	if (!spec->kernel) {
		backend_set_error(b, "spec.kernel is required for %s", t->vmm);
		return -EINVAL;
	}
	vm_forget(b, spec->name);
	v = vm_new(b, t, spec->name);
	if (!v)
		return -ENOMEM;
	r = spec_copy(spec, &v->config);
	if (r < 0)
		return r;
	r = mkdir_p(v->dir, 0750);
	if (r < 0)
		return r;
	prepare_dir(v);
	memcpy(v->boot_id, vb->boot_id, sizeof(v->boot_id));
	v->generation = generation;
	v->started_at_usec = now_usec(CLOCK_REALTIME);
	v->state = VM_STARTING;

	r = spawn(v);
	if (r >= 0)
		/* Recorded before it answers: a vmd that dies now finds it, and adopts it. */
		r = vmm_vm_save(v);
	if (r >= 0)
		r = watch_exit(v);
	if (r >= 0)
		r = watch_start(v);
	if (r >= 0)
		r = hashmap_put(vb->vms, v->name, v);
	if (r < 0) {
		start_failed(v);
		return r;
	}
	TAKE_PTR(v);
	return 1;
}

/* Adopt */

int vmm_vm_adopt(Backend *b, const char *name)
{
	const VmmVmType *t = VMM_BACKEND(b)->type;
	_cleanup_(json_decrefp) json_t *j = NULL;
	_cleanup_(vmm_vm_freep) VmmVm *v = NULL;
	int r;

	if (!b->event)
		return -EROFS;
	vm_forget(b, name);
	r = record_load(b, t, name, &j);
	if (r < 0)
		return IN_SET(-r, ENOENT, EMEDIUMTYPE) ? -ESTALE : r;
	r = vm_from_record(b, t, name, j, &v);
	if (r < 0)
		return r;
	/* Ours: this boot, and the very process vmd started (pid reuse is caught here). */
	if (!vm_is_alive(v))
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
		r = t->reconnect(v);
	if (r < 0) {
		/* A live VMM vmd cannot talk to: never start a second one beside it. */
		if (!b->error)
			backend_set_error(b, "cannot reach the API socket of %s pid %d: %s",
					  t->display, (int)v->id.pid, strerror(-r));
		return r == -ESTALE ? r : -EHOSTUNREACH;
	}
	r = watch_exit(v);
	if (r < 0)
		return r;
	r = hashmap_put(VMM_BACKEND(b)->vms, v->name, v);
	if (r < 0)
		return r;
	TAKE_PTR(v);
	return 0;
}

/* Stop */

static int kill_timer_fired(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	VmmVm *v = userdata;

	v->kill_timer = sd_event_source_disable_unref(v->kill_timer);
	if (v->pidfd >= 0 && !vmm_has_exited(v->pidfd)) {
		log_fields(LOG_WARNING,
			   &(LogFields){
				   .sandbox = v->name, .backend = v->type->vmm, .result = "killed" },
			   "%s did not quit; sending SIGKILL", v->type->display);
		(void)vmm_kill(v->pidfd, SIGKILL);
	}
	return 0;
}

static int kill_later(VmmVm *v)
{
	if (v->kill_timer)
		return 0;
	return sd_event_add_time_relative(v->b->event, &v->kill_timer, CLOCK_MONOTONIC,
					  VMM_KILL_GRACE_USEC, 100000, kill_timer_fired, v);
}

int vmm_vm_stop(Backend *b, const char *name, uint64_t timeout_ms _unused_, bool force)
{
	VmmVm *v = vmm_vm_get(b, name);
	int r = -ENOTCONN;

	if (!v || v->state == VM_EXITED)
		return -ESRCH;
	v->stop_requested = true;
	if (!force && v->state != VM_STARTING) {
		if (v->state == VM_PAUSED && (r = v->type->set_paused(v, false)) < 0 && r != -ENOTCONN)
			return r;
		if (r >= 0 || v->state != VM_PAUSED)
			r = v->type->power_button(v);
		if (r >= 0) {
			v->state = VM_STOPPING;
			return vmm_vm_save(v);
		}
		if (r != -ENOTCONN)
			return r;
	}
	v->state = VM_STOPPING;
	(void)vmm_vm_save(v);
	if (v->type->quit && v->type->quit(v) >= 0)
		return kill_later(v);
	free(backend_take_error(b)); /* SIGKILL is the answer to that */
	return vmm_kill(v->pidfd, SIGKILL);
}

static int set_paused(Backend *b, const char *name, bool paused)
{
	VmmVm *v = vmm_vm_get(b, name);
	int r;

	if (!v || IN_SET(v->state, VM_EXITED, VM_STARTING))
		return -ESRCH;
	r = v->type->set_paused(v, paused);
	if (r < 0)
		return r;
	v->state = paused ? VM_PAUSED : VM_RUNNING;
	return vmm_vm_save(v);
}

int vmm_vm_pause(Backend *b, const char *name)
{
	return set_paused(b, name, true);
}

int vmm_vm_resume(Backend *b, const char *name)
{
	return set_paused(b, name, false);
}

int vmm_vm_cleanup(Backend *b, const char *name)
{
	const VmmVmType *t = VMM_BACKEND(b)->type;
	const char *const files[] = { "vm.json", t->socket, t->log, "console.log", "console.log.1" };
	VmmVm *v = vmm_vm_get(b, name);

	if (v && v->state != VM_EXITED)
		return -EBUSY;
	vm_forget(b, name);
	/* vmd's own files only: never a disk image, never anything outside the dir. */
	for (size_t i = 0; i < ELEMENTSOF(files) + strv_length((char *const *)t->extra_files); i++) {
		const char *f =
			i < ELEMENTSOF(files) ? files[i] : t->extra_files[i - ELEMENTSOF(files)];
		_cleanup_free_ char *p = vmm_vm_path(b, name, f);

		if (!p)
			return -ENOMEM;
		if (unlink(p) < 0 && errno != ENOENT)
			return -errno;
	}
	return t->cleanup ? t->cleanup(b, name) : 0;
}

/* REST */

int vmm_vm_rest(VmmVm *v, Http **http, const char *method, const char *path, json_t *body,
		uint64_t timeout_usec, json_t **ret_json)
{
	static const char api[] = "/api/v1/";
	HttpReply reply;
	int r;

	if (!*http) {
		_cleanup_free_ char *sock = vmm_vm_path(v->b, v->name, v->type->socket);

		if (!sock)
			return -ENOMEM;
		r = http_new(sock, http);
		if (r < 0)
			return r;
	}
	r = http_call(*http, method, path, body, timeout_usec, &reply);
	if (r < 0) {
		if (strncmp(path, api, strlen(api)) == 0)
			backend_set_error(v->b, "%s: %s", path + strlen(api),
					  reply.error ?: strerror(-r));
		else
			backend_set_error(v->b, "%s %s: %s", method, path,
					  reply.error ?: strerror(-r));
	} else if (ret_json)
		*ret_json = TAKE_PTR(reply.json);
	http_reply_done(&reply);
	return r;
}

static bool lists_id(const json_t *items, const char *key, const char *id)
{
	size_t i;
	json_t *d;

	json_array_foreach(items, i, d)
	{
		if (streq_ptr(json_string_value(json_object_get(d, key)), id))
			return true;
	}
	return false;
}

int vmm_vm_config_seen(const SandboxSpec *config, const json_t *disks, const char *disk_key,
		       const json_t *nets, const char *net_key, SandboxSpec **ret)
{
	SandboxSpec *s = NULL;
	int r;

	r = spec_copy(config, &s);
	if (r < 0)
		return r;
	for (size_t k = s->n_disks; k > 0; k--)
		if (!lists_id(disks, disk_key, s->disks[k - 1].id))
			(void)spec_remove_disk(s, s->disks[k - 1].id);
	for (size_t k = s->n_networks; k > 0; k--)
		if (!lists_id(nets, net_key, s->networks[k - 1].id))
			(void)spec_remove_net(s, s->networks[k - 1].id);
	*ret = s;
	return 0;
}
