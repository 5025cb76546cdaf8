/* SPDX-License-Identifier: MIT */
/*
 * The real `vmd daemon`, run as a user runs it, on the noop backend, in temporary
 * directories. The test binds its own NOTIFY_SOCKET and reads what the daemon tells
 * systemd; it edits files and reads status.json, `vmd status` and `vmd plan`. Every
 * daemon it starts is killed in teardown, whether the test passed or not. Waits are
 * bounded (a failure, not a speed claim).
 */
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "helpers.h"
#include "status.h"
#include "util.h"

#define WAIT_MS 20000

typedef struct Fixture {
	char *dir, *sb, *run, *state, *notify_path, *log;
	TestNotify notify;
	pid_t pid;
	const char *resync; /* --resync for the daemon; NULL: 3600 */
	/* Run the daemon in a user namespace of its own with /proc/sys/user/<sysctl> lowered. */
	const char *userns_sysctl, *userns_value;
} Fixture;

static char *path_in(const char *dir, const char *name)
{
	char *p = NULL;

	assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

static int setup(void **state)
{
	Fixture *f = calloc(1, sizeof(*f));

	f->dir = test_tmpdir();
	f->sb = path_in(f->dir, "sandboxes");
	f->run = path_in(f->dir, "run");
	f->state = path_in(f->dir, "state");
	f->notify_path = path_in(f->dir, "notify");
	f->log = path_in(f->dir, "vmd.log");
	assert_int_equal(mkdir(f->sb, 0755), 0);
	test_notify_open(&f->notify, f->notify_path);
	*state = f;
	return 0;
}

static void stop_daemon(Fixture *f, int sig)
{
	test_kill_wait(&f->pid, sig);
}

static int teardown(void **state)
{
	Fixture *f = *state;

	stop_daemon(f, SIGKILL);
	test_notify_close(&f->notify);
	(void)umount2(f->state, MNT_DETACH); /* a test's small state dir, if it made one */
	test_tmpdir_remove(f->dir);
	free(f->sb);
	free(f->run);
	free(f->state);
	free(f->notify_path);
	free(f->log);
	free(f);
	return 0;
}

static void start_daemon(Fixture *f, const char *watchdog_usec)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int log = open(f->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		char wpid[32];

		/* If the test binary dies, its daemons die with it. */
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(null, 0);
		dup2(null, 1);
		dup2(log, 2);
		setenv("NOTIFY_SOCKET", f->notify_path, 1);
		if (watchdog_usec) {
			snprintf(wpid, sizeof(wpid), "%d", (int)getpid());
			setenv("WATCHDOG_USEC", watchdog_usec, 1);
			setenv("WATCHDOG_PID", wpid, 1);
		}
		if (f->userns_sysctl && test_user_ns_limit(f->userns_sysctl, f->userns_value) < 0)
			_exit(126);
		execl(test_vmd(), test_vmd(), "daemon", "--sandboxes", f->sb, "--run-dir", f->run,
		      "--state-dir", f->state, "--log-target", "console", "--grace", "0.3",
		      "--resync", f->resync ?: "3600", (char *)NULL);
		_exit(127);
	}
	f->pid = pid;
}

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void drain_notify(Fixture *f, int timeout_ms)
{
	test_notify_drain(&f->notify, timeout_ms);
}

/* Wait for a notify message containing what, after the last one expected. */
static void expect_notify(Fixture *f, const char *what)
{
	test_notify_expect(&f->notify, what, WAIT_MS, NULL);
}

static json_t *status_of(Fixture *f, const char *name)
{
	_cleanup_free_ char *p = NULL;

	assert_true(asprintf(&p, "%s/%s/status.json", f->run, name) > 0);
	return json_load_file(p, 0, NULL);
}

typedef bool (*StatusPred)(json_t *s, const void *arg);

