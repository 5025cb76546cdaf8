/* SPDX-License-Identifier: MIT */
/*
 * state: suspended (docs/sandbox-file.md): the planner's rows for a sandbox with a
 * snapshot and one asked to suspend; the snapshot store (complete or absent); and the real
 * daemon on the noop backend, whose suspend writes a fake snapshot and whose restore
 * refuses what a VMM would: suspended, woken, across restarts of vmd, its file removed, its
 * disks changed meanwhile, a failed save. Waits are bounded (a failure, not a speed claim).
 */
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "daemon-fixture.h"
#include "helpers.h"
#include "plan.h"
#include "qemu-fixture.h"
#include "snapshot.h"
#include "spec-json.h"
#include "spec-yaml.h"
#include "status.h"
#include "util.h"

#define CAPS (BACKEND_CAP_PAUSE | BACKEND_CAP_SUSPEND)

/* The planner */

#define spec_of fixture_spec_of

typedef struct Row {
	const char *what;
	const char *want; /* lines under spec:, NULL: its file is gone */
	VmState state;
	const char *saved; /* the snapshot's config (lines under spec:), NULL: no snapshot */
	BackendCaps caps;
	const char *expect;
	bool restart_required;
	bool restoring; /* its VMM was restoring when a vmd died */
} Row;

#define D1 "  disks: [{id: root, path: /d/root.raw}]\n"
#define D2 "  disks: [{id: root, path: /d/other.raw}]\n"

static const Row rows[] = {
	{ "running, suspend asked", "  state: suspended\n", VM_RUNNING, .expect = "suspend" },
	{ "paused, suspend asked", "  state: suspended\n", VM_PAUSED, .expect = "suspend" },
	{ "a change waits for the wake", "  state: suspended\n  vcpus: 2\n" D1, VM_RUNNING,
	  .expect = "suspend" },
	{ "no capability, nothing", "  state: suspended\n", VM_RUNNING, .caps = BACKEND_CAP_PAUSE,
	  .expect = "" },
	{ "never ran: nothing to save", "  state: suspended\n", VM_ABSENT, .expect = "" },
	{ "suspended stays", "  state: suspended\n", VM_EXITED, "", .expect = "" },
	{ "woken", "", VM_EXITED, "", .expect = "wake" },
	{ "woken paused", "  state: paused\n", VM_ABSENT, "", .expect = "wake" },
	{ "woken with its devices, the rest after", "  vcpus: 2\n" D1, VM_EXITED, D1,
	  .expect = "wake" },
	{ "stopped: dropped", "  state: stopped\n", VM_EXITED, "", .expect = "drop-snapshot" },
	{ "file removed: dropped", NULL, VM_EXITED, "", .expect = "drop-snapshot" },
	{ "disks changed, on-next-boot: stays", D2, VM_EXITED, D1, .expect = "",
	  .restart_required = true },
	{ "disk added, on-next-boot: stays", D1, VM_EXITED, "", .expect = "",
	  .restart_required = true },
	{ "disks changed, restart: afresh", "  updatePolicy: restart\n" D2, VM_EXITED, D1,
	  .expect = "drop-snapshot start" },
	{ "disks changed, restart, paused: afresh", "  updatePolicy: restart\n  state: paused\n" D2,
	  VM_EXITED, D1, .expect = "drop-snapshot start pause" },
	{ "runs again (a vmd died before the drop)", "", VM_RUNNING, "", .expect = "drop-snapshot" },
	{ "runs again, its file gone", NULL, VM_RUNNING, "", .expect = "drop-snapshot stop" },
	{ "a wake cut short: again", "", VM_PAUSED, "", .expect = "stop", .restoring = true },
};

static void format_plan(const Plan *p, char *buf, size_t size)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < p->n_actions && o < size; i++)
		o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? " " : "",
				      action_type_to_string(p->actions[i].type));
}

