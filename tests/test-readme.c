/* SPDX-License-Identifier: MIT */
/*
 * The README's first command, `make demo`, does what the README says it does; its way from a
 * fresh host to the service names the packages, targets and file that exist.
 * (tests/systemd/harness.py runs that way itself, in a booted Debian 12.)
 */
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "helpers.h"

static void expect(const char *haystack, const char *needle)
{
	if (!strstr(haystack, needle))
		fail_msg("no '%s' in:\n%s", needle, haystack);
}

static unsigned count(const char *haystack, const char *needle)
{
	unsigned n = 0;

	for (const char *p = haystack; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static void test_demo(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r = {};
	char *dir = test_tmpdir();
	char script[4096], guest[4096];
	const char *guest_dir = getenv("VMD_GUEST");

	snprintf(script, sizeof(script), "%s", test_src("scripts/demo"));
	snprintf(guest, sizeof(guest), "%s", guest_dir ?: test_src("build/guest"));
	assert_int_equal(setenv("VMD", test_vmd(), 1), 0);
	assert_int_equal(setenv("DEMO_DIR", dir, 1), 0);
	assert_int_equal(setenv("GUEST_DIR", guest, 1), 0);
	char *argv[] = { (char *)"/bin/bash", script, NULL };
	/*
	 * The demo restarts vmd around a running guest, whose QEMU then comes to the nearest
	 * subreaper: this binary, which reaps it, rather than a slow init.
	 */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	test_run(&r, argv);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	if (r.status != 0)
		print_error("%s%s", r.out, r.err);
	assert_int_equal(r.status, 0);

	/* The QEMU guest booted, with its NIC, and both sandboxes are ready. */
	expect(r.out, "VMD-GUEST-READY\r\n");
	expect(r.out, "VMD-GUEST-DEVICES blk= net=eth0@");
	expect(r.out, "guest-1                  qemu              Running   yes     yes    0");
	expect(r.out, "test-1                   noop              Running   yes     yes    0");
	expect(r.out, "Phase:       Running (wanted: running)");
	expect(r.out, "guest-1: up to date (running)\ntest-1: up to date (running)\n");
	/* Stopping vmd left it running; the next vmd adopted it; its removal powered it off. */
	expect(r.err, "vmd: stopping; VMs keep running");
	expect(r.err, "vmd: guest-1: re-adopted its running VM");
	expect(r.err, "vmd: guest-1: VM exited with status 0");
	expect(r.err, "vmd: guest-1: removed: its file is gone and its VM is cleaned up");
	/* One boot: the restart of vmd did not restart it. */
	assert_int_equal(count(r.err, "vmd: guest-1: start: spec.state is running"), 1);
	assert_int_equal(count(r.err, "vmd: guest-1: start: done"), 1);
	test_tmpdir_remove(dir);
}

/* The output of a command (no shell), which must succeed. */
static char *output_of(char *const argv[])
{
	_cleanup_(test_run_done) TestRun r = {};

	test_run(&r, argv);
	if (r.status != 0)
		fail_msg("%s: exit %d: %s", argv[0], r.status, r.err);
	return strdup(r.out);
}

/* debian/changelog's version: the package's. */
static char *package_version(void)
{
	_cleanup_free_ char *log = strdup(test_src("debian/changelog"));
	char *argv[] = { (char *)"/usr/bin/dpkg-parsechangelog",
			 (char *)"-l",
			 log,
			 (char *)"-S",
			 (char *)"Version",
			 NULL };
	char *v = output_of(argv);

	v[strcspn(v, "\n")] = 0;
	return v;
}

/* The words after `prefix` on the README's line that starts with it. */
static char *readme_line(const char *readme, const char *prefix)
{
	const char *at = strstr(readme, prefix);

	if (!at || (at != readme && at[-1] != '\n'))
		fail_msg("the README has no line starting with '%s'", prefix);
	at += strlen(prefix);
	return strndup(at, strcspn(at, "\n"));
}

static void test_install_section(void **state _unused_)
{
	_cleanup_free_ char *readme = test_read_file(test_src("README.md"), NULL),
			    *makefile = test_read_file(test_src("Makefile"), NULL), *build = NULL,
			    *all = NULL, *words = NULL, *tools = NULL, *version = NULL, *deb = NULL,
			    *want = NULL;
	/* test_src() answers in one buffer: a copy. */
	_cleanup_free_ char *deps = strdup(test_src("scripts/install-deps"));
	char *list_build[] = { deps, (char *)"--list", (char *)"build", NULL };
	char *list_all[] = { deps, (char *)"--list", (char *)"all", NULL };

	assert_non_null(readme);
	/* The build's apt-get line is scripts/install-deps' build list, in its order. */
	build = output_of(list_build);
	words = readme_line(readme, "sudo apt-get install gcc ");
	_cleanup_free_ char *line = NULL;
	assert_true(asprintf(&line, "gcc %s\n", words) > 0);
	for (char *p = line; (p = strchr(p, ' '));)
		*p = '\n';
	assert_string_equal(line, build);

	/* The package's tools are among what make check installs. */
	all = output_of(list_all);
	tools = readme_line(readme, "sudo apt-get install debhelper ");
	_cleanup_free_ char *t = NULL;
	assert_true(asprintf(&t, "debhelper %s", tools) > 0);
	for (char *save = NULL, *w = strtok_r(t, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		_cleanup_free_ char *nl = NULL;

		assert_true(asprintf(&nl, "\n%s\n", w) > 0);
		if (!strstr(all, nl) && strncmp(all, nl + 1, strlen(nl + 1)) != 0)
			fail_msg("the README installs %s, which scripts/install-deps does not", w);
	}

	/* make deb and make install are targets; the .deb it names is the one make deb builds. */
	expect(makefile, "\ndeb: ");
	expect(makefile, "\ninstall: ");
	expect(readme, "\nmake deb\n");
	expect(readme, "\nsudo make install\n");
	version = package_version();
	deb = readme_line(readme, "sudo apt-get install ./build/deb/");
	assert_true(asprintf(&want, "vmd_%s_amd64.deb", version) > 0);
	assert_string_equal(deb, want);
}

/* The package's version is the one vmd --version says. */
static void test_version(void **state _unused_)
{
	_cleanup_free_ char *version = package_version(), *said = NULL, *want = NULL;
	char *vmd[] = { (char *)test_vmd(), (char *)"--version", NULL };

	said = output_of(vmd);
	assert_true(asprintf(&want, "vmd %s\n", version) > 0);
	assert_string_equal(said, want);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_install_section),
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_demo),
	};

	return cmocka_run_group_tests_name("readme", tests, NULL, NULL);
}
