/* SPDX-License-Identifier: MIT */
/*
 * The real `vmd daemon`, run as a user runs it, on the noop backend, in temporary
 * directories (tests/daemon-fixture.h): its life (READY, RELOADING, STOPPING, the
 * watchdog), re-adoption after kill -9, one daemon per run dir, restarts and backoff, the
 * sandbox directory gone, untrusted files, editors' saves, edits that need a new boot or
 * that a backend's rule refuses, observedGeneration, and life without inotify. The test
 * binds its own NOTIFY_SOCKET and reads what the daemon tells systemd; it edits files and
 * reads status.json, `vmd status` and `vmd plan`. What the daemon keeps in its state dir
 * is tests/test-state-dir.c's. Waits are bounded (a failure, not a speed claim).
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "status.h"
#include "util.h"

static bool crash_looping(json_t *s, const void *arg _unused_)
{
	const char *e = s ? json_string_value(json_object_get(s, "lastError")) : NULL;

	return phase_is(s, "Failed") &&
	       streq(status_condition(s, "Degraded", "reason"), "CrashLoop") &&
	       streq(status_condition(s, "Ready", "reason"), "BackingOff") && e &&
	       strstr(e, "restarting in");
}

static bool restarts_at_least(json_t *s, const void *arg)
{
	return s && json_integer_value(json_object_get(s, "restarts")) >= (json_int_t)(uintptr_t)arg;
}

static void run_cli(TestRun *r, const char *a1, const char *a2, const char *a3, const char *a4,
		    const char *a5, const char *a6, const char *a7)
{
	char *argv[] = { (char *)test_vmd(), (char *)a1, (char *)a2, (char *)a3, (char *)a4,
			 (char *)a5,	     (char *)a6, (char *)a7, NULL };

	test_run(r, argv);
}

static void test_lifecycle(void **state)
{
	Fixture *f = *state;
	_cleanup_(test_run_done) TestRun r = {};
	_cleanup_free_ char *started = NULL, *vm = NULL, *db = path_in(f->sb, "db.yaml");
	json_t *s;
	char spec[512];

	test_write_str(f->sb, "web.yaml", FIXTURE_NOOP_SPEC);
	test_write_str(f->sb, "db.yaml", FIXTURE_NOOP_SPEC);
	fixture_start_daemon(f);
	fixture_expect_notify(f, "READY=1");
	fixture_expect_notify(f, "STATUS=2 sandboxes, 2 ready, 2 Running");

	s = fixture_wait_status(f, "web", phase_is, "Running");
	assert_string_equal(status_condition(s, "Ready", "status"), "True");
	assert_int_equal(json_integer_value(json_object_get(s, "generation")), 1);
	started = strdup(json_string_value(json_object_get(s, "startedAt")));
	json_decref(s);

	/* vmd status and vmd plan, while the daemon runs. */
	run_cli(&r, "status", "--run-dir", f->run, NULL, NULL, NULL, NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "web "));
	assert_non_null(strstr(r.out, "Running"));
	test_run_done(&r);
	run_cli(&r, "plan", "--sandboxes", f->sb, "--run-dir", f->run, "--state-dir", f->state);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "db: up to date (running)\nweb: up to date (running)\n");
	test_run_done(&r);

	/* A disk added to the file is hot-added. */
	snprintf(spec, sizeof(spec), "%s  disks: [{id: data, path: /d/data.raw}]\n",
		 FIXTURE_NOOP_SPEC);
	fixture_put(f, "web", spec);
	json_decref(fixture_wait_status(f, "web", disks_are, (void *)1));

	/* An invalid edit keeps the VM as it is, and says why. */
	fixture_put(
		f, "web",
		"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n  vpcus: 2\n");
	s = fixture_wait_status(f, "web", config_invalid, NULL);
	assert_non_null(strstr(status_condition(s, "ConfigValid", "message"),
			       "web.yaml:6:3: spec: unknown field 'vpcus'; did you mean 'vcpus'?"));
	assert_string_equal(json_string_value(json_object_get(s, "phase")), "Running");
	assert_string_equal(json_string_value(json_object_get(s, "startedAt")), started);
	assert_int_equal(json_integer_value(json_object_get(s, "generation")), 2);
	assert_int_equal(json_array_size(json_object_get(s, "disks")), 1);
	json_decref(s);
	fixture_expect_notify(f, "first failing: web: ");

	/* Fixed: valid again, nothing restarted. */
	fixture_put(f, "web", spec);
	s = fixture_wait_status(f, "web", config_valid, NULL);
	assert_string_equal(json_string_value(json_object_get(s, "startedAt")), started);
	json_decref(s);

	/* Paused on request. */
	snprintf(spec, sizeof(spec),
		 "%s  state: paused\n  disks: [{id: data, path: /d/data.raw}]\n", FIXTURE_NOOP_SPEC);
	fixture_put(f, "web", spec);
	json_decref(fixture_wait_status(f, "web", phase_is, "Paused"));

	/* A removed file: stopped after the grace period, its runtime state gone. */
	assert_int_equal(unlink(db), 0);
	json_decref(fixture_wait_status(f, "db", absent, NULL));
	vm = fixture_noop_state(f, "db");
	assert_null(vm);

	/* SIGHUP: RELOADING=1, then READY=1 again. */
	assert_int_equal(kill(f->pid, SIGHUP), 0);
	fixture_expect_notify(f, "RELOADING=1");
	fixture_expect_notify(f, "READY=1");

	/* SIGTERM: STOPPING=1, a clean exit (no leaks under LeakSanitizer), the VM untouched. */
	assert_int_equal(kill(f->pid, SIGTERM), 0);
	fixture_expect_notify(f, "STOPPING=1");
	{
		int status;

		assert_int_equal(waitpid(f->pid, &status, 0), f->pid);
		f->pid = 0;
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	vm = fixture_noop_state(f, "web");
	assert_string_equal(vm, "paused");
}

