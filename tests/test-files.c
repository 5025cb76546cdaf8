/* SPDX-License-Identifier: MIT */
/*
 * The files vmd reads, laid out as an attacker or a careless pipeline would: the real
 * `vmd daemon` on the noop backend, and `vmd validate` beside it. Symlinks that leave the
 * sandbox directory are refused without their target being opened (an inotify watch on
 * it says so), with openat2 and without; directories count as files do; the trusted
 * writers are those it is told of; what it writes is not for everyone; a file whose name
 * is no sandbox's is reported once, and every name is escaped where it is shown. The test
 * binds its own NOTIFY_SOCKET: every datagram must be UTF-8. Waits are bounded: a failure,
 * never a speed claim.
 */
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "status.h"
#include "util.h"

#define WAIT_MS 20000
#define SECRET "SECRET-FIRST-LINE-7d1f"

static const char *const SPEC =
	"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n";

typedef struct Files {
	Fixture *f;
	char *notify_path;
	TestNotify notify;
} Files;

static int setup(void **state)
{
	Files *t = calloc(1, sizeof(*t));
	void *f = NULL;

	fixture_setup(&f);
	t->f = f;
	t->notify_path = path_in(t->f->dir, "notify");
	test_notify_open(&t->notify, t->notify_path);
	t->f->notify_socket = t->notify_path;
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	Files *t = *state;
	void *f = t->f;

	fixture_teardown(&f);
	test_notify_close(&t->notify);
	free(t->notify_path);
	free(t);
	return 0;
}

static void drain_notify(Files *t, int timeout_ms)
{
	test_notify_drain(&t->notify, timeout_ms);
}

static void expect_notify(Files *t, const char *what)
{
	test_notify_expect(&t->notify, what, WAIT_MS, t->f->log);
}

static void reload(Files *t)
{
	assert_int_equal(kill(t->f->pid, SIGHUP), 0);
	expect_notify(t, "RELOADING=1");
	expect_notify(t, "READY=1");
}

static bool reason_is(json_t *s, const void *arg)
{
	return s && streq(status_condition(s, "ConfigValid", "reason"), arg);
}

static json_t *wait_reason(Files *t, const char *name, const char *reason)
{
	return fixture_wait_status(t->f, name, reason_is, reason);
}

/* name's refusal: reason, and a message that says what; the caller frees nothing. */
static void expect_refused(Files *t, const char *name, const char *reason, const char *what)
{
	json_t *s = wait_reason(t, name, reason);
	const char *message = status_condition(s, "ConfigValid", "message");

	if (what && !strstr(message, what))
		fail_msg("%s: '%s' does not say '%s'", name, message, what);
	json_decref(s);
}

static void file_at(const char *dir, const char *name, const char *text, mode_t mode, uid_t uid,
		    gid_t gid)
{
	_cleanup_free_ char *p = path_in(dir, "%s", name);

	test_write_str(dir, name, text);
	assert_int_equal(chown(p, uid, gid), 0);
	assert_int_equal(chmod(p, mode), 0);
}

static void dir_at(const char *dir, const char *name, mode_t mode, uid_t uid, gid_t gid)
{
	_cleanup_free_ char *p = path_in(dir, "%s", name);

	(void)mkdir(p, 0700);
	assert_int_equal(chown(p, uid, gid), 0);
	assert_int_equal(chmod(p, mode), 0);
}

static void link_at(const char *dir, const char *target, const char *name)
{
	_cleanup_free_ char *p = path_in(dir, "%s", name);

	assert_int_equal(symlink(target, p), 0);
}

/* Every status.json under the run dir, one after the other. */
static char *all_status(Fixture *f)
{
	DIR *d = opendir(f->run);
	struct dirent *e;
	char *all = strdup("");

	while (d && (e = readdir(d))) {
		_cleanup_free_ char *p = path_in(f->run, "%s/status.json", e->d_name);
		_cleanup_free_ char *text = test_read_file(p, NULL);
		char *more = NULL;

		if (text && asprintf(&more, "%s%s", all, text) > 0) {
			free(all);
			all = more;
		}
	}
	if (d)
		closedir(d);
	return all;
}

