/* SPDX-License-Identifier: MIT */
/*
 * The QEMU backend's jobs on tests/sim/qemu, which speaks QMP as QEMU 7.2 does and checks
 * every command against its schema, for what a real guest under TCG would make slow to
 * test: an add QEMU refuses is undone, a start found half done after a restart of vmd
 * is seen through, and a VM bigger than the host is never spawned. Every QEMU the daemon
 * started is killed by pid in teardown.
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/prctl.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "qemu-fixture.h"
#include "qemu.h"
#include "spec.h"
#include "status.h"
#include "util.h"

static char sim_qemu[4096];

static void put_disk(Fixture *f, const char *path, const char *format)
{
	_cleanup_free_ char *extra = NULL;

	assert_true(asprintf(&extra,
			     "  memory: 64Mi\n  disks:\n    - {id: data, path: \"%s\", format: %s}\n",
			     path, format) > 0);
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
 * A disk vmd cannot open fails before QEMU is asked anything (vmd opens, QEMU gets the
 * descriptor). One QEMU refuses (a raw file said to be qcow2) fails with QEMU's words after
 * add-fd and the file node: both are undone (blockdev-del, then remove-fd of its fdset), down
 * to the root port it took, so that once the file is fixed the same disk is added on that
 * port.
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

	put_disk(f, bad, "raw");
	json_decref(fixture_wait_status(f, "vm", add_failed, "cannot open"));
	s = json_load_file(rec, 0, NULL);
	ports = json_object_get(s, "ports");
	assert_null(json_object_get(ports, "disk-data"));
	json_decref(s);
	assert_int_equal(fixture_count_requests(f, "add-fd"), 0);
	assert_int_equal(fixture_count_requests(f, "blockdev-add"), 0);

	test_write_str(f->dir, "data.img", "");
	put_disk(f, good, "qcow2");
	json_decref(fixture_wait_status(f, "vm", add_failed, "not in qcow2 format"));
	/* add-fd and the file node went through: the node is deleted, then its fdset. */
	assert_int_equal(fixture_count_requests(f, "add-fd"), 1);
	assert_int_equal(fixture_count_requests(f, "blockdev-del"), 1);
	assert_int_equal(fixture_count_requests(f, "remove-fd"), 1);

	put_disk(f, good, "raw");
	json_decref(fixture_wait_status(f, "vm", has_disk, NULL));
	s = json_load_file(rec, 0, NULL);
	assert_int_equal(
		json_integer_value(json_object_get(json_object_get(s, "ports"), "disk-data")), 0);
	json_decref(s);
	assert_int_equal(fixture_count_requests(f, "add-fd"), 2);
}

/* How many of pid's descriptors are of the file at path. */
static unsigned count_open(pid_t pid, const char *path)
{
	_cleanup_free_ char *dir = NULL;
	struct stat want, st;
	struct dirent *e;
	unsigned n = 0;
	DIR *d;

	assert_int_equal(stat(path, &want), 0);
	assert_true(asprintf(&dir, "/proc/%d/fd", (int)pid) > 0);
	d = opendir(dir);
	assert_non_null(d);
	while ((e = readdir(d))) {
		_cleanup_free_ char *p = path_in(dir, "%s", e->d_name);

		if (e->d_name[0] != '.' && stat(p, &st) == 0 && st.st_dev == want.st_dev &&
		    st.st_ino == want.st_ino)
			n++;
	}
	closedir(d);
	return n;
}

static bool n_disks(json_t *s, const void *arg)
{
	return ready(s, "Running") &&
	       json_array_size(json_object_get(s, "disks")) == (size_t)(uintptr_t)arg;
}

#define LONG_ID "a-disk-id-of-the-longest-length" /* SPEC_ID_MAX: 31 */

/*
 * Disk ids of the longest length, at the start and hot-added: QEMU's node names are shorter
 * than 32 characters (the simulator refuses longer ones, as block.c does), so vmd's are the
 * port's, not the id's. And a remove-fd that failed (a best-effort step) leaves its fdset
 * in QEMU: the next disk added on that port gets a set of its own, so its node opens its
 * own file, not the one the stale set holds.
 */