/* Wait until name's status.json satisfies pred; returns it (the caller frees). */
static json_t *wait_status(Fixture *f, const char *name, StatusPred pred, const void *arg)
{
	uint64_t end = ms_now() + WAIT_MS;
	char *last = NULL;

	for (;;) {
		json_t *s = status_of(f, name);

		if (pred(s, arg)) {
			free(last);
			return s;
		}
		free(last);
		last = s ? json_dumps(s, JSON_COMPACT) : strdup("(no status)");
		json_decref(s);
		if (ms_now() > end) {
			fprintf(stderr, "last status of %s: %s\n", name, last);
			free(last);
			fail_msg("status of '%s' never got there", name);
		}
		drain_notify(f, 20);
	}
}

static bool phase_is(json_t *s, const void *arg)
{
	return s && streq_ptr(json_string_value(json_object_get(s, "phase")), arg);
}

static bool absent(json_t *s, const void *arg _unused_)
{
	return s == NULL;
}

static bool config_invalid(json_t *s, const void *arg _unused_)
{
	return s && streq(status_condition(s, "ConfigValid", "status"), "False");
}

static bool config_valid(json_t *s, const void *arg _unused_)
{
	return s && streq(status_condition(s, "ConfigValid", "status"), "True");
}

static bool disks_are(json_t *s, const void *arg)
{
	return s && json_array_size(json_object_get(s, "disks")) == (size_t)(uintptr_t)arg &&
	       json_integer_value(json_object_get(s, "observedGeneration")) ==
		       json_integer_value(json_object_get(s, "generation"));
}

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

static const char *SPEC =
	"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n";

/* Write a sandbox file the way GitOps tools do: a hidden temporary file, renamed over. */
static void put(Fixture *f, const char *name, const char *text)
{
	_cleanup_free_ char *tmp_name = NULL, *tmp = NULL, *dst = path_in(f->sb, name);

	assert_true(asprintf(&tmp_name, ".%s.tmp", name) > 0);
	test_write_str(f->sb, tmp_name, text);
	tmp = path_in(f->sb, tmp_name);
	assert_int_equal(rename(tmp, dst), 0);
}

/* Start the daemon with web.yaml and wait until it runs; returns its startedAt. */
static char *start_with_web(Fixture *f)
{
	json_t *s;
	char *started;

	test_write_str(f->sb, "web.yaml", SPEC);
	start_daemon(f, NULL);
	s = wait_status(f, "web", phase_is, "Running");
	started = strdup(json_string_value(json_object_get(s, "startedAt")));
	json_decref(s);
	expect_notify(f, "READY=1");
	return started;
}

/* Let ten grace periods (0.3 s each) pass, reading the notify socket meanwhile. */
static void wait_grace_periods(Fixture *f)
{
	for (int i = 0; i < 30; i++)
		drain_notify(f, 100);
}