static void run_vmd(TestRun *r, const char *const *args)
{
	const char *argv[32] = { test_vmd() };
	size_t n = 1;

	for (; args[n - 1] && n < 31; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	test_run(r, (char *const *)argv);
}

static void deny_openat2_enosys(void)
{
	if (test_deny_openat2(ENOSYS) < 0)
		_exit(126);
}

static void deny_openat2_eperm(void)
{
	if (test_deny_openat2(EPERM) < 0)
		_exit(126);
}

/*
 * evil.yaml -> /an/absolute/secret (its first line recognisable), esc.yaml ->
 * ../other/a.yaml (a valid sandbox): both refused as PathEscape, no VM runs for esc, the
 * line is nowhere, and neither target was opened, by the daemon nor by vmd validate.
 */
static void escape_scenario(Files *t, void (*before_exec)(void))
{
	Fixture *f = t->f;
	_cleanup_free_ char *other = path_in(f->dir, "other"),
			    *secret = path_in(other, "secret.yaml"), *log = NULL, *status = NULL,
			    *noop = path_in(f->run, "esc/noop.json");
	_cleanup_(test_run_done) TestRun r = {};
	struct inotify_event ev;
	int ino;

	test_write_str(other, "secret.yaml", SECRET ": 1\nroot:$y$j9T$hash:19000:0:99999:7:::\n");
	test_write_str(other, "a.yaml", SPEC);
	test_write_str(f->sb, "web.yaml", SPEC);
	link_at(f->sb, secret, "evil.yaml");
	link_at(f->sb, "../other/a.yaml", "esc.yaml");
	ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	assert_true(ino >= 0);
	assert_true(inotify_add_watch(ino, other, IN_OPEN | IN_ACCESS) >= 0);

	f->before_exec = before_exec;
	fixture_start_daemon(f);
	expect_notify(t, "READY=1");
	json_decref(fixture_wait_status(f, "web", ready, "Running"));
	expect_refused(
		t, "evil", "PathEscape",
		"the file leads outside the sandbox directory (through a symlink to an absolute path)");
	expect_refused(t, "esc", "PathEscape",
		       "the file leads outside the sandbox directory (through '..' above it)");
	assert_int_equal(access(noop, F_OK), -1); /* no VM, ever */
	reload(t);				  /* read again: refused again, opened no more */
	expect_notify(
		t,
		"STATUS=3 sandboxes, 1 ready, 1 Running, 2 Stopped; first failing: esc: the file leads outside");

	run_vmd(&r, (const char *const[]){ "validate", "--sandboxes", f->sb, f->sb, NULL });
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.out, "/web.yaml: ok (sandbox 'web', backend noop)"));
	assert_non_null(
		strstr(r.err, "/evil.yaml: error: the file leads outside the sandbox directory"));
	assert_non_null(
		strstr(r.err, "/esc.yaml: error: the file leads outside the sandbox directory"));

	log = test_read_file(f->log, NULL);
	status = all_status(f);
	assert_null(strstr(log, SECRET));
	assert_null(strstr(status, SECRET));
	assert_null(strstr(t->notify.messages, SECRET));
	assert_null(strstr(r.out, SECRET));
	assert_null(strstr(r.err, SECRET));
	if (read(ino, &ev, sizeof(ev)) >= 0)
		fail_msg("%s/%s was opened", other, ev.len ? ev.name : "");
	assert_int_equal(errno, EAGAIN);
	close(ino);
}

static void test_symlink_escape(void **state)
{
	escape_scenario(*state, NULL);
}

/* A kernel without openat2, or a seccomp filter that refuses it: refused all the same. */
static void test_symlink_escape_without_openat2(void **state)
{
	escape_scenario(*state, deny_openat2_enosys);
}

/*
 * A ConfigMap mounted as the directory: web.yaml -> ..data/web.yaml, ..data ->
 * ..2026_01_01, a subfolder's link that climbs back (team/db.yaml -> ../..data/db.yaml);
 * all run, and an update (..data swapped) is applied. A link that leaves at its second hop
 * (leak.yaml -> ..data/leak.yaml -> ../../other/secret.yaml) is refused.
 */
