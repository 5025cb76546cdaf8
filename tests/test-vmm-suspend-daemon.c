/* SPDX-License-Identifier: MIT */
/*
 * Suspend and wake of the Cloud Hypervisor and Firecracker backends through the real daemon
 * (as test-cloud-hypervisor and test-firecracker run it), on the simulators (tests/sim/):
 * a sandbox file says state: suspended, then running again; across a restart of vmd while
 * suspended, and a kill -9 of vmd mid-save and mid-wake. A guest whose console counts
 * (sim.counter=1) goes on from where it was, not from 1. test-vmm-suspend drives the
 * backends' ops tables directly.
 */
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "util.h"

static char daemon_binary[4096];

static int setup_daemon(void **state, const char *option, const char *sim)
{
	static const char *args[3];
	int r = fixture_setup(state);

	snprintf(daemon_binary, sizeof(daemon_binary), "%s", test_src(sim));
	args[0] = option;
	args[1] = daemon_binary;
	args[2] = NULL;
	((Fixture *)*state)->daemon_args = args;
	return r;
}

static int setup_ch(void **state)
{
	return setup_daemon(state, "--cloud-hypervisor-binary", "tests/sim/cloud-hypervisor");
}

static int setup_fc(void **state)
{
	return setup_daemon(state, "--firecracker-binary", "tests/sim/firecracker");
}

static const char *backend_of(Fixture *f)
{
	return streq(f->daemon_args[0], "--cloud-hypervisor-binary") ? "cloud-hypervisor"
								     : "firecracker";
}

static void put_state(Fixture *f, const char *state, const char *cmdline)
{
	_cleanup_free_ char *extra = NULL;

	assert_true(asprintf(&extra, "  state: %s\n  memory: 64Mi\n  cmdline: \"%s\"\n", state,
			     cmdline) > 0);
	fixture_put_sim(f, "vm", backend_of(f), extra);
}

/* The daemon started on a running sandbox with that cmdline; its VMM's pid. */
static pid_t start_running(Fixture *f, const char *cmdline)
{
	put_state(f, "running", cmdline);
	fixture_start_daemon(f);
	return fixture_running(f, "vm");
}

static bool suspended(json_t *s, const void *arg _unused_)
{
	return phase_is(s, "Suspended") && pid_of(s) == 0;
}

/* The loop of the test waits until the simulator took a request starting with prefix. */
static void wait_request(Fixture *f, const char *prefix)
{
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	while (fixture_count_requests(f, prefix) == 0) {
		assert_true(ms_now() < end);
		usleep(20 * 1000);
	}
}

/* Woken: the guest goes on from where it was (at least `least`), not from 1. */
static void wake_and_count_on(Fixture *f, const char *cmdline, unsigned least)
{
	unsigned restored = 0;
	char next[64];
	size_t at;

	put_state(f, "running", cmdline);
	json_decref(fixture_wait_status(f, "vm", ready, "Running"));
	at = fixture_wait_console(f, "vm", "SIM-GUEST-RESTORED counter=", 0);
	{
		_cleanup_free_ char *c = fixture_console(f, "vm");

		assert_int_equal(sscanf(c + at, "%u", &restored), 1);
		assert_null(strstr(c + at, "SIM-GUEST-BOOT"));
	}
	assert_true(restored >= least);
	snprintf(next, sizeof(next), "SIM-GUEST-COUNTER %u", restored + 1);
	fixture_wait_console(f, "vm", next, at);
}

static void test_daemon_suspend_and_wake(void **state)
{
	Fixture *f = *state;
	json_t *s;
	pid_t pid;

	pid = start_running(f, "sim.counter=1");
	fixture_wait_console(f, "vm", "SIM-GUEST-COUNTER 3", 0);

	/* Suspended: its VMM gone, the snapshot the VMM's files and the memory's size. */
	put_state(f, "suspended", "sim.counter=1");
	s = fixture_wait_status(f, "vm", suspended, NULL);
	assert_true(json_integer_value(json_object_get(json_object_get(s, "snapshot"), "size")) >=
		    64ll << 20);
	json_decref(s);
	fixture_wait_gone(pid);
	{
		_cleanup_free_ char *snap = path_in(f->state, "snapshots/vm/current");
		_cleanup_free_ char *mem = path_in(
			snap, streq(backend_of(f), "firecracker") ? "vm.mem" : "memory-ranges");
		struct stat st;

		assert_int_equal(stat(mem, &st), 0);
		assert_int_equal(st.st_size, 64ll << 20);
	}

	/* vmd restarted: still suspended, nothing started. */
	fixture_stop_daemon(f, SIGTERM);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "vm", suspended, NULL));

	/* Woken: the guest counts on from where it was (at least 3), not from 1. */
	wake_and_count_on(f, "sim.counter=1", 3);
	{
		/* The snapshot goes once the VM runs again. */
		_cleanup_free_ char *snap = path_in(f->state, "snapshots/vm/current");
		uint64_t end = ms_now() + FIXTURE_WAIT_MS;

		while (access(snap, F_OK) == 0) {
			assert_true(ms_now() < end);
			usleep(50 * 1000);
		}
	}
}

