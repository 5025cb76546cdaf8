/* SPDX-License-Identifier: MIT */
#include <assert.h>
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
	vmm_job_free(&v->job);
	vmm_job_free(&v->unplug);
	vmm_job_free(&v->observe);
	qmp_free(v->qmp);
	sd_event_source_disable_unref(v->pid_source);
	sd_event_source_disable_unref(v->observe_retry);
	if (v->pidfd >= 0)
		close(v->pidfd);
	sandbox_spec_free(v->config);
	free(v->unresponsive);
	free(v->dir);
	free(v->name);
	return mfree(v);
}

static void strays_forget(VmmBackend *vb);

void vmm_backend_done(Backend *b)
{
	VmmBackend *vb = VMM_BACKEND(b);
	void *v;

	/* Quietly: what is in flight is dropped, and the VMs run on for the next vmd. */
	for (size_t i = 0; hashmap_next(vb->vms, &i, &v);)
		vmm_vm_free(v);
	hashmap_free(vb->vms);
	strays_forget(vb);
	http_loop_free(vb->http);
	free(vb->binary);
}

void vmm_backend_reload(Backend *b)
{
	strays_forget(VMM_BACKEND(b));
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
	v->job.vm = v->unplug.vm = v->observe.vm = v;
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

void vmm_vm_forget(VmmVm *v)
{
	vm_forget(v->b, v->name);
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
	/* A stop in progress goes on where it was, should another vmd take over. */
	if (v->job.type == BACKEND_OP_STOP &&
	    json_object_set_new(j, "stopDeadlineUsec",
				json_integer((json_int_t)v->job.stop_deadline)) < 0)
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
	v->job.stop_deadline = (uint64_t)json_integer_value(json_object_get(j, "stopDeadlineUsec"));
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

/* Strays: live VMMs for a name that vmd cannot take in charge */

typedef struct VmmStray VmmStray;
struct VmmStray {
	char *name;
	VmmIdentity id;
	VmmStray *next; /* another one for the same name */
};

static void strays_forget(VmmBackend *vb)
{
	void *p;

	for (size_t i = 0; hashmap_next(vb->strays, &i, &p);)
		for (VmmStray *s = p, *next; s; s = next) {
			next = s->next;
			free(s->name);
			free(s);
		}
	vb->strays = hashmap_free(vb->strays);
	vb->strays_scanned = false;
}

/* The rest of path after "<dir>/" (dir without its trailing slashes), or NULL. */
static const char *after_dir(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (strncmp(path, dir, n) != 0 || path[n] != '/')
		return NULL;
	return path + n + 1;
}

int vmm_argv_names_dir(const Backend *b, char *const *argv, const char *option, const char *prefix,
		       const char *file, char **ret_name)
{
	for (size_t i = 0; argv[i] && argv[i + 1]; i++) {
		const char *v = argv[i + 1], *rest, *slash;

		if (!streq(argv[i], option) || strncmp(v, prefix, strlen(prefix)) != 0)
			continue;
		rest = after_dir(v + strlen(prefix), b->run_dir);
		slash = rest ? strchr(rest, '/') : NULL;
		if (!slash || slash == rest || !streq(slash + 1, file))
			continue;
		*ret_name = strndup(rest, (size_t)(slash - rest));
		return *ret_name ? 1 : -ENOMEM;
	}
	return 0;
}

static int scan_one(pid_t pid, char **argv, void *userdata)
{
	Backend *b = userdata;
	VmmBackend *vb = VMM_BACKEND(b);
	_cleanup_free_ char *name = NULL;
	VmmStray *s, *first;
	int r;

	r = vb->type->argv_name(b, pid, argv, &name);
	if (r <= 0)
		return r == -ENOMEM ? r : 0;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (vmm_identity(pid, &s->id) < 0) {
		free(s);
		return 0; /* gone meanwhile */
	}
	s->name = TAKE_PTR(name);
	first = hashmap_get(vb->strays, s->name);
	if (first) {
		s->next = first->next;
		first->next = s;
		return 0;
	}
	r = hashmap_put(vb->strays, s->name, s);
	if (r < 0) {
		free(s->name);
		free(s);
	}
	return r;
}

/* Every process of this VMM that runs for a name of this run dir, once. */
static int strays_scan(Backend *b)
{
	VmmBackend *vb = VMM_BACKEND(b);
	int r;

	if (vb->strays_scanned)
		return 0;
	vb->strays = hashmap_new();
	if (!vb->strays)
		return -ENOMEM;
	r = vmm_foreach_process(scan_one, b);
	if (r < 0) {
		strays_forget(vb);
		return r;
	}
	vb->strays_scanned = true;
	return 0;
}

/*
 * A live VMM of this type for name that this vmd does not drive: found by its argv, or by
 * someone listening on its socket (*ret then has pid 0). 1 and *ret, 0 if none.
 */
static int find_stray(Backend *b, const char *name, VmmIdentity *ret)
{
	const VmmVm *driven = vmm_vm_get(b, name);
	_cleanup_free_ char *sock = vmm_vm_path(b, name, VMM_BACKEND(b)->type->socket);
	int r;

	if (!sock)
		return -ENOMEM;
	r = strays_scan(b);
	if (r < 0)
		return r;
	for (VmmStray *s = hashmap_get(VMM_BACKEND(b)->strays, name); s; s = s->next) {
		if (driven && driven->state != VM_EXITED && driven->id.pid == s->id.pid)
			continue; /* the one it drives */
		if (vmm_identity_matches(&s->id)) {
			*ret = s->id;
			return 1;
		}
	}
	if (vmm_socket_is_listening(sock)) {
		*ret = (VmmIdentity){};
		return 1;
	}
	return 0;
}

/*
 * The process a record names, when the record's identity does not hold, but it runs on
 * this boot for the record's very sandbox: 1 and its identity now.
 */
static int record_impostor(Backend *b, const VmmVm *rec, VmmIdentity *ret)
{
	_cleanup_free_ char **argv = NULL;
	_cleanup_free_ char *name = NULL;
	VmmIdentity now;

	if (!rec || rec->state == VM_EXITED || rec->id.pid <= 0 ||
	    !streq(rec->boot_id, VMM_BACKEND(b)->boot_id) || vmm_identity(rec->id.pid, &now) < 0 ||
	    process_argv(rec->id.pid, &argv) < 0)
		return 0;
	if (rec->type->argv_name(b, rec->id.pid, argv, &name) <= 0 || !streq(name, rec->name))
		return 0;
	*ret = now;
	return 1;
}

static char *stray_message(Backend *b, const char *name, VmStray kind, const VmmIdentity *id,
			   const VmmVm *rec)
{
	const VmmVmType *t = VMM_BACKEND(b)->type;
	_cleanup_free_ char *sock = vmm_vm_path(b, name, t->socket);
	char *m = NULL;
	int r;

	if (kind == VM_STRAY_NOT_OURS)
		r = asprintf(
			&m,
			"the record names %s pid %d, which runs for this sandbox but is not the process recorded (it started %llu clock ticks after boot, not %llu; binary %s); vmd cannot prove it is its own and leaves it alone, starting no other",
			t->display, (int)id->pid, (unsigned long long)id->start_time,
			(unsigned long long)rec->id.start_time, id->exe);
	else if (id->pid > 0)
		r = asprintf(
			&m,
			"%s pid %d runs for this sandbox (its command line says so), but vmd has no record of it; vmd leaves it alone and starts no other: stop it, or put its vm.json back, then reload vmd",
			t->display, (int)id->pid);
	else
		r = asprintf(
			&m,
			"something listens on %s, but vmd has no record of a %s there; vmd leaves it alone and starts no other: stop it, or put its vm.json back, then reload vmd",
			sock ?: t->socket, t->display);
	return r < 0 ? NULL : m;
}

/* A VM found absent or exited (rec: its record, if any): is a VMM running for it anyway? */
static int observe_stray(Backend *b, const char *name, const VmmVm *rec, VmObserved *o)
{
	VmmIdentity id;
	VmStray kind;
	int r;

	r = record_impostor(b, rec, &id);
	if (r == 0)
		r = find_stray(b, name, &id);
	if (r <= 0)
		return r;
	kind = rec && rec->state != VM_EXITED && id.pid > 0 && id.pid == rec->id.pid
		       ? VM_STRAY_NOT_OURS
		       : VM_STRAY_RECORD_LOST;
	o->stray_message = stray_message(b, name, kind, &id, rec);
	if (!o->stray_message)
		return -ENOMEM;
	o->stray = kind;
	o->pid = id.pid;
	return 0;
}

/* Before vmd makes anything run for name: -EEXIST, with the words, if something does. */
static int refuse_stray(Backend *b, const char *name)
{
	_cleanup_free_ char *m = NULL;
	VmmIdentity id;
	int r;

	r = find_stray(b, name, &id);
	if (r <= 0)
		return r;
	m = stray_message(b, name, VM_STRAY_RECORD_LOST, &id, NULL);
	backend_set_error(b, "%s", m ?: "a VMM runs for this sandbox already");
	return -EEXIST;
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
		r = observe_stray(b, name, NULL, &o);
		if (r < 0)
			return r;
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
	else {
		r = observe_stray(b, name, v, &o);
		if (r < 0)
			return r;
	}
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
	int r;

	if (!v) {
		r = observe_record(b, t, name, &o);
		/* Running, and nobody watches it: adopt it first (the daemon, not vmd plan). */
		if (r >= 0 && b->event &&
		    IN_SET(o.state, VM_STARTING, VM_RUNNING, VM_PAUSED, VM_STOPPING))
			o.unwatched = true;
		*ret = o;
		return r;
	}
	o.state = v->state;
	o.pid = v->state == VM_EXITED ? 0 : v->id.pid;
	o.generation = v->generation;
	o.started_at_usec = v->started_at_usec;
	o.exit_status = v->exit_status;
	vmm_job_report(v, &o);
	if (t->observed)
		t->observed(v, &o);
	r = v->state == VM_EXITED ? observe_stray(b, name, NULL, &o) : 0;
	if (r >= 0 && v->config)
		r = spec_copy(v->config, &o.config);
	if (r < 0) {
		vm_observed_done(&o);
		return r;
	}
	*ret = o;
	return 0;
}

void vmm_vm_refresh(Backend *b)
{
	void *v;

	for (size_t i = 0; hashmap_next(VMM_BACKEND(b)->vms, &i, &v);)
		vmm_job_refresh(v);
}

/* Exit */

/* What went wrong, in the VMM's own words if it left any: the last line of its log. */
static char *start_error(VmmVm *v)
{
	_cleanup_free_ char *path = vmm_vm_path(v->b, v->name, v->type->log), *log = NULL;
	char *line, *end, *m = NULL;

	if (path && read_file(path, 64 * 1024, &log, NULL) >= 0) {
		end = log + strlen(log);
		while (end > log && (end[-1] == '\n' || end[-1] == ' '))
			*--end = '\0';
		line = strrchr(log, '\n');
		line = line ? line + 1 : log;
		if (*line && asprintf(&m, "%s exited while starting: %s", v->type->display, line) >= 0)
			return m;
	}
	return asprintf(&m, "%s exited while starting", v->type->display) < 0 ? NULL : m;
}

static void vm_exited(VmmVm *v, int status)
{
	Backend *b = v->b;
	_cleanup_free_ char *sock = vmm_vm_path(b, v->name, v->type->socket),
			    *name = strdup(v->name), *reason = NULL;
	bool was_starting = v->state == VM_STARTING;

	if (was_starting)
		reason = start_error(v);
	if (v->type->exited)
		v->type->exited(v);
	vmm_api_disconnect(v);
	v->pid_source = sd_event_source_disable_unref(v->pid_source);
	if (v->pidfd >= 0)
		v->pidfd = (close(v->pidfd), -EBADF);
	v->state = VM_EXITED;
	v->exit_status = status;
	v->unresponsive = mfree(v->unresponsive);
	(void)vmm_vm_save(v);
	if (sock)
		(void)vmm_remove_stale_socket(b->run_dir, sock);
	/* A start that did not get through fails as such; any other exit is the VM's. */
	if (vmm_job_vm_exited(v, reason))
		return;
	if (b->callbacks.vm_exited && name)
		b->callbacks.vm_exited(b->callbacks.userdata, name, status, reason);
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
	_cleanup_free_ char *log = vmm_vm_path(v->b, v->name, v->type->log),
			    *out = v->type->out ? vmm_vm_path(v->b, v->name, v->type->out) : NULL;
	int r;

	if (!log || (v->type->out && !out))
		return -ENOMEM;
	if (v->type->prepare) {
		r = v->type->prepare(v);
		if (r < 0)
			return r;
	}
	r = v->type->argv(v, &argv);
	if (r < 0)
		return r;
	r = vmm_spawn_logging(argv, log, out, &v->id.pid, &v->pidfd);
	if (r < 0) {
		backend_set_error(v->b, "cannot run %s: %s", argv[0], strerror(-r));
		return r;
	}
	v->child = true;
	return vmm_identity(v->id.pid, &v->id);
}

int vmm_vm_start(Backend *b, const SandboxSpec *spec, uint64_t generation)
{
	const VmmVmType *t = VMM_BACKEND(b)->type;
	VmmBackend *vb = VMM_BACKEND(b);
	_cleanup_(vmm_vm_freep) VmmVm *v = NULL;
	_cleanup_free_ char *rec = NULL;
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
	/* Never a second VMM for one name, whatever the record says. */
	r = refuse_stray(b, spec->name);
	if (r < 0)
		return r;
	vm_forget(b, spec->name);
	v = vm_new(b, t, spec->name);
	rec = vmm_vm_path(b, spec->name, "vm.json");
	if (!v || !rec)
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
		r = hashmap_put(vb->vms, v->name, v);
	if (r < 0) {
		/* Nothing runs for it (it is killed, and reaped once it is gone), and no record. */
		if (v->pidfd >= 0)
			(void)vmm_kill(v->pidfd, SIGKILL);
		(void)unlink(rec);
		return r;
	}
	r = vmm_job_begin(v, &v->job, BACKEND_OP_START, VMM_PHASE_SPAWN);
	TAKE_PTR(v);
	return r < 0 ? r : 1;
}

/* Adopt */

int vmm_vm_adopt(Backend *b, const char *name)
{
	const VmmVmType *t = VMM_BACKEND(b)->type;
	_cleanup_(json_decrefp) json_t *j = NULL;
	_cleanup_(vmm_vm_freep) VmmVm *v = NULL;
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	VmmVm *p;
	int r;

	if (!b->event)
		return -EROFS;
	if (vmm_vm_get(b, name))
		return 0; /* watched already */
	r = record_load(b, t, name, &j);
	if (r < 0)
		return IN_SET(-r, ENOENT, EMEDIUMTYPE) ? -ESTALE : r;
	r = vm_from_record(b, t, name, j, &v);
	if (r < 0)
		return r;
	/* Identity: this boot, and the very process vmd started (pid reuse is caught here). */
	if (!vm_is_alive(v))
		return -ESTALE;
	v->pidfd = vmm_pidfd_open(v->id.pid);
	if (v->pidfd < 0)
		return v->pidfd;
	if (!vmm_identity_matches(&v->id)) /* the pid was reused before the pidfd was taken */
		return -ESTALE;
	r = watch_exit(v);
	if (r >= 0)
		r = hashmap_put(VMM_BACKEND(b)->vms, v->name, v);
	if (r < 0)
		return r;
	p = TAKE_PTR(v);

	if (p->state == VM_STARTING)
		/* The vmd before died while it started: see the start through, from where it is. */
		r = vmm_job_begin(p, &p->job, BACKEND_OP_START, VMM_PHASE_API_UP);
	else if (p->state == VM_STOPPING) {
		/* ... while it stopped: the rest of its stopTimeout, then forced. */
		p->stop_requested = true;
		if (p->job.stop_deadline == 0 ||
		    p->job.stop_deadline > now + SPEC_STOP_TIMEOUT_MAX_MS * 1000)
			p->job.stop_deadline = now;
		r = vmm_job_begin(p, &p->job, BACKEND_OP_STOP, VMM_PHASE_SHUTDOWN);
	} else {
		/* Its API must answer, as that VM: until then nothing is done to it. */
		r = vmm_job_begin(p, &p->job, BACKEND_OP_ADOPT, VMM_PHASE_IDENTITY);
		if (r >= 0)
			return 1;
	}
	if (r < 0) {
		vm_forget(b, name);
		return r;
	}
	return 0;
}

/* Operations on a VM that runs */

/* The main job of name's VM, for op of generation: when it runs and no other job does. */
static int prepare(Backend *b, const char *name, uint64_t generation, VmmJob **ret)
{
	VmmVm *v = vmm_vm_get(b, name);

	if (!v || !IN_SET(v->state, VM_RUNNING, VM_PAUSED))
		return -ESRCH;
	if (v->job.type != BACKEND_OP_NONE)
		return -EBUSY;
	v->job.generation = generation;
	*ret = &v->job;
	return 0;
}

/* Begin j, prepared, as op on device (or NULL): 1, it completes later (op_done). */
static int launch(VmmJob *j, BackendOp op, const char *device)
{
	int r;

	if (device)
		snprintf(j->device, sizeof(j->device), "%s", device);
	r = vmm_job_begin(j->vm, j, op, VMM_PHASE_REQUEST);
	return r < 0 ? r : 1;
}

int vmm_vm_stop(Backend *b, const char *name, uint64_t timeout_ms, bool force)
{
	VmmVm *v = vmm_vm_get(b, name);
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	VmmJob *j;

	if (!v || v->state == VM_EXITED)
		return -ESRCH;
	j = &v->job;
	if (j->type == BACKEND_OP_STOP) {
		/* Stopping already: at once harder if asked, else it goes on as it is. */
		if (force && IN_SET(j->phase, VMM_PHASE_GRACEFUL, VMM_PHASE_SHUTDOWN))
			vmm_job_enter(v, j, VMM_PHASE_QUIT);
		return 1;
	}
	/* A stop supersedes whatever else is at work on the VM. */
	vmm_job_complete(v, j, -ECANCELED, NULL);
	vmm_job_complete(v, &v->unplug, -ECANCELED, NULL);
	if (j->type == BACKEND_OP_STOP)
		return 1; /* the guest turned out to be off: it is being ended already */
	j->was_paused = v->state == VM_PAUSED;
	/* A guest that has not booted cannot hear the button: it is forced. */
	force = force || v->state == VM_STARTING;
	j->stop_deadline = now + timeout_ms * 1000;
	v->stop_requested = true;
	v->state = VM_STOPPING;
	(void)vmm_job_begin(v, j, BACKEND_OP_STOP, force ? VMM_PHASE_QUIT : VMM_PHASE_GRACEFUL);
	(void)vmm_vm_save(v);
	return 1;
}

int vmm_vm_pause(Backend *b, const char *name)
{
	VmmJob *j;
	int r = prepare(b, name, 0, &j);

	return r < 0 ? r : launch(j, BACKEND_OP_PAUSE, NULL);
}

int vmm_vm_resume(Backend *b, const char *name)
{
	VmmJob *j;
	int r = prepare(b, name, 0, &j);

	return r < 0 ? r : launch(j, BACKEND_OP_RESUME, NULL);
}

static int disk_job(Backend *b, const char *name, const DiskSpec *disk, uint64_t generation,
		    BackendOp op)
{
	VmmJob *j;
	int r = prepare(b, name, generation, &j);

	if (r < 0)
		return r;
	j->disk = *disk;
	j->disk.path = strdup(disk->path);
	return j->disk.path ? launch(j, op, disk->id) : -ENOMEM;
}

int vmm_vm_disk_add(Backend *b, const char *name, const DiskSpec *disk, uint64_t generation)
{
	return disk_job(b, name, disk, generation, BACKEND_OP_DISK_ADD);
}

int vmm_vm_disk_update(Backend *b, const char *name, const DiskSpec *disk, uint64_t generation)
{
	return disk_job(b, name, disk, generation, BACKEND_OP_DISK_UPDATE);
}

int vmm_vm_net_add(Backend *b, const char *name, const NetSpec *net, uint64_t generation)
{
	VmmJob *j;
	int r = prepare(b, name, generation, &j);

	if (r < 0)
		return r;
	j->net = *net;
	return launch(j, BACKEND_OP_NET_ADD, net->id);
}

/* A removal waits on the guest, beside whatever else the VM is asked meanwhile. */
static int remove_device(Backend *b, const char *name, BackendOp op, const char *id,
			 uint64_t generation)
{
	VmmVm *v = vmm_vm_get(b, name);
	bool has;

	if (!v || !IN_SET(v->state, VM_RUNNING, VM_PAUSED))
		return -ESRCH;
	has = op == BACKEND_OP_DISK_REMOVE ? spec_find_disk(v->config, id) != NULL
					   : spec_find_net(v->config, id) != NULL;
	if (!has) {
		v->generation = generation;
		return vmm_vm_save(v); /* not there: nothing to remove */
	}
	if (v->unplug.type != BACKEND_OP_NONE)
		return -EBUSY;
	v->unplug.generation = generation;
	return launch(&v->unplug, op, id);
}

int vmm_vm_disk_remove(Backend *b, const char *name, const char *id, uint64_t generation)
{
	return remove_device(b, name, BACKEND_OP_DISK_REMOVE, id, generation);
}

int vmm_vm_net_remove(Backend *b, const char *name, const char *id, uint64_t generation)
{
	return remove_device(b, name, BACKEND_OP_NET_REMOVE, id, generation);
}

int vmm_vm_resize(Backend *b, const char *name, unsigned vcpus, uint64_t memory, uint64_t generation)
{
	VmmJob *j;
	int r = prepare(b, name, generation, &j);

	if (r < 0)
		return r;
	j->vcpus = vcpus;
	j->memory = memory;
	return launch(j, BACKEND_OP_RESIZE, NULL);
}

int vmm_vm_cleanup(Backend *b, const char *name)
{
	const VmmVmType *t = VMM_BACKEND(b)->type;
	const char *const files[] = { "vm.json", t->socket, t->log, "console.log", "console.log.1" };
	VmmVm *v = vmm_vm_get(b, name);
	int r;

	if (v && v->state != VM_EXITED)
		return -EBUSY;
	/* What a stray VMM uses (its socket, its console) stays. */
	r = refuse_stray(b, name);
	if (r < 0)
		return r;
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