static void configmap_scenario(Files *t, void (*before_exec)(void))
{
	Fixture *f = t->f;
	_cleanup_free_ char *data = path_in(f->sb, "..data"), *tmp = path_in(f->sb, "..data_tmp"),
			    *team = path_in(f->sb, "team"), *log = NULL;
	char paused[256];

	test_write_str(f->dir, "other/secret.yaml", SECRET ": 1\n");
	test_write_str(f->sb, "..2026_01_01/web.yaml", SPEC);
	test_write_str(f->sb, "..2026_01_01/db.yaml", SPEC);
	link_at(f->sb, "../../other/secret.yaml", "..2026_01_01/leak.yaml");
	link_at(f->sb, "..2026_01_01", "..data");
	link_at(f->sb, "..data/web.yaml", "web.yaml");
	link_at(f->sb, "..data/leak.yaml", "leak.yaml");
	assert_int_equal(mkdir(team, 0755), 0);
	link_at(f->sb, "../..data/db.yaml", "team/db.yaml");

	f->before_exec = before_exec;
	fixture_start_daemon(f);
	expect_notify(t, "READY=1");
	json_decref(fixture_wait_status(f, "web", ready, "Running"));
	json_decref(fixture_wait_status(f, "db", ready, "Running"));
	expect_refused(t, "leak", "PathEscape", "(through '..' above it)");

	/* The update, as kubelet makes it: a new folder, ..data swapped for it by a rename. */
	snprintf(paused, sizeof(paused), "%s  state: paused\n", SPEC);
	test_write_str(f->sb, "..2026_02_02/web.yaml", paused);
	test_write_str(f->sb, "..2026_02_02/db.yaml", paused);
	link_at(f->sb, "..2026_02_02", "..data_tmp");
	assert_int_equal(rename(tmp, data), 0);
	json_decref(fixture_wait_status(f, "web", ready, "Paused"));
	json_decref(fixture_wait_status(f, "db", ready, "Paused"));

	log = test_read_file(f->log, NULL);
	assert_null(strstr(log, SECRET));
	assert_null(strstr(log, "web: stop"));
}

static void test_configmap(void **state)
{
	configmap_scenario(*state, NULL);
}

static void test_configmap_without_openat2(void **state)
{
	configmap_scenario(*state, deny_openat2_eperm);
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		fail_msg("%s: %s", path, strerror(errno));
	return st.st_mode & 07777;
}

/*
 * Not for everyone: status.json 0640 in a 0750 folder, the state dir 0700 with its files
 * 0600, the daemon's umask 077. The group is the run dir's when that is setgid.
 */
static void test_modes(void **state)
{
	Files *t = *state;
	Fixture *f = t->f;
	_cleanup_free_ char *status = path_in(f->run, "web/status.json"),
			    *dir = path_in(f->run, "web"),
			    *copy = path_in(f->state, "sandboxes/web.json"),
			    *copies = path_in(f->state, "sandboxes"),
			    *noop = path_in(f->run, "web/noop.json"), *proc = NULL, *text = NULL;
	uint64_t end = ms_now() + WAIT_MS;
	struct stat st;

	if (geteuid() != 0)
		skip();
	/* A run dir for a monitoring group: setgid, group 4321. */
	assert_int_equal(mkdir(f->run, 0755), 0);
	assert_int_equal(chown(f->run, 0, 4321), 0);
	assert_int_equal(chmod(f->run, 02755), 0);
	test_write_str(f->sb, "web.yaml", SPEC);
	fixture_start_daemon(f);
	expect_notify(t, "READY=1");
	json_decref(fixture_wait_status(f, "web", ready, "Running"));
	while (access(copy, F_OK) < 0 && ms_now() < end)
		drain_notify(t, 20);

	assert_int_equal(mode_of(status), 0640);
	assert_int_equal(mode_of(dir), 02750);
	assert_int_equal(stat(status, &st), 0);
	assert_int_equal(st.st_gid, 4321);
	assert_int_equal(mode_of(noop), 0600);
	assert_int_equal(mode_of(f->state), 0700);
	assert_int_equal(mode_of(copies), 0700);
	assert_int_equal(mode_of(copy), 0600);

	assert_true(asprintf(&proc, "/proc/%d/status", (int)f->pid) > 0);
	text = test_read_file(proc, NULL);
	assert_non_null(text);
	assert_non_null(strstr(text, "\nUmask:\t0077\n"));
}

/*
 * StrictModes: a group-writable subfolder, one owned by another user, the sandbox
 * directory itself writable by others, the directory above it writable by others (but
 * sticky is fine): the files in them are untrusted, with that reason, and what runs is
 * left running. Fixed, they are read again.
 */
