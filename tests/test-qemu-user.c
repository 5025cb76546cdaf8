/* SPDX-License-Identifier: MIT */
/*
 * Real QEMU (TCG) as an unprivileged --vmm-user (issue 16): the daemon runs as root and
 * starts QEMU as nobody (65534:65534), which gets its serial console, its QMP socket and
 * its log as descriptors and writes nothing in the run dir (root's, 0700). The guest's
 * kernel and initrd are world-readable (build/guest): QEMU still opens those by path.
 */
#include <signal.h>
#include <stdio.h>

#include "helpers.h"
#include "qemu-fixture.h"
#include "util.h"

static int user_setup(void **state)
{
	/* After the fixture's own --vmm-user root: the last one counts. */
	static const char *const args[] = { "--qemu-accel", "tcg", "--vmm-user", "65534:65534", NULL };
	int r = fixture_setup(state);

	((Fixture *)*state)->daemon_args = args;
	return r;
}

/* The value of a "Key:\t..." line of /proc/PID/status, up to the newline; NULL if none. */
static char *status_field(const char *status, const char *key)
{
	size_t n = strlen(key);

	for (const char *p = status; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, key, n) == 0 && p[n] == ':')
			return strndup(p + n + 2, strcspn(p + n + 2, "\n"));
	return NULL;
}

static void expect_field(const char *status, const char *key, const char *want)
{
	_cleanup_free_ char *v = status_field(status, key);

	if (!v || !streq(v, want))
		print_error("%s: '%s', not '%s'\n", key, v ?: "(none)", want);
	assert_non_null(v);
	assert_string_equal(v, want);
}

static void test_qemu_unprivileged(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *status = NULL, *env = NULL, *path = NULL, *envpath = NULL;
	size_t len = 0;
	pid_t pid;

	qemu_put(f, "vm", "  cmdline: console=ttyS0 quiet\n");
	fixture_start_daemon(f);
	pid = fixture_running(f, "vm");
	(void)fixture_wait_console(f, "vm", "VMD-GUEST-READY", 0);

	assert_true(asprintf(&path, "/proc/%d/status", (int)pid) > 0);
	status = test_read_file(path, NULL);
	assert_non_null(status);
	expect_field(status, "Uid", "65534\t65534\t65534\t65534");
	expect_field(status, "Gid", "65534\t65534\t65534\t65534");
	expect_field(status, "CapEff", "0000000000000000");
	expect_field(status, "CapPrm", "0000000000000000");
	expect_field(status, "NoNewPrivs", "1");

	/* The daemon has NOTIFY_SOCKET (the fixture's); its QEMU has none of it. */
	assert_true(asprintf(&envpath, "/proc/%d/environ", (int)pid) > 0);
	env = test_read_file(envpath, &len);
	assert_non_null(env);
	for (size_t i = 0; i < len; i += strlen(env + i) + 1) {
		assert_true(strncmp(env + i, "NOTIFY_SOCKET=", 14) != 0);
		assert_true(strncmp(env + i, "WATCHDOG_", 9) != 0);
	}
	fixture_stop_daemon(f, SIGTERM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_qemu_unprivileged, user_setup, fixture_teardown),
	};

	return cmocka_run_group_tests_name("qemu-user", tests, NULL, NULL);
}
