/* SPDX-License-Identifier: MIT */
/*
 * startFrom: snapshot (docs/sandbox-file.md, "Start from a snapshot"): the planner's rows
 * (a template saved once Ready, started again from it at once, whether one stands for a
 * boot), the file's check (no writable disk that outlives a restore), and the daemon on
 * the noop backend, the QEMU simulator and QEMU (TCG): a template made after Ready, later
 * starts restored from it, a boot-config change that deletes it, a restore that fails
 * setting it aside. Waits are bounded (a failure, not a speed claim).
 */
#include <dirent.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "daemon-fixture.h"
#include "helpers.h"
#include "plan.h"
#include "qemu-fixture.h"
#include "snapshot.h"
#include "spec-yaml.h"
#include "status.h"
#include "util.h"

#define spec_of fixture_spec_of

/* The planner */

static const char *plan_one(const SandboxSpec *want, VmState state, bool due, bool resume)
{
	VmObserved o = { .state = state, .generation = 2, .exit_status = 0 };
	PlanInput in = { .desired = want,
			 .generation = 2,
			 .observed = &o,
			 .caps = BACKEND_CAP_SUSPEND,
			 .template_due = due,
			 .template_resume = resume };
	Plan p;

	if (state == VM_RUNNING)
		o.config = (SandboxSpec *)want;
	plan_sandbox(&in, 10000, 0, &p);
	return p.n_actions ? action_type_to_string(p.actions[0].type) : "";
}

static void test_plan(void **state _unused_)
{
	_cleanup_(sandbox_spec_freep) SandboxSpec *want =
		spec_of("  startFrom: snapshot\n  restartPolicy: never\n");
	_cleanup_(sandbox_spec_freep) SandboxSpec *other =
		spec_of("  startFrom: snapshot\n  cmdline: console=ttyS0\n");
	_cleanup_(sandbox_spec_freep) SandboxSpec *disk = spec_of(
		"  startFrom: snapshot\n  disks: [{id: root, path: /d/r.raw, readOnly: true}]\n");
	Snapshot t = { .backend = BACKEND_NOOP, .config = want, .boot_hash = 0 };

	assert_string_equal(plan_one(want, VM_RUNNING, true, false), "save-template");
	assert_string_equal(plan_one(want, VM_RUNNING, false, false), "");
	/* The save ended its VMM: it starts at once, whatever restartPolicy says of an exit. */
	assert_string_equal(plan_one(want, VM_EXITED, false, true), "start");
	assert_string_equal(plan_one(want, VM_EXITED, false, false), "");

	t.boot_hash = snapshot_boot_hash(want);
	assert_true(plan_template_matches(&t, want));
	assert_false(plan_template_matches(&t, other)); /* its cmdline: a boot change */
	assert_false(plan_template_matches(&t, disk));	/* a disk more */
	t.backend = BACKEND_QEMU;
	assert_false(plan_template_matches(&t, want));
}

/* The file: a template is sound only without a writable disk that outlives a restore. */
static void test_validate(void **state _unused_)
{
	static const char head[] = "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n"
				   "  backend: noop\n  memory: 64Mi\n  startFrom: snapshot\n";
	const SpecLoadOptions opts = { .default_backend = BACKEND_NOOP, .skip_images = true };
	_cleanup_(diag_list_done) DiagList diags = {}, ok_diags = {}, ro_diags = {};
	_cleanup_(sandbox_spec_freep) SandboxSpec *s = NULL, *ok = NULL, *ro = NULL;
	_cleanup_free_ char *bad = NULL, *good = NULL, *readonly = NULL;

	assert_true(asprintf(&bad, "%s  disks: [{id: root, path: /d/r.raw}]\n", head) > 0);
	assert_int_equal(spec_load_buffer("web.yaml", bad, strlen(bad), &opts, &s, &diags), -EINVAL);
	assert_int_equal(diags.n, 1);
	assert_int_equal(diags.items[0].line, 6);
	assert_int_equal(diags.items[0].column, 14);
	assert_non_null(strstr(diags.items[0].message, "disk 'root' is writable"));

	assert_true(asprintf(&readonly, "%s  disks: [{id: root, path: /d/r.raw, readOnly: true}]\n",
			     head) > 0);
	assert_int_equal(
		spec_load_buffer("web.yaml", readonly, strlen(readonly), &opts, &ro, &ro_diags), 0);
	assert_int_equal(ro->start_from, START_FROM_SNAPSHOT);

	assert_true(asprintf(&good, "%s  disks: [{id: root, image: /i/base.qcow2, ephemeral: true}]\n",
			     head) > 0);
	assert_int_equal(spec_load_buffer("web.yaml", good, strlen(good), &opts, &ok, &ok_diags), 0);
}

