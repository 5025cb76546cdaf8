/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>

#include "log.h"
#include "provision.h"
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
	vmm_boot_files_put(v);
	vmm_job_free(&v->job);
	vmm_job_free(&v->unplug);
	vmm_job_free(&v->observe);
	qmp_free(v->qmp);
	console_free(v->console);
	guest_agent_free(v->agent);
	sd_event_source_disable_unref(v->pid_source);
	sd_event_source_disable_unref(v->observe_retry);
	sd_event_source_disable_unref(v->mark_source);
	if (v->pidfd >= 0)
		close(v->pidfd);
	sandbox_spec_free(v->config);
	free(v->unresponsive);
	free(v->vmm_version);
	free(v->dir);
	free(v->name);
	return mfree(v);
}

void vmm_backend_done(Backend *b)
{
	VmmBackend *vb = VMM_BACKEND(b);
	void *v;

	/* Quietly: what is in flight is dropped, and the VMs run on for the next vmd. */
	for (size_t i = 0; hashmap_next(vb->vms, &i, &v);)
		vmm_vm_free(v);
	hashmap_free(vb->vms);
	vmm_strays_forget(vb);
	http_loop_free(vb->http);
	free(vb->binary);
}

void vmm_backend_reload(Backend *b)
{
	vmm_strays_forget(VMM_BACKEND(b));
}

VmmVm *vmm_vm_new(Backend *b, const VmmVmType *t, const char *name)
{
	_cleanup_(vmm_vm_freep) VmmVm *v = NULL;

	assert(t->size >= sizeof(VmmVm));
	v = calloc(1, t->size);
	if (!v)
		return NULL;
	v->b = b;
	v->type = t;
	v->pidfd = v->serial_fd = -EBADF;
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

int vmm_vm_set_version(VmmVm *v, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_vformat(&v->vmm_version, fmt, ap);
	va_end(ap);
	return v->vmm_version ? 0 : -ENOMEM;
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
	if (v->vmm_version && json_object_set_new(j, "vmmVersion", json_string(v->vmm_version)) < 0)
		return -ENOMEM;
	if (v->restoring && json_object_set_new(j, "restoring", json_true()) < 0)
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
	_cleanup_(vmm_vm_freep) VmmVm *v = vmm_vm_new(b, t, name);
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
	v->restoring = json_is_true(json_object_get(j, "restoring"));
	r = spec_from_json(json_object_get(j, "config"), &v->config);
	if (r < 0)
		return r;
	if (json_is_string(json_object_get(j, "vmmVersion"))) {
		v->vmm_version = strdup(json_string_value(json_object_get(j, "vmmVersion")));
		if (!v->vmm_version)
			return -ENOMEM;
	}
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
		r = vmm_stray_observe(b, name, NULL, &o);
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
		r = vmm_stray_observe(b, name, v, &o);
		if (r < 0)
			return r;
	}
	o.generation = v->generation;
	o.started_at_usec = v->started_at_usec;
	o.restoring = v->restoring && o.state != VM_EXITED;
	o.config = TAKE_PTR(v->config);
	o.vmm_version = TAKE_PTR(v->vmm_version);
	*ret = o;
	return 0;
}

