/* SPDX-License-Identifier: MIT */
/*
 * vmd's journal entries, as journald stores them. A child enters a mount namespace of its
 * own with a fresh /run (and /var/log/journal, so the host's journal is never touched),
 * starts Debian's real systemd-journald there, runs `vmd daemon --log-target journal`,
 * and exports `journalctl -o json`. The test then checks the structured fields.
 */
#include <fcntl.h>
#include <jansson.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "helpers.h"

#define JOURNALD "/lib/systemd/systemd-journald"

static pid_t spawn(char *const argv[], const char *out_path)
{
	pid_t pid = fork();

	if (pid == 0) {
		int out = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		/* Whatever happens to the process that started it, it does not outlive it. */
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

		dup2(null, 0);
		dup2(out, 1);
		dup2(out, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* SIGTERM, and SIGKILL if it is not gone within 10 s. */
static void stop(pid_t pid)
{
	(void)kill(pid, SIGTERM);
	for (int i = 0; i < 1000; i++) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return;
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	}
	(void)kill(pid, SIGKILL);
	(void)waitpid(pid, NULL, 0);
}

static void sleep_ms(long ms)
{
	nanosleep(&(struct timespec){ .tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000 }, NULL);
}

static bool file_has(const char *path, const char *what)
{
	_cleanup_free_ char *text = test_read_file(path, NULL);

	return text && strstr(text, what);
}

/* Runs in the forked child, in its own mount namespace: no cmocka here, only exit codes. */
static int in_namespace(const char *dir)
{
	char sb[512], run[512], state[512], log[512], jlog[512], json[512], st_web[1024],
		st_flaky[1024];
	pid_t journald, vmd;
	int r = 0;

	snprintf(sb, sizeof(sb), "%s/sandboxes", dir);
	snprintf(run, sizeof(run), "%s/run", dir);
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(log, sizeof(log), "%s/vmd.log", dir);
	snprintf(jlog, sizeof(jlog), "%s/journald.log", dir);
	snprintf(json, sizeof(json), "%s/journal.json", dir);
	snprintf(st_web, sizeof(st_web), "%s/web/status.json", run);
	snprintf(st_flaky, sizeof(st_flaky), "%s/flaky/status.json", run);

	if (unshare(CLONE_NEWNS) < 0)
		return 10;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return 11;
	if (mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
		return 12;
	if (access("/var/log/journal", F_OK) == 0 &&
	    mount("tmpfs", "/var/log/journal", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
		return 13;
	(void)mkdir("/run/systemd", 0755);
	(void)mkdir("/run/systemd/journal", 0755);

	journald = spawn((char *[]){ (char *)JOURNALD, NULL }, jlog);
	for (int i = 0; i < 200 && access("/run/systemd/journal/socket", F_OK) < 0; i++)
		sleep_ms(50);
	if (access("/run/systemd/journal/socket", F_OK) < 0) {
		r = 14;
		goto out;
	}

	vmd = spawn((char *[]){ (char *)test_vmd(), (char *)"daemon", (char *)"--sandboxes", sb,
				(char *)"--run-dir", run, (char *)"--state-dir", state,
				(char *)"--log-target", (char *)"journal", (char *)"--grace",
				(char *)"0.2", NULL },
		    log);
	for (int i = 0;
	     i < 400 && !(file_has(st_web, "\"Running\"") && file_has(st_flaky, "\"Running\"")); i++)
		sleep_ms(50);
	stop(vmd);

	/* journald writes as it receives; read until the daemon's last words are there. */
	for (int i = 0; i < 100; i++) {
		pid_t jc;

		(void)unlink(json);
		jc = spawn((char *[]){ (char *)"/usr/bin/journalctl", (char *)"-o", (char *)"json",
				       (char *)"--no-pager", (char *)"SYSLOG_IDENTIFIER=vmd", NULL },
			   json);
		(void)waitpid(jc, NULL, 0);
		if (file_has(json, "stopping; VMs keep running"))
			break;
		sleep_ms(100);
	}
out:
	stop(journald);
	return r;
}

static json_t *find_entry(json_t *entries, const char *k1, const char *v1, const char *k2,
			  const char *v2)
{
	size_t i;
	json_t *e;

	json_array_foreach(
		entries, i,
		e) if (streq_ptr(json_string_value(json_object_get(e, k1)), v1) &&
		       (!k2 || streq_ptr(json_string_value(json_object_get(e, k2)), v2))) return e;
	return NULL;
}

static const char *field(json_t *e, const char *k)
{
	return json_string_value(json_object_get(e, k)) ?: "(none)";
}

static void test_structured_entries(void **state _unused_)
{
	char *dir = test_tmpdir();
	_cleanup_free_ char *json_path = NULL, *text = NULL;
	json_t *entries = json_array(), *e;
	char *save = NULL;
	pid_t pid;
	int status;

	test_write_str(dir, "sandboxes/web.yaml",
		       "apiVersion: vmd/v1\nkind: Sandbox\nspec: {backend: noop, memory: 64Mi}\n");
	test_write_str(
		dir, "sandboxes/flaky.yaml",
		"apiVersion: vmd/v1\nkind: Sandbox\nmetadata: {labels: {noop.vmd/fail-start: \"1\"}}\nspec: {backend: noop, memory: 64Mi}\n");
	test_write_str(
		dir, "sandboxes/bad.yaml",
		"apiVersion: vmd/v1\nkind: Sandbox\nspec: {backend: noop, memory: 64Mi, vpcus: 2}\n");

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(in_namespace(dir));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		_cleanup_free_ char *jl = NULL;

		assert_true(asprintf(&jl, "%s/journald.log", dir) > 0);
		fail_msg("the journal namespace failed (status %d); journald said: %s",
			 WIFEXITED(status) ? WEXITSTATUS(status) : -1,
			 test_read_file(jl, NULL) ?: "");
	}

	assert_true(asprintf(&json_path, "%s/journal.json", dir) > 0);
	text = test_read_file(json_path, NULL);
	assert_non_null(text);
	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(l, 0, NULL);

		if (j)
			json_array_append_new(entries, j);
	}
	assert_true(json_array_size(entries) > 0);

	/* An action taken: every field, and journalctl VMD_SANDBOX=web tells the story. */
	e = find_entry(entries, "VMD_SANDBOX", "web", "VMD_ACTION", "start");
	assert_non_null(e);
	assert_string_equal(field(e, "VMD_RESULT"), "done");
	assert_string_equal(field(e, "VMD_BACKEND"), "noop");
	assert_string_equal(field(e, "MESSAGE_ID"), "57778e3611874f63ae7e3793a57af4db");
	assert_string_equal(field(e, "PRIORITY"), "6");
	assert_string_equal(field(e, "MESSAGE"), "start: spec.state is running");

	/* An action that failed, with its errno, then the recovery. */
	e = find_entry(entries, "VMD_SANDBOX", "flaky", "VMD_RESULT", "failed");
	assert_non_null(e);
	assert_string_equal(field(e, "MESSAGE_ID"), "38f80e01d6c445f78e922716180a2829");
	assert_string_equal(field(e, "ERRNO"), "5");
	assert_string_equal(field(e, "VMD_ACTION"), "start");
	assert_string_equal(field(e, "PRIORITY"), "3");
	assert_non_null(find_entry(entries, "VMD_SANDBOX", "flaky", "VMD_RESULT", "recovered"));

	/* A file refused. */
	e = find_entry(entries, "VMD_SANDBOX", "bad", "MESSAGE_ID",
		       "a899425d8991455cb2e0a31d8d4d9d43");
	assert_non_null(e);
	assert_string_equal(field(e, "VMD_RESULT"), "refused");
	assert_non_null(strstr(field(e, "MESSAGE"),
			       "bad.yaml:3:37: spec: unknown field 'vpcus'; did you mean 'vcpus'?"));

	/* The daemon's own events. */
	assert_non_null(find_entry(entries, "MESSAGE_ID", "83a9824971ec45bd8c78cacdd5d04e93",
				   "MESSAGE", "stopping; VMs keep running"));

	json_decref(entries);
	test_tmpdir_remove(dir);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_structured_entries),
	};

	return cmocka_run_group_tests_name("journal", tests, NULL, NULL);
}
