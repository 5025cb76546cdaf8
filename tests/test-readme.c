/* SPDX-License-Identifier: MIT */
/* The README's first command, `make demo`, does what the README says it does. */
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
	expect(r.out, "guest-1                  qemu              Running   yes    0");
	expect(r.out, "test-1                   noop              Running   yes    0");
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

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_demo),
	};

	return cmocka_run_group_tests_name("readme", tests, NULL, NULL);
}
