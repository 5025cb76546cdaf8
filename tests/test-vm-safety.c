/* SPDX-License-Identifier: MIT */
/*
 * VMs vmd must never duplicate or forget, on the real `vmd daemon`: a VMM that runs without
 * a record is found and left alone, never doubled (the QEMU simulator, tests/sim/qemu, and
 * the Cloud Hypervisor one); a record whose process identity does not hold is not adopted,
 * and no second VMM is started beside its process; a second daemon on the same sandbox
 * directory exits; a crash loop's backoff survives a kill -9 of vmd; and what a kill left
 * half-written is removed. Processes are counted by their command line, which names the
 * sandbox's runtime dir: what vmd started, whatever its records say. Waits are bounded (a
 * failure, not a speed claim).
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "status.h"
#include "util.h"

static char sim_qemu[4096], sim_ch[4096];

static int setup(void **state)
{
	static const char *const args[] = { "--qemu-binary", sim_qemu, "--cloud-hypervisor-binary",
					    sim_ch, NULL };
	int r = fixture_setup(state);

	((Fixture *)*state)->daemon_args = args;
	return r;
}

/*
 * How many live processes name <run>/<name>/ in their command line, or have their stderr
 * there (QEMU's qemu.log: its argv names no file of the run dir): VMMs vmd started for it.
 */
static unsigned count_vmms(Fixture *f, const char *name)
{
	_cleanup_free_ char *needle = path_in(f->run, "%s/", name);
	DIR *d = opendir("/proc");
	struct dirent *e;
	unsigned n = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		_cleanup_free_ char **argv = NULL;
		char link[300], err[4096] = "";
		bool named = false;

		if (e->d_name[0] < '1' || e->d_name[0] > '9' ||
		    process_argv((pid_t)atoi(e->d_name), &argv) < 0)
			continue;
		for (size_t i = 0; argv[i]; i++)
			named = named || strstr(argv[i], needle);
		snprintf(link, sizeof(link), "/proc/%s/fd/2", e->d_name);
		if (readlink(link, err, sizeof(err) - 1) > 0 &&
		    strncmp(err, needle, strlen(needle)) == 0)
			named = true;
		n += named;
	}
	closedir(d);
	return n;
}

static unsigned log_count(Fixture *f, const char *what)
{
	_cleanup_free_ char *log = test_read_file(f->log, NULL);
	unsigned n = 0;

	for (const char *p = log; p && (p = strstr(p, what)); p += strlen(what))
		n++;
	return n;
}

/* SIGHUP, and wait until the pass it asks for is done: everything was looked at again. */
static void reload(Fixture *f)
{
	unsigned before = log_count(f, "vmd: reloaded:");
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	assert_int_equal(kill(f->pid, SIGHUP), 0);
	while (log_count(f, "vmd: reloaded:") == before) {
		if (ms_now() > end)
			fail_msg("no reload after SIGHUP");
		usleep(20000);
	}
}

/* Left alone: phase Unknown, Ready Unknown and Degraded True, both with reason arg. */
static bool stray(json_t *s, const void *arg)
{
	return phase_is(s, "Unknown") && streq(status_condition(s, "Ready", "status"), "Unknown") &&
	       streq(status_condition(s, "Ready", "reason"), arg) &&
	       streq(status_condition(s, "Degraded", "status"), "True") &&
	       streq(status_condition(s, "Degraded", "reason"), arg);
}

/* Running and Ready, with a VMM other than pid arg. */
static bool running_anew(json_t *s, const void *arg)
{
	return ready(s, "Running") && pid_of(s) != (pid_t)(intptr_t)arg;
}

static void remove_run_file(Fixture *f, const char *name, const char *file)
{
	_cleanup_free_ char *p = path_in(f->run, "%s/%s", name, file);

	assert_int_equal(unlink(p), 0);
}

static json_t *record(Fixture *f, const char *name)
{
	_cleanup_free_ char *p = path_in(f->run, "%s/vm.json", name);
	json_t *j = json_load_file(p, 0, NULL);

	assert_non_null(j);
	return j;
}