static void test_untrusted_folders(void **state)
{
	Files *t = *state;
	Fixture *f = t->f;
	_cleanup_free_ char *want = NULL;

	if (geteuid() != 0)
		skip();
	test_write_str(f->sb, "ok.yaml", SPEC);
	dir_at(f->sb, "team", 0775, 0, 0);
	test_write_str(f->sb, "team/web.yaml", SPEC);
	dir_at(f->sb, "ops", 0755, 4242, 0);
	test_write_str(f->sb, "ops/db.yaml", SPEC);
	fixture_start_daemon(f);
	expect_notify(t, "READY=1");
	json_decref(fixture_wait_status(f, "ok", ready, "Running"));
	assert_true(asprintf(&want, "the folder %s/team is writable by group or others (mode 0775)",
			     f->sb) > 0);
	expect_refused(t, "web", "Untrusted", want);
	expect_refused(t, "db", "Untrusted", "/ops is owned by uid 4242");
	json_decref(fixture_wait_status(f, "web", phase_is, "Stopped"));

	dir_at(f->sb, "team", 0755, 0, 0);
	dir_at(f->sb, "ops", 0755, 0, 0);
	json_decref(fixture_wait_status(f, "web", ready, "Running"));
	json_decref(fixture_wait_status(f, "db", ready, "Running"));

	/* The sandbox directory: every file, and nothing stopped. */
	dir_at(f->sb, ".", 0777, 0, 0);
	expect_refused(t, "ok", "Untrusted", "the sandbox directory");
	expect_refused(t, "web", "Untrusted", "is writable by group or others (mode 0777)");
	dir_at(f->sb, ".", 0755, 0, 0);
	json_decref(fixture_wait_status(f, "ok", ready, "Running"));

	/* Above it: judged at each pass (nothing watches its modes). */
	dir_at(f->dir, ".", 0777, 0, 0);
	reload(t);
	expect_refused(t, "ok", "Untrusted", "above the sandbox directory is writable");
	json_decref(fixture_wait_status(f, "ok", phase_is, "Running"));
	dir_at(f->dir, ".", 01777, 0, 0);
	reload(t);
	json_decref(fixture_wait_status(f, "ok", ready, "Running"));
	dir_at(f->dir, ".", 0700, 0, 0);
}

/* --trusted-uid twice, --trusted-gid: their files and folders run, no one else's. */
static void test_trusted_writers(void **state)
{
	Files *t = *state;
	Fixture *f = t->f;
	static const char *const args[] = {
		"--trusted-uid", "4001", "--trusted-uid", "4002", "--trusted-gid", "5001", NULL
	};

	if (geteuid() != 0)
		skip();
	file_at(f->sb, "a.yaml", SPEC, 0644, 4001, 0);
	file_at(f->sb, "b.yaml", SPEC, 0644, 4002, 0);
	file_at(f->sb, "c.yaml", SPEC, 0664, 0, 5001); /* git-sync --group-write */
	dir_at(f->sb, "grp", 02775, 4001, 5001);       /* a umask 002 pipeline's */
	file_at(f->sb, "grp/d.yaml", SPEC, 0664, 4002, 5001);
	file_at(f->sb, "e.yaml", SPEC, 0644, 4003, 0);
	file_at(f->sb, "g.yaml", SPEC, 0664, 0, 5002);
	file_at(f->sb, "h.yaml", SPEC, 0666, 0, 5001);
	f->daemon_args = args;
	fixture_start_daemon(f);
	expect_notify(t, "READY=1");
	for (const char *n = "abcd"; *n; n++) {
		char name[2] = { *n, 0 };

		json_decref(fixture_wait_status(f, name, ready, "Running"));
	}
	expect_refused(t, "e", "Untrusted", "the file is owned by uid 4003");
	expect_refused(t, "g", "Untrusted", "the file is writable by group or others (mode 0664)");
	expect_refused(t, "h", "Untrusted", "the file is writable by group or others (mode 0666)");
}