static char *noop_state(Fixture *f, const char *name)
{
	_cleanup_free_ char *p = NULL;
	json_t *j;
	char *state;

	assert_true(asprintf(&p, "%s/%s/noop.json", f->run, name) > 0);
	j = json_load_file(p, 0, NULL);
	state = j ? strdup(json_string_value(json_object_get(j, "state"))) : NULL;
	json_decref(j);
	return state;
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

	test_write_str(f->sb, "web.yaml", SPEC);
	test_write_str(f->sb, "db.yaml", SPEC);
	start_daemon(f, NULL);
	expect_notify(f, "READY=1");
	expect_notify(f, "STATUS=2 sandboxes, 2 ready, 2 Running");

	s = wait_status(f, "web", phase_is, "Running");
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
	snprintf(spec, sizeof(spec), "%s  disks: [{id: data, path: /d/data.raw}]\n", SPEC);
	put(f, "web.yaml", spec);
	json_decref(wait_status(f, "web", disks_are, (void *)1));

	/* An invalid edit keeps the VM as it is, and says why. */
	put(f, "web.yaml",
	    "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n  vpcus: 2\n");
	s = wait_status(f, "web", config_invalid, NULL);
	assert_non_null(strstr(status_condition(s, "ConfigValid", "message"),
			       "web.yaml:6:3: spec: unknown field 'vpcus'; did you mean 'vcpus'?"));
	assert_string_equal(json_string_value(json_object_get(s, "phase")), "Running");
	assert_string_equal(json_string_value(json_object_get(s, "startedAt")), started);
	assert_int_equal(json_integer_value(json_object_get(s, "generation")), 2);
	assert_int_equal(json_array_size(json_object_get(s, "disks")), 1);
	json_decref(s);
	expect_notify(f, "first failing: web: ");

	/* Fixed: valid again, nothing restarted. */
	put(f, "web.yaml", spec);
	s = wait_status(f, "web", config_valid, NULL);
	assert_string_equal(json_string_value(json_object_get(s, "startedAt")), started);
	json_decref(s);

	/* Paused on request. */
	snprintf(spec, sizeof(spec),
		 "%s  state: paused\n  disks: [{id: data, path: /d/data.raw}]\n", SPEC);
	put(f, "web.yaml", spec);
	json_decref(wait_status(f, "web", phase_is, "Paused"));

	/* A removed file: stopped after the grace period, its runtime state gone. */
	assert_int_equal(unlink(db), 0);
	json_decref(wait_status(f, "db", absent, NULL));
	vm = noop_state(f, "db");
	assert_null(vm);

	/* SIGHUP: RELOADING=1, then READY=1 again. */
	assert_int_equal(kill(f->pid, SIGHUP), 0);
	expect_notify(f, "RELOADING=1");
	expect_notify(f, "READY=1");

	/* SIGTERM: STOPPING=1, a clean exit (no leaks under LeakSanitizer), the VM untouched. */
	assert_int_equal(kill(f->pid, SIGTERM), 0);
	expect_notify(f, "STOPPING=1");
	{
		int status;

		assert_int_equal(waitpid(f->pid, &status, 0), f->pid);
		f->pid = 0;
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	vm = noop_state(f, "web");
	assert_string_equal(vm, "paused");
}

/* kill -9 and a restart: every VM is adopted again, none is restarted. */
static void test_readopt(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *log = NULL, *started = NULL;
	TestRun r;
	json_t *s;

	test_write_str(f->sb, "web.yaml", SPEC);
	test_write_str(f->sb, "api.yaml", SPEC);
	start_daemon(f, NULL);
	s = wait_status(f, "web", phase_is, "Running");
	started = strdup(json_string_value(json_object_get(s, "startedAt")));
	json_decref(s);
	json_decref(wait_status(f, "api", phase_is, "Running"));
	expect_notify(f, "READY=1"); /* the first daemon's, so that the next one is the second's */

	stop_daemon(f, SIGKILL);
	/* What the status files say is what a vmd that is gone saw: vmd status says so. */
	run_cli(&r, "status", "--run-dir", f->run, NULL, NULL, NULL, NULL);
	assert_non_null(strstr(r.err, "vmd status: warning: vmd is not running (nothing holds "));
	assert_non_null(strstr(r.err, "what follows is as of its last pass, at 20"));
	test_run_done(&r);
	start_daemon(f, NULL);
	expect_notify(f, "READY=1");
	expect_notify(f, "STATUS=2 sandboxes, 2 ready, 2 Running");
	run_cli(&r, "status", "--run-dir", f->run, NULL, NULL, NULL, NULL);
	assert_string_equal(r.err, "");
	test_run_done(&r);
	s = status_of(f, "web");
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

	start_daemon(f, NULL);
	expect_notify(f, "READY=1");
	run_cli(&r, "daemon", "--sandboxes", f->sb, "--run-dir", f->run, "--state-dir", f->state);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "another vmd (pid "));
	assert_non_null(strstr(r.err, "is running with run dir"));
}