/* kill -9 and a restart: every VM is adopted again, none is restarted. */
static void test_readopt(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *log = NULL, *started = NULL;
	TestRun r;
	json_t *s;

	test_write_str(f->sb, "web.yaml", FIXTURE_NOOP_SPEC);
	test_write_str(f->sb, "api.yaml", FIXTURE_NOOP_SPEC);
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "web", phase_is, "Running");
	started = strdup(json_string_value(json_object_get(s, "startedAt")));
	json_decref(s);
	json_decref(fixture_wait_status(f, "api", phase_is, "Running"));
	fixture_expect_notify(
		f, "READY=1"); /* the first daemon's, so that the next one is the second's */

	fixture_stop_daemon(f, SIGKILL);
	/* What the status files say is what a vmd that is gone saw: vmd status says so. */
	run_cli(&r, "status", "--run-dir", f->run, NULL, NULL, NULL, NULL);
	assert_non_null(strstr(r.err, "vmd status: warning: vmd is not running (nothing holds "));
	assert_non_null(strstr(r.err, "what follows is as of its last pass, at 20"));
	test_run_done(&r);
	fixture_start_daemon(f);
	fixture_expect_notify(f, "READY=1");
	fixture_expect_notify(f, "STATUS=2 sandboxes, 2 ready, 2 Running");
	run_cli(&r, "status", "--run-dir", f->run, NULL, NULL, NULL, NULL);
	assert_string_equal(r.err, "");
	test_run_done(&r);
	s = fixture_status(f, "web");
	assert_non_null(s);
	assert_string_equal(json_string_value(json_object_get(s, "startedAt")), started);
	assert_int_equal(json_integer_value(json_object_get(s, "restarts")), 0);
	json_decref(s);
	log = test_read_file(f->log, NULL);
	assert_non_null(strstr(log, "web: re-adopted its running VM"));
	assert_non_null(strstr(log, "api: re-adopted its running VM"));
	/* One start each, from the first daemon; none from the second. */
	assert_non_null(strstr(log, "web: start:"));
	assert_null(strstr(strstr(log, "web: re-adopted"), "web: start:"));
}

static void test_second_instance(void **state)
{
	Fixture *f = *state;
	_cleanup_(test_run_done) TestRun r = {};

	fixture_start_daemon(f);
	fixture_expect_notify(f, "READY=1");
	run_cli(&r, "daemon", "--sandboxes", f->sb, "--run-dir", f->run, "--state-dir", f->state);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "another vmd (pid "));
	assert_non_null(strstr(r.err, "is running with run dir"));
}

static void test_watchdog(void **state)
{
	Fixture *f = *state;

	f->watchdog_usec = 200000;
	fixture_start_daemon(f);
	fixture_expect_notify(f, "READY=1");
	fixture_expect_notify(f, "WATCHDOG=1");
	fixture_expect_notify(f, "WATCHDOG=1");
}