static void test_plan_rows(void **state _unused_)
{
	for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
		const Row *row = &rows[i];
		_cleanup_(sandbox_spec_freep) SandboxSpec *want =
			row->want ? spec_of(row->want) : NULL;
		_cleanup_(sandbox_spec_freep) SandboxSpec *have = spec_of(row->want ?: "");
		Snapshot snap = { .backend = BACKEND_NOOP, .generation = 1 };
		VmObserved o = { .state = row->state, .generation = 2, .restoring = row->restoring };
		PlanInput in = {
			.desired = want,
			.generation = 2,
			.observed = &o,
			.caps = row->caps ?: CAPS,
			.desired_since = 0,
		};
		char got[256];
		Plan p;

		if (row->saved) {
			snap.config = spec_of(row->saved);
			in.snapshot = &snap;
		}
		if (IN_SET(row->state, VM_RUNNING, VM_PAUSED))
			o.config = have;
		plan_sandbox(&in, 10000, 0, &p);
		format_plan(&p, got, sizeof(got));
		if (!streq(got, row->expect) || p.restart_required != row->restart_required)
			fail_msg("%s: planned '%s' (restart required %d), expected '%s' (%d)",
				 row->what, got, p.restart_required, row->expect,
				 row->restart_required);
		sandbox_spec_free(snap.config);
	}
}

/* Dropping a snapshot loses a guest's state: it waits out the grace window. */
static void test_plan_drop_waits(void **state _unused_)
{
	_cleanup_(sandbox_spec_freep) SandboxSpec *want = spec_of("  state: stopped\n");
	Snapshot snap = { .backend = BACKEND_NOOP, .config = spec_of("") };
	VmObserved o = { .state = VM_EXITED };
	PlanInput in = {
		.desired = want, .observed = &o, .caps = CAPS, .desired_since = 9000, .snapshot = &snap
	};
	Plan p;

	plan_sandbox(&in, 10000, 2000, &p);
	assert_int_equal(p.n_actions, 0);
	assert_true(p.held);
	assert_int_equal(p.wake_at, 11000);
	sandbox_spec_free(snap.config);
}

/*
 * A backend without BACKEND_CAP_SUSPEND: the file is refused where it says so. Which one
 * lacks it changes as backends gain it (Cloud Hypervisor and Firecracker have, i18-sims):
 * the first without it, and once every backend has it, the file loads on each.
 */
static void test_validate(void **state _unused_)
{
	const SpecLoadOptions opts = backend_spec_load_options(BACKEND_NOOP);
	BackendKind k = 0;

	while (k < _BACKEND_KIND_MAX && backend_ops[k]->caps & BACKEND_CAP_SUSPEND)
		k++;
	for (BackendKind b = k < _BACKEND_KIND_MAX ? k : 0; b < _BACKEND_KIND_MAX; b++) {
		_cleanup_(diag_list_done) DiagList diags = {};
		_cleanup_(sandbox_spec_freep) SandboxSpec *s = NULL;
		_cleanup_free_ char *text = NULL, *want = NULL;
		int r;

		assert_true(asprintf(&text,
				     "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n"
				     "  backend: %s\n  memory: 64Mi\n"
				     "  kernel: /boot/vmlinuz\n  state: suspended\n",
				     backend_kind_to_string(b)) > 0);
		r = spec_load_buffer("web.yaml", text, strlen(text), &opts, &s, &diags);
		if (k == _BACKEND_KIND_MAX) {
			assert_int_equal(r, 0);
			assert_int_equal(s->state, SANDBOX_SUSPENDED);
			continue;
		}
		assert_int_equal(r, -EINVAL);
		assert_int_equal(diags.n, 1);
		assert_int_equal(diags.items[0].line, 7);
		assert_int_equal(diags.items[0].column, 10);
		assert_true(
			asprintf(&want,
				 "spec.state: backend '%s' cannot suspend a VM to disk; use running, paused or stopped",
				 backend_kind_to_string(b)) > 0);
		assert_string_equal(diags.items[0].message, want);
		assert_null(s);
		break;
	}
}

