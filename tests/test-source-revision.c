/* SPDX-License-Identifier: MIT */
/*
 * reconciler/source-revision.c: the commit of a git work tree, read from .git as git
 * writes it (a repository this test makes with git: loose, packed and symbolic refs, a
 * detached HEAD, a worktree's .git file), "unknown" where HEAD is no commit; the name a
 * version link resolves to, as git-sync and a Kubernetes ConfigMap volume lay them out;
 * and what is not shown: an unsafe name, a link out of its folder. Then the daemon: its
 * status.json's sourceRevision follows a new commit and a flip of the link.
 */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "source-revision.h"

/* git ARGS... in dir (never through a shell); its standard output, trimmed. */
static char *git(const char *dir, const char *const *args)
{
	char *argv[24] = { (char *)"/usr/bin/git",
			   (char *)"-C",
			   (char *)dir,
			   (char *)"-c",
			   (char *)"user.name=vmd test",
			   (char *)"-c",
			   (char *)"user.email=test@vmd.invalid" };
	size_t n = 7;
	TestRun r;
	char *out;

	while (*args && n < ELEMENTSOF(argv) - 1)
		argv[n++] = (char *)*args++;
	test_run(&r, argv);
	if (r.status != 0)
		fail_msg("git %s failed: %s", argv[7], r.err);
	out = TAKE_PTR(r.out);
	out[strcspn(out, "\n")] = '\0';
	test_run_done(&r);
	return out;
}
#define GIT(dir, ...) git(dir, (const char *const[]){ __VA_ARGS__, NULL })

/* A commit of sandboxes/web.yaml with text in the repository dir; HEAD's id. */
static char *commit(const char *dir, const char *text)
{
	_cleanup_free_ char *sb = NULL;

	assert_true(asprintf(&sb, "%s/sandboxes", dir) > 0);
	(void)mkdir(sb, 0755);
	test_write_str(sb, "web.yaml", text);
	free(GIT(dir, "add", "sandboxes/web.yaml"));
	free(GIT(dir, "commit", "-q", "-m", "web"));
	return GIT(dir, "rev-parse", "HEAD");
}

static void assert_git(const char *dir, const char *want)
{
	_cleanup_free_ char *rev = source_revision_git(dir);

	assert_non_null(rev);
	assert_string_equal(rev, want);
}

static void test_git(void **state _unused_)
{
	char *tmp = test_tmpdir();
	_cleanup_free_ char *repo = NULL, *sb = NULL, *wt = NULL, *first = NULL, *second = NULL,
			    *head = NULL, *none = NULL;

	assert_true(asprintf(&repo, "%s/repo", tmp) > 0);
	assert_true(asprintf(&sb, "%s/sandboxes", repo) > 0);
	assert_true(asprintf(&wt, "%s/wt", tmp) > 0);
	free(GIT(tmp, "init", "-q", "-b", "main", repo));
	/* No commit yet: a work tree, its HEAD no commit. */
	assert_git(repo, SOURCE_REVISION_UNKNOWN);
	first = commit(repo, "a: 1\n");
	assert_int_equal(strlen(first), 40);
	assert_git(sb, first); /* from a folder of the work tree */
	second = commit(repo, "a: 2\n");
	assert_string_not_equal(first, second);
	assert_git(sb, second);

	/* Packed: refs/heads/main only in packed-refs. */
	free(GIT(repo, "pack-refs", "--all"));
	assert_true(asprintf(&head, "%s/.git/refs/heads/main", repo) > 0);
	assert_int_equal(access(head, F_OK), -1);
	assert_git(sb, second);
	/* A symbolic ref on the way: HEAD -> refs/heads/alias -> refs/heads/main. */
	free(GIT(repo, "symbolic-ref", "refs/heads/alias", "refs/heads/main"));
	free(GIT(repo, "symbolic-ref", "HEAD", "refs/heads/alias"));
	assert_git(sb, second);
	/* Detached. */
	free(GIT(repo, "checkout", "-q", "--detach", first));
	assert_git(sb, first);

	/* A worktree: .git is a file, its refs in the common dir. */
	free(GIT(repo, "worktree", "add", "-q", "-b", "other", wt, "main"));
	assert_git(wt, second);

	/* What HEAD says is not a commit, or leads out: unknown, not shown. */
	free(head);
	assert_true(asprintf(&head, "%s/.git", repo) > 0);
	test_write_str(head, "HEAD", "ref: refs/heads/../../../../etc/passwd\n");
	assert_git(sb, SOURCE_REVISION_UNKNOWN);
	test_write_str(head, "HEAD", "0123456789abcdef0123456789abcdef0123456\n"); /* 39 */
	assert_git(sb, SOURCE_REVISION_UNKNOWN);
	test_write_str(head, "HEAD", "<script>alert(1)</script>\n");
	assert_git(sb, SOURCE_REVISION_UNKNOWN);

	/* Not in a work tree at all. */
	none = source_revision_git(tmp);
	assert_null(none);
	test_tmpdir_remove(tmp);
}