static void test_long_ids_and_fresh_fdsets(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *a = path_in(f->dir, "a.img"), *b = path_in(f->dir, "b.img"),
			    *c = path_in(f->dir, "c.img"), *text = NULL;
	json_t *s;
	pid_t pid;

	test_write_str(f->dir, "a.img", "A");
	test_write_str(f->dir, "b.img", "B");
	test_write_str(f->dir, "c.img", "C");
	assert_int_equal(strlen(LONG_ID), SPEC_ID_MAX);
	assert_true(asprintf(&text,
			     "  memory: 64Mi\n  cmdline: sim.remove-fd-fails=1\n  disks:\n"
			     "    - {id: %s, path: \"%s\"}\n",
			     LONG_ID, a) > 0);
	fixture_put_sim(f, "vm", "qemu", text);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "vm", n_disks, (void *)(uintptr_t)1));
	pid = fixture_running(f, "vm");

	/* Hot-added, with a long id too; then removed: its remove-fd fails. */
	free(text);
	assert_true(asprintf(&text,
			     "  memory: 64Mi\n  cmdline: sim.remove-fd-fails=1\n  disks:\n"
			     "    - {id: %s, path: \"%s\"}\n    - {id: x%.30s, path: \"%s\"}\n",
			     LONG_ID, a, LONG_ID, b) > 0);
	fixture_put_sim(f, "vm", "qemu", text);
	json_decref(fixture_wait_status(f, "vm", n_disks, (void *)(uintptr_t)2));
	free(text);
	assert_true(asprintf(&text,
			     "  memory: 64Mi\n  cmdline: sim.remove-fd-fails=1\n  disks:\n"
			     "    - {id: %s, path: \"%s\"}\n",
			     LONG_ID, a) > 0);
	fixture_put_sim(f, "vm", "qemu", text);
	json_decref(fixture_wait_status(f, "vm", n_disks, (void *)(uintptr_t)1));
	assert_int_equal(fixture_count_requests(f, "remove-fd"), 1);
	/* The stale set still has b's descriptor; no node has it. */
	assert_int_equal(count_open(pid, b), 1);

	/* Added on the same port: its node opens c (c's descriptor and the node's dup). */
	free(text);
	assert_true(asprintf(&text,
			     "  memory: 64Mi\n  cmdline: sim.remove-fd-fails=1\n  disks:\n"
			     "    - {id: %s, path: \"%s\"}\n    - {id: c, path: \"%s\"}\n",
			     LONG_ID, a, c) > 0);
	fixture_put_sim(f, "vm", "qemu", text);
	json_decref(fixture_wait_status(f, "vm", n_disks, (void *)(uintptr_t)2));
	assert_int_equal(count_open(pid, c), 2);
	assert_int_equal(count_open(pid, b), 1);
	s = fixture_status(f, "vm");
	assert_null(json_string_value(json_object_get(s, "lastError")));
	json_decref(s);
}

static void put_disks(Fixture *f, const char *const *ids, const char *const *paths, size_t n)
{
	_cleanup_free_ char *text = strdup("  memory: 64Mi\n  cmdline: sim.remove-fd-fails=1\n"
					   "  disks:\n");

	for (size_t i = 0; i < n; i++) {
		char *more = NULL;

		assert_true(asprintf(&more, "%s    - {id: %s, path: \"%s\"}\n", text, ids[i],
				     paths[i]) > 0);
		free(text);
		text = more;
	}
	fixture_put_sim(f, "vm", "qemu", text);
}

/*
 * The counter of hot-added fdsets is saved with vm.json only: a vmd that died between an
 * add-fd and that save leaves a set in QEMU that the record does not name (here: a set that
 * a failed remove-fd left, and vm.json's lastFdset rolled back). The next vmd asks the QEMU
 * it adopts (query-fdsets) and the next disk gets a set QEMU did not hold, whose node
 * opens its file.
 */
static void test_fdsets_after_readopt(void **state)
{
	static const char *const ids[] = { "a", "b" };
	Fixture *f = *state;
	_cleanup_free_ char *a = path_in(f->dir, "a.img"), *b = path_in(f->dir, "b.img"),
			    *c = path_in(f->dir, "c.img"), *rec = path_in(f->run, "vm/vm.json");
	json_t *j, *names;
	pid_t pid;

	test_write_str(f->dir, "a.img", "A");
	test_write_str(f->dir, "b.img", "B");
	test_write_str(f->dir, "c.img", "C");
	put_disks(f, ids, (const char *[]){ a }, 1);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "vm", n_disks, (void *)(uintptr_t)1));
	pid = fixture_running(f, "vm");
	put_disks(f, ids, (const char *[]){ a, b }, 2);
	json_decref(fixture_wait_status(f, "vm", n_disks, (void *)(uintptr_t)2));
	put_disks(f, ids, (const char *[]){ a }, 1);
	json_decref(fixture_wait_status(f, "vm", n_disks, (void *)(uintptr_t)1));
	assert_int_equal(count_open(pid, b), 1); /* set 200, in QEMU still */

	fixture_stop_daemon(f, SIGKILL);
	j = json_load_file(rec, 0, NULL);
	assert_non_null(j);
	names = json_object_get(j, "diskNames");
	assert_int_equal(json_integer_value(json_object_get(names, "lastFdset")), QEMU_FDSET_HOTADD);
	assert_int_equal(json_object_set_new(names, "lastFdset", json_integer(0)), 0);
	assert_int_equal(json_dump_file(j, rec, 0), 0);
	json_decref(j);

	fixture_start_daemon(f);
	fixture_wait_log(f, "vm: re-adopted its running VM");
	assert_int_equal(fixture_running(f, "vm"), pid);
	put_disks(f, (const char *[]){ "a", "c" }, (const char *[]){ a, c }, 2);
	json_decref(fixture_wait_status(f, "vm", n_disks, (void *)(uintptr_t)2));
	j = json_load_file(rec, 0, NULL);
	assert_non_null(j);
	names = json_object_get(j, "diskNames");
	assert_int_equal(
		json_integer_value(json_object_get(json_object_get(names, "fdsets"), "disk-c")),
		QEMU_FDSET_HOTADD + 1);
	json_decref(j);
	/* c's descriptor in its own set and the node's dup of it; b's stale set apart. */
	assert_int_equal(count_open(pid, c), 2);
	assert_int_equal(count_open(pid, b), 1);
}