/* VMs that exit: restartPolicy decides; failures back off and recover. */
static void test_restarts_and_backoff(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *log = NULL;
	const char *p;
	json_t *s;
	unsigned n = 0;

	test_write_str(
		f->sb, "crashy.yaml",
		"apiVersion: vmd/v1\nkind: Sandbox\nmetadata:\n  labels: {noop.vmd/exit-after: 100ms}\nspec:\n  backend: noop\n  memory: 64Mi\n");
	test_write_str(
		f->sb, "once.yaml",
		"apiVersion: vmd/v1\nkind: Sandbox\nmetadata:\n  labels: {noop.vmd/exit-after: 100ms}\nspec:\n  backend: noop\n  memory: 64Mi\n  restartPolicy: never\n");
	test_write_str(
		f->sb, "flaky.yaml",
		"apiVersion: vmd/v1\nkind: Sandbox\nmetadata:\n  labels: {noop.vmd/fail-start: \"2\"}\nspec:\n  backend: noop\n  memory: 64Mi\n");
	fixture_start_daemon(f);

	json_decref(fixture_wait_status(f, "crashy", restarts_at_least, (void *)2));
	/* Exiting again and again soon after each start: a crash loop, and its restarts wait. */
	s = fixture_wait_status(f, "crashy", crash_looping, NULL);
	assert_non_null(strstr(status_condition(s, "Degraded", "message"),
			       "times in a row soon after starting"));
	assert_false(json_is_null(json_object_get(s, "nextRetryAt")));
	json_decref(s);
	s = fixture_wait_status(f, "once", phase_is, "Failed");
	assert_int_equal(json_integer_value(json_object_get(s, "restarts")), 0);
	json_decref(s);

	/* Two failed starts (1 s, then 2 s of backoff), then it runs. */
	s = fixture_wait_status(f, "flaky", phase_is, "Running");
	assert_true(json_is_null(json_object_get(s, "lastError")));
	assert_string_equal(status_condition(s, "Degraded", "status"), "False");
	json_decref(s);
	log = test_read_file(f->log, NULL);
	for (p = log; (p = strstr(p, "flaky: start failed")); p++)
		n++;
	assert_int_equal(n, 1); /* a transition is logged, not every retry */
	assert_non_null(strstr(log, "flaky: recovered after 2 failed attempts"));
}

/* The directory gone: nothing is stopped, the daemon says it is degraded. */
static void test_missing_dir(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *web = path_in(f->sb, "web.yaml"), *vm = NULL;

	test_write_str(f->sb, "web.yaml", FIXTURE_NOOP_SPEC);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "web", phase_is, "Running"));
	fixture_expect_notify(f, "READY=1");

	assert_int_equal(unlink(web), 0);
	assert_int_equal(rmdir(f->sb), 0);
	fixture_expect_notify(f, "STATUS=Degraded: cannot read");
	/* Ten grace periods later, still running. */
	fixture_pass_time(f, 3000);
	vm = fixture_noop_state(f, "web");
	assert_string_equal(vm, "running");

	assert_int_equal(mkdir(f->sb, 0755), 0);
	test_write_str(f->sb, "web.yaml", FIXTURE_NOOP_SPEC);
	fixture_expect_notify(f, "STATUS=1 sandbox, 1 ready, 1 Running");
}

static void test_untrusted(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *web = path_in(f->sb, "web.yaml");
	json_t *s;

	test_write_str(f->sb, "web.yaml", FIXTURE_NOOP_SPEC);
	assert_int_equal(chmod(web, 0666), 0);
	fixture_start_daemon(f);
	fixture_expect_notify(f, "READY=1");
	s = fixture_wait_status(f, "web", config_invalid, NULL);
	assert_string_equal(status_condition(s, "ConfigValid", "reason"), "Untrusted");
	assert_non_null(strstr(status_condition(s, "ConfigValid", "message"),
			       "writable by group or others (mode 0666)"));
	assert_string_equal(json_string_value(json_object_get(s, "vmState")), "absent");
	json_decref(s);

	assert_int_equal(chmod(web, 0644), 0);
	json_decref(fixture_wait_status(f, "web", phase_is, "Running"));

	/* Owned by someone else: refused too, and the running VM is left as it is. */
	assert_int_equal(chown(web, 65534, 65534), 0);
	s = fixture_wait_status(f, "web", config_invalid, NULL);
	assert_non_null(strstr(status_condition(s, "ConfigValid", "message"), "owned by uid 65534"));
	assert_string_equal(json_string_value(json_object_get(s, "phase")), "Running");
	json_decref(s);
}