/* The revision source_revision() gives path's file (opened as the daemon opens it). */
static char *revision_of(const char *path, SourceRevisionKind *kind)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *rev;

	assert_true(fd >= 0);
	source_revision(path, fd, kind, &rev);
	close(fd);
	return rev;
}

static void put_link(const char *target, const char *dir, const char *name)
{
	_cleanup_free_ char *tmp = NULL, *path = NULL;

	assert_true(asprintf(&tmp, "%s/.%s.tmp", dir, name) > 0);
	assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
	(void)unlink(tmp);
	assert_int_equal(symlink(target, tmp), 0);
	assert_int_equal(rename(tmp, path), 0); /* flipped at once, as both tools do */
}

/* parent/name, made; the caller frees it. */
static char *make_dir(const char *parent, const char *name)
{
	char *p = NULL;

	assert_true(asprintf(&p, "%s/%s", parent, name) > 0);
	assert_int_equal(mkdir(p, 0755), 0);
	return p;
}

/* The revision of path is the link's target want, or none (NULL). */
static void assert_link(const char *path, const char *want)
{
	SourceRevisionKind kind;
	_cleanup_free_ char *rev = revision_of(path, &kind);

	if (!want) {
		assert_int_equal(kind, SOURCE_REVISION_NONE);
		assert_null(rev);
		return;
	}
	assert_int_equal(kind, SOURCE_REVISION_LINK);
	assert_non_null(rev);
	assert_string_equal(rev, want);
}

static void test_links(void **state _unused_)
{
	char *tmp = test_tmpdir();
	_cleanup_free_ char *root = make_dir(tmp, "git"), *a = make_dir(root, "rev-1111aaaa"),
			    *b = make_dir(root, "rev-2222bbbb"),
			    *wts = make_dir(root, ".worktrees"), *c = make_dir(wts, "3333cccc"),
			    *bad = make_dir(root, "rev b;x"), *cm = make_dir(tmp, "cm"),
			    *data = make_dir(cm, "..2026_12_01_10_00_00.123456789"), *web = NULL,
			    *cm_web = NULL, *out = NULL;

	test_write_str(a, "web.yaml", "a\n");
	test_write_str(b, "web.yaml", "b\n");
	test_write_str(c, "web.yaml", "c\n");
	test_write_str(bad, "web.yaml", "e\n");
	test_write_str(data, "web.yaml", "d\n");
	assert_true(asprintf(&web, "%s/current/web.yaml", root) > 0);

	/* git-sync v3: <root>/current -> rev-<hash>, the sandbox folder below it; flipped. */
	put_link("rev-1111aaaa", root, "current");
	assert_link(web, "rev-1111aaaa");
	put_link("rev-2222bbbb", root, "current");
	assert_link(web, "rev-2222bbbb");
	/* git-sync v4: <root>/current -> .worktrees/<hash>, here an absolute target. */
	put_link(c, root, "current");
	assert_link(web, "3333cccc");

	/* A ConfigMap volume: web.yaml -> ..data/web.yaml, ..data -> ..<time>. */
	put_link("..2026_12_01_10_00_00.123456789", cm, "..data");
	put_link("..data/web.yaml", cm, "web.yaml");
	assert_true(asprintf(&cm_web, "%s/web.yaml", cm) > 0);
	assert_link(cm_web, "..2026_12_01_10_00_00.123456789");

	/* A name not of the alphabet: none. No link: none. */
	put_link("rev b;x", root, "current");
	assert_link(web, NULL);
	assert_true(asprintf(&out, "%s/web.yaml", data) > 0);
	assert_link(out, NULL);
	/* A link out of its folder (git/current -> cm) is no version. */
	put_link(cm, root, "current");
	free(out);
	assert_true(asprintf(&out, "%s/current/..2026_12_01_10_00_00.123456789/web.yaml", root) > 0);
	assert_link(out, NULL);
	test_tmpdir_remove(tmp);
}