static void test_watchdog(void **state)
{
	Fixture *f = *state;

	start_daemon(f, "200000");
	expect_notify(f, "READY=1");
	expect_notify(f, "WATCHDOG=1");
	expect_notify(f, "WATCHDOG=1");
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
	start_daemon(f, NULL);

	json_decref(wait_status(f, "crashy", restarts_at_least, (void *)2));
	/* Exiting again and again soon after each start: a crash loop, and its restarts wait. */
	s = wait_status(f, "crashy", crash_looping, NULL);
	assert_non_null(strstr(status_condition(s, "Degraded", "message"),
			       "times in a row soon after starting"));
	assert_false(json_is_null(json_object_get(s, "nextRetryAt")));
	json_decref(s);
	s = wait_status(f, "once", phase_is, "Failed");
	assert_int_equal(json_integer_value(json_object_get(s, "restarts")), 0);
	json_decref(s);

	/* Two failed starts (1 s, then 2 s of backoff), then it runs. */
	s = wait_status(f, "flaky", phase_is, "Running");
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

	test_write_str(f->sb, "web.yaml", SPEC);
	start_daemon(f, NULL);
	json_decref(wait_status(f, "web", phase_is, "Running"));
	expect_notify(f, "READY=1");

	assert_int_equal(unlink(web), 0);
	assert_int_equal(rmdir(f->sb), 0);
	expect_notify(f, "STATUS=Degraded: cannot read");
	/* Ten grace periods later, still running. */
	wait_grace_periods(f);
	vm = noop_state(f, "web");
	assert_string_equal(vm, "running");

	assert_int_equal(mkdir(f->sb, 0755), 0);
	test_write_str(f->sb, "web.yaml", SPEC);
	expect_notify(f, "STATUS=1 sandbox, 1 ready, 1 Running");
}

static void test_untrusted(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *web = path_in(f->sb, "web.yaml");
	json_t *s;

	test_write_str(f->sb, "web.yaml", SPEC);
	assert_int_equal(chmod(web, 0666), 0);
	start_daemon(f, NULL);
	expect_notify(f, "READY=1");
	s = wait_status(f, "web", config_invalid, NULL);
	assert_string_equal(status_condition(s, "ConfigValid", "reason"), "Untrusted");
	assert_non_null(strstr(status_condition(s, "ConfigValid", "message"),
			       "writable by group or others (mode 0666)"));
	assert_string_equal(json_string_value(json_object_get(s, "vmState")), "absent");
	json_decref(s);

	assert_int_equal(chmod(web, 0644), 0);
	json_decref(wait_status(f, "web", phase_is, "Running"));

	/* Owned by someone else: refused too, and the running VM is left as it is. */
	assert_int_equal(chown(web, 65534, 65534), 0);
	s = wait_status(f, "web", config_invalid, NULL);
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

	started = start_with_web(f);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(rename(web, backup), 0);
		test_write_str(f->sb, "web.yaml", SPEC);
		assert_int_equal(unlink(backup), 0);
	}
	/* Ten grace periods later: the same VM, never stopped. */
	wait_grace_periods(f);
	s = wait_status(f, "web", phase_is, "Running");
	assert_string_equal(json_string_value(json_object_get(s, "startedAt")), started);
	assert_int_equal(json_integer_value(json_object_get(s, "restarts")), 0);
	assert_int_equal(json_integer_value(json_object_get(s, "generation")), 1);
	json_decref(s);
	log = test_read_file(f->log, NULL);
	assert_null(strstr(log, "web: stop"));
}

static bool generation_settled(json_t *s, const void *arg)
{
	json_int_t g = (json_int_t)(uintptr_t)arg;

	return s && json_integer_value(json_object_get(s, "generation")) == g &&
	       json_integer_value(json_object_get(s, "observedGeneration")) == g;
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

	started = start_with_web(f);
	snprintf(spec, sizeof(spec), "%s  cmdline: quiet\n", SPEC);
	put(f, "web.yaml", spec);
	s = wait_status(f, "web", restart_required, NULL);
	assert_string_equal(json_string_value(json_object_get(s, "startedAt")), started);
	assert_int_equal(json_integer_value(json_object_get(s, "generation")), 2);
	/* All vmd does about it is done: waiting for the next boot is the policy's. */
	assert_int_equal(json_integer_value(json_object_get(s, "observedGeneration")), 2);
	json_decref(s);

	snprintf(spec, sizeof(spec), "%s  cmdline: quiet\n  updatePolicy: restart\n", SPEC);
	put(f, "web.yaml", spec);
	s = wait_status(f, "web", generation_settled, (void *)3); /* restarted */
	assert_string_equal(status_condition(s, "RestartRequired", "status"), "False");
	assert_string_not_equal(json_string_value(json_object_get(s, "startedAt")), started);
	json_decref(s);
}