/* The store: complete or absent */

static void test_store(void **state _unused_)
{
	char *dir = test_tmpdir();
	_cleanup_free_ char *new1 = NULL, *new2 = NULL, *new3 = NULL, *cur = NULL, *leftover = NULL,
			    *text = NULL, *pending = NULL;
	_cleanup_(sandbox_spec_freep) SandboxSpec *config = spec_of(D1);
	Snapshot what = { .backend = BACKEND_NOOP, .generation = 3, .config = config };
	Snapshot *got = NULL;

	assert_int_equal(snapshot_load(dir, "web", true, &got), -ENOENT);
	assert_int_equal(snapshot_begin(dir, "web", &what, (uid_t)-1, (gid_t)-1, &new1), 0);
	test_write_str(new1, "state", "first");
	/* Not complete: no snapshot yet. */
	assert_int_equal(snapshot_load(dir, "web", false, &got), -ENOENT);
	assert_int_equal(snapshot_commit(dir, "web", new1, &what, false, &got), 0);
	assert_int_equal(got->generation, 3);
	assert_int_equal(got->size, 5);
	assert_true(got->taken_at_usec > 0);
	got = snapshot_free(got);

	/* A second one takes the place of the first, whole. */
	assert_int_equal(snapshot_begin(dir, "web", &what, (uid_t)-1, (gid_t)-1, &new2), 0);
	test_write_str(new2, "state", "second!");
	what.generation = 4;
	assert_int_equal(snapshot_commit(dir, "web", new2, &what, false, NULL), 0);
	assert_int_equal(access(new2, F_OK), -1);
	cur = path_in(dir, "snapshots/web/current/state");
	text = test_read_file(cur, NULL);
	assert_string_equal(text, "second!");

	/* What a kill left of a save goes at the next load. */
	leftover = path_in(dir, "snapshots/web/.new-abcdef");
	assert_int_equal(mkdir(leftover, 0700), 0);
	test_write_str(leftover, "state", "half");
	assert_int_equal(snapshot_load(dir, "web", true, &got), 0);
	assert_int_equal(got->generation, 4);
	assert_int_equal(got->size, 7); /* what the backend wrote, not the manifest */
	assert_int_equal(got->config->n_disks, 1);
	assert_int_equal(access(leftover, F_OK), -1);
	got = snapshot_free(got);

	/* One its backend marked complete, whose op_done a kill of vmd cut off: committed. */
	what.generation = 5;
	assert_int_equal(snapshot_begin(dir, "web", &what, (uid_t)-1, (gid_t)-1, &new3), 0);
	test_write_str(new3, "state", "third, whole");
	test_write_str(new3, SNAPSHOT_COMPLETE, "");
	assert_int_equal(snapshot_load(dir, "web", true, &got), 0);
	assert_int_equal(got->generation, 5);
	assert_int_equal(got->size, 12);
	assert_int_equal(access(new3, F_OK), -1);
	got = snapshot_free(got);
	pending = path_in(dir, "snapshots/web/%s.json", strrchr(new3, '/') + 1);
	assert_int_equal(access(pending, F_OK), -1);

	assert_int_equal(snapshot_remove(dir, "web"), 0);
	assert_int_equal(snapshot_load(dir, "web", true, &got), -ENOENT);
	test_tmpdir_remove(dir);
}

/* The daemon on noop */

#define NOOP_SPEC FIXTURE_NOOP_SPEC "  disks: [{id: root, path: /d/root.raw}]\n"

static void put_state(Fixture *f, const char *extra)
{
	_cleanup_free_ char *text = NULL;

	assert_true(asprintf(&text, NOOP_SPEC "%s", extra) > 0);
	fixture_put(f, "web", text);
}

