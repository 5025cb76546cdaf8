/* SPDX-License-Identifier: MIT */
/*
 * The noop backend: VMs that are only a file, <run-dir>/<name>/noop.json, so that the
 * daemon can be run and tested end to end without a VMM. A restarted vmd finds them there
 * and adopts them; a host reboot (a new boot id) ends them, as it would real VMs.
 *
 * Faults are injected through the sandbox's labels, read at each start:
 *   noop.vmd/fail-start: "N"     the first N starts of this spec generation fail
 *   noop.vmd/fail-ops: "N"       the first N other operations (pause, hot-plug...) fail
 *   noop.vmd/exit-after: "500ms" the VM exits on its own that long after it starts
 *   noop.vmd/exit-status: "N"    with this status (default 1)
 *   noop.vmd/stop-delay: "1s"    a graceful stop takes this long (forced off with status
 *                                137 after the stop's timeout, if that is shorter)
 *
 * Suspend writes a fake snapshot, noop-state.json in the dir it is given, and the VM
 * exits; restore refuses what a VMM would refuse: a dir without one, another sandbox's,
 * or other disks than the VM had. A restored VM goes on from what was saved: its
 * "restores" count, and its config, as it was.
 *
 * Its activity (suspendAfterIdle) is the number in <run-dir>/<name>/noop-activity, which a
 * test writes as a VMM's console and taps would count bytes and packets (0 if absent).
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "backend.h"
#include "hashmap.h"
#include "log.h"
#include "spec-json.h"
#include "util.h"

typedef struct NoopVm {
	char *name;
	bool watched;		/* started or adopted by this vmd */
	sd_event_source *timer; /* its exit, on its own or at the end of a stop */
	uint64_t fault_generation;
	unsigned fail_start, fail_ops; /* left to fail */
} NoopVm;

typedef struct ExitNote ExitNote;

typedef struct Noop {
	Hashmap *vms;	  /* name -> NoopVm: what this vmd watches, and faults to inject */
	ExitNote **notes; /* exits not told yet */
	size_t n_notes;
	char boot_id[64];
} Noop;

#define NOOP(b) ((Noop *)(b)->data)

static NoopVm *noop_vm_free(NoopVm *v)
{
	if (!v)
		return NULL;
	sd_event_source_disable_unref(v->timer);
	free(v->name);
	return mfree(v);
}

struct ExitNote {
	Backend *b;
	sd_event_source *source;
	int status;
	char name[];
};

static void exit_note_free(Backend *b, ExitNote *e)
{
	Noop *n = NOOP(b);

	for (size_t i = 0; i < n->n_notes; i++)
		if (n->notes[i] == e) {
			n->notes[i] = n->notes[--n->n_notes];
			break;
		}
	sd_event_source_disable_unref(e->source);
	free(e);
}

static int exit_note_fired(sd_event_source *s, void *userdata)
{
	ExitNote *e = userdata;

	(void)s;
	if (e->b->callbacks.vm_exited)
		e->b->callbacks.vm_exited(e->b->callbacks.userdata, e->name, e->status, NULL);
	exit_note_free(e->b, e);
	return 0;
}

/* Tell the daemon from the event loop, as a real VMM's exit would arrive: after the call. */
static int notify_exit(Backend *b, const char *name, int status)
{
	ExitNote *e, **notes;
	int r;

	if (!b->callbacks.vm_exited || !b->event)
		return 0;
	notes = reallocarray(NOOP(b)->notes, NOOP(b)->n_notes + 1, sizeof(ExitNote *));
	if (!notes)
		return -ENOMEM;
	NOOP(b)->notes = notes;
	e = malloc(sizeof(ExitNote) + strlen(name) + 1);
	if (!e)
		return -ENOMEM;
	*e = (ExitNote){ .b = b, .status = status };
	strcpy(e->name, name);
	r = sd_event_add_defer(b->event, &e->source, exit_note_fired, e);
	if (r < 0) {
		free(e);
		return r;
	}
	notes[NOOP(b)->n_notes++] = e;
	return 0;
}

