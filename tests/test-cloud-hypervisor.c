/* SPDX-License-Identifier: MIT */
/*
 * The real `vmd daemon` on the Cloud Hypervisor simulator (tests/sim/cloud-hypervisor),
 * run through --cloud-hypervisor-binary as a user would run the real one. The simulated
 * guest reports on its serial file (SIM-GUEST-BOOT, SIM-GUEST-DEVICES disks=.. nets=..
 * vcpus=.., SIM-GUEST-PAUSED, ...). Every request vmd sends is checked against the
 * upstream OpenAPI document; a request Cloud Hypervisor would refuse lands in the
 * violations file, and each test fails if that file is not empty.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "http-unix.h"
#include "status.h"
#include "util.h"
#include "vmm.h"

static char binary[4096];

/* The upstream releases the simulator behaves as, each test run against every one. */
static const char *const ch_releases[] = { "v52.0", "main" };

static const char *release(void)
{
	return getenv("VMD_SIM_CH_VERSION");
}

static bool release_up_to_v52(void)
{
	return streq(release(), "v52.0");
}

static int setup(void **state)
{
	static const char *args[] = { "--cloud-hypervisor-binary", binary, NULL };
	int r = fixture_setup(state);

	((Fixture *)*state)->daemon_args = args;
	return r;
}

static void put(Fixture *f, const char *name, const char *extra)
{
	fixture_put_sim(f, name, "cloud-hypervisor", extra);
}

static void wait_devices(Fixture *f, const char *name, const char *want)
{
	fixture_wait_line(f, name, "SIM-GUEST-DEVICES ", want);
}

static bool removing(json_t *s, const void *arg)
{
	const char *m = status_condition(s, "Ready", "message");

	return phase_is(s, "Paused") &&
	       streq(status_condition(s, "Ready", "reason"), "Progressing") && m && strstr(m, arg);
}

static bool restart_required(json_t *s, const void *arg _unused_)
{
	return phase_is(s, "Running") &&
	       streq(status_condition(s, "RestartRequired", "status"), "True");
}

static bool error_is(json_t *s, const void *arg)
{
	const char *e = json_string_value(json_object_get(s, "lastError"));

	return e && strstr(e, arg);
}

#define DISK_A "    - {id: a, path: \"%s\"}\n"
#define DISK_B "    - {id: b, path: \"%s\", readOnly: true}\n"
#define NET_0 "    - {id: n0, tap: vmdt0, mac: \"52:54:00:00:00:01\"}\n"
#define NET_1 "    - {id: n1, tap: vmdt1, mac: \"52:54:00:00:00:02\"}\n"

static void put_vm(Fixture *f, const char *head, bool b, bool n1)
{
	_cleanup_free_ char *text = NULL, *a = path_in(f->dir, "a.img"),
			    *bp = path_in(f->dir, "b.img");

	assert_true(asprintf(&text, "%s  disks:\n" DISK_A "%s  networks:\n" NET_0 "%s", head, a,
			     b ? "" : "", n1 ? NET_1 : "") > 0);
	if (b) {
		_cleanup_free_ char *with_b = NULL;
		char *at = strstr(text, "  networks:");

		assert_true(asprintf(&with_b, "%.*s" DISK_B "%s", (int)(at - text), text, bp, at) > 0);
		free(text);
		text = TAKE_PTR(with_b);
	}
	put(f, "vm", text);
}