static bool suspended(json_t *s, const void *arg _unused_)
{
	json_t *snap = s ? json_object_get(s, "snapshot") : NULL;

	return phase_is(s, "Suspended") && json_is_object(snap) &&
	       json_integer_value(json_object_get(snap, "size")) > 0 &&
	       json_is_string(json_object_get(snap, "takenAt")) &&
	       streq(status_condition(s, "Running", "reason"), "Suspended") &&
	       streq(status_condition(s, "Ready", "status"), "True");
}

static bool running_unsnapshotted(json_t *s, const void *arg _unused_)
{
	return phase_is(s, "Running") && json_is_null(json_object_get(s, "snapshot")) &&
	       streq(status_condition(s, "Ready", "status"), "True");
}

static bool suspend_failed(json_t *s, const void *arg _unused_)
{
	const char *e = s ? json_string_value(json_object_get(s, "lastError")) : NULL;

	return phase_is(s, "Running") && e && strstr(e, "suspend failed");
}

static bool restart_required(json_t *s, const void *arg _unused_)
{
	return phase_is(s, "Suspended") &&
	       streq(status_condition(s, "RestartRequired", "status"), "True") &&
	       strstr(status_condition(s, "RestartRequired", "message"), "disks changed");
}

static bool exists(const char *dir, const char *file)
{
	_cleanup_free_ char *p = path_in(dir, "%s", file);

	return access(p, F_OK) == 0;
}

/* Whether a save's .new-* is left in web's snapshot dir. */
static bool has_new_dir(const char *state_dir)
{
	_cleanup_free_ char *dir = path_in(state_dir, "snapshots/web");
	struct dirent *e;
	bool found = false;
	DIR *d = opendir(dir);

	while (d && (e = readdir(d)))
		found = found || strncmp(e->d_name, SNAPSHOT_NEW_PREFIX, 5) == 0;
	if (d)
		closedir(d);
	return found;
}

static void test_noop_suspend_wake(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *vm = NULL, *leftover = NULL, *file = path_in(f->sb, "web.yaml");

	test_write_str(f->sb, "web.yaml", NOOP_SPEC);
	fixture_start_daemon(f);
	fixture_expect_notify(f, "READY=1");
	json_decref(fixture_wait_status(f, "web", running_unsnapshotted, NULL));

	/* Suspended: a complete snapshot, no VM. */
	put_state(f, "  state: suspended\n");
	json_decref(fixture_wait_status(f, "web", suspended, NULL));
	assert_true(exists(f->state, "snapshots/web/current/manifest.json"));
	assert_true(exists(f->state, "snapshots/web/current/noop-state.json"));
	vm = fixture_noop_state(f, "web");
	assert_string_equal(vm, "exited");

	/* Across a restart of vmd it stays suspended; a save a kill cut short goes. */
	fixture_stop_daemon(f, SIGKILL);
	leftover = path_in(f->state, "snapshots/web/.new-XXXXXX");
	assert_int_equal(mkdir(leftover, 0700), 0);
	fixture_start_daemon(f);
	fixture_expect_notify(f, "READY=1");
	json_decref(fixture_wait_status(f, "web", suspended, NULL));
	assert_int_equal(access(leftover, F_OK), -1);

	/* Woken: it goes on from its snapshot, which goes. */
	put_state(f, "");
	json_decref(fixture_wait_status(f, "web", running_unsnapshotted, NULL));
	assert_int_equal(fixture_noop_field(f, "web", "restores"), 1);
	assert_false(exists(f->state, "snapshots/web"));

	/* A file removed while it is suspended: the snapshot goes, the disks never. */
	put_state(f, "  state: suspended\n");
	json_decref(fixture_wait_status(f, "web", suspended, NULL));
	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "web", absent, NULL));
	assert_false(exists(f->state, "snapshots/web"));
}

