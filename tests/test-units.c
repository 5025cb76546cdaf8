/* SPDX-License-Identifier: MIT */
/* units/vmd.service: systemd-analyze verify accepts it, and it says what vmd relies on. */
#include <stdio.h>

#include "helpers.h"

static void test_verify(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r = {};
	_cleanup_free_ char *unit = test_read_file(test_src("units/vmd.service"), NULL),
			    *copy = NULL, *path = NULL;
	char *dir = test_tmpdir(), *at;
	FILE *f;

	assert_non_null(unit);
	/* verify checks that ExecStart exists: point it at the vmd under test. */
	at = strstr(unit, "ExecStart=/usr/bin/vmd ");
	assert_non_null(at);
	assert_true(asprintf(&copy, "%.*sExecStart=%s %s", (int)(at - unit), unit, test_vmd(),
			     at + strlen("ExecStart=/usr/bin/vmd ")) > 0);
	assert_true(asprintf(&path, "%s/vmd.service", dir) > 0);
	f = fopen(path, "we");
	fputs(copy, f);
	fclose(f);

	char *argv[] = { (char *)"/usr/bin/systemd-analyze", (char *)"verify", (char *)"--man=no",
			 path, NULL };
	test_run(&r, argv);
	if (r.status != 0 || r.err[0])
		print_error("%s", r.err);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, ""); /* no warnings either, such as an unknown key */
	test_tmpdir_remove(dir);
}

/* What verify cannot know: the settings vmd's behaviour depends on. */
static void test_settings(void **state _unused_)
{
	_cleanup_free_ char *unit = test_read_file(test_src("units/vmd.service"), NULL);
	static const char *const needed[] = {
		"\nType=notify\n",			  /* READY=1 after the first pass */
		"\nExecReload=/bin/kill -HUP $MAINPID\n", /* SIGHUP rescans */
		"\nWatchdogSec=",			  /* the loop pings */
		"\nKillMode=process\n",			  /* VMs survive a restart of vmd */
		"\nRuntimeDirectory=vmd\n",
		"\nRuntimeDirectoryPreserve=yes\n", /* ... and so does what it knows about them */
		"\nStateDirectory=vmd\n",
		"\nConfigurationDirectory=vmd/sandboxes\n",
	};

	for (size_t i = 0; i < ELEMENTSOF(needed); i++)
		if (!strstr(unit, needed[i]))
			fail_msg("units/vmd.service lacks %s", needed[i] + 1);
	/* Stopped after vmd at the host's shutdown: vmd asks over the bus whether it is one. */
	assert_non_null(strstr(unit, "\nAfter=") && strstr(strstr(unit, "\nAfter="), "dbus.service"));
	/* TCG writes code it runs: this would stop QEMU. */
	assert_null(strstr(unit, "MemoryDenyWriteExecute=yes"));
	assert_null(strstr(unit, "PrivateDevices=yes"));
}

/*
 * systemd-analyze security rates the unit 4.0 or lower; what it leaves open is what the
 * VMMs need (see the unit's comments).
 */
static void test_exposure(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r = {};
	char *argv[] = { (char *)"/usr/bin/systemd-analyze", (char *)"security",
			 (char *)"--offline=yes", (char *)test_src("units/vmd.service"), NULL };
	const char *at;
	double level;

	test_run(&r, argv);
	at = strstr(r.out, "Overall exposure level for vmd.service: ");
	if (!at)
		fail_msg("no exposure level in: %s%s", r.out, r.err);
	assert_int_equal(sscanf(at, "Overall exposure level for vmd.service: %lf", &level), 1);
	if (level > 4.0)
		fail_msg("exposure %.1f, more than 4.0", level);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verify),
		cmocka_unit_test(test_settings),
		cmocka_unit_test(test_exposure),
	};

	return cmocka_run_group_tests_name("units", tests, NULL, NULL);
}