/* vim's save (rename away, write anew, delete the backup) never stops or restarts a VM. */
static void test_editor_save(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *web = path_in(f->sb, "web.yaml"),
			    *backup = path_in(f->sb, "web.yaml~"), *log = NULL, *started = NULL;
	json_t *s;

	started = fixture_start_noop(f, "web");
	for (int i = 0; i < 5; i++) {
		assert_int_equal(rename(web, backup), 0);
		test_write_str(f->sb, "web.yaml", FIXTURE_NOOP_SPEC);
		assert_int_equal(unlink(backup), 0);
	}
	/* Ten grace periods later: the same VM, never stopped. */
	fixture_pass_time(f, 3000);
	s = fixture_wait_status(f, "web", phase_is, "Running");
	assert_string_equal(json_string_value(json_object_get(s, "startedAt")), started);
	assert_int_equal(json_integer_value(json_object_get(s, "restarts")), 0);
	assert_int_equal(json_integer_value(json_object_get(s, "generation")), 1);
	json_decref(s);
	log = test_read_file(f->log, NULL);
	assert_null(strstr(log, "web: stop"));
}

static bool restart_required(json_t *s, const void *arg _unused_)
{
	return s && streq(status_condition(s, "RestartRequired", "status"), "True");
}

/* A change only a new boot applies: on-next-boot waits for it, restart does it. */
static void test_restart_required(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *started = NULL;
	char spec[512];
	json_t *s;

	started = fixture_start_noop(f, "web");
	snprintf(spec, sizeof(spec), "%s  cmdline: quiet\n", FIXTURE_NOOP_SPEC);
	fixture_put(f, "web", spec);
	s = fixture_wait_status(f, "web", restart_required, NULL);
	assert_string_equal(json_string_value(json_object_get(s, "startedAt")), started);
	assert_int_equal(json_integer_value(json_object_get(s, "generation")), 2);
	/* All vmd does about it is done: waiting for the next boot is the policy's. */
	assert_int_equal(json_integer_value(json_object_get(s, "observedGeneration")), 2);
	json_decref(s);

	snprintf(spec, sizeof(spec), "%s  cmdline: quiet\n  updatePolicy: restart\n",
		 FIXTURE_NOOP_SPEC);
	fixture_put(f, "web", spec);
	s = fixture_wait_status(f, "web", generation_settled, (void *)3); /* restarted */
	assert_string_equal(status_condition(s, "RestartRequired", "status"), "False");
	assert_string_not_equal(json_string_value(json_object_get(s, "startedAt")), started);
	json_decref(s);
}

/* A backend's rule refuses an edit as a YAML error does: with file:line:col, the VM kept. */
static void test_backend_rule(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *started = NULL, *vm = NULL, *log = NULL;
	const char *message;
	json_t *s;

	started = fixture_start_noop(f, "web");
	fixture_put(f, "web", FIXTURE_FC_3_VCPUS);
	s = fixture_wait_status(f, "web", config_invalid, NULL);
	message = status_condition(s, "ConfigValid", "message");
	assert_string_equal(status_condition(s, "ConfigValid", "reason"), "InvalidConfig");
	assert_non_null(strstr(message, FIXTURE_FC_3_VCPUS_ERROR));
	assert_null(strstr(message, "and more"));
	assert_string_equal(json_string_value(json_object_get(s, "phase")), "Running");
	assert_string_equal(json_string_value(json_object_get(s, "backend")), "noop");
	assert_string_equal(json_string_value(json_object_get(s, "startedAt")), started);
	assert_int_equal(json_integer_value(json_object_get(s, "generation")), 1);
	json_decref(s);

	/* Ten grace periods later, the same VM, never stopped. */
	fixture_pass_time(f, 3000);
	vm = fixture_noop_state(f, "web");
	assert_string_equal(vm, "running");
	log = test_read_file(f->log, NULL);
	assert_non_null(strstr(log, FIXTURE_FC_3_VCPUS_ERROR));
	assert_null(strstr(log, "web: stop"));
}

/*
 * observedGeneration catches up with every accepted edit, also those that need nothing
 * done (labels, stopTimeout), wait for the next boot, or that the backend does not record
 * (a pause): a GitOps tool waiting for observedGeneration == generation does not wait for
 * ever.
 */