static void put_record(Fixture *f, const char *name, json_t *j)
{
	_cleanup_free_ char *p = path_in(f->run, "%s/vm.json", name);

	assert_int_equal(json_dump_file(j, p, JSON_SORT_KEYS), 0);
}

/* Wait until pid is gone, and reap it if it came to this binary (vmd killed with -9). */
static void kill_and_wait(pid_t pid)
{
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	assert_int_equal(kill(pid, SIGKILL), 0);
	while (kill(pid, 0) == 0) {
		(void)waitpid(pid, NULL, WNOHANG);
		if (ms_now() > end)
			fail_msg("pid %d outlives SIGKILL", (int)pid);
		usleep(10000);
	}
}

/*
 * vm.json deleted under a QEMU that runs, vmd killed meanwhile: the next vmd finds the
 * QEMU by its command line (its QMP fd) and its stderr (the runtime dir's qemu.log),
 * leaves it alone (RecordLost) and starts no second; a SIGHUP looks again and changes nothing; the
 * record put back, a SIGHUP adopts it.
 */
static void test_record_lost_qemu(void **state)
{
	Fixture *f = *state;
	json_t *rec, *s;
	pid_t pid;

	fixture_put_sim(f, "vm", "qemu", "  memory: 64Mi\n");
	fixture_start_daemon(f);
	pid = fixture_running(f, "vm");
	assert_int_equal(count_vmms(f, "vm"), 1);
	fixture_stop_daemon(f, SIGKILL);
	rec = record(f, "vm");
	remove_run_file(f, "vm", "vm.json");

	fixture_start_daemon(f);
	s = fixture_wait_status(f, "vm", stray, "RecordLost");
	assert_int_equal(pid_of(s), pid);
	assert_non_null(strstr(status_condition(s, "Degraded", "message"), "no record of it"));
	json_decref(s);
	assert_int_equal(count_vmms(f, "vm"), 1);
	assert_int_equal(log_count(f, "vm: start: done"), 1); /* the first vmd's */
	reload(f);
	s = fixture_status(f, "vm");
	assert_true(stray(s, "RecordLost"));
	json_decref(s);
	assert_int_equal(count_vmms(f, "vm"), 1);

	/* The operator puts the record back: it is adopted, the very same QEMU. */
	put_record(f, "vm", rec);
	json_decref(rec);
	reload(f);
	assert_int_equal(fixture_running(f, "vm"), pid);
	assert_int_equal(count_vmms(f, "vm"), 1);
	assert_int_equal(log_count(f, "vm: start: done"), 1);
}

/*
 * The same for Cloud Hypervisor, with its API socket gone too: only the command line tells.
 * The operator stops the stray; a SIGHUP, and vmd starts the VM.
 */
static void test_record_lost_cloud_hypervisor(void **state)
{
	Fixture *f = *state;
	json_t *s;
	pid_t pid;

	fixture_put_sim(f, "ch", "cloud-hypervisor", "  memory: 64Mi\n");
	fixture_start_daemon(f);
	pid = fixture_running(f, "ch");
	fixture_stop_daemon(f, SIGKILL);
	remove_run_file(f, "ch", "vm.json");
	remove_run_file(f, "ch", "api.sock");

	fixture_start_daemon(f);
	s = fixture_wait_status(f, "ch", stray, "RecordLost");
	assert_int_equal(pid_of(s), pid);
	json_decref(s);
	assert_int_equal(count_vmms(f, "ch"), 1);
	reload(f);
	assert_int_equal(count_vmms(f, "ch"), 1);

	kill_and_wait(pid);
	reload(f);
	json_decref(fixture_wait_status(f, "ch", running_anew, (void *)(intptr_t)pid));
	assert_int_equal(count_vmms(f, "ch"), 1);
}

/*
 * A record naming a live process of vmd's QEMU binary, running for this very sandbox, but
 * with another start time (a reused pid, as the record sees it): not adopted (NotOurs), and
 * no second QEMU beside it; a start time of 0 (what vmd wrote before it read the right
 * field) is no better. The right start time put back, a SIGHUP adopts it.
 */