/*
 * The state dir lost, and the file broken while vmd was down: there is no valid spec to go
 * by, so the VM it finds running is left as it is; it is not taken for a removed file.
 */
static void test_invalid_without_last_valid(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *vm = NULL, *cmd = NULL;
	json_t *s;

	test_write_str(f->sb, "web.yaml", SPEC);
	start_daemon(f, NULL);
	json_decref(wait_status(f, "web", phase_is, "Running"));
	expect_notify(f, "READY=1");
	assert_int_equal(kill(f->pid, SIGTERM), 0);
	expect_notify(f, "STOPPING=1");
	(void)waitpid(f->pid, NULL, 0);
	f->pid = 0;

	test_tmpdir_remove(strdup(f->state));
	test_write_str(f->sb, "web.yaml",
		       "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n");
	start_daemon(f, NULL);
	expect_notify(f, "READY=1");
	s = wait_status(f, "web", config_invalid, NULL);
	assert_string_equal(json_string_value(json_object_get(s, "vmState")), "running");
	json_decref(s);
	/* Ten grace periods later, still running. */
	wait_grace_periods(f);
	vm = noop_state(f, "web");
	assert_string_equal(vm, "running");
}

/* A clean stop leaves the last valid spec of every sandbox in the state dir. */
static void test_state_written_on_stop(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *copy = NULL, *text = NULL;

	test_write_str(f->sb, "web.yaml", SPEC);
	start_daemon(f, NULL);
	expect_notify(f, "READY=1");
	assert_int_equal(kill(f->pid, SIGTERM), 0);
	(void)waitpid(f->pid, NULL, 0);
	f->pid = 0;
	copy = path_in(f->state, "sandboxes/web.json");
	text = test_read_file(copy, NULL);
	assert_non_null(text);
	assert_non_null(strstr(text, "\"generation\": 1"));
	assert_non_null(strstr(text, "memory: 64Mi"));
}

/* Valid YAML that the firecracker backend refuses: 3 vCPUs, at line 7, column 10. */
static const char *FC_3_VCPUS =
	"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: firecracker\n  memory: 64Mi\n  kernel: /k\n  vcpus: 3\n";
static const char *FC_3_VCPUS_ERROR =
	"/web.yaml:7:10: spec.vcpus: 3 vCPUs do not fit backend 'firecracker': it takes 1 or an even number up to 32";

/* A backend's rule refuses an edit as a YAML error does: with file:line:col, the VM kept. */
static void test_backend_rule(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *started = NULL, *vm = NULL, *log = NULL;
	const char *message;
	json_t *s;

	started = start_with_web(f);
	put(f, "web.yaml", FC_3_VCPUS);
	s = wait_status(f, "web", config_invalid, NULL);
	message = status_condition(s, "ConfigValid", "message");
	assert_string_equal(status_condition(s, "ConfigValid", "reason"), "InvalidConfig");
	assert_non_null(strstr(message, FC_3_VCPUS_ERROR));
	assert_null(strstr(message, "and more"));
	assert_string_equal(json_string_value(json_object_get(s, "phase")), "Running");
	assert_string_equal(json_string_value(json_object_get(s, "backend")), "noop");
	assert_string_equal(json_string_value(json_object_get(s, "startedAt")), started);
	assert_int_equal(json_integer_value(json_object_get(s, "generation")), 1);
	json_decref(s);

	/* Ten grace periods later, the same VM, never stopped. */
	wait_grace_periods(f);
	vm = noop_state(f, "web");
	assert_string_equal(vm, "running");
	log = test_read_file(f->log, NULL);
	assert_non_null(strstr(log, FC_3_VCPUS_ERROR));
	assert_null(strstr(log, "web: stop"));
}

/*
 * The last valid spec kept by a vmd whose rules were looser is held to the backend's rules
 * at a restart, as the file is: with no valid spec to go by, nothing is started.
 */