static int noop_init(Backend *b)
{
	_cleanup_free_ char *id = NULL;

	NOOP(b)->vms = hashmap_new();
	if (!NOOP(b)->vms)
		return -ENOMEM;
	if (read_file("/proc/sys/kernel/random/boot_id", 64, &id, NULL) >= 0)
		snprintf(NOOP(b)->boot_id, sizeof(NOOP(b)->boot_id), "%.*s", (int)strcspn(id, "\n"),
			 id);
	return 0;
}

static void noop_done(Backend *b)
{
	void *v;

	for (size_t i = 0; hashmap_next(NOOP(b)->vms, &i, &v);)
		noop_vm_free(v);
	hashmap_free(NOOP(b)->vms);
	while (NOOP(b)->n_notes > 0)
		exit_note_free(b, NOOP(b)->notes[0]);
	free(NOOP(b)->notes);
}

static NoopVm *vm_get(Backend *b, const char *name, bool create)
{
	NoopVm *v = hashmap_get(NOOP(b)->vms, name);

	if (v || !create)
		return v;
	v = calloc(1, sizeof(*v));
	if (!v || !(v->name = strdup(name)) || hashmap_put(NOOP(b)->vms, v->name, v) < 0)
		return noop_vm_free(v);
	return v;
}

static char *state_path(Backend *b, const char *name)
{
	char *p = NULL;

	return asprintf(&p, "%s/%s/noop.json", b->run_dir, name) < 0 ? NULL : p;
}

static int state_load(Backend *b, const char *name, json_t **ret)
{
	_cleanup_free_ char *path = state_path(b, name);
	json_t *j;

	if (!path)
		return -ENOMEM;
	j = json_load_file(path, 0, NULL);
	if (!j)
		return access(path, F_OK) < 0 ? -ENOENT : -EBADMSG;
	*ret = j;
	return 0;
}

static int state_save(Backend *b, const char *name, json_t *j)
{
	_cleanup_free_ char *path = state_path(b, name), *dir = NULL, *text = NULL;
	int r;

	if (!path || asprintf(&dir, "%s/%s", b->run_dir, name) < 0)
		return -ENOMEM;
	/* As status.c makes the run dir's entries: 0750; what only vmd reads, 0600. */
	r = mkdir_p(dir, 0750);
	if (r < 0)
		return r;
	text = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
	if (!text)
		return -ENOMEM;
	return write_file_atomic(path, text, strlen(text), 0600, false);
}

static const char *label(const SandboxSpec *s, const char *key)
{
	for (size_t i = 0; i < s->n_labels; i++)
		if (streq(s->labels[i].key, key))
			return s->labels[i].value;
	return NULL;
}

/* "500ms", "2s": a label's duration in microseconds, 0 if absent or not one. */
static uint64_t label_usec(const SandboxSpec *s, const char *key)
{
	const char *v = label(s, key);
	char *end = NULL;
	unsigned long long n;

	if (!v)
		return 0;
	n = strtoull(v, &end, 10);
	if (streq(end, "ms"))
		return n * 1000;
	if (streq(end, "s"))
		return n * 1000000;
	return 0;
}

static int vm_exit_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* Arm the VM's timer to fire at realtime usec (its exit, or the end of a stop). */
static int arm_timer(Backend *b, const char *name, uint64_t at)
{
	NoopVm *v = vm_get(b, name, true);

	if (!v)
		return -ENOMEM;
	if (!b->event)
		return 0;
	v->timer = sd_event_source_disable_unref(v->timer);
	return sd_event_add_time(b->event, &v->timer, CLOCK_REALTIME, at, 1000, vm_exit_timer, b);
}

/* The VM exits with status: on its own, or at the end of a stop. */
static int vm_exit(Backend *b, const char *name, int status)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	int r;

	r = state_load(b, name, &j);
	if (r < 0)
		return r;
	json_object_set_new(j, "state", json_string("exited"));
	json_object_set_new(j, "exitStatus", json_integer(status));
	json_object_del(j, "exitAtUsec");
	r = state_save(b, name, j);
	if (r < 0)
		return r;
	return notify_exit(b, name, status);
}

