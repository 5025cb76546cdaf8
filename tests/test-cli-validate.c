/* SPDX-License-Identifier: MIT */
/* `vmd validate` run as a user runs it: the real binary, exit codes, stdout and stderr. */
#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <sys/inotify.h>

#include "helpers.h"

static void vmd(TestRun *r, const char *a1, const char *a2, const char *a3, const char *a4)
{
	char *argv[] = { (char *)test_vmd(), (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL };

	test_run(r, argv);
}

/* What vmd validate says of a PATH outside the daemon's sandbox directory (the default). */
static char *outside(const char *path)
{
	char *s = NULL;

	assert_true(
		asprintf(&s,
			 "%s: warning: not in the daemon's sandbox directory /etc/vmd/sandboxes (--sandboxes): owners and modes are not judged here; the daemon judges them where it reads the files\n",
			 path) > 0);
	return s;
}

/* The README's first command. */
static void test_examples_valid(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r;
	_cleanup_free_ char *warning = NULL;
	char path[4096];

	snprintf(path, sizeof(path), "%s", test_src("examples"));
	warning = outside(path);
	/* examples/image-1.yaml names an image of the host it is for: not this one. */
	vmd(&r, "validate", "--skip-images", path, NULL);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, warning); /* and nothing else */
	/* One valid file per backend. */
	assert_non_null(strstr(r.out, "backend qemu)"));
	assert_non_null(strstr(r.out, "backend cloud-hypervisor)"));
	assert_non_null(strstr(r.out, "backend firecracker)"));
	assert_non_null(strstr(r.out, "backend noop)"));
}

/* --skip-images: an image this host does not have is the daemon's to check, not validate's. */
static void test_skip_images(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r = {}, skipped = {};
	char path[4096];

	snprintf(path, sizeof(path), "%s", test_src("tests/spec/bad/disk-image-missing.yaml"));
	vmd(&r, "validate", path, NULL, NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "image '/nonexistent/vmd-test.qcow2' cannot be opened"));
	vmd(&skipped, "validate", "--skip-images", path, NULL);
	assert_int_equal(skipped.status, 0);
	/* What is not about the image is still refused. */
	test_run_done(&skipped);
	snprintf(path, sizeof(path), "%s", test_src("tests/spec/bad/disk-image-with-format.yaml"));
	vmd(&skipped, "validate", "--skip-images", path, NULL);
	assert_int_equal(skipped.status, 1);
}

