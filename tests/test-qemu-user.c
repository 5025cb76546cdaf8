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

static void test_qemu_unprivileged(void **state)
{
	Fixture *f = *state;
	pid_t pid;

	qemu_put(f, "vm", "  cmdline: console=ttyS0 quiet\n");
	fixture_start_daemon(f);
	pid = fixture_running(f, "vm");
	(void)fixture_wait_console(f, "vm", "VMD-GUEST-READY", 0);

	/* nobody, no capabilities; none of the daemon's NOTIFY_SOCKET (the fixture's) either. */
	test_expect_unprivileged(pid, 65534, 65534);
	fixture_stop_daemon(f, SIGTERM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_qemu_unprivileged, user_setup, fixture_teardown),
	};

	return cmocka_run_group_tests_name("qemu-user", tests, NULL, NULL);
}