static void test_daemon_ch_suspend_and_wake(void **state)
{
	test_daemon_suspend_and_wake(state);
}

static void test_daemon_fc_suspend_and_wake(void **state)
{
	test_daemon_suspend_and_wake(state);
}

/*
 * vmd killed (-9) while the VMM writes the snapshot: the next vmd finds the VM (paused,
 * saved into a .new dir it throws away), saves it again, and the wake counts on.
 */
static void test_daemon_killed_mid_save(void **state)
{
	static const char cmdline[] = "sim.counter=1 sim.snapshot-ms=1500";
	Fixture *f = *state;
	pid_t pid = start_running(f, cmdline);

	fixture_wait_console(f, "vm", "SIM-GUEST-COUNTER 2", 0);
	put_state(f, "suspended", cmdline);
	wait_request(f, streq(backend_of(f), "firecracker") ? "PUT /snapshot/create"
							    : "PUT /api/v1/vm.snapshot");
	fixture_stop_daemon(f, SIGKILL);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "vm", suspended, NULL));
	fixture_wait_gone(pid);
	wake_and_count_on(f, cmdline, 2);
}

static void test_daemon_ch_killed_mid_save(void **state)
{
	test_daemon_killed_mid_save(state);
}

static void test_daemon_fc_killed_mid_save(void **state)
{
	test_daemon_killed_mid_save(state);
}

/*
 * vmd killed (-9) while the VMM loads the snapshot: the next vmd ends up with the VM
 * running, from the snapshot (the count goes on), and no second VMM.
 */
static void test_daemon_killed_mid_wake(void **state)
{
	static const char cmdline[] = "sim.counter=1 sim.snapshot-ms=1500";
	Fixture *f = *state;
	pid_t pid = start_running(f, cmdline);
	bool fc = streq(backend_of(f), "firecracker");

	fixture_wait_console(f, "vm", "SIM-GUEST-COUNTER 2", 0);
	put_state(f, "suspended", cmdline);
	json_decref(fixture_wait_status(f, "vm", suspended, NULL));
	fixture_wait_gone(pid);
	put_state(f, "running", cmdline);
	wait_request(f, fc ? "PUT /snapshot/load" : "PUT /api/v1/vm.restore");
	fixture_stop_daemon(f, SIGKILL);
	fixture_start_daemon(f);
	wake_and_count_on(f, cmdline, 2);
	assert_int_equal(fixture_count_requests(f, fc ? "PUT /actions {\"action_type\":\"InstanceStart\""
						      : "PUT /api/v1/vm.boot"),
			 1);
}

static void test_daemon_ch_killed_mid_wake(void **state)
{
	test_daemon_killed_mid_wake(state);
}

static void test_daemon_fc_killed_mid_wake(void **state)
{
	test_daemon_killed_mid_wake(state);
}

/* The VMM refuses the save (a full filesystem): the VM runs on, and the status says why. */
static bool save_refused(json_t *s, const void *arg)
{
	const char *e = json_string_value(json_object_get(s, "lastError"));

	return phase_is(s, "Running") && pid_of(s) == *(const pid_t *)arg && e &&
	       strstr(e, "No space left on device");
}

static void test_daemon_save_refused(void **state)
{
	Fixture *f = *state;
	pid_t pid = start_running(f, "sim.counter=1 sim.disk-full=1");

	put_state(f, "suspended", "sim.counter=1 sim.disk-full=1");
	json_decref(fixture_wait_status(f, "vm", save_refused, &pid));
	fixture_wait_console(f, "vm", "SIM-GUEST-RESUMED", 0);
}

static void test_daemon_ch_save_refused(void **state)
{
	test_daemon_save_refused(state);
}

static void test_daemon_fc_save_refused(void **state)
{
	test_daemon_save_refused(state);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_daemon_ch_suspend_and_wake, setup_ch,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_daemon_fc_suspend_and_wake, setup_fc,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_daemon_ch_killed_mid_save, setup_ch,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_daemon_fc_killed_mid_save, setup_fc,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_daemon_ch_killed_mid_wake, setup_ch,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_daemon_fc_killed_mid_wake, setup_fc,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_daemon_ch_save_refused, setup_ch,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_daemon_fc_save_refused, setup_fc,
						fixture_teardown),
	};

	if (getenv("VMD_TEST_FILTER")) /* one test (a glob), when looking into it */
		cmocka_set_test_filter(getenv("VMD_TEST_FILTER"));
	/* Each test's requests are checked against the API documents (fixture_teardown). */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