/* What the guest agent says of each NIC of o->config. */
static int observe_agent(VmObserved *o, const GuestAgent *a)
{
	size_t n = o->config->n_networks;

	o->net_addresses = calloc(n ?: 1, sizeof(char *));
	if (!o->net_addresses)
		return -ENOMEM;
	o->n_net_addresses = n;
	for (size_t i = 0; i < n; i++)
		o->net_addresses[i] = guest_agent_addresses(a, o->config->networks[i].mac);
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
	o.restoring = v->restoring && v->state != VM_EXITED;
	o.generation = v->generation;
	o.started_at_usec = v->started_at_usec;
	o.exit_status = v->exit_status;
	vmm_job_report(v, &o);
	if (t->observed)
		t->observed(v, &o);
	r = v->state == VM_EXITED ? vmm_stray_observe(b, name, NULL, &o) : 0;
	if (r >= 0 && v->config)
		r = spec_copy(v->config, &o.config);
	if (r >= 0 && v->agent && o.config)
		r = observe_agent(&o, v->agent);
	if (r >= 0 && v->vmm_version && !(o.vmm_version = strdup(v->vmm_version)))
		r = -ENOMEM;
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

/* Exit (vmm-start.c watches for it) */

/*
 * What went wrong, in the VMM's own words if it left any: the last line of its log (which
 * each start begins anew). While starting, always something; after, NULL without words.
 */
static char *exit_reason(VmmVm *v, bool starting)
{
	_cleanup_free_ char *path = vmm_vm_path(v->b, v->name, v->type->log), *log = NULL;
	char *line, *end, *m = NULL;

	if (path && read_file(path, 64 * 1024, &log, NULL) >= 0) {
		end = log + strlen(log);
		while (end > log && (end[-1] == '\n' || end[-1] == ' '))
			*--end = '\0';
		line = strrchr(log, '\n');
		line = line ? line + 1 : log;
		if (*line && asprintf(&m, "%s exited%s: %s", v->type->display,
				      starting ? " while starting" : "", line) >= 0)
			return m;
	}
	if (!starting)
		return NULL;
	return asprintf(&m, "%s exited while starting", v->type->display) < 0 ? NULL : m;
}

void vmm_vm_exited(VmmVm *v, int status)
{
	Backend *b = v->b;
	_cleanup_free_ char *sock = vmm_vm_path(b, v->name, v->type->socket),
			    *name = strdup(v->name), *reason = NULL;
	bool was_starting = v->state == VM_STARTING;

	/* A VMM that exits with an error on its own says why, as a start that failed does. */
	if (was_starting || (status != 0 && !v->stop_requested))
		reason = exit_reason(v, was_starting);
	if (v->type->exited)
		v->type->exited(v);
	vmm_boot_files_put(v);
	/* The VMM read them at its start; nothing else has any use for them. */
	(void)provision_remove(v->dir);
	vmm_api_disconnect(v);
	v->console = console_free(v->console);
	v->agent = guest_agent_free(v->agent);
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
	r = vmm_vm_watch(v, true);
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

/* What the VM's config held outside vmd's files, freed by its type: the VM, or its record. */
static void release(Backend *b, const VmmVmType *t, const char *name)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	_cleanup_(vmm_vm_freep) VmmVm *rec = NULL;
	VmmVm *v = vmm_vm_get(b, name);

	if (!t->release)
		return;
	if (!v && record_load(b, t, name, &j) >= 0 && vm_from_record(b, t, name, j, &rec) >= 0)
		v = rec;
	if (v)
		t->release(v);
}

int vmm_vm_cleanup(Backend *b, const char *name)
{
	const VmmVmType *t = VMM_BACKEND(b)->type;
	const char *const files[] = { "vm.json",       t->socket,      t->log,	       CONSOLE_LOG,
				      CONSOLE_LOG_OLD, CONSOLE_SERIAL, CONSOLE_SOCKET, VMM_IMAGE_LOG };
	VmmVm *v = vmm_vm_get(b, name);
	int r;

	if (v && v->state != VM_EXITED)
		return -EBUSY;
	/* What a stray VMM uses (its socket, its console) stays. */
	r = vmm_stray_refuse(b, name);
	if (r < 0)
		return r;
	release(b, t, name);
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
	/* What a VM that ended while vmd was away left of its provisioning. */
	{
		_cleanup_free_ char *dir = vmm_vm_path(b, name, "");

		r = dir ? provision_remove(dir) : -ENOMEM;
		if (r < 0)
			return r;
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

int vmm_vm_agent_ping(Backend *b, const char *name, GuestAgentPingDone done, void *userdata)
{
	VmmVm *v = vmm_vm_get(b, name);

	if (!v)
		return done ? -ENOENT : 0;
	if (!v->agent)
		return done ? -ENOTCONN : 0; /* not running, or no guestAgent */
	return guest_agent_ping(v->agent, done, userdata);
}