/* The daemon on noop */

#define SPEC FIXTURE_NOOP_SPEC "  startFrom: snapshot\n"

static const char *started_from(json_t *s)
{
	return s ? json_string_value(json_object_get(s, "startedFrom")) : NULL;
}

/* Running and Ready, and startedFrom begins with arg. */
static bool started(json_t *s, const void *arg)
{
	const char *how = started_from(s);

	return phase_is(s, "Running") && streq(status_condition(s, "Ready", "status"), "True") &&
	       how && strncmp(how, arg, strlen(arg)) == 0;
}

static bool exists(const char *dir, const char *file)
{
	_cleanup_free_ char *p = path_in(dir, "%s", file);

	return access(p, F_OK) == 0;
}

static long long noop_field(Fixture *f, const char *name, const char *key)
{
	_cleanup_free_ char *path = path_in(f->run, "%s/noop.json", name);
	_cleanup_(json_decrefp) json_t *j = json_load_file(path, 0, NULL);
	json_t *v = j ? json_object_get(j, key) : NULL;

	return v ? json_integer_value(v) : -1;
}

/* Whether dir (under state) has an entry whose name begins with prefix. */
static bool has_entry(const char *state, const char *dir, const char *prefix)
{
	_cleanup_free_ char *path = path_in(state, "%s", dir);
	struct dirent *e;
	bool found = false;
	DIR *d = opendir(path);

	while (d && (e = readdir(d)))
		found = found || strncmp(e->d_name, prefix, strlen(prefix)) == 0;
	if (d)
		closedir(d);
	return found;
}

/* When web's template was taken, from its manifest: 0 if it has none. */
static long long template_taken(Fixture *f)
{
	_cleanup_free_ char *root = path_in(f->state, "templates");
	_cleanup_(snapshot_freep) Snapshot *t = NULL;

	return snapshot_load(root, "web", false, &t) == 0 ? (long long)t->taken_at_usec : 0;
}

static void test_noop(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *file = path_in(f->sb, "web.yaml");
	long long first;
	json_t *s;

	fixture_put(f, "web", SPEC);
	fixture_start_daemon(f);
	/* The first boot, to Ready: its template saved, and the VM runs on from it. */
	json_decref(fixture_wait_status(f, "web", started, "booted; its template was saved"));
	assert_true(exists(f->state, "templates/snapshots/web/current/noop-state.json"));
	assert_true(exists(f->state, "templates/snapshots/web/current/manifest.json"));
	assert_false(exists(f->state, "snapshots/web"));
	assert_int_equal(noop_field(f, "web", "restores"), 1);
	first = template_taken(f);
	assert_true(first > 0);

	/* Stopped and started: restored from the template, which stays. */
	fixture_put(f, "web", SPEC "  state: stopped\n");
	json_decref(fixture_wait_status(f, "web", phase_is, "Stopped"));
	fixture_put(f, "web", SPEC);
	json_decref(fixture_wait_status(f, "web", started, "restored from its template of "));
	assert_int_equal(noop_field(f, "web", "restores"), 1);
	assert_int_equal(template_taken(f), first);

	/* Across a restart of vmd: the same template. */
	fixture_stop_daemon(f, SIGTERM);
	fixture_put(f, "web", SPEC "  state: stopped\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "web", phase_is, "Stopped"));
	fixture_put(f, "web", SPEC);
	json_decref(fixture_wait_status(f, "web", started, "restored from its template of "));
	assert_int_equal(template_taken(f), first);

	/* A boot change (its cmdline): the template goes, a boot makes a new one. */
	fixture_put(f, "web", SPEC "  updatePolicy: restart\n  cmdline: quiet\n");
	s = fixture_wait_status(f, "web", started, "booted; its template was saved");
	json_decref(s);
	assert_true(template_taken(f) > first);

	/* Its file removed: the template goes with the sandbox. */
	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "web", absent, NULL));
	assert_false(exists(f->state, "templates/snapshots/web/current"));
}