/*
 * A QEMU that refuses query-fdsets at its re-adoption is adopted all the same, with the
 * counter its record has, and the journal says so: not managing a running VM is worse.
 */
static void test_fdsets_refused_at_readopt(void **state)
{
	Fixture *f = *state;
	pid_t pid;

	fixture_put_sim(f, "vm", "qemu", "  memory: 64Mi\n  cmdline: sim.query-fdsets-fails=1\n");
	fixture_start_daemon(f);
	pid = fixture_running(f, "vm");
	fixture_stop_daemon(f, SIGKILL);
	fixture_start_daemon(f);
	fixture_wait_log(f, "query-fdsets failed (query-fdsets failed (sim.query-fdsets-fails))");
	fixture_wait_log(f, "vm: re-adopted its running VM");
	assert_int_equal(fixture_running(f, "vm"), pid);
}

/*
 * The kernel goes to QEMU as vmd's memfd (QEMU's -kernel reads a path; its user has no
 * access to the host's): one memfd for two guests of the same kernel file, a new one for
 * a guest started once the file changed.
 */
static void test_kernel_shared(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *kernel = path_in(f->dir, "vmlinux");
	ino_t a, b, c;

	fixture_put_sim(f, "a", "qemu", "  memory: 64Mi\n");
	fixture_put_sim(f, "b", "qemu", "  memory: 64Mi\n");
	fixture_start_daemon(f);
	a = qemu_memfd_of(fixture_running(f, "a"), "kernel");
	b = qemu_memfd_of(fixture_running(f, "b"), "kernel");
	assert_true(a != 0);
	assert_true(a == b);

	test_write_str(f->dir, "vmlinux", "another kernel\n");
	assert_int_equal(access(kernel, R_OK), 0);
	fixture_put_sim(f, "c", "qemu", "  memory: 64Mi\n");
	c = qemu_memfd_of(fixture_running(f, "c"), "kernel");
	assert_true(c != 0);
	assert_true(c != a);
}

static bool has_net(json_t *s, const void *arg _unused_)
{
	return ready(s, "Running") && json_array_size(json_object_get(s, "networks")) == 1;
}

/*
 * A user network with forwarded ports hot-added: netdev_add with hostfwd as QEMU 7.2's
 * schema has it (the simulator refuses anything else), then device_add.
 */