static int vm_exit_timer(sd_event_source *s, uint64_t usec _unused_, void *userdata)
{
	Backend *b = userdata;
	NoopVm *v = NULL;
	void *p;
	int status = 1;

	for (size_t i = 0; hashmap_next(NOOP(b)->vms, &i, &p);)
		if (((NoopVm *)p)->timer == s)
			v = p;
	if (!v)
		return 0;
	v->timer = sd_event_source_disable_unref(v->timer);

	_cleanup_(json_decrefp) json_t *j = NULL;
	if (state_load(b, v->name, &j) == 0) {
		/* A stop that ran its course exits cleanly (or forced, after its timeout). */
		if (streq_ptr(json_string_value(json_object_get(j, "state")), "stopping")) {
			status = (int)json_integer_value(json_object_get(j, "exitStatusOnStop"));
			if (status != 0)
				log_fields(LOG_WARNING,
					   &(LogFields){ .sandbox = v->name,
							 .backend = "noop",
							 .action = "stop",
							 .result = "forced",
							 .message_id = LOG_MESSAGE_VMM },
					   "did not stop within its stopTimeout; forcing it off");
		} else
			status = (int)json_integer_value(json_object_get(j, "exitStatusOnExit"));
	}
	(void)vm_exit(b, v->name, status);
	return 0;
}

static int noop_observe(Backend *b, const char *name, VmObserved *ret)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	VmObserved o = { .state = VM_ABSENT };
	const char *state, *boot;
	int r;

	r = state_load(b, name, &j);
	if (r == -ENOENT) {
		*ret = o;
		return 0;
	}
	if (r < 0)
		return r;

	state = json_string_value(json_object_get(j, "state"));
	o.state = vm_state_from_string(state);
	if (o.state < 0 || o.state == VM_ABSENT)
		return -EBADMSG;
	boot = json_string_value(json_object_get(j, "bootId"));
	if (o.state != VM_EXITED && !streq_ptr(boot, NOOP(b)->boot_id)) {
		/* The host rebooted since: whatever ran is gone. */
		o.state = VM_EXITED;
		o.exit_status = -1;
	} else
		o.exit_status = (int)json_integer_value(json_object_get(j, "exitStatus"));
	o.generation = (uint64_t)json_integer_value(json_object_get(j, "generation"));
	o.started_at_usec = (uint64_t)json_integer_value(json_object_get(j, "startedAtUsec"));
	if (b->event && o.state != VM_EXITED) {
		NoopVm *v = vm_get(b, name, false);

		o.unwatched = !v || !v->watched;
	}
	r = spec_from_json(json_object_get(j, "config"), &o.config);
	if (r < 0)
		return r;
	*ret = o;
	return 0;
}

static int noop_list(Backend *b, char ***ret_names, size_t *ret_n)
{
	return backend_list_runtime_dirs(b, "noop.json", ret_names, ret_n);
}

static int watch(Backend *b, const char *name)
{
	NoopVm *v;

	if (!b->event)
		return 0;
	v = vm_get(b, name, true);
	if (!v)
		return -ENOMEM;
	v->watched = true;
	return 0;
}

static int noop_adopt(Backend *b, const char *name)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	json_t *exit_at;
	int r;

	r = state_load(b, name, &j);
	if (r < 0)
		return r;
	/* Ours: written by the noop backend, on this boot. */
	if (!streq_ptr(json_string_value(json_object_get(j, "vmm")), "noop") ||
	    !streq_ptr(json_string_value(json_object_get(j, "bootId")), NOOP(b)->boot_id))
		return -ESTALE;
	r = watch(b, name);
	if (r < 0)
		return r;
	exit_at = json_object_get(j, "exitAtUsec");
	if (exit_at)
		return arm_timer(b, name, (uint64_t)json_integer_value(exit_at));
	return 0;
}

/* Whether an injected fault fails this operation. */
static bool fault(Backend *b, const char *name, bool is_start)
{
	NoopVm *v = vm_get(b, name, false);
	unsigned *left;

	if (!v)
		return false;
	left = is_start ? &v->fail_start : &v->fail_ops;
	if (*left == 0)
		return false;
	(*left)--;
	return true;
}