static void test_lifecycle(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *record = path_in(f->run, "vm/vm.json"),
			    *file = path_in(f->sb, "vm.yaml"), *log = NULL,
			    *dir = path_in(f->run, "vm"), *version = NULL, *line = NULL;
	TestRun run;
	pid_t pid;
	json_t *s;

	assert_true(asprintf(&version, "cloud-hypervisor %s",
			     streq(release(), "main") ? "v53.0-246-gae44c2971" : release()) > 0);
	assert_true(asprintf(&line, "VMM:         %s\n", version) > 0);

	test_write_str(f->dir, "a.img", "");
	test_write_str(f->dir, "b.img", "");

	/* Created with its config, booted: one disk, one NIC, 1 vCPU. */
	put_vm(f, "  memory: 128Mi\n  cmdline: console=ttyS0\n", false, false);
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "vm", ready, "Running");
	pid = pid_of(s);
	/* The release, as vmm.ping says it: in status.json and in vmd status NAME. */
	assert_string_equal(json_string_value(json_object_get(s, "vmmVersion")), version);
	json_decref(s);
	test_run(&run, (char *const[]){ (char *)test_vmd(), (char *)"status", (char *)"--run-dir",
					f->run, (char *)"vm", NULL });
	assert_int_equal(run.status, 0);
	assert_non_null(strstr(run.out, line));
	test_run_done(&run);
	fixture_wait_console(f, "vm", "SIM-GUEST-BOOT cmdline=console=ttyS0", 0);
	wait_devices(f, "vm", "disks=a nets=n0@52:54:00:00:00:01 vcpus=1");

	/* A disk and a NIC added: hot-plugged. */
	put_vm(f, "  memory: 128Mi\n  cmdline: console=ttyS0\n", true, true);
	wait_devices(f, "vm", "disks=a,b nets=n0@52:54:00:00:00:01,n1@52:54:00:00:00:02 vcpus=1");
	s = fixture_wait_status(f, "vm", ready, "Running");
	assert_int_equal(json_array_size(json_object_get(s, "disks")), 2);
	json_decref(s);

	/* Paused; a removal waits for the guest, which cannot eject while paused. */
	put_vm(f, "  state: paused\n  memory: 128Mi\n  cmdline: console=ttyS0\n", true, true);
	fixture_wait_console(f, "vm", "SIM-GUEST-PAUSED", 0);
	json_decref(fixture_wait_status(f, "vm", ready, "Paused"));
	put_vm(f, "  state: paused\n  memory: 128Mi\n  cmdline: console=ttyS0\n", false, true);
	json_decref(fixture_wait_status(f, "vm", removing,
					"waiting for the guest to release disk 'b'"));

	/* Resumed: the guest lets go of b, and vmd sees it gone. */
	put_vm(f, "  memory: 128Mi\n  cmdline: console=ttyS0\n", false, true);
	fixture_wait_console(f, "vm", "SIM-GUEST-REMOVED b", 0);
	s = fixture_wait_status(f, "vm", ready, "Running");
	assert_int_equal(json_array_size(json_object_get(s, "disks")), 1);
	json_decref(s);
	/* Asked once: while the guest had not let go, vmd waited instead of asking again. */
	assert_int_equal(fixture_count_requests(f, "PUT /api/v1/vm.remove-device {\"id\":\"b\"}"), 1);

	/* Resized live: 2 vCPUs (max_vcpus is the host's count, at least 2 here), 256 MiB. */
	put_vm(f, "  vcpus: 2\n  memory: 256Mi\n  cmdline: console=ttyS0\n", false, true);
	wait_devices(f, "vm", "disks=a nets=n0@52:54:00:00:00:01,n1@52:54:00:00:00:02 vcpus=2");
	s = fixture_wait_status(f, "vm", ready, "Running");
	assert_int_equal(pid_of(s), pid); /* the same VMM: nothing restarted */
	json_decref(s);

	/* More memory than it has room for (4 x 128 MiB): that takes a new boot. */
	put_vm(f, "  vcpus: 2\n  memory: 1Gi\n  cmdline: console=ttyS0\n", false, true);
	s = fixture_wait_status(f, "vm", restart_required, NULL);
	assert_int_equal(pid_of(s), pid);
	json_decref(s);

	/*
	 * The file removed: power button, the guest shuts down, the VMM exits on its own
	 * (status 0, not forced), cleaned up. Its console goes with its runtime dir.
	 */
	assert_int_equal(unlink(file), 0);
	/* api.sock.lock (v53.0 on) too: nothing left */
	json_decref(fixture_wait_status(f, "vm", gone_with, dir));
	assert_true(access(record, F_OK) < 0);
	log = test_read_file(f->log, NULL);
	assert_non_null(strstr(log, "vm: VM exited with status 0"));
	assert_null(strstr(log, "forcing it off"));
}

/*
 * A disk changed while the VM is paused: removed (CH drops it from its config at once, but
 * the paused guest ejects nothing, so its device_tree keeps it and an add of that id would
 * be IdentifierNotUnique), and added back as changed only once the guest, resumed, let go.
 */