/* Disks changed in the file while it was suspended: it stays so, or boots afresh. */
static void test_noop_disks_changed(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *text = NULL;

	test_write_str(f->sb, "web.yaml", NOOP_SPEC "  state: suspended\n");
	fixture_start_daemon(f);
	/* Never ran: nothing to save, it stays stopped. */
	json_decref(fixture_wait_status(f, "web", phase_is, "Stopped"));
	assert_false(exists(f->state, "snapshots/web"));

	put_state(f, "");
	json_decref(fixture_wait_status(f, "web", running_unsnapshotted, NULL));
	put_state(f, "  state: suspended\n");
	json_decref(fixture_wait_status(f, "web", suspended, NULL));

	fixture_put(f, "web", FIXTURE_NOOP_SPEC "  disks: [{id: root, path: /d/other.raw}]\n");
	json_decref(fixture_wait_status(f, "web", restart_required, NULL));
	assert_true(exists(f->state, "snapshots/web/current"));

	fixture_put(f, "web",
		    FIXTURE_NOOP_SPEC
		    "  updatePolicy: restart\n  disks: [{id: root, path: /d/other.raw}]\n");
	json_decref(fixture_wait_status(f, "web", running_unsnapshotted, NULL));
	/* A fresh boot, not the snapshot's guest. */
	assert_true(fixture_noop_field(f, "web", "restores") <= 0);
	assert_false(exists(f->state, "snapshots/web"));

	/* state: stopped drops the snapshot. */
	assert_true(asprintf(&text,
			     FIXTURE_NOOP_SPEC "  updatePolicy: restart\n  state: suspended\n"
					       "  disks: [{id: root, path: /d/other.raw}]\n") > 0);
	fixture_put(f, "web", text);
	json_decref(fixture_wait_status(f, "web", suspended, NULL));
	fixture_put(f, "web", FIXTURE_NOOP_SPEC "  state: stopped\n");
	json_decref(fixture_wait_status(f, "web", phase_is, "Stopped"));
	assert_false(exists(f->state, "snapshots/web"));
}

/* A save that fails loses nothing: the VM runs on, nothing is left in the state dir. */
static void test_noop_save_fails(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *vm = NULL;

	fixture_put(f, "web",
		    "apiVersion: vmd/v1\nkind: Sandbox\nmetadata:\n  labels: {noop.vmd/fail-ops: \"1\"}\n"
		    "spec:\n  backend: noop\n  memory: 64Mi\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "web", phase_is, "Running"));
	fixture_put(f, "web",
		    "apiVersion: vmd/v1\nkind: Sandbox\nmetadata:\n  labels: {noop.vmd/fail-ops: \"1\"}\n"
		    "spec:\n  backend: noop\n  memory: 64Mi\n  state: suspended\n");
	json_decref(fixture_wait_status(f, "web", suspend_failed, NULL));
	vm = fixture_noop_state(f, "web");
	assert_string_equal(vm, "running");
	/* No snapshot was made of it, nor is any half of one left. */
	assert_false(exists(f->state, "snapshots/web/current"));
	assert_false(has_new_dir(f->state));
	/* The next try (the fault was for one operation) suspends it. */
	json_decref(fixture_wait_status(f, "web", suspended, NULL));
}

static bool mass_deletion(json_t *s, const void *arg _unused_)
{
	return phase_is(s, "Suspended") &&
	       streq(status_condition(s, "Degraded", "reason"), "SuspiciousMassDeletion");
}

/* --max-deletions 0: a suspended sandbox's file removed holds its snapshot's drop too. */
static void test_noop_guarded(void **state)
{
	static const char *const args[] = { "--max-deletions", "0", NULL };
	Fixture *f = *state;
	_cleanup_free_ char *file = path_in(f->sb, "web.yaml");

	f->daemon_args = args;
	test_write_str(f->sb, "web.yaml", NOOP_SPEC);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "web", running_unsnapshotted, NULL));
	put_state(f, "  state: suspended\n");
	json_decref(fixture_wait_status(f, "web", suspended, NULL));
	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "web", mass_deletion, NULL));
	fixture_pass_time(f, 1000); /* well past the grace period */
	assert_true(exists(f->state, "snapshots/web/current/noop-state.json"));
	/* Its file back: suspended as it was. */
	put_state(f, "  state: suspended\n");
	json_decref(fixture_wait_status(f, "web", suspended, NULL));
}