static void test_identity_not_ours(void **state)
{
	Fixture *f = *state;
	json_int_t start;
	unsigned handshakes;
	json_t *rec, *s;
	pid_t pid;

	fixture_put_sim(f, "vm", "qemu", "  memory: 64Mi\n");
	fixture_start_daemon(f);
	pid = fixture_running(f, "vm");
	fixture_stop_daemon(f, SIGKILL);
	handshakes = fixture_count_requests(f, "query-name");
	rec = record(f, "vm");
	start = json_integer_value(json_object_get(rec, "startTime"));
	assert_true(start > 0);
	json_object_set_new(rec, "startTime", json_integer(start + 1));
	put_record(f, "vm", rec);

	fixture_start_daemon(f);
	s = fixture_wait_status(f, "vm", stray, "NotOurs");
	assert_int_equal(pid_of(s), pid);
	assert_non_null(
		strstr(status_condition(s, "Degraded", "message"), "not the process recorded"));
	json_decref(s);
	assert_int_equal(count_vmms(f, "vm"), 1);

	json_object_set_new(rec, "startTime", json_integer(0));
	put_record(f, "vm", rec);
	reload(f);
	s = fixture_status(f, "vm");
	assert_true(stray(s, "NotOurs"));
	json_decref(s);
	assert_int_equal(count_vmms(f, "vm"), 1);
	/* Never asked who it is: a process that is not the recorded one is not talked to. */
	assert_int_equal(fixture_count_requests(f, "query-name"), handshakes);

	json_object_set_new(rec, "startTime", json_integer(start));
	put_record(f, "vm", rec);
	json_decref(rec);
	reload(f);
	assert_int_equal(fixture_running(f, "vm"), pid);
	assert_int_equal(count_vmms(f, "vm"), 1);
}

/*
 * A record whose pid now runs the same binary for another sandbox (the pid reused by
 * another VM of vmd's) names a VM that is gone: it is started again, and the other VM's
 * QEMU is neither touched nor taken for this one.
 */
static void test_pid_reused_by_other_vm(void **state)
{
	Fixture *f = *state;
	json_int_t start;
	pid_t a, b;
	json_t *rec, *s;

	fixture_put_sim(f, "a", "qemu", "  memory: 64Mi\n");
	fixture_put_sim(f, "b", "qemu", "  memory: 64Mi\n");
	fixture_start_daemon(f);
	a = fixture_running(f, "a");
	b = fixture_running(f, "b");
	fixture_stop_daemon(f, SIGKILL);
	kill_and_wait(a);
	/* b started after a's pid was given back: its start time is another. */
	rec = record(f, "b");
	start = json_integer_value(json_object_get(rec, "startTime"));
	json_decref(rec);
	rec = record(f, "a");
	json_object_set_new(rec, "pid", json_integer(b));
	json_object_set_new(rec, "startTime", json_integer(start - 1));
	put_record(f, "a", rec);
	json_decref(rec);

	fixture_start_daemon(f);
	s = fixture_wait_status(f, "a", running_anew, (void *)(intptr_t)a);
	assert_true(pid_of(s) != b);
	json_decref(s);
	assert_int_equal(fixture_running(f, "b"), b);
	assert_int_equal(count_vmms(f, "a"), 1);
	assert_int_equal(count_vmms(f, "b"), 1);
}