/* A VM that runs, in state, restores times back from a snapshot (0: booted). */
static int boot(Backend *b, const SandboxSpec *spec, uint64_t generation, const char *state,
		json_int_t restores)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	json_t *config;
	uint64_t now = now_usec(CLOCK_REALTIME), exit_after = label_usec(spec, "noop.vmd/exit-after");
	const char *status = label(spec, "noop.vmd/exit-status");
	NoopVm *v;
	int r;

	if (label(spec, "noop.vmd/fail-start") || label(spec, "noop.vmd/fail-ops") || exit_after) {
		v = vm_get(b, spec->name, true);
		if (!v)
			return -ENOMEM;
		if (v->fault_generation != generation) {
			/* Faults count from each new spec generation. */
			v->fault_generation = generation;
			v->fail_start = (unsigned)atoi(label(spec, "noop.vmd/fail-start") ?: "0");
			v->fail_ops = (unsigned)atoi(label(spec, "noop.vmd/fail-ops") ?: "0");
		}
	}
	if (fault(b, spec->name, true))
		return -EIO;
	r = watch(b, spec->name);
	if (r < 0)
		return r;

	config = spec_to_json(spec);
	j = json_pack("{s:s, s:s, s:s, s:I, s:I, s:i, s:o}", "vmm", "noop", "bootId",
		      NOOP(b)->boot_id, "state", state, "generation", (json_int_t)generation,
		      "startedAtUsec", (json_int_t)now, "exitStatusOnExit",
		      status ? atoi(status) : 1, "config", config);
	if (j && restores)
		json_object_set_new(j, "restores", json_integer(restores));
	if (!j)
		return -ENOMEM;
	if (exit_after) {
		json_object_set_new(j, "exitAtUsec", json_integer((json_int_t)(now + exit_after)));
		r = arm_timer(b, spec->name, now + exit_after);
		if (r < 0)
			return r;
	}
	return state_save(b, spec->name, j);
}

static int noop_start(Backend *b, const SandboxSpec *spec, uint64_t generation)
{
	return boot(b, spec, generation, "running", 0);
}

/* Load a running VM's state for an operation, failing it when a fault says so. */
static int load_for_op(Backend *b, const char *name, json_t **ret)
{
	int r;

	if (fault(b, name, false))
		return -EIO;
	r = state_load(b, name, ret);
	if (r == -ENOENT)
		return -ESRCH;
	return r;
}

static int noop_stop(Backend *b, const char *name, uint64_t timeout_ms, bool force)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	SandboxSpec *config = NULL;
	uint64_t delay = 0, now = now_usec(CLOCK_REALTIME);
	bool forced;
	int r;

	r = load_for_op(b, name, &j);
	if (r < 0)
		return r;
	if (!force && spec_from_json(json_object_get(j, "config"), &config) == 0) {
		delay = label_usec(config, "noop.vmd/stop-delay");
		sandbox_spec_free(config);
	}
	if (delay == 0 || !b->event)
		return vm_exit(b, name, force ? 137 : 0);

	/* A guest slower than the stop's timeout is forced off when it runs out. */
	forced = delay > timeout_ms * 1000;
	if (forced)
		delay = timeout_ms * 1000;
	json_object_set_new(j, "state", json_string("stopping"));
	json_object_set_new(j, "exitAtUsec", json_integer((json_int_t)(now + delay)));
	json_object_set_new(j, "exitStatusOnStop", json_integer(forced ? 137 : 0));
	r = state_save(b, name, j);
	if (r < 0)
		return r;
	return arm_timer(b, name, now + delay);
}

static int set_state(Backend *b, const char *name, const char *state)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	int r = load_for_op(b, name, &j);

	if (r < 0)
		return r;
	json_object_set_new(j, "state", json_string(state));
	return state_save(b, name, j);
}

static int noop_pause(Backend *b, const char *name)
{
	return set_state(b, name, "paused");
}