static void test_user_net_hotplug(void **state)
{
	Fixture *f = *state;

	fixture_put_sim(f, "vm", "qemu", "  memory: 64Mi\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "vm", ready, "Running"));
	fixture_put_sim(f, "vm", "qemu",
			"  memory: 64Mi\n  networks:\n"
			"    - {id: nat, type: user, ports: [{host: 2222, guest: 22}]}\n");
	json_decref(fixture_wait_status(f, "vm", has_net, NULL));
	assert_int_equal(fixture_count_requests(f, "netdev_add"), 1);
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
	/* Its version, from the QMP greeting of the connection the new vmd made. */
	assert_string_equal(json_string_value(json_object_get(s, "vmmVersion")), "qemu 7.2.22");
	json_decref(s);
	assert_int_equal(fixture_count_requests(f, "cont"), 1);
}

/*
 * The console through the simulator's serial socket: logged by vmd. A QEMU adopted
 * without a serial socket (started by a vmd before them, which gave it a file) keeps
 * its console.log: vmd says so and serves no console.sock for it.
 */
static void test_console_without_socket(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *serial = path_in(f->run, "con/serial.sock"),
			    *sock = path_in(f->run, "con/console.sock");
	char *const argv[] = { (char *)test_vmd(), "console", "--run-dir", f->run, "con", NULL };
	TestRun r;

	fixture_put_sim(f, "con", "qemu", "  memory: 64Mi\n");
	fixture_start_daemon(f);
	fixture_wait_console(f, "con", "VMD-GUEST-READY", 0);
	assert_int_equal(access(sock, F_OK), 0);
	fixture_stop_daemon(f, SIGKILL);

	assert_int_equal(unlink(serial), 0);
	fixture_start_daemon(f);
	fixture_wait_log(f, "con: its VMM has no serial socket");
	json_decref(fixture_wait_status(f, "con", ready, "Running"));
	assert_int_equal(access(sock, F_OK), -1); /* the dead vmd's, removed */
	test_run(&r, argv);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "cannot reach the console of 'con'"));
	assert_non_null(strstr(r.err, "No such file or directory"));
	test_run_done(&r);
}

static bool refused(json_t *s, const void *arg)
{
	return phase_is(s, "Failed") &&
	       streq(status_condition(s, "Ready", "reason"), "InsufficientResources") &&
	       strstr(status_condition(s, "Ready", "message"), arg);
}

/*
 * Admission: a sandbox with more memory or vCPUs than the host has is refused before any
 * QEMU is spawned, with the reason in its status and in the log; --allow-overcommit lets
 * it through. (The noop backend's VMs take nothing from the host: it checks nothing.)
 */
static void test_admission(void **state)
{
	static const char *const overcommit[] = { "--qemu-binary", sim_qemu, "--allow-overcommit",
						  NULL };
	Fixture *f = *state;
	_cleanup_free_ char *extra = NULL, *log = NULL, *big_rec = path_in(f->run, "big/vm.json"),
			    *many_rec = path_in(f->run, "many/vm.json"), *want = NULL;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	json_t *s;

	assert_true(cpus > 0 && cpus < 256); /* room for one vCPU more, within the file's 256 */
	fixture_put_sim(f, "big", "qemu", "  memory: 1Ti\n");
	assert_true(asprintf(&extra, "  memory: 64Mi\n  vcpus: %ld\n", cpus + 1) > 0);
	fixture_put_sim(f, "many", "qemu", extra);
	fixture_put_sim(f, "fits", "qemu", "  memory: 64Mi\n");
	fixture_start_daemon(f);

	json_decref(fixture_wait_status(f, "fits", ready, "Running"));
	s = fixture_wait_status(f, "big", refused, "memory 1Ti is more than the host has (");
	assert_int_equal(pid_of(s), 0);
	assert_string_equal(json_string_value(json_object_get(s, "vmState")), "absent");
	assert_non_null(strstr(status_condition(s, "Ready", "message"),
			       "; no VMM is started for it (--allow-overcommit allows it)"));
	json_decref(s);
	assert_true(asprintf(&want, "%ld vCPUs are more than the host has (%ld CPUs)", cpus + 1,
			     cpus) > 0);
	json_decref(fixture_wait_status(f, "many", refused, want));
	assert_int_equal(access(big_rec, F_OK), -1);
	assert_int_equal(access(many_rec, F_OK), -1);
	log = test_read_file(f->log, NULL);
	assert_non_null(strstr(log, "big: refused, InsufficientResources: memory 1Ti is more than"));
	assert_non_null(strstr(log, "many: refused, InsufficientResources: "));
	assert_null(strstr(log, "big: start"));
	assert_null(strstr(log, "many: start"));

	fixture_stop_daemon(f, SIGTERM);
	f->daemon_args = overcommit;
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "big", ready, "Running"));
	json_decref(fixture_wait_status(f, "many", ready, "Running"));
	assert_int_equal(access(big_rec, F_OK), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_failed_add_undone, qemu_sim_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_long_ids_and_fresh_fdsets, qemu_sim_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_fdsets_after_readopt, qemu_sim_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_fdsets_refused_at_readopt, qemu_sim_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_start_seen_through, qemu_sim_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_kernel_shared, qemu_sim_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_user_net_hotplug, qemu_sim_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_admission, qemu_sim_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_console_without_socket, qemu_sim_setup,
						fixture_teardown),
	};

	snprintf(sim_qemu, sizeof(sim_qemu), "%s", test_src("tests/sim/qemu"));
	/* VMMs outlive a daemon killed with -9: they come to this binary, which reaps them. */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	if (getenv("VMD_TEST_FILTER"))
		cmocka_set_test_filter(getenv("VMD_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