/* A crash under restartPolicy: the restart restores the template. */
static void test_noop_crash(void **state)
{
	Fixture *f = *state;

	fixture_put(f, "web",
		    "apiVersion: vmd/v1\nkind: Sandbox\n"
		    "metadata: {labels: {noop.vmd/exit-after: 1500ms}}\n"
		    "spec:\n  backend: noop\n  memory: 64Mi\n  startFrom: snapshot\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "web", started, "booted; its template was saved"));
	json_decref(fixture_wait_status(f, "web", restarted, (void *)1));
	json_decref(fixture_wait_status(f, "web", started, "restored from its template of "));
}

/* A template whose restore fails: kept aside, never deleted; it boots, and makes another. */
static void test_noop_restore_fails(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *cur = NULL, *log = NULL;

	fixture_put(f, "web", SPEC);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "web", started, "booted; its template was saved"));
	fixture_put(f, "web", SPEC "  state: stopped\n");
	json_decref(fixture_wait_status(f, "web", phase_is, "Stopped"));
	/* What a VMM upgrade does to a snapshot it can no longer read. */
	cur = path_in(f->state, "templates/snapshots/web/current/noop-state.json");
	assert_int_equal(unlink(cur), 0);
	fixture_put(f, "web", SPEC);
	/* It boots instead, and that boot makes a new template. */
	json_decref(fixture_wait_status(f, "web", started, "booted; its template was saved"));
	assert_true(exists(f->state, "templates/snapshots/web/current/noop-state.json"));
	log = test_read_file(f->log, NULL);
	assert_non_null(strstr(log, "its template snapshot could not be restored: kept aside in "));
	assert_true(has_entry(f->state, "templates/snapshots/web", "failed-"));
}

static bool suspended(json_t *s, const void *arg _unused_)
{
	return phase_is(s, "Suspended");
}

static bool booted_afresh(json_t *s, const void *arg _unused_)
{
	return phase_is(s, "Running") && json_is_null(json_object_get(s, "snapshot")) &&
	       streq_ptr(started_from(s), "booted");
}

static bool wake_failed_is(json_t *s, const void *arg)
{
	return streq(status_condition(s, "WakeFailed", "status"), arg);
}

/*
 * A suspend snapshot whose wake keeps failing: after 3, kept aside, and it boots; the
 * WakeFailed condition says where the snapshot went, until the file changes.
 */
