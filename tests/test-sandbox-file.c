/* SPDX-License-Identifier: MIT */
/*
 * sandbox-file.c alone: which paths stay beneath the sandbox directory, with openat2 and
 * with the fallback a kernel or a seccomp filter without it gets (the same table, in a
 * child under a filter that makes openat2 fail); that nothing outside is opened; and who
 * is trusted, for files, folders, the sandbox directory and what is above it.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "helpers.h"
#include "sandbox-file.h"

static const char *const WEB = "the web file\n";
static const char *const CM = "the configmap's file\n";
static const char *const SECRET = "SECRET-FIRST-LINE\n";

static char *path_of(const char *dir, const char *name)
{
	char *p = NULL;

	assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

static void link_at(const char *dir, const char *target, const char *name)
{
	_cleanup_free_ char *p = path_of(dir, name);

	assert_int_equal(symlink(target, p), 0);
}

/*
 * top/outside/secret.yaml, and top/sb: files, a ConfigMap's layout, links that stay
 * inside and links that leave (at once, or at a later hop).
 */
static void make_tree(const char *top)
{
	_cleanup_free_ char *sb = path_of(top, "sb"), *secret = path_of(top, "outside/secret.yaml"),
			    *fifo = path_of(sb, "fifo.yaml");

	test_write_str(top, "outside/secret.yaml", SECRET);
	test_write_str(sb, "web.yaml", WEB);
	test_write_str(sb, "..2026_01_01/cm.yaml", CM);
	link_at(sb, "..2026_01_01", "..data");
	link_at(sb, "..data/cm.yaml", "cm.yaml");
	test_write_str(sb, "team/deep/.keep", "");
	link_at(sb, "../..data/cm.yaml", "team/x.yaml");
	link_at(sb, "../../web.yaml", "team/deep/y.yaml");
	link_at(sb, "./team/../web.yaml", "dots.yaml");
	link_at(sb, secret, "abs.yaml");
	link_at(sb, "../outside/secret.yaml", "up.yaml");
	link_at(sb, "../../outside/secret.yaml", "..2026_01_01/hop.yaml");
	link_at(sb, "..data/hop.yaml", "hop.yaml");
	link_at(sb, "../sb/web.yaml", "out-and-in.yaml");
	link_at(sb, "/proc/self/fd/0", "magic.yaml");
	link_at(sb, "nowhere.yaml", "dangling.yaml");
	link_at(sb, "loop.yaml", "loop.yaml");
	link_at(sb, "team", "dir.yaml");
	link_at(sb, "web.yaml/x", "through-file.yaml");
	assert_int_equal(mkfifo(fifo, 0644), 0);
}

static const struct {
	const char *rel;
	int r;
	SandboxFileVerdict verdict;
	const char *content; /* what a trusted one holds */
} ROWS[] = {
	{ "web.yaml", 0, SANDBOX_FILE_TRUSTED, WEB },
	{ "cm.yaml", 0, SANDBOX_FILE_TRUSTED, CM }, /* two hops, both inside */
	{ "team/x.yaml", 0, SANDBOX_FILE_TRUSTED, CM },
	{ "team/deep/y.yaml", 0, SANDBOX_FILE_TRUSTED, WEB },
	{ "dots.yaml", 0, SANDBOX_FILE_TRUSTED, WEB },
	{ "abs.yaml", 0, SANDBOX_FILE_PATH_ESCAPE, NULL },
	{ "up.yaml", 0, SANDBOX_FILE_PATH_ESCAPE, NULL },
	{ "hop.yaml", 0, SANDBOX_FILE_PATH_ESCAPE, NULL },	  /* out at the second hop */
	{ "out-and-in.yaml", 0, SANDBOX_FILE_PATH_ESCAPE, NULL }, /* as RESOLVE_BENEATH */
	{ "magic.yaml", 0, SANDBOX_FILE_PATH_ESCAPE, NULL },
	{ "dangling.yaml", -ENOENT, 0, NULL },
	{ "loop.yaml", -ELOOP, 0, NULL },
	{ "through-file.yaml", -ENOTDIR, 0, NULL },
	{ "dir.yaml", 0, SANDBOX_FILE_UNTRUSTED, NULL }, /* not a regular file */
	{ "fifo.yaml", 0, SANDBOX_FILE_UNTRUSTED, NULL },
};

/*
 * Every row of ROWS through sandbox_file_open() and sandbox_file_resolve(); the number of
 * rows that did not come out as expected (said on stderr). No cmocka assertions: this
 * runs in children too.
 */