/* Every line of stderr for a bad directory is PATH:LINE:COLUMN: error: MESSAGE. */
static void test_bad_corpus_format(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r;
	char dir[4096];
	regex_t re;
	char *save = NULL;
	unsigned lines = 0;

	snprintf(dir, sizeof(dir), "%s", test_src("tests/spec/bad"));
	vmd(&r, "validate", dir, NULL, NULL);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.out, "");
	assert_int_equal(
		regcomp(&re,
			"^.*/tests/spec/bad/[A-Za-z0-9_-]+\\.yaml:[1-9][0-9]*:[1-9][0-9]*: error: .+$",
			REG_EXTENDED | REG_NOSUB),
		0);
	/* The first line says that the corpus is not in the daemon's sandbox directory. */
	assert_non_null(strstr(r.err, ": warning: not in the daemon's sandbox directory"));
	for (char *l = strtok_r(strchr(r.err, '\n'), "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save), lines++)
		if (regexec(&re, l, 0, NULL, 0) != 0)
			fail_msg("not PATH:LINE:COL: error: '%s'", l);
	regfree(&re);
	assert_true(lines >= 77);
}

static void test_usage(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r;

	vmd(&r, "validate", NULL, NULL, NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "no PATH given"));
	test_run_done(&r);

	vmd(&r, "validate", "--bogus", "x.yaml", NULL);
	assert_int_equal(r.status, 2);
	test_run_done(&r);

	vmd(&r, "validate", "--default-backend", "kvm", "x.yaml");
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "unknown backend 'kvm'"));
	test_run_done(&r);

	vmd(&r, "frobnicate", NULL, NULL, NULL);
	assert_int_equal(r.status, 2);
	test_run_done(&r);

	vmd(&r, "validate", "--help", NULL, NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "Usage: vmd validate"));
	test_run_done(&r);

	vmd(&r, "daemon", "--help", NULL, NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(
		r.out, "Supported VMM versions: Cloud Hypervisor >= v52.0, Firecracker >= 1.13"));
	test_run_done(&r);

	/* The VMM user is found at the start, or the daemon does not start. */
	vmd(&r, "daemon", "--vmm-user", "vmd-no-such-user", NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--vmm-user 'vmd-no-such-user': no such user"));
	test_run_done(&r);
	vmd(&r, "daemon", "--vmm-user", "12", NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--vmm-user takes a user name or UID:GID, not '12'"));
	test_run_done(&r);

	vmd(&r, "--version", NULL, NULL, NULL);
	assert_int_equal(r.status, 0);
	assert_true(strncmp(r.out, "vmd ", 4) == 0);
}

static void test_json(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r;
	char *dir = test_tmpdir();
	json_error_t err;
	json_t *j, *files, *e;
	_cleanup_free_ char *good = NULL, *bad = NULL;

	test_write_str(dir, "good.yaml",
		       "apiVersion: vmd/v1\nkind: Sandbox\nspec: {backend: noop, memory: 16Mi}\n");
	test_write_str(
		dir, "bad.yaml",
		"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 16Mi\n  vpcus: 2\n");
	assert_true(asprintf(&good, "%s/good.yaml", dir) > 0);
	assert_true(asprintf(&bad, "%s/bad.yaml", dir) > 0);

	vmd(&r, "validate", "--json", good, bad);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.err, "");
	j = json_loads(r.out, 0, &err);
	assert_non_null(j);
	assert_true(json_is_false(json_object_get(j, "valid")));
	files = json_object_get(j, "files");
	assert_int_equal(json_array_size(files), 2);
	assert_true(json_is_true(json_object_get(json_array_get(files, 0), "valid")));
	assert_string_equal(json_string_value(json_object_get(json_array_get(files, 0), "name")),
			    "good");
	assert_int_equal(json_array_size(json_object_get(json_array_get(files, 0), "errors")), 0);
	assert_true(json_is_false(json_object_get(json_array_get(files, 1), "valid")));
	e = json_array_get(json_object_get(json_array_get(files, 1), "errors"), 0);
	assert_int_equal(json_integer_value(json_object_get(e, "line")), 6);
	assert_int_equal(json_integer_value(json_object_get(e, "column")), 3);
	assert_string_equal(json_string_value(json_object_get(e, "message")),
			    "spec: unknown field 'vpcus'; did you mean 'vcpus'?");
	json_decref(j);
	test_tmpdir_remove(dir);
}

/* Two files for one sandbox name (web.yaml and team/web.yml) is an error, not a pick. */
static void test_duplicate_names(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r;
	char *dir = test_tmpdir();
	const char *text = "apiVersion: vmd/v1\nkind: Sandbox\nspec: {backend: noop, memory: 16Mi}\n";

	test_write_str(dir, "web.yaml", text);
	test_write_str(dir, "team/web.yml", text);
	vmd(&r, "validate", dir, NULL, NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "/web.yaml:1:1: error: sandbox 'web' is also defined by '"));
	assert_non_null(strstr(r.err, "/team/web.yml'; a sandbox has one file"));
	test_tmpdir_remove(dir);
}

static void test_unreadable(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r;
	char *dir = test_tmpdir();
	_cleanup_free_ char *missing = NULL;

	assert_true(asprintf(&missing, "%s/missing.yaml", dir) > 0);
	vmd(&r, "validate", missing, NULL, NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "missing.yaml: error: cannot read: No such file or directory"));
	test_run_done(&r);

	/* An empty directory is not an error, but it is said. */
	vmd(&r, "validate", dir, NULL, NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.err, "no sandbox files"));
	test_tmpdir_remove(dir);
}

