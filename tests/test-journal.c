/* SPDX-License-Identifier: MIT */
/*
 * vmd's journal entries, as journald stores them. A child enters a mount namespace of its
 * own with a fresh /run (and /var/log/journal, so the host's journal is never touched),
 * starts Debian's real systemd-journald there, runs `vmd daemon --log-target journal`,
 * and exports `journalctl -o json`. The test then checks the structured fields; and what
 * vmd does when that journald is stopped under it, or was never there.
 */
#include <fcntl.h>
#include <jansson.h>
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

#define JOURNALD "/lib/systemd/systemd-journald"

/* Run argv with stdout and stderr to out (a file or a pipe). */
static pid_t spawn_fd(char *const argv[], int out)
{
	pid_t pid = fork();

	if (pid == 0) {
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

static pid_t spawn(char *const argv[], const char *out_path)
{
	int out = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	pid_t pid = spawn_fd(argv, out);

	close(out);
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

/* A mount namespace of this process's own, with an empty /run: no journal socket in it. */
static int private_run(void)
{
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
	return 0;
}

/* Whether a journald listens on the socket (a stopped one leaves it behind). */
static bool journal_listening(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = "/run/systemd/journal/socket" };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool r = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;

	if (fd >= 0)
		close(fd);
	return r;
}

/* A journald of this namespace, logging to dir/journald.log; -1 if it never listens. */
static pid_t start_journald(const char *dir)
{
	char jlog[512];
	pid_t journald;

	snprintf(jlog, sizeof(jlog), "%s/journald.log", dir);
	journald = spawn((char *[]){ (char *)JOURNALD, NULL }, jlog);

	for (int i = 0; i < 200 && !journal_listening(); i++)
		sleep_ms(50);
	if (!journal_listening()) {
		stop(journald);
		return -1;
	}
	return journald;
}

/* private_run() and a journald in it: its pid, or -(the exit code that says what failed). */
static pid_t journald_in_namespace(const char *dir)
{
	int r = private_run();
	pid_t journald;

	if (r != 0)
		return -r;
	journald = start_journald(dir);
	return journald < 0 ? -14 : journald;
}

/* journald writes as it receives: export it to json until it has what is awaited. */
static void export_journal(const char *json, const char *awaited)
{
	for (int i = 0; i < 100; i++) {
		pid_t jc;

		(void)unlink(json);
		jc = spawn((char *[]){ (char *)"/usr/bin/journalctl", (char *)"-o", (char *)"json",
				       (char *)"--no-pager", (char *)"SYSLOG_IDENTIFIER=vmd", NULL },
			   json);
		(void)waitpid(jc, NULL, 0);
		if (file_has(json, awaited))
			break;
		sleep_ms(100);
	}
}

/* vmd daemon --log-target journal on dir's directories; its output to out, or dir/vmd.log. */
static pid_t spawn_vmd(const char *dir, int out)
{
	char sb[512], run[512], state[512], log[512];
	pid_t pid;

	snprintf(sb, sizeof(sb), "%s/sandboxes", dir);
	snprintf(run, sizeof(run), "%s/run", dir);
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(log, sizeof(log), "%s/vmd.log", dir);
	if (out < 0) {
		out = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		pid = spawn_vmd(dir, out);
		close(out);
		return pid;
	}
	return spawn_fd((char *[]){ (char *)test_vmd(), (char *)"daemon", (char *)"--sandboxes", sb,
				    (char *)"--run-dir", run, (char *)"--state-dir", state,
				    (char *)"--log-target", (char *)"journal", (char *)"--grace",
				    (char *)"0.2", NULL },
			out);
}

/* Wait (bounded) until sandbox name is Running. */
static bool wait_running(const char *dir, const char *name)
{
	char path[1024];

	snprintf(path, sizeof(path), "%s/run/%s/status.json", dir, name);
	for (int i = 0; i < 400 && !file_has(path, "\"phase\": \"Running\""); i++)
		sleep_ms(50);
	return file_has(path, "\"phase\": \"Running\"");
}

/* Runs in the forked child, in its own mount namespace: no cmocka here, only exit codes. */
static int in_namespace(const char *dir)
{
	pid_t journald = journald_in_namespace(dir), vmd;
	char json[512];

	if (journald < 0)
		return -journald;
	snprintf(json, sizeof(json), "%s/journal.json", dir);
	vmd = spawn_vmd(dir, -1);
	(void)(wait_running(dir, "web") && wait_running(dir, "flaky"));
	stop(vmd);
	export_journal(json, "stopping; VMs keep running");
	stop(journald);
	return 0;
}

/* A new sandbox file, written as GitOps tools write it (renamed into place); no cmocka here. */
static bool put(const char *dir, const char *name)
{
	char tmp[1024], dst[1024];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s/sandboxes/.%s.tmp", dir, name);
	snprintf(dst, sizeof(dst), "%s/sandboxes/%s.yaml", dir, name);
	f = fopen(tmp, "we");
	if (!f)
		return false;
	fputs("apiVersion: vmd/v1\nkind: Sandbox\nspec: {backend: noop, memory: 64Mi}\n", f);
	return fclose(f) == 0 && rename(tmp, dst) == 0;
}

/*
 * journald stopped under a running vmd, two sandboxes added meanwhile, journald started
 * again and a SIGHUP: the child's side, in its own namespace.
 */
static int journal_outage(const char *dir)
{
	pid_t journald = journald_in_namespace(dir), vmd;
	char json[512];
	int r = 0;

	if (journald < 0)
		return -journald;
	snprintf(json, sizeof(json), "%s/journal.json", dir);
	vmd = spawn_vmd(dir, -1);
	if (!wait_running(dir, "web"))
		r = 20;
	/* Gone: its socket is left, and nobody listens on it any more. */
	stop(journald);
	if (r == 0 && !(put(dir, "db") && wait_running(dir, "db")))
		r = 21;
	if (r == 0 && !(put(dir, "api") && wait_running(dir, "api")))
		r = 22;
	journald = start_journald(dir);
	if (journald < 0) {
		stop(vmd);
		return 15;
	}
	(void)kill(vmd, SIGHUP);
	export_journal(json, "reloaded: ");
	stop(vmd);
	stop(journald);
	return r;
}

/*
 * No journald at all, not even its socket: vmd on web with its standard error to
 * vmd.log; then again, with db added, and a standard error nobody reads. The child's side.
 */
static int journal_never_there(const char *dir)
{
	pid_t vmd;
	int p[2], r;

	r = private_run();
	if (r != 0)
		return r;
	vmd = spawn_vmd(dir, -1);
	r = wait_running(dir, "web") ? 0 : 20;
	stop(vmd);
	if (r != 0)
		return r;
	if (pipe2(p, O_CLOEXEC) < 0 || !put(dir, "db"))
		return 16;
	close(p[0]);
	vmd = spawn_vmd(dir, p[1]);
	close(p[1]);
	r = wait_running(dir, "db") ? 0 : 21;
	/* It logged, and lives on. */
	if (r == 0 && waitpid(vmd, NULL, WNOHANG) != 0)
		r = 22;
	stop(vmd);
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

/* Run fn(dir) in a child of its own, as its namespace is; fail with what journald said. */
static void run_child(const char *dir, int (*fn)(const char *dir))
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(fn(dir));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		_cleanup_free_ char *jl = NULL, *vl = NULL;

		assert_true(asprintf(&jl, "%s/journald.log", dir) > 0);
		assert_true(asprintf(&vl, "%s/vmd.log", dir) > 0);
		fail_msg("the journal namespace failed (status %d); journald said: %s\nvmd said: %s",
			 WIFEXITED(status) ? WEXITSTATUS(status) : -1,
			 test_read_file(jl, NULL) ?: "", test_read_file(vl, NULL) ?: "");
	}
}

/* The entries journalctl exported to dir/journal.json. */
static json_t *read_entries(const char *dir)
{
	_cleanup_free_ char *json_path = NULL, *text = NULL;
	json_t *entries = json_array();
	char *save = NULL;

	assert_true(asprintf(&json_path, "%s/journal.json", dir) > 0);
	text = test_read_file(json_path, NULL);
	assert_non_null(text);
	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(l, 0, NULL);

		if (j)
			json_array_append_new(entries, j);
	}
	assert_true(json_array_size(entries) > 0);
	return entries;
}