static bool running_read_only(json_t *s, const void *arg _unused_)
{
	json_t *d = json_array_get(json_object_get(s, "disks"), 0);

	return ready(s, "Running") && json_is_true(json_object_get(d, "readOnly"));
}

static void test_changed_disk_paused(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *a = path_in(f->dir, "a.img"), *rw = NULL, *ro = NULL, *paused = NULL;
	json_t *s;

	test_write_str(f->dir, "a.img", "");
	assert_true(asprintf(&rw, "  memory: 128Mi\n  disks:\n" DISK_A, a) > 0);
	assert_true(asprintf(&paused, "  state: paused\n%s", rw) > 0);
	assert_true(asprintf(&ro,
			     "  state: paused\n  memory: 128Mi\n  disks:\n"
			     "    - {id: a, path: \"%s\", readOnly: true}\n",
			     a) > 0);
	put(f, "vm", rw);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "vm", ready, "Running"));
	put(f, "vm", paused);
	json_decref(fixture_wait_status(f, "vm", ready, "Paused"));

	/* Changed while paused: the removal waits for the guest, no add is tried meanwhile. */
	put(f, "vm", ro);
	json_decref(fixture_wait_status(f, "vm", removing,
					"waiting for the guest to release disk 'a'"));
	assert_int_equal(fixture_count_requests(f, "PUT /api/v1/vm.add-disk"), 0);

	/* Resumed: the guest ejects a, and a comes back read-only, added once, no error. */
	put(f, "vm", ro + strlen("  state: paused\n"));
	fixture_wait_console(f, "vm", "SIM-GUEST-REMOVED a", 0);
	s = fixture_wait_status(f, "vm", running_read_only, NULL);
	assert_true(json_is_null(json_object_get(s, "lastError")));
	json_decref(s);
	assert_int_equal(fixture_count_requests(f, "PUT /api/v1/vm.add-disk"), 1);
}

static bool restart_why(json_t *s, const void *arg)
{
	const char *m = status_condition(s, "RestartRequired", "message");

	return restart_required(s, NULL) && m && strstr(m, arg);
}

static bool busy_resize(json_t *s, const void *arg _unused_)
{
	const char *m = status_condition(s, "Ready", "message");

	return json_is_null(json_object_get(s, "lastError")) && m &&
	       strstr(m, "the VMM is busy with the last change") && phase_is(s, "Paused");
}

/* Wait until the simulator took n requests that start with prefix. */
static void wait_requests(Fixture *f, const char *prefix, unsigned n)
{
	for (int i = 0; i < 1000 && fixture_count_requests(f, prefix) < n; i++)
		usleep(20000);
	assert_true(fixture_count_requests(f, prefix) >= n);
}

/*
 * Resizes as CH takes them: memory grows by whole 128 MiB hot-adds (anything else waits for
 * a new boot, and says why, with no vm.resize sent); a resize while the guest has not let go
 * of vCPUs a decrease removed gets 429, which is no failure: tried again, done once it ran.
 */
static void test_resize_steps(void **state)
{
	Fixture *f = *state;
	json_t *s;
	pid_t pid;

	put(f, "vm", "  vcpus: 2\n  memory: 128Mi\n");
	fixture_start_daemon(f);
	pid = fixture_running(f, "vm");

	/* 128 -> 200 MiB: not a whole hot-add; refused before CH would (InvalidSize). */
	put(f, "vm", "  vcpus: 2\n  memory: 200Mi\n");
	json_decref(fixture_wait_status(f, "vm", restart_why, "hot-add steps"));
	assert_int_equal(fixture_count_requests(f, "PUT /api/v1/vm.resize"), 0);
	/* 128 -> 384 MiB: two steps in one hot-add. */
	put(f, "vm", "  vcpus: 2\n  memory: 384Mi\n");
	wait_requests(f, "PUT /api/v1/vm.resize", 1);
	s = fixture_wait_status(f, "vm", ready, "Running");
	assert_int_equal(pid_of(s), pid);
	json_decref(s);
	assert_int_equal(fixture_count_requests(f, "PUT /api/v1/vm.resize"), 1);

	/* Paused, one vCPU fewer: the guest cannot eject it; the next resize is 429. */
	put(f, "vm", "  state: paused\n  vcpus: 1\n  memory: 384Mi\n");
	wait_devices(f, "vm", "disks= nets= vcpus=1");
	put(f, "vm", "  state: paused\n  vcpus: 2\n  memory: 384Mi\n");
	json_decref(fixture_wait_status(f, "vm", busy_resize, NULL));
	/* Resumed: the guest lets go, the resize goes through, nothing failed. */
	put(f, "vm", "  vcpus: 2\n  memory: 384Mi\n");
	wait_devices(f, "vm", "disks= nets= vcpus=2");
	s = fixture_wait_status(f, "vm", ready, "Running");
	assert_true(json_is_null(json_object_get(s, "lastError")));
	assert_int_equal(pid_of(s), pid);
	json_decref(s);
	assert_true(fixture_count_requests(f, "PUT /api/v1/vm.resize") >= 4);
}