static void test_noop_wake_fails(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *cur = NULL, *log = NULL, *aside = NULL;
	char *argv[] = { (char *)test_vmd(), "status", "--run-dir", f->run, "web", NULL };
	TestRun r;
	json_t *s;

	fixture_put(f, "web", FIXTURE_NOOP_SPEC "  restartPolicy: never\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "web", ready, "Running"));
	fixture_put(f, "web", FIXTURE_NOOP_SPEC "  restartPolicy: never\n  state: suspended\n");
	json_decref(fixture_wait_status(f, "web", suspended, NULL));
	/* What a VMM upgrade does to a snapshot it can no longer read. */
	cur = path_in(f->state, "snapshots/web/current/noop-state.json");
	assert_int_equal(unlink(cur), 0);
	fixture_put(f, "web", FIXTURE_NOOP_SPEC "  restartPolicy: never\n");
	json_decref(fixture_wait_status(f, "web", booted_afresh, NULL));
	log = test_read_file(f->log, NULL);
	if (count_in(log, "WakeFailed") == 0)
		fail_msg("%s", log);
	assert_non_null(strstr(log, "WakeFailed: its snapshot could not be woken 3 times in a row"));
	assert_false(exists(f->state, "snapshots/web/current"));
	assert_true(has_entry(f->state, "snapshots-failed", "web-"));

	/* Its status says so, where the snapshot went, until its file changes. */
	s = fixture_status(f, "web");
	assert_string_equal(status_condition(s, "WakeFailed", "status"), "True");
	assert_string_equal(status_condition(s, "WakeFailed", "reason"), "SnapshotSetAside");
	aside = path_in(f->state, "snapshots-failed/web-");
	assert_non_null(strstr(status_condition(s, "WakeFailed", "message"), aside));
	assert_non_null(strstr(status_condition(s, "WakeFailed", "message"),
			       "could not be woken 3 times in a row"));
	json_decref(s);
	test_run(&r, argv);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "WakeFailed       True    SnapshotSetAside"));
	test_run_done(&r);
	argv[5] = NULL; /* the table: its most telling message */
	test_run(&r, argv);
	assert_non_null(strstr(r.out, aside));
	test_run_done(&r);
	/* A restarted vmd still says it (backoff.json): nothing has cleared it. */
	fixture_stop_daemon(f, SIGKILL);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "web", ready, "Running"));
	json_decref(fixture_wait_status(f, "web", wake_failed_is, "True"));
	fixture_put(f, "web", FIXTURE_NOOP_SPEC "  restartPolicy: never\n  stopTimeout: 20s\n");
	json_decref(fixture_wait_status(f, "web", wake_failed_is, "False"));
}

/* On QEMU (TCG): the test guest's VMD-GUEST-TICK n, its memory's, goes on after a crash. */

/* The first VMD-GUEST-TICK on name's console (of its current QEMU): 0 if none. */
static long first_tick(Fixture *f, const char *name)
{
	_cleanup_free_ char *c = fixture_console(f, name);
	const char *p = c ? strstr(c, "VMD-GUEST-TICK ") : NULL;

	return p ? strtol(p + strlen("VMD-GUEST-TICK "), NULL, 10) : 0;
}

#define QEMU_SPEC                                                                                  \
	"  cmdline: console=ttyS0 quiet\n  startFrom: snapshot\n"                                  \
	"  readiness: {console: {match: \"VMD-GUEST-TICK ([3-9]|[1-9][0-9]+)\"}, period: 100ms}\n"

static void test_qemu(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *c = NULL;
	pid_t pid, again;
	json_t *s;

	qemu_put(f, "web", QEMU_SPEC);
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "web", started, "booted; its template was saved");
	pid = pid_of(s);
	json_decref(s);
	assert_true(exists(f->state, "templates/snapshots/web/current/state"));
	/* The VM runs on from its template: its new QEMU's first tick is past 3. */
	fixture_wait_console(f, "web", "VMD-GUEST-TICK", 0);
	assert_true(first_tick(f, "web") > 3);

	/* A crash (its QEMU killed): restarted from the template, not booted. */
	assert_int_equal(kill(pid, SIGKILL), 0);
	fixture_wait_gone(pid);
	s = fixture_wait_status(f, "web", started, "restored from its template of ");
	again = pid_of(s);
	json_decref(s);
	assert_true(again != pid);
	fixture_wait_console(f, "web", "VMD-GUEST-TICK", 0);
	if (first_tick(f, "web") <= 3)
		fail_msg("the first tick after the restore is %ld: the guest booted",
			 first_tick(f, "web"));
	c = fixture_console(f, "web");
	assert_null(strstr(c, "VMD-GUEST-TICK 1\r"));
	assert_null(strstr(c, "Linux version"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan),
		cmocka_unit_test(test_validate),
		cmocka_unit_test_setup_teardown(test_noop, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_noop_crash, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_noop_restore_fails, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_noop_wake_fails, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_qemu, qemu_setup, fixture_teardown),
	};

	if (getenv("VMD_TEST_FILTER")) /* one test, for a run by hand */
		cmocka_set_test_filter(getenv("VMD_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