static bool revision_is(json_t *s, const void *arg)
{
	json_t *r = json_object_get(s, "sourceRevision");

	return streq_ptr(json_string_value(json_object_get(r, "revision")), arg);
}

/*
 * The daemon on a git checkout: status.json says HEAD's commit as kind git, and the new
 * one after a commit that changes the file; `vmd status NAME` shows it.
 */
static void test_daemon_git(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *first = NULL, *second = NULL, *text = NULL;
	char *argv[] = { (char *)test_vmd(),  (char *)"status",
			 (char *)"--run-dir", f->run,
			 (char *)"web",	      NULL };
	json_t *s;
	TestRun r;

	/* The fixture's sandbox folder is the repository's work tree. */
	free(GIT(f->sb, "init", "-q", "-b", "main"));
	test_write_str(f->sb, "web.yaml", FIXTURE_NOOP_SPEC);
	free(GIT(f->sb, "add", "web.yaml"));
	free(GIT(f->sb, "commit", "-q", "-m", "web"));
	first = GIT(f->sb, "rev-parse", "HEAD");
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "web", revision_is, first);
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(s, "sourceRevision"), "kind")),
		"git");
	json_decref(s);
	test_run(&r, argv);
	assert_non_null(strstr(r.out, "Revision:    "));
	assert_non_null(strstr(r.out, first));
	test_run_done(&r);

	assert_true(asprintf(&text, "%s  vcpus: 2\n", FIXTURE_NOOP_SPEC) > 0);
	fixture_put(f, "web", text);
	free(GIT(f->sb, "commit", "-q", "-a", "-m", "two vCPUs"));
	second = GIT(f->sb, "rev-parse", "HEAD");
	/* A commit is no event of the sandbox folder's: SIGHUP reads the file again. */
	assert_int_equal(kill(f->pid, SIGHUP), 0);
	json_decref(fixture_wait_status(f, "web", revision_is, second));
}

/*
 * The daemon on a git-sync-like folder: --sandboxes <root>/current, a link flipped from
 * rev-1 to rev-2; its status follows, as kind link.
 */
static void test_daemon_link(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *root = path_in(f->dir, "git"), *a = NULL, *b = NULL, *cur = NULL;
	static char sandboxes[PATH_MAX];
	static const char *args[] = { "--sandboxes", sandboxes, NULL };
	json_t *s;

	assert_int_equal(mkdir(root, 0755), 0);
	a = path_in(root, "rev-1");
	b = path_in(root, "rev-2");
	assert_int_equal(mkdir(a, 0755), 0);
	assert_int_equal(mkdir(b, 0755), 0);
	test_write_str(a, "web.yaml", FIXTURE_NOOP_SPEC);
	test_write_str(b, "web.yaml", FIXTURE_NOOP_SPEC "  vcpus: 2\n");
	put_link("rev-1", root, "current");
	cur = path_in(root, "current");
	snprintf(sandboxes, sizeof(sandboxes), "%s", cur);
	f->daemon_args = args;
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "web", revision_is, "rev-1");
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(s, "sourceRevision"), "kind")),
		"link");
	json_decref(s);
	put_link("rev-2", root, "current");
	s = fixture_wait_status(f, "web", revision_is, "rev-2");
	assert_int_equal(json_integer_value(json_object_get(s, "generation")), 2);
	json_decref(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_git),
		cmocka_unit_test(test_links),
		cmocka_unit_test_setup_teardown(test_daemon_git, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_daemon_link, fixture_setup, fixture_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