/*
 * qcow2 on Cloud Hypervisor: image_type Qcow2, which it checks against the image; a qcow2
 * image declared raw is refused with its words (DiskImageTypeMismatch).
 */
static void test_qcow2(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *q = path_in(f->dir, "q.qcow2"), *good = NULL, *bad = NULL;

	test_write(f->dir, "q.qcow2", "QFI\xfb\0\0\0\3", 8);
	assert_true(asprintf(&good,
			     "  memory: 64Mi\n  disks:\n    - {id: q, path: \"%s\", format: qcow2}\n",
			     q) > 0);
	assert_true(asprintf(&bad, "  memory: 64Mi\n  disks:\n    - {id: q, path: \"%s\"}\n", q) > 0);
	put(f, "good", good);
	put(f, "bad", bad);
	fixture_start_daemon(f);
	(void)fixture_running(f, "good");
	assert_int_equal(fixture_count_requests(f, "PUT /api/v1/vm.create") >= 1, 1);
	json_decref(fixture_wait_status(
		f, "bad", failing,
		"Disk image type does not match expected type: specified = Raw, detected = Qcow2"));
}

/*
 * The cloud-init seed: a read-only raw disk under an id no sandbox's disk can have, made
 * in the runtime dir; an edited userData is a boot-time change (on-next-boot here).
 */
static void test_seed(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *seed = path_in(f->run, "vm/seed.iso"), *iso = NULL;
	size_t len;

	put(f, "vm", "  memory: 64Mi\n  cloudInit: {userData: one}\n");
	fixture_start_daemon(f);
	(void)fixture_running(f, "vm");
	wait_devices(f, "vm", "disks=vmd_seed nets= vcpus=1");
	iso = test_read_file(seed, &len);
	assert_non_null(iso);
	assert_true(len > 17 * 2048);
	assert_memory_equal(iso + 16 * 2048 + 1, "CD001", 5);

	put(f, "vm", "  memory: 64Mi\n  cloudInit: {userData: two}\n");
	json_decref(fixture_wait_status(f, "vm", restart_required, NULL));
}

static bool runs_other(json_t *s, const void *arg)
{
	return ready(s, "Running") && pid_of(s) > 0 && pid_of(s) != *(const pid_t *)arg;
}

/*
 * An edited userDataFile, with the sandbox file written again as it was: a new spec
 * (the files' hash), so a restart under updatePolicy restart, with the new seed.
 */
static void test_seed_file(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *ud = path_in(f->dir, "user-data"), *spec = NULL,
			    *seed = path_in(f->run, "vm/seed.iso"), *iso = NULL;
	pid_t first;
	size_t len;
	json_t *s;

	test_write_str(f->dir, "user-data", "#cloud-config\nhostname: first-version\n");
	assert_true(asprintf(&spec,
			     "  memory: 64Mi\n  updatePolicy: restart\n"
			     "  cloudInit: {userDataFile: \"%s\"}\n",
			     ud) > 0);
	put(f, "vm", spec);
	fixture_start_daemon(f);
	first = fixture_running(f, "vm");
	iso = test_read_file(seed, &len);
	assert_non_null(memmem(iso, len, "first-version", 13));
	free(iso);

	test_write_str(f->dir, "user-data", "#cloud-config\nhostname: second-version\n");
	put(f, "vm", spec);
	s = fixture_wait_status(f, "vm", runs_other, &first);
	json_decref(s);
	iso = test_read_file(seed, &len);
	assert_non_null(memmem(iso, len, "second-version", 14));
}