/* Run vmd daemon with args; its exit status, or -1 if it still runs after the bound. */
static int run_bounded(Fixture *f, const char *const *args, const char *log)
{
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		const char *argv[32] = { test_vmd(), "daemon",	   "--log-target",
					 "console",  "--vmm-user", "root" };
		size_t n = 6;
		FILE *out = fopen(log, "we");

		for (size_t i = 0; args[i] && n < 31; i++)
			argv[n++] = args[i];
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (out)
			dup2(fileno(out), 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (ms_now() > end) {
			test_kill_wait(&pid, SIGKILL);
			(void)f;
			return -1;
		}
		usleep(20000);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A second daemon on the same sandbox directory, with a run dir of its own: it exits. */
static void test_second_daemon_same_sandboxes(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *run2 = path_in(f->dir, "run2"), *state2 = path_in(f->dir, "state2"),
			    *log2 = path_in(f->dir, "vmd2.log"), *err = NULL, *want = NULL,
			    *status2 = path_in(run2, "web/status.json");
	const char *const args[] = { "--sandboxes", f->sb,  "--run-dir", run2,
				     "--state-dir", state2, NULL };

	fixture_put(f, "web",
		    "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "web", ready, "Running"));

	assert_int_equal(run_bounded(f, args, log2), 1);
	err = test_read_file(log2, NULL);
	assert_true(asprintf(&want, "another vmd (pid %d, run dir %s) is running on sandbox dir %s",
			     (int)f->pid, f->run, f->sb) > 0);
	if (!strstr(err, want))
		fail_msg("expected '%s'; it said:\n%s", want, err);
	/* It started nothing, and the first one runs on. */
	assert_int_equal(access(status2, F_OK), -1);
	assert_int_equal(kill(f->pid, 0), 0);
}

/* "2026-11-21T23:21:54.007Z" as CLOCK_REALTIME microseconds. */
static uint64_t parse_time(const char *s)
{
	struct tm tm = {};
	unsigned ms = 0;
	const char *rest;

	assert_non_null(s);
	rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	assert_non_null(rest);
	assert_int_equal(sscanf(rest, ".%3uZ", &ms), 1);
	return (uint64_t)timegm(&tm) * 1000000 + ms * 1000ull;
}

static uint64_t noop_started(Fixture *f, const char *name)
{
	_cleanup_free_ char *p = path_in(f->run, "%s/noop.json", name);
	json_t *j = json_load_file(p, 0, NULL);
	uint64_t at = (uint64_t)json_integer_value(json_object_get(j, "startedAtUsec"));

	json_decref(j);
	return at;
}

/* Backing off a crash loop after its n-th restart (the next wait is 2^(n-1) s). */
static bool backing_off_after(json_t *s, const void *arg)
{
	return phase_is(s, "Failed") &&
	       streq(status_condition(s, "Degraded", "reason"), "CrashLoop") &&
	       !json_is_null(json_object_get(s, "nextRetryAt")) &&
	       json_integer_value(json_object_get(s, "restarts")) >= (json_int_t)(uintptr_t)arg;
}

static bool started_after(json_t *s, const void *arg)
{
	const uint64_t *t = arg;
	const char *at = json_string_value(json_object_get(s, "startedAt"));

	return at && parse_time(at) > *t;
}

static bool says_restarting_in(json_t *s, const void *arg)
{
	const char *e = json_string_value(json_object_get(s, "lastError"));

	return phase_is(s, "Failed") && e && strstr(e, arg);
}

/*
 * A VM in a crash loop, vmd killed while it backs off: the next vmd goes on where it was.
 * Its restart waits for the nextRetryAt the status gave, restarts does not go down, and the
 * next exit backs off one step further.
 */
static void test_backoff_survives_kill(void **state)
{
	Fixture *f = *state;
	uint64_t retry_at, started;
	json_int_t restarts;
	json_t *s;

	fixture_put(f, "crashy",
		    "apiVersion: vmd/v1\nkind: Sandbox\n"
		    "metadata:\n  labels: {noop.vmd/exit-after: 300ms}\n"
		    "spec:\n  backend: noop\n  memory: 64Mi\n");
	fixture_start_daemon(f);
	/* 3 restarts: exits at once, after 1 s, after 2 s; now it waits 4 s. */
	s = fixture_wait_status(f, "crashy", backing_off_after, (void *)3);
	fixture_stop_daemon(f, SIGKILL);
	retry_at = parse_time(json_string_value(json_object_get(s, "nextRetryAt")));
	restarts = json_integer_value(json_object_get(s, "restarts"));
	assert_non_null(
		strstr(json_string_value(json_object_get(s, "lastError")), "restarting in 4 s"));
	json_decref(s);
	started = noop_started(f, "crashy");

	fixture_start_daemon(f);
	s = fixture_wait_status(f, "crashy", started_after, &started);
	/* Not sooner than the status said (to its millisecond), and counted on. */
	assert_true(noop_started(f, "crashy") + 1000 >= retry_at);
	assert_int_equal(json_integer_value(json_object_get(s, "restarts")), restarts + 1);
	json_decref(s);
	/* Its 5th quick exit in a row: 8 s. */
	json_decref(fixture_wait_status(f, "crashy", says_restarting_in, "restarting in 8 s"));
}

static bool crash_loop_says(json_t *s, const void *arg)
{
	return s && streq(status_condition(s, "Degraded", "reason"), "CrashLoop") &&
	       strstr(status_condition(s, "Degraded", "message"), arg);
}

/*
 * A QEMU that exits with an error soon after each start: the crash loop's message says
 * why in QEMU's own words (the last line of its log), not only how often.
 */
static void test_crash_loop_says_why(void **state)
{
	Fixture *f = *state;

	fixture_put_sim(f, "k", "qemu", "  memory: 64Mi\n  cmdline: sim.exit-at-boot=3\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(
		f, "k", crash_loop_says,
		"(the last: QEMU exited: qemu: simulated fatal error (sim.exit-at-boot=3), status 3)"));
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static void wait_gone(Fixture *f, const char *path)
{
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	while (exists(path)) {
		if (ms_now() > end) {
			_cleanup_free_ char *log = test_read_file(f->log, NULL);

			fail_msg("%s is still there; vmd said:\n%s", path, log ?: "");
		}
		usleep(20000);
	}
}

/*
 * What a kill left half-written (write_file_atomic's temporaries) is removed at the next
 * start, in the run dir and the state dir; and a leftover no longer keeps the runtime dir
 * of a removed sandbox.
 */
static void test_leftovers(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *status_tmp = path_in(f->run, "web/status.json.tmp-AbC123"),
			    *noop_tmp = path_in(f->run, "web/noop.json.tmp-z9Y8x7"),
			    *state_tmp = path_in(f->state, "sandboxes/web.json.tmp-Q1w2E3"),
			    *other = path_in(f->run, "web/notes.tmp-1"),
			    *file = path_in(f->sb, "web.yaml"), *dir = path_in(f->run, "web"),
			    *late = NULL;

	fixture_put(f, "web",
		    "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "web", ready, "Running"));
	fixture_stop_daemon(f, SIGKILL);
	test_write_str(f->run, "web/status.json.tmp-AbC123", "{\"torn");
	test_write_str(f->run, "web/noop.json.tmp-z9Y8x7", "");
	test_write_str(f->state, "sandboxes/web.json.tmp-Q1w2E3", "{");
	test_write_str(f->run, "web/notes.tmp-1", "an operator's, not vmd's");

	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "web", ready, "Running"));
	wait_gone(f, status_tmp);
	wait_gone(f, noop_tmp);
	wait_gone(f, state_tmp);
	assert_true(exists(other));
	assert_int_equal(unlink(other), 0);

	/* Left after the start, by nobody in particular: the removal takes it along. */
	late = path_in(f->run, "web/status.json.tmp-LaTe00");
	test_write_str(f->run, "web/status.json.tmp-LaTe00", "");
	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "web", absent, NULL));
	wait_gone(f, dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_record_lost_qemu, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_record_lost_cloud_hypervisor, setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_identity_not_ours, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_pid_reused_by_other_vm, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_second_daemon_same_sandboxes, setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_backoff_survives_kill, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_leftovers, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_crash_loop_says_why, setup, fixture_teardown),
	};

	snprintf(sim_qemu, sizeof(sim_qemu), "%s", test_src("tests/sim/qemu"));
	snprintf(sim_ch, sizeof(sim_ch), "%s", test_src("tests/sim/cloud-hypervisor"));
	/* VMMs outlive a daemon killed with -9: they come to this binary, which reaps them. */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