static void test_persisted_backend_rule(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *dir = path_in(f->state, "sandboxes"), *copy = path_in(dir, "web.json"),
			    *web = path_in(f->sb, "web.yaml"), *log = NULL;
	json_t *j, *s;

	assert_int_equal(mkdir(f->state, 0700), 0);
	assert_int_equal(mkdir(dir, 0700), 0);
	j = json_pack("{s:i, s:s, s:s}", "generation", 4, "file", web, "yaml", FC_3_VCPUS);
	assert_int_equal(json_dump_file(j, copy, 0), 0);
	json_decref(j);
	test_write_str(f->sb, "web.yaml", FC_3_VCPUS);

	start_daemon(f, NULL);
	expect_notify(f, "READY=1");
	s = wait_status(f, "web", config_invalid, NULL);
	assert_non_null(strstr(status_condition(s, "ConfigValid", "message"), FC_3_VCPUS_ERROR));
	assert_string_equal(json_string_value(json_object_get(s, "desiredState")), "stopped");
	assert_int_equal(json_integer_value(json_object_get(s, "generation")), 0);
	assert_string_equal(json_string_value(json_object_get(s, "vmState")), "absent");
	json_decref(s);
	wait_grace_periods(f);
	log = test_read_file(f->log, NULL);
	assert_null(strstr(log, "web: start"));
}