/* A release older than vmd supports: the start is refused, naming the oldest it takes. */
static void test_too_old(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *was = strdup(release());

	setenv("VMD_SIM_CH_VERSION", "v51.0", 1); /* the daemon and its VMMs inherit it */
	put(f, "vm", "  memory: 64Mi\n");
	fixture_start_daemon(f);
	setenv("VMD_SIM_CH_VERSION", was, 1);
	json_decref(fixture_wait_status(
		f, "vm", failing, "Cloud Hypervisor v51.0 is too old: vmd needs v52.0 or later"));
	assert_int_equal(fixture_count_requests(f, "PUT /api/v1/vm.create"), 0);
}

/* A guest that ignores the power button: vm.shutdown and vmm.shutdown after stopTimeout. */
static void test_forced_stop(void **state)
{
	fixture_forced_stop(*state, "cloud-hypervisor", "SIM-GUEST-POWER-BUTTON");
}

/* Kill -9 of vmd: the next one adopts both VMs (vmm.ping answers with the pid) and puts
 * back a pause done behind its back. */
static void test_readopt(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *sock = path_in(f->run, "two/api.sock");
	_cleanup_(http_freep) Http *h = NULL;
	HttpReply r;
	pid_t p1, p2;
	json_t *s;

	put(f, "one", "  memory: 64Mi\n");
	put(f, "two", "  memory: 64Mi\n");
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "one", ready, "Running");
	p1 = pid_of(s);
	json_decref(s);
	s = fixture_wait_status(f, "two", ready, "Running");
	p2 = pid_of(s);
	json_decref(s);

	fixture_stop_daemon(f, SIGKILL);
	assert_int_equal(http_new(sock, &h), 0);
	assert_int_equal(http_call(h, "PUT", "/api/v1/vm.pause", NULL, 1000000, &r), 0);
	http_reply_done(&r);

	fixture_start_daemon(f);
	fixture_wait_console(f, "two", "SIM-GUEST-RESUMED", 0);
	s = fixture_wait_status(f, "one", ready, "Running");
	assert_int_equal(pid_of(s), p1);
	assert_int_equal(json_integer_value(json_object_get(s, "restarts")), 0);
	json_decref(s);
	s = fixture_wait_status(f, "two", ready, "Running");
	assert_int_equal(pid_of(s), p2);
	assert_int_equal(json_integer_value(json_object_get(s, "restarts")), 0);
	json_decref(s);
}

/*
 * The simulator killed: restartPolicy always starts it again; never leaves it. A VM shut
 * down behind vmd's back (its VMM lingers, as Cloud Hypervisor's does) is seen at the next
 * resync (Cloud Hypervisor sends vmd no events), ended and, with restartPolicy always,
 * started again.
 */
static void test_crash(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *sock = NULL;
	_cleanup_(http_freep) Http *h = NULL;
	HttpReply r;
	pid_t p1, p2;
	json_t *s;

	static const char *args[] = { "--cloud-hypervisor-binary", binary, "--resync", "1", NULL };

	f->daemon_args = args;
	put(f, "always", "  memory: 64Mi\n");
	put(f, "never", "  memory: 64Mi\n  restartPolicy: never\n");
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "always", ready, "Running");
	p1 = pid_of(s);
	json_decref(s);
	s = fixture_wait_status(f, "never", ready, "Running");
	p2 = pid_of(s);
	json_decref(s);
	assert_int_equal(kill(p1, SIGKILL), 0);
	assert_int_equal(kill(p2, SIGKILL), 0);
	s = fixture_wait_status(f, "always", restarted, (void *)1);
	assert_int_not_equal(pid_of(s), p1);
	json_decref(s);
	s = fixture_wait_status(f, "never", phase_is, "Failed");
	assert_int_equal(pid_of(s), 0);
	json_decref(s);

	s = fixture_wait_status(f, "always", ready, "Running");
	p1 = pid_of(s);
	json_decref(s);
	sock = path_in(f->run, "always/api.sock");
	assert_int_equal(http_new(sock, &h), 0);
	assert_int_equal(http_call(h, "PUT", "/api/v1/vm.shutdown", NULL, 1000000, &r), 0);
	http_reply_done(&r);
	s = fixture_wait_status(f, "always", restarted, (void *)2);
	assert_int_not_equal(pid_of(s), p1);
	json_decref(s);
}