/* vmd validate, given the daemon's options, says of each file what the daemon says. */
static void test_validate_same_verdicts(void **state)
{
	Files *t = *state;
	Fixture *f = t->f;
	static const char *const args[] = { "--trusted-uid", "4001", "--trusted-gid", "5001", NULL };
	static const char *const names[] = { "ok",     "uid",  "gid", "stranger", "loose",
					     "folder", "evil", "esc", "broken",	  "cm" };
	_cleanup_(test_run_done) TestRun r = {};
	_cleanup_free_ char *outside = path_in(f->dir, "elsewhere.yaml"),
			    *one = path_in(f->sb, "stranger.yaml");
	json_t *j, *files, *file;
	size_t i;

	if (geteuid() != 0)
		skip();
	test_write_str(f->dir, "other/a.yaml", SPEC);
	test_write_str(f->dir, "elsewhere.yaml", SPEC);
	file_at(f->sb, "ok.yaml", SPEC, 0644, 0, 0);
	file_at(f->sb, "uid.yaml", SPEC, 0644, 4001, 0);
	file_at(f->sb, "gid.yaml", SPEC, 0664, 0, 5001);
	file_at(f->sb, "stranger.yaml", SPEC, 0644, 4002, 0);
	file_at(f->sb, "loose.yaml", SPEC, 0666, 0, 0);
	dir_at(f->sb, "team", 0777, 0, 0);
	file_at(f->sb, "team/folder.yaml", SPEC, 0644, 0, 0);
	link_at(f->sb, "/etc/passwd", "evil.yaml");
	link_at(f->sb, "../other/a.yaml", "esc.yaml");
	file_at(f->sb, "broken.yaml", "apiVersion: vmd/v1\nkind: Sandbox\nspec: {vpcus: 2}\n", 0644,
		0, 0);
	test_write_str(f->sb, "..2026/cm.yaml", SPEC);
	link_at(f->sb, "..2026/cm.yaml", "cm.yaml");
	f->daemon_args = args;
	fixture_start_daemon(f);
	expect_notify(t, "READY=1");
	json_decref(fixture_wait_status(f, "ok", ready, "Running"));

	run_vmd(&r, (const char *const[]){ "validate", "--json", "--sandboxes", f->sb, "--trusted-uid",
					   "4001", "--trusted-gid", "5001", f->sb, outside, NULL });
	assert_int_equal(r.status, 1);
	j = json_loads(r.out, 0, NULL);
	assert_non_null(j);
	files = json_object_get(j, "files");
	assert_int_equal(json_array_size(files), ELEMENTSOF(names) + 1);
	json_array_foreach(files, i, file)
	{
		const char *path = json_string_value(json_object_get(file, "path"));
		const char *reason = json_string_value(json_object_get(file, "reason"));
		_cleanup_free_ char *name =
			strndup(strrchr(path, '/') + 1, strlen(strrchr(path, '/') + 1) - 5);
		json_t *s;

		if (streq(path, outside)) {
			assert_string_equal(reason, "Valid");
			continue;
		}
		s = fixture_wait_status(f, name, reason_is, reason);
		json_decref(s);
	}
	/* Each reason the daemon has, in the table once at least. */
	for (size_t k = 0; k < ELEMENTSOF(names); k++)
		json_decref(fixture_wait_status(f, names[k], reason_is,
						k < 3 || k == 9 ? "Valid"
						: k < 6		? "Untrusted"
						: k < 8		? "PathEscape"
								: "InvalidConfig"));
	/* Judged only where the daemon reads: a warning for the file elsewhere. */
	assert_int_equal(json_array_size(json_object_get(j, "warnings")), 1);
	assert_non_null(strstr(json_string_value(json_array_get(json_object_get(j, "warnings"), 0)),
			       "elsewhere.yaml: warning: not in the daemon's sandbox directory"));
	json_decref(j);

	/* One file of the directory, given alone: judged the same. */
	test_run_done(&r);
	run_vmd(&r, (const char *const[]){ "validate", "--sandboxes", f->sb, "--trusted-uid",
					   "4001", one, NULL });
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "stranger.yaml: error: the file is owned by uid 4002"));
	assert_null(strstr(r.err, "warning"));
}