static bool saving(json_t *s, const void *arg _unused_)
{
	json_t *job = s ? json_object_get(s, "job") : NULL;

	return streq_ptr(json_string_value(json_object_get(job, "type")), "suspend") &&
	       streq_ptr(json_string_value(json_object_get(job, "phase")), "saving");
}

static bool pid_gone(pid_t pid)
{
	return kill(pid, 0) < 0 && errno == ESRCH;
}

/* On the QEMU simulator (tests/sim/qemu): what a real QEMU does not do on demand. */

static void put_sim(Fixture *f, const char *name, const char *cmdline, const char *state)
{
	_cleanup_free_ char *extra = NULL;

	assert_true(asprintf(&extra, "  memory: 64Mi\n  cmdline: %s\n  state: %s\n", cmdline,
			     state) > 0);
	fixture_put_sim(f, name, "qemu", extra);
}

static bool error_says(json_t *s, const void *arg)
{
	const char *e = s ? json_string_value(json_object_get(s, "lastError")) : NULL;

	return e && strstr(e, arg);
}

static bool running_again(json_t *s, const void *arg)
{
	return phase_is(s, "Running") && error_says(s, arg);
}

static bool save_died(json_t *s, const void *arg _unused_)
{
	return phase_is(s, "Stopped") && error_says(s, "suspend failed: ") &&
	       streq(status_condition(s, "Running", "reason"), "Exited");
}

static void test_sim_save_fails(void **state)
{
	Fixture *f = *state;
	pid_t pid;
	json_t *s;

	/* A migration that fails: the guest runs again, nothing is kept. */
	put_sim(f, "vm", "sim.migrate-fail=1", "running");
	put_sim(f, "slow", "sim.save-ms=60000", "running");
	fixture_start_daemon(f);
	fixture_wait_console(f, "vm", "VMD-GUEST-TICK 1", 0);
	s = fixture_wait_status(f, "vm", phase_is, "Running");
	pid = pid_of(s);
	json_decref(s);
	put_sim(f, "vm", "sim.migrate-fail=1", "suspended");
	s = fixture_wait_status(f, "vm", running_again,
				"the migration to the snapshot failed: Unable to write to file");
	assert_int_equal(pid_of(s), pid);
	json_decref(s);
	assert_false(exists(f->state, "snapshots/vm/current"));
	assert_false(has_new_dir(f->state));
	{
		_cleanup_free_ char *c = fixture_console(f, "vm");

		/* It runs: its ticks go on. */
		fixture_wait_console(f, "vm", "VMD-GUEST-TICK", strlen(c));
	}
	assert_true(fixture_count_requests(f, "cont") >= 2); /* the boot's, the thaw's */

	/* Its QEMU killed mid-save: an exit, said as such; no snapshot, nothing left. */
	s = fixture_wait_status(f, "slow", phase_is, "Running");
	pid = pid_of(s);
	json_decref(s);
	put_sim(f, "slow", "sim.save-ms=60000", "suspended");
	json_decref(fixture_wait_status(f, "slow", saving, NULL));
	assert_int_equal(kill(pid, SIGKILL), 0);
	/*
	 * The exit, or the broken QMP connection, whichever vmd hears of first: the suspend
	 * failed, the VMM is gone, and nothing starts it (the file wants it suspended).
	 */
	json_decref(fixture_wait_status(f, "slow", save_died, NULL));
	assert_false(exists(f->state, "snapshots/slow/current"));
}