/*
 * A disk vmd cannot open fails the start before CH runs (vmd opens it, CH gets it as
 * /proc/self/fd/N); Cloud Hypervisor's own words, from its error body, reach the status.
 */
static void test_error_bodies(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *text = NULL, *missing = path_in(f->dir, "missing.img"), *want = NULL;

	assert_true(asprintf(&text, "  memory: 64Mi\n  disks:\n    - {id: gone, path: \"%s\"}\n",
			     missing) > 0);
	assert_true(asprintf(&want, "disk 'gone': cannot open '%s': No such file or directory",
			     missing) > 0);
	put(f, "broken", text);
	put(f, "live", "  memory: 64Mi\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "broken", failing, want));
	assert_int_equal(fixture_count_requests(f, "PUT /api/v1/vm.create"), 0);

	/* A hot-add the VMM refuses: its reason, and the VM runs on. */
	put(f, "live", text);
	json_decref(fixture_wait_status(
		f, "live", error_is,
		"vm.add-disk: The disk could not be added: Cannot open disk path"));
	json_decref(fixture_wait_status(f, "live", phase_is, "Running"));
}

/* The simulator itself refuses what Cloud Hypervisor refuses, and says so. */
static void test_simulator_refuses(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *sock = path_in(f->dir, "api.sock");
	_cleanup_(http_freep) Http *h = NULL;
	char *argv[] = { binary, (char *)"--api-socket", NULL, NULL };
	_cleanup_free_ char *opt = NULL, *v = NULL, *lock = NULL;
	json_auto_t *bad = json_pack("{s:{s:s}, s:i}", "payload", "kernel", "/k", "vpcus", 2);
	_cleanup_free_ char *kernel = path_in(f->dir, "k");
	json_auto_t *good = json_pack("{s:{s:s}}", "payload", "kernel", kernel);
	json_auto_t *dup = json_pack("{s:{s:s}, s:[{s:s, s:s}], s:[{s:s}]}", "payload", "kernel",
				     kernel, "disks", "path", kernel, "id", "x", "net", "id", "x");
	HttpReply r;
	pid_t pid;
	int pidfd, status;

	test_write_str(f->dir, "k", "");
	assert_true(asprintf(&opt, "path=%s", sock) > 0);
	argv[2] = opt;
	assert_int_equal(vmm_spawn(argv, "/dev/null", NULL, 0, &pid, &pidfd), 0);
	assert_int_equal(http_new(sock, &h), 0);
	for (int i = 0; i < 200 && http_call(h, "GET", "/api/v1/vmm.ping", NULL, 1000000, &r) < 0;
	     i++) {
		http_reply_done(&r);
		usleep(20000);
	}
	http_reply_done(&r);

	/* What it calls itself, and the lock beside its socket (v53.0 on). */
	assert_int_equal(http_call(h, "GET", "/api/v1/vmm.ping", NULL, 1000000, &r), 0);
	assert_string_equal(json_string_value(json_object_get(r.json, "build_version")),
			    streq(release(), "main") ? "v53.0-246-gae44c2971" : release());
	http_reply_done(&r);
	lock = path_in(f->dir, "api.sock.lock");
	assert_int_equal(access(lock, F_OK) == 0, !release_up_to_v52());

	/* Not created: 500 up to v52.0, 404 since; state errors are 500, never 405. */
	assert_int_equal(http_call(h, "GET", "/api/v1/vm.info", NULL, 1000000, &r),
			 release_up_to_v52() ? -EREMOTEIO : -ENOENT);
	assert_non_null(strstr(r.error, "VM is not created"));
	http_reply_done(&r);
	assert_int_equal(http_call(h, "PUT", "/api/v1/vm.boot", NULL, 1000000, &r),
			 release_up_to_v52() ? -EREMOTEIO : -ENOENT);
	assert_non_null(strstr(r.error, "VM is not created"));
	http_reply_done(&r);
	assert_int_equal(http_call(h, "PUT", "/api/v1/vm.pause", NULL, 1000000, &r), -EREMOTEIO);
	assert_non_null(strstr(r.error, "VM is not running"));
	http_reply_done(&r);
	assert_int_equal(http_call(h, "PUT", "/api/v1/vm.create", bad, 1000000, &r), -EINVAL);
	http_reply_done(&r);
	assert_int_equal(http_call(h, "PUT", "/api/v1/vm.frobnicate", NULL, 1000000, &r), -ENOENT);
	http_reply_done(&r);

	/* One set of ids for disks and nets together. */
	assert_int_equal(http_call(h, "PUT", "/api/v1/vm.create", dup, 1000000, &r), -EREMOTEIO);
	assert_non_null(strstr(r.error, "Identifier is not unique"));
	http_reply_done(&r);
	/* vm.shutdown drops the VM, its config stays: Created (and not running any more). */
	assert_int_equal(http_call(h, "PUT", "/api/v1/vm.create", good, 1000000, &r), 0);
	http_reply_done(&r);
	assert_int_equal(http_call(h, "PUT", "/api/v1/vm.boot", NULL, 1000000, &r), 0);
	http_reply_done(&r);
	assert_int_equal(http_call(h, "PUT", "/api/v1/vm.shutdown", NULL, 1000000, &r), 0);
	http_reply_done(&r);
	assert_int_equal(http_call(h, "GET", "/api/v1/vm.info", NULL, 1000000, &r), 0);
	assert_string_equal(json_string_value(json_object_get(r.json, "state")), "Created");
	http_reply_done(&r);
	assert_int_equal(http_call(h, "PUT", "/api/v1/vm.shutdown", NULL, 1000000, &r), -EREMOTEIO);
	assert_non_null(strstr(r.error, "VM is not running"));
	http_reply_done(&r);
	assert_int_equal(http_call(h, "PUT", "/api/v1/vmm.shutdown", NULL, 1000000, &r), 0);
	http_reply_done(&r);
	{
		struct pollfd p = { .fd = pidfd, .events = POLLIN };

		assert_int_equal(poll(&p, 1, 10000), 1); /* it exits on vmm.shutdown */
		assert_int_equal(vmm_reap(pidfd, &status), 1);
		assert_int_equal(status, 0);
		close(pidfd);
	}

	v = test_read_file(f->violations, NULL);
	assert_non_null(v);
	assert_non_null(strstr(v, "'vpcus' was unexpected"));
	assert_non_null(strstr(v, "no such endpoint: PUT /api/v1/vm.frobnicate"));
	assert_int_equal(unlink(f->violations), 0); /* expected here: not a failure of teardown */
}

/*
 * The serial port is a socket CH binds (mode Socket) and the daemon keeps: what the guest
 * prints from its boot on is in console.log (v52.0 drops what comes while nobody is
 * connected: vmd connects before vm.boot), and what is typed through console.sock reaches
 * the guest, before and after a kill -9 of vmd.
 */
static void test_console(void **state)
{
	Fixture *f = *state;
	size_t at;

	put(f, "con", "  memory: 64Mi\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "con", ready, "Running"));
	at = fixture_wait_console(f, "con", "SIM-GUEST-BOOT cmdline=", 0);
	fixture_console_type(f, "con", "hello\n");
	at = fixture_wait_console(f, "con", "SIM-GUEST-INPUT hello", at);

	fixture_stop_daemon(f, SIGKILL);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "con", ready, "Running"));
	fixture_console_type(f, "con", "again\n");
	(void)fixture_wait_console(f, "con", "SIM-GUEST-INPUT again", at);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_simulator_refuses, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_lifecycle, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_changed_disk_paused, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_forced_stop, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_readopt, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_crash, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_error_bodies, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_resize_steps, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_qcow2, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_seed, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_seed_file, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_too_old, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_console, setup, fixture_teardown),
	};

	int failed = 0;

	snprintf(binary, sizeof(binary), "%s", test_src("tests/sim/cloud-hypervisor"));
	/* VMMs outlive a daemon killed with -9: they come to this binary, which reaps them. */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	if (getenv("VMD_TEST_FILTER")) /* one test, for a run by hand */
		cmocka_set_test_filter(getenv("VMD_TEST_FILTER"));
	/* Every test against each release the simulator behaves as (its VMD_SIM_CH_VERSION). */
	for (size_t i = 0; i < ELEMENTSOF(ch_releases); i++) {
		setenv("VMD_SIM_CH_VERSION", ch_releases[i], 1);
		failed += _cmocka_run_group_tests(ch_releases[i], tests, ELEMENTSOF(tests), NULL,
						  NULL);
	}
	return failed;
}
