/* SPDX-License-Identifier: MIT */
/*
 * vmd's Debian package under a real systemd: tests/systemd/harness.py boots a debootstrapped
 * Debian 12 with systemd-nspawn, installs the package built by make deb and runs its checks
 * (start, the unit's exposure, reload, a noop sandbox, restart, upgrade, the journal,
 * removal, purge; a QEMU
 * guest's scope, its limits and its machine in systemd-machined, restart, kill, watchdog,
 * a crash, a guest past its memory OOM-killed in its own scope, poweroff). Each of its
 * checks is one test here; all are skipped, saying why, only where nspawn cannot run.
 */
#include <stdio.h>

#include "helpers.h"

static TestRun harness;	  /* its output: "ok NAME", "not ok NAME: why" or "SKIP: why" */
static char *deb, *cache; /* VMD_DEB (the package), VMD_SYSTEMD_CACHE (the cached tree) */

static char **harness_argv(const char *extra)
{
	static char *argv[8];
	const char *python = getenv("PYTHON") ?: "/usr/bin/python3";

	argv[0] = (char *)python;
	argv[1] = (char *)test_src("tests/systemd/harness.py");
	argv[2] = (char *)"--deb";
	argv[3] = deb;
	argv[4] = (char *)"--cache";
	argv[5] = cache;
	argv[6] = (char *)extra;
	argv[7] = NULL;
	return argv;
}

static int run_harness(void **state _unused_)
{
	test_run(&harness, harness_argv(NULL));
	/* Its figures (debootstrap, boot, each check) go to make check's log. */
	printf("%s", harness.out);
	if (harness.err[0])
		printf("# harness stderr:\n%s", harness.err);
	return 0;
}

static int harness_done(void **state _unused_)
{
	test_run_done(&harness);
	return 0;
}

/* The harness's verdict on one check: its line and the "# " lines after it. */
static void test_check(void **state)
{
	const char *name = *state, *skip = strstr(harness.out, "SKIP: "), *line, *end;
	char ok[256], not_ok[256]; /* not freed memory: fail_msg() does not return */

	if (skip) {
		print_message("skipped: %.*s\n", (int)strcspn(skip, "\n"), skip + 6);
		skip();
	}
	snprintf(ok, sizeof(ok), "\nok %s (", name);
	snprintf(not_ok, sizeof(not_ok), "\nnot ok %s: ", name);
	if (strstr(harness.out, ok))
		return;
	line = strstr(harness.out, not_ok);
	if (!line)
		fail_msg("the harness said nothing of %s (exit %d):\n%s%s", name, harness.status,
			 harness.out, harness.err);
	for (end = strchr(line + 1, '\n'); end && strncmp(end, "\n# ", 3) == 0;)
		end = strchr(end + 1, '\n');
	fail_msg("%.*s", end ? (int)(end - line - 1) : (int)strlen(line + 1), line + 1);
}

int main(void)
{
	_cleanup_(test_run_done) TestRun list = {};
	struct CMUnitTest tests[32];
	size_t n = 0;

	deb = getenv("VMD_DEB");
	cache = getenv("VMD_SYSTEMD_CACHE");
	if (!deb || !cache) {
		fprintf(stderr, "test-systemd: VMD_DEB and VMD_SYSTEMD_CACHE are unset: run it "
				"through make check, which builds the package (make deb)\n");
		return 1;
	}
	/* One test per check, in the harness's order. */
	test_run(&list, harness_argv("--list"));
	if (list.status != 0) {
		fprintf(stderr, "test-systemd: harness.py --list: %s", list.err);
		return 1;
	}
	for (char *save = NULL, *l = strtok_r(list.out, "\n", &save); l && n < ELEMENTSOF(tests);
	     l = strtok_r(NULL, "\n", &save))
		tests[n++] =
			(struct CMUnitTest){ .name = l, .test_func = test_check, .initial_state = l };
	return _cmocka_run_group_tests("systemd", tests, n, run_harness, harness_done);
}