/* Suspended to the simulator's stream, woken paused, then running: the guest goes on. */
static void test_sim_wake(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *c = NULL;

	put_sim(f, "vm", "quiet", "running");
	fixture_start_daemon(f);
	fixture_wait_console(f, "vm", "VMD-GUEST-TICK 2", 0);
	put_sim(f, "vm", "quiet", "suspended");
	json_decref(fixture_wait_status(f, "vm", suspended, NULL));
	assert_int_equal(fixture_count_requests(f, "migrate {\"uri\": \"fd:vmd-snapshot\"}"), 1);
	put_sim(f, "vm", "quiet", "paused");
	json_decref(fixture_wait_status(f, "vm", phase_is, "Paused"));
	assert_int_equal(fixture_count_requests(f, "migrate-incoming"), 1);
	put_sim(f, "vm", "quiet", "running");
	json_decref(fixture_wait_status(f, "vm", running_unsnapshotted, NULL));
	/* The restored guest's ticks go on from 2, in the console of its new QEMU. */
	fixture_wait_console(f, "vm", "VMD-GUEST-TICK 3", 0);
	c = fixture_console(f, "vm");
	assert_null(strstr(c, "VMD-GUEST-TICK 1\r"));
}

static bool loading(json_t *s, const void *arg _unused_)
{
	json_t *job = s ? json_object_get(s, "job") : NULL;

	return streq_ptr(json_string_value(json_object_get(job, "type")), "restore") &&
	       streq_ptr(json_string_value(json_object_get(job, "phase")), "loading");
}

/* vmd killed mid-wake: the snapshot is still current; the next vmd ends that QEMU, wakes again. */
static void test_sim_wake_cut_short(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *log = NULL;
	pid_t pid;
	json_t *s;

	put_sim(f, "vm", "sim.load-ms=2000", "running");
	fixture_start_daemon(f);
	fixture_wait_console(f, "vm", "VMD-GUEST-TICK 2", 0);
	put_sim(f, "vm", "sim.load-ms=2000", "suspended");
	json_decref(fixture_wait_status(f, "vm", suspended, NULL));
	put_sim(f, "vm", "sim.load-ms=2000", "running");
	s = fixture_wait_status(f, "vm", loading, NULL);
	pid = pid_of(s);
	json_decref(s);
	fixture_stop_daemon(f, SIGKILL);
	assert_true(exists(f->state, "snapshots/vm/current/state"));
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "vm", running_unsnapshotted, NULL);
	assert_true(pid_of(s) != pid);
	json_decref(s);
	assert_true(pid_gone(pid));
	assert_int_equal(fixture_count_requests(f, "migrate-incoming"), 2);
	log = test_read_file(f->log, NULL);
	assert_non_null(strstr(log, "its wake was cut short"));
	fixture_wait_console(f, "vm", "VMD-GUEST-TICK 3", 0);
}

/* On QEMU (TCG): the test guest's VMD-GUEST-TICK n, its memory's, goes on after a wake. */

/* The first tick on name's console, or the last: 0 if none. */
static long tick(Fixture *f, const char *name, bool last)
{
	_cleanup_free_ char *c = fixture_console(f, name);
	const char *p = c, *found = NULL;

	while ((p = strstr(p, "VMD-GUEST-TICK "))) {
		found = p += strlen("VMD-GUEST-TICK ");
		if (!last)
			break;
	}
	return found ? strtol(found, NULL, 10) : 0;
}

/* The test guest as web, booted until its console shows tick: its QEMU's pid. */
static pid_t qemu_boot(Fixture *f, const char *tick)
{
	json_t *s;
	pid_t pid;

	qemu_put(f, "web", "  cmdline: console=ttyS0 quiet\n");
	fixture_start_daemon(f);
	fixture_wait_console(f, "web", tick, 0);
	s = fixture_wait_status(f, "web", ready, "Running");
	pid = pid_of(s);
	json_decref(s);
	return pid;
}