static void test_observed_generation(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *started = NULL;
	json_t *s;

	started = fixture_start_noop(f, "web");
	json_decref(fixture_wait_status(f, "web", generation_settled, (void *)1));
	fixture_put(
		f, "web",
		"apiVersion: vmd/v1\nkind: Sandbox\nmetadata:\n  labels: {team: a}\nspec:\n  backend: noop\n  memory: 64Mi\n");
	json_decref(fixture_wait_status(f, "web", generation_settled, (void *)2));
	fixture_put(
		f, "web",
		"apiVersion: vmd/v1\nkind: Sandbox\nmetadata:\n  labels: {team: a}\nspec:\n  backend: noop\n  memory: 64Mi\n  stopTimeout: 5s\n");
	json_decref(fixture_wait_status(f, "web", generation_settled, (void *)3));
	fixture_put(
		f, "web",
		"apiVersion: vmd/v1\nkind: Sandbox\nmetadata:\n  labels: {team: a}\nspec:\n  backend: noop\n  memory: 64Mi\n  stopTimeout: 5s\n  kernel: /k2\n");
	s = fixture_wait_status(f, "web", generation_settled, (void *)4);
	assert_string_equal(status_condition(s, "RestartRequired", "status"), "True");
	assert_string_equal(json_string_value(json_object_get(s, "startedAt")), started);
	json_decref(s);
	/* A pause, which the backend does not record a generation for, once it is done. */
	fixture_put(
		f, "web",
		"apiVersion: vmd/v1\nkind: Sandbox\nmetadata:\n  labels: {team: a}\nspec:\n  backend: noop\n  memory: 64Mi\n  stopTimeout: 5s\n  kernel: /k2\n  state: paused\n");
	s = fixture_wait_status(f, "web", generation_settled, (void *)5);
	assert_string_equal(json_string_value(json_object_get(s, "phase")), "Paused");
	json_decref(s);
}

/* The daemon in a user namespace of its own with /proc/sys/user/<sysctl> lowered. */
static const char *userns_sysctl, *userns_value;

static void lower_userns_limit(void)
{
	if (test_user_ns_limit(userns_sysctl, userns_value) < 0)
		_exit(126);
}

static const char *const RESYNC_1S[] = { "--resync", "1", NULL };

/* Whether lowering /proc/sys/user/<sysctl> in a user namespace works here. */
static void need_user_ns(const char *sysctl)
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(test_user_ns_limit(sysctl, "0") < 0 ? 1 : 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("cannot lower /proc/sys/user/%s in a user namespace of the test's own",
			 sysctl);
}

/*
 * vmd short of inotify, in a user namespace whose limit is lowered: it says so, naming the
 * sysctl, once; it reports itself Degraded (WatchUnavailable); it does not crash; and a
 * new file is still picked up, by the resync (1 s here).
 */
static void without_inotify(Fixture *f, const char *sysctl, const char *value, const char *named)
{
	_cleanup_free_ char *log = NULL, *degraded = NULL;
	int status;

	need_user_ns(sysctl);
	userns_sysctl = sysctl;
	userns_value = value;
	f->before_exec = lower_userns_limit;
	f->daemon_args = RESYNC_1S;
	test_write_str(f->sb, "web.yaml", FIXTURE_NOOP_SPEC);
	fixture_start_daemon(f);
	assert_true(asprintf(&degraded,
			     "READY=1\nSTATUS=Degraded (WatchUnavailable): cannot watch %s: ", f->sb) >
		    0);
	fixture_expect_notify(f, degraded);
	fixture_expect_notify(f, named);
	json_decref(fixture_wait_status(f, "web", phase_is, "Running"));

	fixture_put(f, "db", FIXTURE_NOOP_SPEC);
	json_decref(fixture_wait_status(f, "db", phase_is, "Running"));
	/* A few more resyncs, each trying inotify again: still alive, and said once. */
	fixture_pass_time(f, 3000);
	assert_int_equal(waitpid(f->pid, &status, WNOHANG), 0);
	log = test_read_file(f->log, NULL);
	assert_int_equal(count_in(log, "cannot watch"), 1);
	assert_non_null(strstr(log, named));
	assert_non_null(strstr(log, "; reading it every 1 s instead"));
}

static void test_inotify_instances(void **state)
{
	without_inotify(*state, "max_inotify_instances", "0",
			"the inotify instances are used up (sysctl fs.inotify.max_user_instances)");
}

/* One watch: the parent's; the directory's is one too many. */
static void test_inotify_watches(void **state)
{
	without_inotify(*state, "max_inotify_watches", "1",
			"the inotify watches are used up (sysctl fs.inotify.max_user_watches)");
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_lifecycle, fixture_setup_notify,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_readopt, fixture_setup_notify, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_second_instance, fixture_setup_notify,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_watchdog, fixture_setup_notify, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_restarts_and_backoff, fixture_setup_notify,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_missing_dir, fixture_setup_notify,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_untrusted, fixture_setup_notify,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_editor_save, fixture_setup_notify,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_restart_required, fixture_setup_notify,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_backend_rule, fixture_setup_notify,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_observed_generation, fixture_setup_notify,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_inotify_instances, fixture_setup_notify,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_inotify_watches, fixture_setup_notify,
						fixture_teardown),
	};

	return cmocka_run_group_tests_name("daemon", tests, NULL, NULL);
}