static unsigned count(const char *haystack, const char *needle)
{
	unsigned n = 0;

	for (const char *p = haystack; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static unsigned run_dir_entries(Fixture *f)
{
	DIR *d = opendir(f->run);
	struct dirent *e;
	unsigned n = 0;

	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.' && !streq(e->d_name, "vmd.lock") &&
		     !streq(e->d_name, "daemon.json") && !streq(e->d_name, "events.sock");
	if (d)
		closedir(d);
	return n;
}

/*
 * Files whose names are no sandbox's (Web.yaml, a 64-character stem, a newline, a byte
 * that is not UTF-8): each reported once in the log, escaped, counted in STATUS= (which
 * names the first), given no run-dir entry; a SIGHUP reports nothing again.
 */
static void test_bad_names(void **state)
{
	Files *t = *state;
	Fixture *f = t->f;
	char long_name[70], ignoring[4200];
	_cleanup_free_ char *log = NULL, *web = path_in(f->sb, "Web.yaml");
	const char *shown[] = { "Web.yaml", long_name, "A\\x0AB.yaml", "bad\\xFFname.yaml" };

	memset(long_name, 'a', 64);
	strcpy(long_name + 64, ".yaml");
	test_write_str(f->sb, "ok.yaml", SPEC);
	test_write_str(f->sb, "Web.yaml", SPEC);
	test_write_str(f->sb, long_name, SPEC);
	test_write_str(f->sb, "A\nB.yaml", SPEC);
	test_write_str(f->sb, "bad\xffname.yaml", SPEC);
	fixture_start_daemon(f);
	expect_notify(t, "READY=1");
	expect_notify(t, "; 4 files ignored (invalid sandbox names), first: ");
	expect_notify(t, "/A\\x0AB.yaml");
	reload(t);
	/* A new one, through the watcher. */
	fixture_put(f, "Upper", SPEC);
	expect_notify(t, "; 5 files ignored (invalid sandbox names), first: ");
	assert_int_equal(unlink(web), 0);
	expect_notify(t, "; 4 files ignored (invalid sandbox names), first: ");

	log = test_read_file(f->log, NULL);
	for (size_t i = 0; i < ELEMENTSOF(shown); i++) {
		snprintf(ignoring, sizeof(ignoring), "vmd: ignoring %s/%s: '", f->sb, shown[i]);
		if (count(log, ignoring) != 1)
			fail_msg("'%s' %u times in:\n%s", ignoring, count(log, ignoring), log);
	}
	snprintf(ignoring, sizeof(ignoring),
		 "vmd: ignoring %s/Upper.yaml: 'Upper' is not a valid sandbox name", f->sb);
	assert_int_equal(count(log, ignoring), 1);
	assert_null(strstr(log, "A\nB"));
	assert_int_equal(utf8_first_invalid(log, strlen(log)), strlen(log));
	assert_int_equal(run_dir_entries(f), 1); /* ok's */
}

/*
 * Valid names in folders whose names are not UTF-8 or hold a newline: they run, and their
 * paths are escaped in status.json (which is written at all), STATUS= and the log.
 */
static void test_names_escaped(void **state)
{
	Files *t = *state;
	Fixture *f = t->f;
	static const char *const BAD =
		"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n  vpcus: 2\n";
	_cleanup_free_ char *log = NULL, *want = NULL, *web = path_in(f->sb, "we\nird/web.yaml");
	const char *message;
	json_t *s;

	test_write_str(f->sb, "we\nird/web.yaml", SPEC);
	test_write_str(f->sb, "t\xff/db.yaml", SPEC);
	test_write_str(f->sb, "t\xff/bad.yaml", BAD);
	test_write_str(f->sb, "we\nird/oops.yaml", BAD);
	fixture_start_daemon(f);
	expect_notify(t, "READY=1");

	s = fixture_wait_status(f, "web", ready, "Running");
	assert_string_equal(json_string_value(json_object_get(s, "file")), web); /* JSON's \n */
	json_decref(s);
	s = fixture_wait_status(f, "db", ready, "Running");
	assert_true(asprintf(&want, "%s/t\\xFF/db.yaml", f->sb) > 0);
	assert_string_equal(json_string_value(json_object_get(s, "file")), want);
	json_decref(s);
	s = wait_reason(t, "bad", "InvalidConfig");
	message = status_condition(s, "ConfigValid", "message");
	assert_non_null(strstr(message, "/t\\xFF/bad.yaml:6:3: spec: unknown field 'vpcus'"));
	json_decref(s);
	s = wait_reason(t, "oops", "InvalidConfig");
	message = status_condition(s, "ConfigValid", "message");
	assert_non_null(strstr(message, "/we\\x0Aird/oops.yaml:6:3: spec: unknown field 'vpcus'"));
	json_decref(s);
	expect_notify(t, "; first failing: bad: ");
	expect_notify(t, "/t\\xFF/bad.yaml:6:3: spec: unknown field 'vpcus'");

	log = test_read_file(f->log, NULL);
	assert_int_equal(utf8_first_invalid(log, strlen(log)), strlen(log));
	assert_non_null(strstr(log, "/t\\xFF/bad.yaml:6:3: spec: unknown field 'vpcus'"));
	assert_non_null(strstr(log, "/we\\x0Aird/oops.yaml:6:3: spec: unknown field 'vpcus'"));
	assert_null(strstr(log, "we\nird"));
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_symlink_escape, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_escape_without_openat2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_configmap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_configmap_without_openat2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_untrusted_folders, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trusted_writers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_validate_same_verdicts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_names_escaped, setup, teardown),
	};

	return cmocka_run_group_tests_name("files", tests, NULL, NULL);
}