static unsigned check_rows(const char *top)
{
	_cleanup_(sandbox_root_freep) SandboxRoot *root = NULL;
	_cleanup_free_ char *sb = path_of(top, "sb");
	Trust trust = {};
	unsigned bad = 0;

	if (sandbox_root_open(sb, &trust, &root) < 0 || sandbox_root_distrust(root)) {
		fprintf(stderr, "cannot open %s, or it is not trusted\n", sb);
		return 1;
	}
	for (size_t i = 0; i < ELEMENTSOF(ROWS); i++) {
		_cleanup_(sandbox_file_done) SandboxFile f = SANDBOX_FILE_INIT, g = SANDBOX_FILE_INIT;
		char buf[64] = "";
		int r = sandbox_file_open(root, ROWS[i].rel, &f),
		    k = sandbox_file_resolve(root, ROWS[i].rel, &g);
		bool trusted = r == 0 && f.verdict == SANDBOX_FILE_TRUSTED;

		if (trusted && f.fd >= 0)
			(void)!read(f.fd, buf, sizeof(buf) - 1);
		if (r != ROWS[i].r || k != ROWS[i].r || (r == 0 && f.verdict != ROWS[i].verdict) ||
		    (k == 0 && g.verdict != ROWS[i].verdict) || (trusted != (f.fd >= 0)) ||
		    (trusted && !streq(buf, ROWS[i].content)) || (!trusted && f.fd >= 0) ||
		    (r == 0 && !trusted && !f.why)) {
			fprintf(stderr, "%s: r=%d/%d verdict=%d/%d fd=%d read '%s' why '%s'\n",
				ROWS[i].rel, r, k, f.verdict, g.verdict, f.fd, buf, f.why ?: "");
			bad++;
		}
	}
	return bad;
}

static unsigned check_rows_without_openat2(const char *top, int errnum)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		/* Denied indeed: the fallback is what the rows go through. */
		if (test_deny_openat2(errnum) < 0 ||
		    syscall(SYS_openat2, AT_FDCWD, ".", NULL, 0) >= 0 || errno != errnum)
			_exit(100);
		_exit((int)MIN(check_rows(top), 99u));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return (unsigned)WEXITSTATUS(status);
}

/* The same verdicts with openat2, without (ENOSYS, EPERM); nothing outside opened. */
static void test_beneath(void **state _unused_)
{
	char *top = test_tmpdir();
	_cleanup_free_ char *outside = path_of(top, "outside");
	struct inotify_event ev;
	int ino;

	make_tree(top);
	ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	assert_true(ino >= 0);
	assert_true(inotify_add_watch(ino, outside, IN_OPEN | IN_ACCESS) >= 0);

	assert_int_equal(check_rows(top), 0);
	assert_int_equal(check_rows_without_openat2(top, ENOSYS), 0);
	assert_int_equal(check_rows_without_openat2(top, EPERM), 0);

	assert_int_equal(read(ino, &ev, sizeof(ev)), -1);
	assert_int_equal(errno, EAGAIN);
	close(ino);
	test_tmpdir_remove(top);
}

static void chmod_at(const char *dir, const char *name, mode_t mode)
{
	_cleanup_free_ char *p = path_of(dir, name);

	assert_int_equal(chmod(p, mode), 0);
}

static void chown_at(const char *dir, const char *name, uid_t uid, gid_t gid)
{
	_cleanup_free_ char *p = path_of(dir, name);

	assert_int_equal(lchown(p, uid, gid), 0);
}

/* The verdict on rel, and that why names what it should. */
static void expect(const char *sb, const Trust *t, const char *rel, SandboxFileVerdict verdict,
		   const char *why)
{
	_cleanup_(sandbox_root_freep) SandboxRoot *root = NULL;
	_cleanup_(sandbox_file_done) SandboxFile f = SANDBOX_FILE_INIT;

	assert_int_equal(sandbox_root_open(sb, t, &root), 0);
	assert_int_equal(sandbox_file_open(root, rel, &f), 0);
	if (f.verdict != verdict || (why && (!f.why || !strstr(f.why, why))))
		fail_msg("%s: verdict %d, not %d: '%s'", rel, f.verdict, verdict, f.why ?: "");
	assert_true((f.fd >= 0) == (verdict == SANDBOX_FILE_TRUSTED));
}

/* Owners and modes: of the file, its folders (those a symlink leads through too), the
 * sandbox directory and the directories above it (a sticky one is fine). */