/* The backend's rules, of the default backend when the file names none, and all at once. */
static void test_backend_rules(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r;
	_cleanup_free_ char *path = NULL, *want = NULL, *warning = NULL;
	char *dir = test_tmpdir();

	test_write_str(dir, "fc.yaml",
		       "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  memory: 64Mi\n  kernel: /k\n  vcpus: 3\n"
		       "  disks: [{id: a, path: /a, format: qcow2}]\n  cmdline: 1\n");
	assert_true(asprintf(&path, "%s/fc.yaml", dir) > 0);
	warning = outside(path);
	assert_true(
		asprintf(&want,
			 "%2$s%1$s:6:10: error: spec.vcpus: 3 vCPUs do not fit backend 'firecracker' (the default backend): it takes 1 or an even number up to 32\n"
			 "%1$s:7:37: error: spec.disks[0].format: qcow2 needs the qemu or cloud-hypervisor backend; this sandbox uses backend 'firecracker' (the default backend)\n"
			 "%1$s:8:12: error: spec.cmdline: '1' is a number; quote it (\"1\") if you mean the string\n",
			 path, warning) > 0);
	vmd(&r, "validate", "--default-backend", "firecracker", path);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.out, "");
	assert_string_equal(r.err, want);
	test_run_done(&r);

	/* QEMU takes both; only the YAML error is left. */
	vmd(&r, "validate", path, NULL, NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, ":8:12: error: spec.cmdline: "));
	assert_null(strstr(r.err, ":6:10:"));
	assert_null(strstr(r.err, ":7:37:"));
	test_tmpdir_remove(dir);
}

/*
 * A directory is walked as the daemon walks its own, wherever it is: a symlink that leads
 * out of it is refused, its target never opened; those that stay inside are followed.
 */
static void test_symlinks(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r;
	char *top = test_tmpdir();
	_cleanup_free_ char *dir = NULL, *other = NULL, *secret = NULL, *evil = NULL, *esc = NULL,
			    *cm = NULL, *data = NULL;
	const char *text = "apiVersion: vmd/v1\nkind: Sandbox\nspec: {backend: noop, memory: 16Mi}\n";
	struct inotify_event ev;
	int ino;

	assert_true(asprintf(&dir, "%s/sb", top) > 0 && asprintf(&other, "%s/other", top) > 0 &&
		    asprintf(&secret, "%s/secret.yaml", other) > 0 &&
		    asprintf(&evil, "%s/evil.yaml", dir) > 0 &&
		    asprintf(&esc, "%s/esc.yaml", dir) > 0 &&
		    asprintf(&cm, "%s/cm.yaml", dir) > 0 && asprintf(&data, "%s/..data", dir) > 0);
	test_write_str(other, "secret.yaml", "SECRET-LINE: 1\n");
	test_write_str(other, "a.yaml", text);
	test_write_str(dir, "..2026/cm.yaml", text);
	assert_int_equal(symlink("..2026", data), 0);
	assert_int_equal(symlink("..data/cm.yaml", cm), 0);
	assert_int_equal(symlink(secret, evil), 0);
	assert_int_equal(symlink("../other/a.yaml", esc), 0);
	ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	assert_true(ino >= 0 && inotify_add_watch(ino, other, IN_OPEN | IN_ACCESS) >= 0);

	vmd(&r, "validate", dir, NULL, NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.out, "/cm.yaml: ok (sandbox 'cm', backend noop)"));
	assert_non_null(strstr(
		r.err,
		"/evil.yaml: error: the file leads outside the sandbox directory (through a symlink to an absolute path)"));
	assert_non_null(strstr(
		r.err,
		"/esc.yaml: error: the file leads outside the sandbox directory (through '..' above it)"));
	assert_null(strstr(r.err, "SECRET"));
	assert_int_equal(read(ino, &ev, sizeof(ev)), -1);
	assert_int_equal(errno, EAGAIN);
	close(ino);
	test_tmpdir_remove(top);
}

static void test_trust_usage(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r;

	vmd(&r, "validate", "--trusted-uid", "git-sync", "x.yaml");
	assert_int_equal(r.status, 2);
	assert_non_null(
		strstr(r.err, "vmd validate: --trusted-uid takes a numeric id, not 'git-sync'"));
	test_run_done(&r);
	vmd(&r, "validate", "--trusted-gid", "-1", "x.yaml");
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--trusted-gid takes a numeric id, not '-1'"));
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_examples_valid),
		cmocka_unit_test(test_skip_images),
		cmocka_unit_test(test_bad_corpus_format),
		cmocka_unit_test(test_usage),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_duplicate_names),
		cmocka_unit_test(test_unreadable),
		cmocka_unit_test(test_backend_rules),
		cmocka_unit_test(test_symlinks),
		cmocka_unit_test(test_trust_usage),
	};

	return cmocka_run_group_tests_name("cli-validate", tests, NULL, NULL);
}