static unsigned count(const char *haystack, const char *needle)
{
	unsigned n = 0;

	for (const char *p = haystack; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static const char *WEB = "apiVersion: vmd/v1\nkind: Sandbox\nspec: {backend: noop, memory: 64Mi}\n";

static void test_structured_entries(void **state _unused_)
{
	char *dir = test_tmpdir();
	json_t *entries, *e;

	test_write_str(dir, "sandboxes/web.yaml", WEB);
	test_write_str(
		dir, "sandboxes/flaky.yaml",
		"apiVersion: vmd/v1\nkind: Sandbox\nmetadata: {labels: {noop.vmd/fail-start: \"1\"}}\nspec: {backend: noop, memory: 64Mi}\n");
	test_write_str(
		dir, "sandboxes/bad.yaml",
		"apiVersion: vmd/v1\nkind: Sandbox\nspec: {backend: noop, memory: 64Mi, vpcus: 2}\n");

	run_child(dir, in_namespace);
	entries = read_entries(dir);

	/* An action taken: every field, and journalctl VMD_SANDBOX=web tells the story. */
	e = find_entry(entries, "VMD_SANDBOX", "web", "VMD_ACTION", "start");
	assert_non_null(e);
	assert_string_equal(field(e, "VMD_RESULT"), "done");
	assert_string_equal(field(e, "VMD_BACKEND"), "noop");
	assert_string_equal(field(e, "MESSAGE_ID"), "57778e3611874f63ae7e3793a57af4db");
	assert_string_equal(field(e, "PRIORITY"), "6");
	/* The sandbox leads the message, so that a plain `journalctl -u vmd` reads well. */
	assert_string_equal(field(e, "MESSAGE"), "web: start: spec.state is running");

	/* An action that failed, with its errno, then the recovery. */
	e = find_entry(entries, "VMD_SANDBOX", "flaky", "VMD_RESULT", "failed");
	assert_non_null(e);
	assert_string_equal(field(e, "MESSAGE_ID"), "38f80e01d6c445f78e922716180a2829");
	assert_string_equal(field(e, "ERRNO"), "5");
	assert_string_equal(field(e, "VMD_ACTION"), "start");
	assert_string_equal(field(e, "PRIORITY"), "3");
	e = find_entry(entries, "VMD_SANDBOX", "flaky", "VMD_RESULT", "recovered");
	assert_non_null(e);
	assert_string_equal(field(e, "MESSAGE_ID"), "25722bd8c7614c3a9a88466d5c58b1d4");
	assert_string_equal(field(e, "MESSAGE"), "flaky: recovered after 1 failed attempts");

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

	/* Every entry of vmd's has a kind, and one with a sandbox names it first. */
	for (size_t i = 0; i < json_array_size(entries); i++) {
		json_t *x = json_array_get(entries, i);
		const char *sb = json_string_value(json_object_get(x, "VMD_SANDBOX"));

		if (!streq(field(x, "SYSLOG_IDENTIFIER"), "vmd"))
			continue;
		if (!json_object_get(x, "MESSAGE_ID"))
			fail_msg("no MESSAGE_ID: %s", field(x, "MESSAGE"));
		if (sb && strncmp(field(x, "MESSAGE"), sb, strlen(sb)) != 0)
			fail_msg("MESSAGE does not name %s: %s", sb, field(x, "MESSAGE"));
	}

	json_decref(entries);
	test_tmpdir_remove(dir);
}

/* The message ids that reconciler/log.h defines, as a NULL-terminated array. */
static char **log_h_ids(void)
{
	_cleanup_free_ char *text = test_read_file(test_src("reconciler/log.h"), NULL);
	char **ids = calloc(64, sizeof(char *));
	size_t n = 0;

	assert_non_null(text);
	assert_non_null(ids);
	for (char *p = text; (p = strstr(p, "#define LOG_MESSAGE_")); p++) {
		char *q = strchr(p, '"');

		assert_non_null(q);
		assert_true(n < 63);
		ids[n++] = strndup(q + 1, 32);
	}
	assert_true(n >= 11);
	return ids;
}

/*
 * catalog/vmd.catalog: one entry for each message id of log.h and none other, each with
 * a Subject, Defined-By and a text; and journalctl --update-catalog takes it in without a
 * word, on a root of the test's own, and lists every id.
 */
static void test_catalog(void **state _unused_)
{
	_cleanup_free_ char *text = test_read_file(test_src("catalog/vmd.catalog"), NULL);
	char **ids = log_h_ids(), *root = test_tmpdir(), *entry;
	_cleanup_free_ char *root_arg = NULL;
	unsigned entries = 0;
	TestRun run;

	assert_non_null(text);
	/* Entries start with "-- ID" at the start of a line. */
	for (entry = strstr(text, "\n-- "); entry; entry = strstr(entry + 1, "\n-- ")) {
		char *end = strstr(entry + 1, "\n-- ");
		_cleanup_free_ char *e =
			end ? strndup(entry + 1, (size_t)(end - entry - 1)) : strdup(entry + 1);
		bool known = false;

		assert_non_null(e);
		assert_int_equal(strspn(e + 3, "0123456789abcdef"), 32);
		assert_int_equal(e[35], '\n');
		for (char **i = ids; *i; i++)
			known = known || strncmp(*i, e + 3, 32) == 0;
		if (!known)
			fail_msg("catalog entry %.32s is no id of log.h", e + 3);
		assert_non_null(strstr(e, "\nSubject: "));
		assert_non_null(strstr(e, "\nDefined-By: vmd\n"));
		/* A header, an empty line, and a text. */
		assert_non_null(strstr(e, "\n\n"));
		assert_true(strlen(strstr(e, "\n\n")) > 20);
		entries++;
	}
	for (char **i = ids; *i; i++) {
		_cleanup_free_ char *head = NULL;

		assert_true(asprintf(&head, "\n-- %s\n", *i) > 0);
		if (!strstr(text, head))
			fail_msg("message id %s has no catalog entry", *i);
		assert_null(strstr(strstr(text, head) + 1, head));
	}

	test_write_str(root, "usr/lib/systemd/catalog/vmd.catalog", text);
	assert_true(asprintf(&root_arg, "--root=%s", root) > 0);
	test_run(&run, (char *[]){ "/usr/bin/journalctl", root_arg, "--update-catalog", NULL });
	assert_int_equal(run.status, 0);
	assert_string_equal(run.err, "");
	test_run_done(&run);
	test_run(&run, (char *[]){ "/usr/bin/journalctl", root_arg, "--list-catalog", NULL });
	assert_int_equal(run.status, 0);
	for (char **i = ids; *i; i++)
		assert_non_null(strstr(run.out, *i));
	assert_int_equal(count(run.out, "\n"), entries);
	test_run_done(&run);

	for (char **i = ids; *i; i++)
		free(*i);
	free(ids);
	test_tmpdir_remove(root);
}

/*
 * journald stopped under vmd: what vmd logs meanwhile goes to standard error, which says
 * so once, not with every entry; once journald is back, entries go to it again.
 */
static void test_journal_gone(void **state _unused_)
{
	char *dir = test_tmpdir();
	_cleanup_free_ char *log_path = NULL, *log = NULL;
	json_t *entries;

	test_write_str(dir, "sandboxes/web.yaml", WEB);
	run_child(dir, journal_outage);
	assert_true(asprintf(&log_path, "%s/vmd.log", dir) > 0);
	log = test_read_file(log_path, NULL);
	assert_non_null(log);
	/* Before the outage, in the journal only; during it, on standard error. */
	assert_null(strstr(log, "vmd: web: start:"));
	assert_non_null(strstr(log, "vmd: db: start: spec.state is running\n"));
	assert_non_null(strstr(log, "vmd: api: start: spec.state is running\n"));
	assert_int_equal(count(log, "cannot log to the journal"), 1);
	assert_non_null(strstr(log, "vmd: cannot log to the journal: "));
	assert_non_null(strstr(log, "logging to standard error until it is back\n"));

	entries = read_entries(dir);
	assert_non_null(find_entry(entries, "VMD_SANDBOX", "web", "VMD_ACTION", "start"));
	assert_null(find_entry(entries, "VMD_SANDBOX", "db", "VMD_ACTION", "start"));
	assert_non_null(find_entry(
		entries, "MESSAGE_ID", "83a9824971ec45bd8c78cacdd5d04e93", "MESSAGE",
		"the journal takes entries again; what was logged meanwhile went to standard error"));
	json_decref(entries);
	test_tmpdir_remove(dir);
}

/*
 * No journal socket at all (libsystemd takes that for success, and drops the entry):
 * standard error, said once. And with standard error a pipe nobody reads, vmd logs and
 * runs on all the same.
 */
static void test_journal_never_there(void **state _unused_)
{
	char *dir = test_tmpdir();
	_cleanup_free_ char *log_path = NULL, *log = NULL;

	test_write_str(dir, "sandboxes/web.yaml", WEB);
	run_child(dir, journal_never_there);
	assert_true(asprintf(&log_path, "%s/vmd.log", dir) > 0);
	log = test_read_file(log_path, NULL);
	assert_non_null(log);
	assert_non_null(strstr(log, "vmd: cannot log to the journal: No such file or directory; "
				    "logging to standard error until it is back\n"));
	assert_int_equal(count(log, "cannot log to the journal"), 1);
	assert_non_null(strstr(log, "vmd: web: start: spec.state is running\n"));
	assert_non_null(strstr(log, "vmd: stopping; VMs keep running\n"));
	test_tmpdir_remove(dir);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_structured_entries),
		cmocka_unit_test(test_journal_gone),
		cmocka_unit_test(test_journal_never_there),
		cmocka_unit_test(test_catalog),
	};

	return cmocka_run_group_tests_name("journal", tests, NULL, NULL);
}