static int noop_resume(Backend *b, const char *name)
{
	return set_state(b, name, "running");
}

/* Change a running VM's config with edit, and record the generation it now matches. */
static int edit_config(Backend *b, const char *name, uint64_t generation,
		       int (*edit)(SandboxSpec *s, const void *arg), const void *arg)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	_cleanup_(sandbox_spec_freep) SandboxSpec *s = NULL;
	json_t *config;
	int r;

	r = load_for_op(b, name, &j);
	if (r < 0)
		return r;
	r = spec_from_json(json_object_get(j, "config"), &s);
	if (r < 0)
		return r;
	r = edit(s, arg);
	if (r < 0)
		return r;
	config = spec_to_json(s);
	if (!config)
		return -ENOMEM;
	json_object_set_new(j, "config", config);
	json_object_set_new(j, "generation", json_integer((json_int_t)generation));
	return state_save(b, name, j);
}

static int add_disk(SandboxSpec *s, const void *arg)
{
	return spec_add_disk(s, arg);
}

static int remove_disk(SandboxSpec *s, const void *arg)
{
	return spec_remove_disk(s, arg);
}

static int add_net(SandboxSpec *s, const void *arg)
{
	return spec_add_net(s, arg);
}

static int remove_net(SandboxSpec *s, const void *arg)
{
	return spec_remove_net(s, arg);
}

typedef struct Size {
	unsigned vcpus;
	uint64_t memory;
} Size;

static int set_size(SandboxSpec *s, const void *arg)
{
	const Size *z = arg;

	s->vcpus = z->vcpus;
	s->memory = z->memory;
	return 0;
}

static int noop_disk_add(Backend *b, const char *name, const DiskSpec *disk, uint64_t generation)
{
	return edit_config(b, name, generation, add_disk, disk);
}

static int noop_disk_remove(Backend *b, const char *name, const char *id, uint64_t generation)
{
	return edit_config(b, name, generation, remove_disk, id);
}

static int noop_net_add(Backend *b, const char *name, const NetSpec *net, uint64_t generation)
{
	return edit_config(b, name, generation, add_net, net);
}

static int noop_net_remove(Backend *b, const char *name, const char *id, uint64_t generation)
{
	return edit_config(b, name, generation, remove_net, id);
}

static int noop_resize(Backend *b, const char *name, unsigned vcpus, uint64_t memory,
		       uint64_t generation)
{
	return edit_config(b, name, generation, set_size, &(Size){ vcpus, memory });
}

#define NOOP_SNAPSHOT "noop-state.json"

static char *snapshot_file(const char *dir)
{
	char *p = NULL;

	return asprintf(&p, "%s/" NOOP_SNAPSHOT, dir) < 0 ? NULL : p;
}

/* Whether dir is an empty dir, as a VMM wants the one it saves into. */
static int dir_is_empty(const char *dir)
{
	_cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *e;
	DIR *d;
	int r = 0;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d)
		return -errno;
	TAKE_FD(fd);
	while ((e = readdir(d)))
		if (!streq(e->d_name, ".") && !streq(e->d_name, ".."))
			r = -ENOTEMPTY;
	closedir(d);
	return r;
}

static int noop_suspend(Backend *b, const char *name, const char *dir)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	_cleanup_free_ char *path = snapshot_file(dir), *text = NULL;
	const char *state;
	int r;

	if (!path)
		return -ENOMEM;
	r = load_for_op(b, name, &j);
	if (r < 0)
		return r;
	state = json_string_value(json_object_get(j, "state"));
	if (!streq_ptr(state, "running") && !streq_ptr(state, "paused"))
		return -ESRCH;
	r = dir_is_empty(dir);
	if (r < 0) {
		backend_set_error(b, "cannot save into %s: %s", dir, strerror(-r));
		return r;
	}
	/* The saved guest: what it ran, and how often it came back from a snapshot. */
	json_object_set_new(j, "restores",
			    json_integer(json_integer_value(json_object_get(j, "restores"))));
	json_object_set_new(j, "name", json_string(name));
	text = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
	if (!text)
		return -ENOMEM;
	r = write_file_atomic(path, text, strlen(text), 0600, false);
	if (r < 0) {
		backend_set_error(b, "cannot write %s: %s", path, strerror(-r));
		return r;
	}
	/* Its VMM is gone with the save: exited, and no vm_exited for it. */
	json_object_set_new(j, "state", json_string("exited"));
	json_object_set_new(j, "exitStatus", json_integer(0));
	json_object_del(j, "exitAtUsec");
	json_object_del(j, "name");
	return state_save(b, name, j);
}