static void test_qemu(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *file = NULL;
	long before, after;
	pid_t pid;
	json_t *s;

	pid = qemu_boot(f, "VMD-GUEST-TICK 3");

	/* Suspended: the state in a file, QEMU gone. */
	qemu_put(f, "web", "  cmdline: console=ttyS0 quiet\n  state: suspended\n");
	json_decref(fixture_wait_status(f, "web", suspended, NULL));
	assert_true(pid_gone(pid));
	assert_true(exists(f->state, "snapshots/web/current/state"));
	assert_true(exists(f->state, "snapshots/web/current/qemu-ports.json"));
	before = tick(f, "web", true);
	assert_true(before >= 3);

	/* Across a restart of vmd it stays so. */
	fixture_stop_daemon(f, SIGKILL);
	fixture_start_daemon(f);
	fixture_pass_time(f, 1000);
	json_decref(fixture_wait_status(f, "web", suspended, NULL));

	/* Woken: the same guest, its ticks going on, not from 1. */
	qemu_put(f, "web", "  cmdline: console=ttyS0 quiet\n");
	s = fixture_wait_status(f, "web", running_unsnapshotted, NULL);
	assert_true(pid_of(s) != pid);
	pid = pid_of(s);
	json_decref(s);
	fixture_wait_console(f, "web", "VMD-GUEST-TICK", 0);
	after = tick(f, "web", false);
	if (after <= before)
		fail_msg("the first tick after the wake is %ld, the last before %ld", after, before);
	assert_false(exists(f->state, "snapshots/web"));

	/* vmd killed mid-save: the next one finds the VM kept, resumes it, the save gone. */
	qemu_put(f, "web", "  cmdline: console=ttyS0 quiet\n  state: suspended\n");
	json_decref(fixture_wait_status(f, "web", saving, NULL));
	fixture_stop_daemon(f, SIGKILL);
	qemu_put(f, "web", "  cmdline: console=ttyS0 quiet\n");
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "web", running_unsnapshotted, NULL);
	assert_int_equal(pid_of(s), pid);
	json_decref(s);
	assert_false(has_new_dir(f->state));
	before = tick(f, "web", true);
	{
		char want[64];

		snprintf(want, sizeof(want), "VMD-GUEST-TICK %ld", before + 1);
		fixture_wait_console(f, "web", want, 0);
	}
}

/*
 * The state dir full (a 1 MiB tmpfs of its own, in a mount namespace this test process
 * enters, its daemon with it; teardown unmounts it): QEMU's migration fails with ENOSPC,
 * the guest runs on, and nothing is left of the save. Last: the namespace stays.
 */
static void test_qemu_disk_full(void **state)
{
	Fixture *f = *state;
	pid_t pid;
	json_t *s;

	assert_int_equal(mkdir(f->state, 0700), 0);
	assert_int_equal(unshare(CLONE_NEWNS), 0);
	assert_int_equal(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
	assert_int_equal(
		mount("tmpfs", f->state, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0700"), 0);
	pid = qemu_boot(f, "VMD-GUEST-TICK 2");
	qemu_put(f, "web", "  cmdline: console=ttyS0 quiet\n  state: suspended\n");
	s = fixture_wait_status(f, "web", running_again, "No space left on device");
	assert_int_equal(pid_of(s), pid);
	json_decref(s);
	assert_false(exists(f->state, "snapshots/web/current"));
	{
		_cleanup_free_ char *c = fixture_console(f, "web");

		fixture_wait_console(f, "web", "VMD-GUEST-TICK", strlen(c));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan_rows),
		cmocka_unit_test(test_plan_drop_waits),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_store),
		cmocka_unit_test_setup_teardown(test_noop_suspend_wake, fixture_setup_notify,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_noop_disks_changed, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_noop_save_fails, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_noop_guarded, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_sim_save_fails, qemu_sim_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_sim_wake, qemu_sim_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_sim_wake_cut_short, qemu_sim_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_qemu, qemu_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_qemu_disk_full, qemu_setup, fixture_teardown),
	};

	if (getenv("VMD_TEST_FILTER")) /* one test, for a run by hand */
		cmocka_set_test_filter(getenv("VMD_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
