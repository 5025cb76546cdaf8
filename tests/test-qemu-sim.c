/* SPDX-License-Identifier: MIT */
/*
 * The QEMU backend's jobs on tests/sim/qemu, which speaks QMP as QEMU 7.2 does and checks
 * every command against its schema, for what a real guest under TCG would make slow to
 * test: an add QEMU refuses is undone, and a start found half done after a restart of vmd
 * is seen through. Every QEMU the daemon started is killed by pid in teardown.
 */
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "status.h"
#include "util.h"

static char sim_qemu[4096];

static int setup(void **state)
{
	static const char *const args[] = { "--qemu-binary", sim_qemu, NULL };
	int r = fixture_setup(state);

	((Fixture *)*state)->daemon_args = args;
	return r;
}

static void put_disk(Fixture *f, const char *path)
{
	_cleanup_free_ char *extra = NULL;

	assert_true(asprintf(&extra, "  memory: 64Mi\n  disks:\n    - {id: data, path: \"%s\"}\n",
			     path) > 0);
	fixture_put_sim(f, "vm", "qemu", extra);
}

static bool add_failed(json_t *s, const void *arg)
{
	const char *e = json_string_value(json_object_get(s, "lastError"));

	return phase_is(s, "Running") && e && strstr(e, arg);
}

static bool has_disk(json_t *s, const void *arg _unused_)
{
	return ready(s, "Running") && json_array_size(json_object_get(s, "disks")) == 1;
}

/*
 * A disk QEMU cannot open: the add fails with QEMU's words and is undone, down to the root
 * port it took, so that once the file is fixed the same disk is added on that port.
 */
static void test_failed_add_undone(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *good = path_in(f->dir, "data.img"),
			    *bad = path_in(f->dir, "missing.img"),
			    *rec = path_in(f->run, "vm/vm.json");
	json_t *s, *ports;

	fixture_put_sim(f, "vm", "qemu", "  memory: 64Mi\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "vm", ready, "Running"));

	put_disk(f, bad);
	json_decref(fixture_wait_status(f, "vm", add_failed, "Could not open"));
	s = json_load_file(rec, 0, NULL);
	ports = json_object_get(s, "ports");
	assert_null(json_object_get(ports, "disk-data"));
	json_decref(s);
	/* The first blockdev-add failed: nothing was made, so nothing is deleted. */
	assert_true(fixture_count_requests(f, "blockdev-add") >= 1);
	assert_int_equal(fixture_count_requests(f, "blockdev-del"), 0);

	test_write_str(f->dir, "data.img", "");
	put_disk(f, good);
	json_decref(fixture_wait_status(f, "vm", has_disk, NULL));
	s = json_load_file(rec, 0, NULL);
	assert_int_equal(
		json_integer_value(json_object_get(json_object_get(s, "ports"), "disk-data")), 0);
	json_decref(s);
}

/*
 * vmd killed after QEMU was started with its vCPUs stopped, before `cont`: the next vmd
 * finds it starting, checks it is its own, and boots it; it is not started again.
 */
static void test_start_seen_through(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *rec = path_in(f->run, "slow/vm.json");
	json_t *s, *j;
	pid_t pid;

	/* Every QMP command answered 1.5 s late: there is time to kill vmd in between. */
	fixture_put_sim(f, "slow", "qemu", "  memory: 64Mi\n  cmdline: sim.qmp=slow=1500\n");
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "slow", phase_is, "Starting");
	json_decref(s);
	j = json_load_file(rec, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "starting");
	pid = (pid_t)json_integer_value(json_object_get(j, "pid"));
	json_decref(j);
	fixture_stop_daemon(f, SIGKILL);

	fixture_start_daemon(f);
	fixture_wait_console(f, "slow", "VMD-GUEST-READY", 0);
	s = fixture_wait_status(f, "slow", ready, "Running");
	assert_int_equal(pid_of(s), pid);
	assert_int_equal(json_integer_value(json_object_get(s, "restarts")), 0);
	json_decref(s);
	assert_int_equal(fixture_count_requests(f, "cont"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_failed_add_undone, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_start_seen_through, setup, fixture_teardown),
	};

	snprintf(sim_qemu, sizeof(sim_qemu), "%s", test_src("tests/sim/qemu"));
	/* VMMs outlive a daemon killed with -9: they come to this binary, which reaps them. */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