/* Whether the spec has the disks the snapshot's VM had, each with its path. */
static bool same_disks(const SandboxSpec *a, const SandboxSpec *b)
{
	if (a->n_disks != b->n_disks)
		return false;
	for (size_t i = 0; i < a->n_disks; i++) {
		const DiskSpec *d = spec_find_disk(b, a->disks[i].id);

		if (!d || !streq_ptr(d->path, a->disks[i].path) ||
		    !streq_ptr(d->image, a->disks[i].image))
			return false;
	}
	return true;
}

static int noop_restore(Backend *b, const SandboxSpec *spec, uint64_t generation, const char *dir)
{
	_cleanup_(json_decrefp) json_t *saved = NULL;
	_cleanup_(sandbox_spec_freep) SandboxSpec *had = NULL;
	_cleanup_free_ char *path = snapshot_file(dir);
	json_int_t restores;
	int r;

	if (!path)
		return -ENOMEM;
	saved = json_load_file(path, 0, NULL);
	if (!saved) {
		backend_set_error(b, "no noop snapshot in %s", dir);
		return -ENOENT;
	}
	if (!streq_ptr(json_string_value(json_object_get(saved, "name")), spec->name)) {
		backend_set_error(b, "the snapshot in %s is another sandbox's", dir);
		return -EINVAL;
	}
	r = spec_from_json(json_object_get(saved, "config"), &had);
	if (r < 0)
		return -EBADMSG;
	if (!same_disks(spec, had)) {
		backend_set_error(b, "the snapshot in %s has other disks than the spec", dir);
		return -EINVAL;
	}
	/* The guest's own memory, that a boot resets: how often it came back. */
	restores = json_integer_value(json_object_get(saved, "restores")) + 1;
	return boot(b, spec, generation, spec->state == SANDBOX_PAUSED ? "paused" : "running",
		    restores);
}

static int noop_cleanup(Backend *b, const char *name)
{
	_cleanup_free_ char *path = state_path(b, name);

	noop_vm_free(hashmap_remove(NOOP(b)->vms, name));
	if (!path)
		return -ENOMEM;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

static int noop_activity(Backend *b, const char *name, uint64_t *ret)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	_cleanup_free_ char *path = NULL, *text = NULL;
	int r = state_load(b, name, &j);

	if (r < 0)
		return r;
	if (asprintf(&path, "%s/%s/noop-activity", b->run_dir, name) < 0)
		return -ENOMEM;
	*ret = read_file(path, 32, &text, NULL) < 0 ? 0 : strtoull(text, NULL, 10);
	return 0;
}

const BackendOps backend_noop_ops = {
	.name = "noop",
	.caps = BACKEND_CAP_PAUSE | BACKEND_CAP_DISK_HOTPLUG | BACKEND_CAP_NET_HOTPLUG |
		BACKEND_CAP_RESIZE | BACKEND_CAP_SUSPEND,
	.data_size = sizeof(Noop),
	.init = noop_init,
	.done = noop_done,
	.observe = noop_observe,
	.list = noop_list,
	.adopt = noop_adopt,
	.start = noop_start,
	.stop = noop_stop,
	.pause = noop_pause,
	.resume = noop_resume,
	.disk_add = noop_disk_add,
	.disk_remove = noop_disk_remove,
	.net_add = noop_net_add,
	.net_remove = noop_net_remove,
	.resize = noop_resize,
	.suspend = noop_suspend,
	.restore = noop_restore,
	.cleanup = noop_cleanup,
	.activity = noop_activity,
};