static void test_trust(void **state _unused_)
{
	char *top = test_tmpdir();
	_cleanup_free_ char *sb = path_of(top, "sb"), *want = NULL;
	Trust none = {}, t = {};

	if (geteuid() != 0)
		skip(); /* files of other users: root's to make */
	assert_int_equal(trust_add_uid(&t, 4001), 0);
	assert_int_equal(trust_add_uid(&t, 4001), 0); /* once */
	assert_int_equal(t.n_uids, 1);
	assert_int_equal(trust_add_gid(&t, 5001), 0);

	test_write_str(sb, "web.yaml", WEB);
	test_write_str(sb, "team/t.yaml", WEB);
	test_write_str(sb, "hidden/..x/w.yaml", WEB);
	link_at(sb, "hidden/..x/w.yaml", "through.yaml");
	chmod_at(top, "", 0755);
	chmod_at(sb, "", 0755);
	expect(sb, &none, "web.yaml", SANDBOX_FILE_TRUSTED, NULL);

	/* The file: owner, group, others. */
	chown_at(sb, "web.yaml", 4001, 0);
	expect(sb, &none, "web.yaml", SANDBOX_FILE_UNTRUSTED, "the file is owned by uid 4001");
	expect(sb, &t, "web.yaml", SANDBOX_FILE_TRUSTED, NULL);
	chown_at(sb, "web.yaml", 0, 5001);
	chmod_at(sb, "web.yaml", 0664);
	expect(sb, &none, "web.yaml", SANDBOX_FILE_UNTRUSTED,
	       "the file is writable by group or others (mode 0664)");
	expect(sb, &t, "web.yaml", SANDBOX_FILE_TRUSTED, NULL);
	chmod_at(sb, "web.yaml", 0666);
	expect(sb, &t, "web.yaml", SANDBOX_FILE_UNTRUSTED, "writable by group or others (mode 0666)");
	chmod_at(sb, "web.yaml", 0644);

	/* A folder, and one that a symlink leads through. */
	chmod_at(sb, "team", 0777);
	assert_true(asprintf(&want, "the folder %s/team is writable by group or others (mode 0777)",
			     sb) > 0);
	expect(sb, &t, "team/t.yaml", SANDBOX_FILE_UNTRUSTED, want);
	expect(sb, &t, "web.yaml", SANDBOX_FILE_TRUSTED, NULL);
	chmod_at(sb, "hidden/..x", 0775);
	chown_at(sb, "hidden/..x", 0, 5001);
	expect(sb, &none, "through.yaml", SANDBOX_FILE_UNTRUSTED, "/hidden/..x is writable");
	expect(sb, &t, "through.yaml", SANDBOX_FILE_TRUSTED, NULL);
	chown_at(sb, "hidden", 4002, 0);
	expect(sb, &t, "through.yaml", SANDBOX_FILE_UNTRUSTED, "/hidden is owned by uid 4002");

	/* The sandbox directory: every file in it. */
	chmod_at(sb, "", 0757);
	free(want);
	assert_true(asprintf(&want, "the sandbox directory %s is writable by group or others", sb) >
		    0);
	expect(sb, &t, "web.yaml", SANDBOX_FILE_UNTRUSTED, want);
	chmod_at(sb, "", 0755);

	/* Above it: writable by others, unless sticky and what is in it a trusted user's. */
	chmod_at(top, "", 0777);
	free(want);
	assert_true(asprintf(&want, "the directory %s above the sandbox directory is writable",
			     top) > 0);
	expect(sb, &t, "web.yaml", SANDBOX_FILE_UNTRUSTED, want);
	chmod_at(top, "", 01777);
	expect(sb, &t, "web.yaml", SANDBOX_FILE_TRUSTED, NULL);
	chown_at(sb, "", 4003, 0);
	expect(sb, &t, "web.yaml", SANDBOX_FILE_UNTRUSTED, want);
	chown_at(sb, "", 0, 0);
	chmod_at(top, "", 0700);

	/* Reached through a symlink: the directory that holds the link counts too. */
	free(want);
	want = path_of(top, "link");
	assert_int_equal(symlink("sb", want), 0);
	expect(want, &t, "web.yaml", SANDBOX_FILE_TRUSTED, NULL);
	chmod_at(top, "", 0770);
	expect(want, &t, "web.yaml", SANDBOX_FILE_UNTRUSTED, "above the sandbox directory");
	chmod_at(top, "", 0700);

	/* Judging nothing: escapes are refused all the same. */
	chmod_at(sb, "", 0777);
	link_at(sb, "/etc/passwd", "abs.yaml");
	expect(sb, NULL, "web.yaml", SANDBOX_FILE_TRUSTED, NULL);
	expect(sb, NULL, "abs.yaml", SANDBOX_FILE_PATH_ESCAPE, "leads outside");
	test_tmpdir_remove(top);
}

static void test_verdict_names(void **state _unused_)
{
	assert_null(sandbox_file_verdict_to_string(SANDBOX_FILE_TRUSTED));
	assert_string_equal(sandbox_file_verdict_to_string(SANDBOX_FILE_PATH_ESCAPE), "PathEscape");
	assert_string_equal(sandbox_file_verdict_to_string(SANDBOX_FILE_UNTRUSTED), "Untrusted");
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_beneath),
		cmocka_unit_test(test_trust),
		cmocka_unit_test(test_verdict_names),
	};

	return cmocka_run_group_tests_name("sandbox-file", tests, NULL, NULL);
}
