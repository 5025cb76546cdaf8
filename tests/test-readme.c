/* SPDX-License-Identifier: MIT */
/* The README's first command, `make demo`, does what the README says it does. */
#include <stdio.h>

#include "helpers.h"

static void test_demo(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r = {};
	char *dir = test_tmpdir();
	char script[4096];
	static const char *const names[] = { "api-1", "fn-1", "test-1", "web-1" };

	snprintf(script, sizeof(script), "%s", test_src("scripts/demo"));
	assert_int_equal(setenv("VMD", test_vmd(), 1), 0);
	assert_int_equal(setenv("DEMO_DIR", dir, 1), 0);
	char *argv[] = { (char *)"/bin/bash", script, NULL };
	test_run(&r, argv);
	if (r.status != 0)
		print_error("%s%s", r.out, r.err);
	assert_int_equal(r.status, 0);

	/* Every example runs, on the noop backend, and is ready. */
	for (size_t i = 0; i < ELEMENTSOF(names); i++) {
		char line[128];

		snprintf(line, sizeof(line), "%-24s %-17s %-9s %-6s", names[i], "noop", "Running",
			 "yes");
		if (!strstr(r.out, line))
			fail_msg("no line '%s' in:\n%s", line, r.out);
	}
	assert_non_null(strstr(r.out, "Network:     net0 vmd-web1 52:54:00:12:34:56"));
	/* Stopping vmd left them running: the plan after it has nothing to do. */
	assert_non_null(strstr(r.err, "vmd: stopping; VMs keep running"));
	assert_non_null(strstr(r.out, "web-1: up to date (running)\n"));
	assert_null(strstr(r.out, ": start"));
	test_tmpdir_remove(dir);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_demo),
	};

	return cmocka_run_group_tests_name("readme", tests, NULL, NULL);
}