static unsigned count(const char *haystack, const char *needle)
{
	unsigned n = 0;

	for (const char *p = haystack; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
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

	started = start_with_web(f);
	json_decref(wait_status(f, "web", generation_settled, (void *)1));
	put(f, "web.yaml",
	    "apiVersion: vmd/v1\nkind: Sandbox\nmetadata:\n  labels: {team: a}\nspec:\n  backend: noop\n  memory: 64Mi\n");
	json_decref(wait_status(f, "web", generation_settled, (void *)2));
	put(f, "web.yaml",
	    "apiVersion: vmd/v1\nkind: Sandbox\nmetadata:\n  labels: {team: a}\nspec:\n  backend: noop\n  memory: 64Mi\n  stopTimeout: 5s\n");
	json_decref(wait_status(f, "web", generation_settled, (void *)3));
	put(f, "web.yaml",
	    "apiVersion: vmd/v1\nkind: Sandbox\nmetadata:\n  labels: {team: a}\nspec:\n  backend: noop\n  memory: 64Mi\n  stopTimeout: 5s\n  kernel: /k2\n");
	s = wait_status(f, "web", generation_settled, (void *)4);
	assert_string_equal(status_condition(s, "RestartRequired", "status"), "True");
	assert_string_equal(json_string_value(json_object_get(s, "startedAt")), started);
	json_decref(s);
	/* A pause, which the backend does not record a generation for, once it is done. */
	put(f, "web.yaml",
	    "apiVersion: vmd/v1\nkind: Sandbox\nmetadata:\n  labels: {team: a}\nspec:\n  backend: noop\n  memory: 64Mi\n  stopTimeout: 5s\n  kernel: /k2\n  state: paused\n");
	s = wait_status(f, "web", generation_settled, (void *)5);
	assert_string_equal(json_string_value(json_object_get(s, "phase")), "Paused");
	json_decref(s);
}

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
	_cleanup_free_ char *log = NULL, *ready = NULL;
	int status;

	need_user_ns(sysctl);
	f->userns_sysctl = sysctl;
	f->userns_value = value;
	f->resync = "1";
	test_write_str(f->sb, "web.yaml", SPEC);
	start_daemon(f, NULL);
	assert_true(asprintf(&ready, "READY=1\nSTATUS=Degraded (WatchUnavailable): cannot watch %s: ",
			     f->sb) > 0);
	expect_notify(f, ready);
	expect_notify(f, named);
	json_decref(wait_status(f, "web", phase_is, "Running"));

	put(f, "db.yaml", SPEC);
	json_decref(wait_status(f, "db", phase_is, "Running"));
	/* A few more resyncs, each trying inotify again: still alive, and said once. */
	wait_grace_periods(f);
	assert_int_equal(waitpid(f->pid, &status, WNOHANG), 0);
	log = test_read_file(f->log, NULL);
	assert_int_equal(count(log, "cannot watch"), 1);
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

/*
 * A state dir of 256 KiB, a tmpfs of its own, in a mount namespace the test process enters
 * (its daemons with it): the host sees none of it. Teardown unmounts it.
 */
static void small_state_dir(Fixture *f)
{
	assert_int_equal(mkdir(f->state, 0700), 0);
	assert_int_equal(unshare(CLONE_NEWNS), 0);
	assert_int_equal(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
	assert_int_equal(
		mount("tmpfs", f->state, "tmpfs", MS_NOSUID | MS_NODEV, "size=256k,mode=0700"), 0);
}

/* Fill the state dir up with one file; return its path (unlink it to make room). */
static char *fill_state_dir(Fixture *f)
{
	char *filler = path_in(f->state, "filler");
	char block[4096] = {};
	int fd = open(filler, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	while (write(fd, block, sizeof(block)) > 0)
		;
	assert_int_equal(errno, ENOSPC);
	close(fd);
	return filler;
}

/* Wait (bounded) until the state dir's copy of name says "generation": gen. */
static void wait_persisted(Fixture *f, const char *name, int gen)
{
	_cleanup_free_ char *rel = NULL, *copy = NULL, *want = NULL;
	uint64_t end = ms_now() + WAIT_MS;

	assert_true(asprintf(&rel, "sandboxes/%s.json", name) > 0);
	assert_true(asprintf(&want, "\"generation\": %d,", gen) > 0);
	copy = path_in(f->state, rel);
	for (;;) {
		_cleanup_free_ char *text = test_read_file(copy, NULL);

		if (text && strstr(text, want))
			return;
		if (ms_now() > end)
			fail_msg("%s never said %s; it says: %s", copy, want, text ?: "(nothing)");
		drain_notify(f, 20);
	}
}

/* web running (generation 1), its copy in the state dir; returns its startedAt. */
static char *started_web_persisted(Fixture *f)
{
	char *started = start_with_web(f);

	wait_persisted(f, "web", 1);
	return started;
}

static bool condition_is(json_t *s, const char *type, const char *reason)
{
	return s && streq(status_condition(s, type, "reason"), reason);
}

static bool state_write_failed(json_t *s, const void *arg _unused_)
{
	return condition_is(s, "Degraded", "StateWriteFailed") &&
	       streq(status_condition(s, "Degraded", "status"), "True") &&
	       condition_is(s, "Ready", "StateWriteFailed");
}

static bool ready_again(json_t *s, const void *arg _unused_)
{
	return condition_is(s, "Degraded", "AsExpected") && condition_is(s, "Ready", "AsDesired");
}

static const char *WEB_D1 =
	"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n"
	"  disks: [{id: a, path: /d/a.raw}]\n";
static const char *WEB_D2 =
	"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n"
	"  disks: [{id: a, path: /d/a.raw}, {id: b, path: /d/b.raw}]\n";

/*
 * The state dir full: the copy of a new spec cannot be written. That is shown (the
 * sandbox's status.json, in the run dir, and the daemon's STATUS=), said once in the
 * journal however often it is retried, and the copy is written once there is room.
 */
static void test_state_write_failed(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *filler = NULL, *log = NULL;
	json_t *s;

	small_state_dir(f);
	free(started_web_persisted(f));
	filler = fill_state_dir(f);

	put(f, "web.yaml", WEB_D1);
	s = wait_status(f, "web", state_write_failed, NULL);
	assert_non_null(strstr(
		status_condition(s, "Degraded", "message"),
		"its last valid spec (generation 2) is not in the state dir yet: cannot write the last valid specs to "));
	assert_non_null(strstr(status_condition(s, "Degraded", "message"), "No space left on device"));
	assert_int_equal(json_array_size(json_object_get(s, "disks")), 1);
	json_decref(s);
	expect_notify(f, "STATUS=Degraded (StateWriteFailed): cannot write the last valid specs to ");

	/* Room again: the retry writes it, and all is well. */
	assert_int_equal(unlink(filler), 0);
	json_decref(wait_status(f, "web", ready_again, NULL));
	wait_persisted(f, "web", 2);
	expect_notify(f, "STATUS=1 sandbox, 1 ready, 1 Running");
	log = test_read_file(f->log, NULL);
	assert_int_equal(count(log, "cannot write the last valid specs to"), 1);
	assert_non_null(strstr(log, "the state dir takes writes again after "));
}

static bool stale_spec(json_t *s, const void *arg _unused_)
{
	return condition_is(s, "Ready", "StaleSpec") &&
	       condition_is(s, "ConfigValid", "InvalidConfig");
}

static bool disks_settled(json_t *s, const void *arg)
{
	return generation_settled(s, arg) && json_array_size(json_object_get(s, "disks")) == 2 &&
	       condition_is(s, "ConfigValid", "Valid");
}

/*
 * The newest spec's copy lost to a full state dir, then an invalid edit, then a restart
 * of vmd: the copy it finds is older than what the VM runs. It is not applied (the disk
 * the VM got since is not hot-removed), the generation does not go back, and the status
 * says why. A valid file is a new generation after the VM's.
 */
static void test_stale_spec_after_restart(void **state)
{
	Fixture *f = *state;
	_cleanup_(test_run_done) TestRun r = {};
	_cleanup_free_ char *filler = NULL, *log = NULL, *started = NULL;
	json_t *s;

	small_state_dir(f);
	started = started_web_persisted(f);
	put(f, "web.yaml", WEB_D1);
	json_decref(wait_status(f, "web", disks_are, (void *)1));
	wait_persisted(f, "web", 2);
	filler = fill_state_dir(f);
	put(f, "web.yaml", WEB_D2); /* generation 3: hot-added, its copy not written */
	json_decref(wait_status(f, "web", state_write_failed, NULL));
	json_decref(wait_status(f, "web", disks_are, (void *)2));
	put(f, "web.yaml",
	    "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n  vpcus: 2\n");
	json_decref(wait_status(f, "web", config_invalid, NULL));

	stop_daemon(f, SIGKILL);
	start_daemon(f, NULL);
	expect_notify(f, "READY=1");
	s = wait_status(f, "web", stale_spec, NULL);
	assert_int_equal(json_integer_value(json_object_get(s, "generation")), 3);
	assert_string_equal(
		status_condition(s, "Ready", "message"),
		"the last valid spec vmd kept (generation 2) is older than what its VM runs (generation 3); vmd leaves the VM as it runs until its file is valid again");
	assert_int_equal(json_array_size(json_object_get(s, "disks")), 2);
	assert_string_equal(json_string_value(json_object_get(s, "startedAt")), started);
	json_decref(s);
	/* vmd plan says the same. */
	run_cli(&r, "plan", "--sandboxes", f->sb, "--run-dir", f->run, "--state-dir", f->state);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(
		r.out,
		"web: nothing: the last valid spec kept is older than what its VM runs: the daemon leaves it as it runs\n"));
	assert_null(strstr(r.out, "disk-remove"));
	/* Ten grace periods later: nothing was taken from the VM. */
	wait_grace_periods(f);
	s = status_of(f, "web");
	assert_int_equal(json_array_size(json_object_get(s, "disks")), 2);
	assert_int_equal(json_integer_value(json_object_get(s, "generation")), 3);
	json_decref(s);

	/* Valid again, as generation 3 was: generation 4, applied, nothing removed. */
	put(f, "web.yaml", WEB_D2);
	json_decref(wait_status(f, "web", disks_settled, (void *)4));
	log = test_read_file(f->log, NULL);
	assert_null(strstr(log, "disk-remove"));
	assert_non_null(strstr(
		log,
		"web: the last valid spec in the state dir (generation 2) is older than what its VM runs (generation 3)"));
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_invalid_without_last_valid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_written_on_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readopt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_instance, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watchdog, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restarts_and_backoff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_untrusted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_editor_save, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_required, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backend_rule, setup, teardown),
		cmocka_unit_test_setup_teardown(test_persisted_backend_rule, setup, teardown),
		cmocka_unit_test_setup_teardown(test_observed_generation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inotify_instances, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inotify_watches, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_write_failed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_spec_after_restart, setup, teardown),
	};

	return cmocka_run_group_tests_name("daemon", tests, NULL, NULL);
}
