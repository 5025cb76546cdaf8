/* SPDX-License-Identifier: MIT */
/*
 * The real `vmd daemon` on the Firecracker simulator (tests/sim/firecracker), run through
 * --firecracker-binary as a user would run the real one. The simulated guest reports on
 * its serial file (SIM-GUEST-BOOT, SIM-GUEST-DEVICES drives=.. nets=.. vcpus=.. mem=..,
 * SIM-GUEST-PAUSED, ...). Every request vmd sends is checked against the upstream
 * Swagger document; one Firecracker would refuse fails the test (fixture_teardown).
 */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "http-unix.h"
#include "status.h"
#include "util.h"

static char binary[4096], jailer[4096];

static int setup(void **state)
{
	/* The simulator takes nothing from the host: 4 vCPUs on a 2-CPU machine are fine. */
	static const char *args[] = { "--firecracker-binary", binary, "--allow-overcommit", NULL };
	int r = fixture_setup(state);

	((Fixture *)*state)->daemon_args = args;
	return r;
}

/*
 * Every test runs against the Firecracker versions whose API differs for vmd: 1.13 (no
 * PUT /serial: the console is its stdout) and the pinned upstream (tests/sim/specs).
 */
static int setup_1_13(void **state)
{
	setenv("VMD_SIM_FC_VERSION", "1.13.1", 1);
	return setup(state);
}

static int teardown(void **state)
{
	int r = fixture_teardown(state);

	unsetenv("VMD_SIM_FC_VERSION");
	unsetenv("VMD_SIM_FC_ARCH");
	return r;
}

#define FC_TEST(t)                                                                                 \
	{ #t " (1.13.1)", t, setup_1_13, teardown, NULL },                                         \
	{                                                                                          \
#t, t, setup, teardown, NULL                                                       \
	}

static void put(Fixture *f, const char *name, const char *extra)
{
	fixture_put_sim(f, name, "firecracker", extra);
}

static void wait_devices(Fixture *f, const char *name, const char *want)
{
	fixture_wait_line(f, name, "SIM-GUEST-DEVICES ", want);
}

static bool restart_required(json_t *s, const void *arg _unused_)
{
	return phase_is(s, "Running") &&
	       streq(status_condition(s, "RestartRequired", "status"), "True");
}

static bool running_as_other_pid(json_t *s, const void *arg)
{
	return ready(s, "Running") && pid_of(s) != 0 && pid_of(s) != (pid_t)(intptr_t)arg;
}

/* The lifecycle spec: vCPUs, whether disk b is there, the update policy, the state. */
static void put_vm(Fixture *f, unsigned vcpus, bool b, const char *policy, const char *state)
{
	_cleanup_free_ char *text = NULL, *a = path_in(f->dir, "a.img"),
			    *bp = path_in(f->dir, "b.img"), *disk_b = NULL;

	if (b)
		assert_true(asprintf(&disk_b, "    - {id: b, path: \"%s\", readOnly: true}\n", bp) >
			    0);
	assert_true(asprintf(&text,
			     "  vcpus: %u\n  memory: 128Mi\n  cmdline: console=ttyS0\n"
			     "  updatePolicy: %s\n  state: %s\n"
			     "  disks:\n    - {id: a, path: \"%s\"}\n%s"
			     "  networks:\n    - {id: n0, tap: vmdt0, mac: \"52:54:00:00:00:01\"}\n",
			     vcpus, policy, state, a, disk_b ?: "") > 0);
	put(f, "vm", text);
}

static void test_lifecycle(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *file = path_in(f->sb, "vm.yaml"),
			    *record = path_in(f->run, "vm/vm.json"), *log = NULL,
			    *fc_out_path = path_in(f->run, "vm/fc.out"), *fc_out = NULL;
	pid_t pid;
	json_t *s;

	test_write_str(f->dir, "a.img", "");
	test_write_str(f->dir, "b.img", "");

	/* Configured over the API, then InstanceStart. */
	put_vm(f, 2, false, "on-next-boot", "running");
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "vm", ready, "Running");
	pid = pid_of(s);
	json_decref(s);
	fixture_wait_console(f, "vm", "SIM-GUEST-BOOT cmdline=console=ttyS0", 0);
	wait_devices(f, "vm", "drives=a nets=n0@52:54:00:00:00:01 vcpus=2 mem=128");
	/* Firecracker logs to stdout: into fc.out. PUT /serial only where it exists. */
	fc_out = test_read_file(fc_out_path, NULL);
	assert_non_null(strstr(fc_out, "[vm:main] Running Firecracker v"));
	assert_int_equal(fixture_count_requests(f, "PUT /serial"),
			 getenv("VMD_SIM_FC_VERSION") ? 0 : 1);

	/* Paused and resumed: PATCH /vm. */
	put_vm(f, 2, false, "on-next-boot", "paused");
	fixture_wait_console(f, "vm", "SIM-GUEST-PAUSED", 0);
	json_decref(fixture_wait_status(f, "vm", ready, "Paused"));
	put_vm(f, 2, false, "on-next-boot", "running");
	fixture_wait_console(f, "vm", "SIM-GUEST-RESUMED", 0);
	json_decref(fixture_wait_status(f, "vm", ready, "Running"));

	/* No hot-plug in Firecracker: a new disk waits for the next boot... */
	put_vm(f, 2, true, "on-next-boot", "running");
	s = fixture_wait_status(f, "vm", restart_required, NULL);
	assert_int_equal(pid_of(s), pid);
	json_decref(s);

	/* ...or, with updatePolicy restart, gets one, with 4 vCPUs too. */
	put_vm(f, 4, true, "restart", "running");
	s = fixture_wait_status(f, "vm", running_as_other_pid, (void *)(intptr_t)pid);
	assert_string_equal(status_condition(s, "RestartRequired", "status") ?: "False", "False");
	json_decref(s);
	wait_devices(f, "vm", "drives=a,b nets=n0@52:54:00:00:00:01 vcpus=4 mem=128");

	/* The file removed: Ctrl-Alt-Del, the guest reboots, Firecracker exits on its own. */
	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "vm", absent, NULL));
	assert_true(access(record, F_OK) < 0);
	log = test_read_file(f->log, NULL);
	assert_non_null(strstr(log, "vm: VM exited with status 0"));
	assert_null(strstr(log, "forcing it off"));
}

/* A daemon with one sandbox vm (extra: its spec lines), once it runs: its VMM's pid. */
static pid_t start_vm(Fixture *f, const char *extra)
{
	json_t *s;
	pid_t pid;

	put(f, "vm", extra);
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "vm", ready, "Running");
	pid = pid_of(s);
	json_decref(s);
	return pid;
}

static bool running_as_pid(json_t *s, const void *arg)
{
	return ready(s, "Running") && pid_of(s) == (pid_t)(intptr_t)arg;
}

/* Running, the file's last edit acted on, with its first disk at path arg. */
static bool settled_on_disk(json_t *s, const void *arg)
{
	return ready(s, "Running") && streq_ptr(status_disk(s, 0, "path"), arg) &&
	       json_integer_value(json_object_get(s, "observedGeneration")) ==
		       json_integer_value(json_object_get(s, "generation"));
}

/*
 * Memory hot-plug (virtio-mem, Firecracker 1.14 and later): more memory, or less again
 * down to the boot size, without a restart; 1.13 restarts. vCPUs always need a restart.
 */
static void test_memory_hotplug(void **state)
{
	Fixture *f = *state;
	bool live = !getenv("VMD_SIM_FC_VERSION");
	pid_t pid = start_vm(f, "  memory: 128Mi\n  updatePolicy: restart\n");
	json_t *s;

	wait_devices(f, "vm", "drives= nets= vcpus=1 mem=128");

	put(f, "vm", "  memory: 384Mi\n  updatePolicy: restart\n");
	wait_devices(f, "vm", "drives= nets= vcpus=1 mem=384");
	s = fixture_wait_status(f, "vm", live ? running_as_pid : running_as_other_pid,
				(void *)(intptr_t)pid);
	pid = pid_of(s);
	json_decref(s);
	assert_int_equal(fixture_count_requests(f, "PATCH /hotplug/memory"), live ? 1 : 0);
	if (live) {
		put(f, "vm", "  memory: 128Mi\n  updatePolicy: restart\n");
		wait_devices(f, "vm", "drives= nets= vcpus=1 mem=128");
		json_decref(fixture_wait_status(f, "vm", running_as_pid, (void *)(intptr_t)pid));
	}

	put(f, "vm", "  memory: 128Mi\n  vcpus: 2\n  updatePolicy: restart\n");
	json_decref(fixture_wait_status(f, "vm", running_as_other_pid, (void *)(intptr_t)pid));
	wait_devices(f, "vm", "drives= nets= vcpus=2 mem=128");
}

/* A guest deaf to Ctrl-Alt-Del: killed after stopTimeout (Firecracker has no quit). */
static void test_forced_stop(void **state)
{
	fixture_forced_stop(*state, "firecracker", "SIM-GUEST-CTRL-ALT-DEL");
}

/*
 * Kill -9 of vmd: the next one adopts the VM (GET / answers with its name as the id) and
 * resumes a pause done behind its back. A runtime dir whose Firecracker answers for
 * another name is not adopted; and the name it answers for gets no second one beside it,
 * as its command line still says whose it is.
 */
static void test_readopt(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *sock = path_in(f->run, "one/api.sock"), *from = path_in(f->run, "two"),
			    *to = path_in(f->run, "three"), *log = NULL;
	_cleanup_(http_freep) Http *h = NULL;
	json_auto_t *pause = json_pack("{s:s}", "state", "Paused");
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
	assert_int_equal(http_call(h, "PATCH", "/vm", pause, 1000000, &r), 0);
	http_reply_done(&r);
	/* two's runtime dir now claims to be three's: same process, wrong instance id. */
	assert_int_equal(rename(from, to), 0);

	fixture_start_daemon(f);
	fixture_wait_console(f, "one", "SIM-GUEST-RESUMED", 0);
	s = fixture_wait_status(f, "one", ready, "Running");
	assert_int_equal(pid_of(s), p1);
	assert_int_equal(json_integer_value(json_object_get(s, "restarts")), 0);
	json_decref(s);
	s = fixture_wait_status(f, "two", phase_is, "Unknown");
	assert_string_equal(status_condition(s, "Degraded", "reason"), "RecordLost");
	assert_int_equal(pid_of(s), p2);
	json_decref(s);
	log = test_read_file(f->log, NULL);
	assert_non_null(strstr(log, "three: found a VM vmd cannot prove is its own"));
	assert_non_null(strstr(log, "two: Firecracker pid"));
	/* two's one start is the first vmd's. */
	assert_null(strstr(strstr(log, "two: start: done") + 1, "two: start: done"));
}

/* The simulator killed: restartPolicy always starts it again. */
static void test_crash(void **state)
{
	Fixture *f = *state;
	pid_t pid = start_vm(f, "  memory: 64Mi\n");
	json_t *s;

	assert_int_equal(kill(pid, SIGKILL), 0);
	s = fixture_wait_status(f, "vm", restarted, (void *)1);
	assert_int_not_equal(pid_of(s), pid);
	json_decref(s);
}

/* A disk that is not there fails the start, said; a stale socket does not stop a start. */
static void test_errors_and_stale_socket(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *text = NULL, *missing = path_in(f->dir, "missing.img"),
			    *dir = path_in(f->run, "vm");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	json_t *s;

	/* What a Firecracker killed with -9 leaves: a socket file nobody listens on. */
	assert_int_equal(mkdir(f->run, 0755), 0);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/api.sock", dir);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	put(f, "vm", "  memory: 64Mi\n");

	assert_true(asprintf(&text, "  memory: 64Mi\n  disks:\n    - {id: gone, path: \"%s\"}\n",
			     missing) > 0);
	put(f, "broken", text);
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "vm", ready, "Running");
	assert_int_equal(json_integer_value(json_object_get(s, "restarts")), 0); /* first time */
	json_decref(s);
	/* vmd opens the drives (Firecracker gets /proc/self/fd/N): it says what is missing. */
	json_decref(fixture_wait_status(f, "broken", failing, "disk 'gone': cannot open '"));
	assert_int_equal(fixture_count_requests(f, "PUT /drives/gone"), 0);
}

/* The id of a status's first disk or network (what: "disks" or "networks"), or NULL. */
static const char *first_id(json_t *s, const char *what)
{
	return json_string_value(json_object_get(json_array_get(json_object_get(s, what), 0), "id"));
}

/*
 * Ids with '-', which Firecracker refuses in its paths (checked_id): vmd gives it '_'
 * instead, and the status, the plan and an adopting vmd keep the ids of the file.
 */
static void test_dash_ids(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *text = NULL, *img = path_in(f->dir, "data.img");
	pid_t pid;
	json_t *s;

	test_write_str(f->dir, "data.img", "");
	assert_true(asprintf(&text,
			     "  memory: 64Mi\n  disks:\n    - {id: data-1, path: \"%s\"}\n"
			     "  networks:\n    - {id: net-0, tap: vmdt0, mac: \"52:54:00:00:00:02\"}\n",
			     img) > 0);
	put(f, "vm", text);
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "vm", ready, "Running");
	pid = pid_of(s);
	json_decref(s);
	wait_devices(f, "vm", "drives=data_1 nets=net_0@52:54:00:00:00:02 vcpus=1 mem=64");

	/* A new vmd reads GET /vm/config: the devices are the file's, nothing to restart. */
	fixture_stop_daemon(f, SIGKILL);
	fixture_start_daemon(f);
	/* Its status, not the killed daemon's, which is there until it has taken the VM in. */
	fixture_wait_log(f, "vm: re-adopted its running VM");
	s = fixture_wait_status(f, "vm", ready, "Running");
	assert_int_equal(pid_of(s), pid);
	assert_string_equal(first_id(s, "disks"), "data-1");
	assert_string_equal(first_id(s, "networks"), "net-0");
	assert_string_equal(status_condition(s, "RestartRequired", "status") ?: "False", "False");
	json_decref(s);
}

/*
 * The simulator's PATCH /drives/ID on its own: a running VM's disk takes a new backing
 * file; a missing one is refused with Firecracker's reason.
 */
static void test_patch_drive_sim(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *text = NULL, *a = path_in(f->dir, "a.img"),
			    *b = path_in(f->dir, "b.img"), *sock = path_in(f->run, "vm/api.sock"),
			    *gone = path_in(f->dir, "gone.img");
	_cleanup_(http_freep) Http *h = NULL;
	json_auto_t *change = NULL, *missing = NULL;
	HttpReply r;

	test_write_str(f->dir, "a.img", "");
	test_write_str(f->dir, "b.img", "");
	assert_true(asprintf(&text, "  memory: 64Mi\n  disks:\n    - {id: d-1, path: \"%s\"}\n", a) >
		    0);
	start_vm(f, text);
	change = json_pack("{s:s, s:s}", "drive_id", "d_1", "path_on_host", b);
	missing = json_pack("{s:s, s:s}", "drive_id", "d_1", "path_on_host", gone);
	assert_int_equal(http_new(sock, &h), 0);
	assert_int_equal(http_call(h, "PATCH", "/drives/d_1", change, 1000000, &r), 0);
	http_reply_done(&r);
	fixture_wait_console(f, "vm", "SIM-GUEST-DRIVE-CHANGED d_1", 0);
	assert_int_not_equal(http_call(h, "PATCH", "/drives/d_1", missing, 1000000, &r), 0);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(r.error, "Unable to patch the block device: BackingFile"));
	http_reply_done(&r);
}

static bool stopped_with_error(json_t *s, const void *arg)
{
	const char *e = json_string_value(json_object_get(s, "lastError"));

	return e && strstr(e, arg);
}

/* The daemon runs Firecracker through the jailer, as uid and gid 4242, jails under base. */
static void jailed(Fixture *f, const char *base)
{
	fixture_jailed(f, binary, jailer, base);
}

/*
 * Through the jailer: the images are hard links in the jail's root (the same inodes,
 * nothing copied), Firecracker is given paths inside the jail, the uid owns the root, and
 * an image the uid may not write fails with Firecracker's reason. Removing the file
 * cleans the jail up.
 */
static void test_jailer(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *base = path_in(f->dir, "jail"), *a = path_in(f->dir, "a.img"),
			    *locked = path_in(f->dir, "locked.img"), *text = NULL,
			    *root = path_in(f->dir, "jail/firecracker/vm/root"),
			    *link_a = path_in(f->dir, "jail/firecracker/vm/root/disk-a"),
			    *file = path_in(f->sb, "vm.yaml");
	struct stat st_a, st_link, st_root;

	jailed(f, base);
	test_write_str(f->dir, "a.img", "");
	assert_int_equal(chmod(a, 0666), 0); /* the uid writes it */
	test_write_str(f->dir, "locked.img", "");
	assert_int_equal(chmod(locked, 0600), 0);
	assert_true(asprintf(&text,
			     "  memory: 64Mi\n  cmdline: console=ttyS0\n"
			     "  disks:\n    - {id: a, path: \"%s\"}\n",
			     a) > 0);
	put(f, "vm", text);
	free(text);
	assert_true(asprintf(&text, "  memory: 64Mi\n  disks:\n    - {id: l, path: \"%s\"}\n",
			     locked) > 0);
	put(f, "locked", text);
	put(f, "notap",
	    "  memory: 64Mi\n  networks:\n    - {id: n0, tap: vmdnotap0, mac: \"52:54:00:00:00:03\"}\n");
	fixture_start_daemon(f);

	json_decref(fixture_wait_status(f, "vm", ready, "Running"));
	fixture_wait_console(f, "vm", "SIM-GUEST-KERNEL /vmlinux", 0);
	wait_devices(f, "vm", "drives=a nets= vcpus=1 mem=64");
	assert_int_equal(stat(a, &st_a), 0);
	assert_int_equal(stat(link_a, &st_link), 0);
	assert_int_equal(st_link.st_ino, st_a.st_ino);
	assert_int_equal(stat(root, &st_root), 0);
	assert_int_equal(st_root.st_uid, 4242);
	json_decref(fixture_wait_status(
		f, "locked", stopped_with_error,
		"PUT /drives/l: Unable to create the block device: BackingFile(Os { code: 13"));
	/* Firecracker opens the tap itself, as the jail's uid: it must be there, the uid's. */
	json_decref(fixture_wait_status(f, "notap", stopped_with_error,
					"Operation not permitted (os error 1). Invalid TUN/TAP Backend "
					"provided by vmdnotap0"));

	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "vm", absent, NULL));
	assert_true(stat(root, &st_root) < 0);
	assert_int_equal(stat(a, &st_a), 0); /* the image stays, with one link again */
	assert_int_equal(st_a.st_nlink, 1);
}

/*
 * The cloud-init seed, read-only under a drive id no disk's id gives; through the jailer,
 * a copy in the jail's root (no link: /run is not the chroot base's filesystem), the
 * uid's, read-only, gone with the jail.
 */
static void test_seed(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *base = path_in(f->dir, "jail"),
			    *root = path_in(f->dir, "jail/firecracker/jailed/root"),
			    *copy = path_in(f->dir, "jail/firecracker/jailed/root/disk-_seed"),
			    *seed = path_in(f->run, "plain/seed.iso"),
			    *file = path_in(f->sb, "jailed.yaml"), *a = NULL, *b = NULL;
	struct stat st;
	size_t la, lb;

	put(f, "plain", "  memory: 64Mi\n  cloudInit: {userData: x}\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "plain", ready, "Running"));
	wait_devices(f, "plain", "drives=VmdSeed nets= vcpus=1 mem=64");
	assert_int_equal(stat(seed, &st), 0);
	fixture_stop_daemon(f, SIGTERM);

	jailed(f, base);
	put(f, "jailed", "  memory: 64Mi\n  cloudInit: {userData: x}\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "jailed", ready, "Running"));
	wait_devices(f, "jailed", "drives=VmdSeed nets= vcpus=1 mem=64");
	assert_int_equal(stat(copy, &st), 0);
	assert_int_equal(st.st_uid, 4242);
	assert_int_equal(st.st_mode & 07777, 0400);
	free(seed);
	seed = path_in(f->run, "jailed/seed.iso");
	a = test_read_file(seed, &la);
	b = test_read_file(copy, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(a, b, la);
	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "jailed", absent, NULL));
	assert_true(stat(root, &st) < 0);
}

/* What is under dir, one "path\n" each (dir itself not listed), sorted; "" if nothing or no dir. */
static char *tree(const char *dir)
{
	_cleanup_(test_run_done) TestRun r = {};
	char *argv[] = { (char *)"/usr/bin/find", (char *)dir, (char *)"-mindepth", (char *)"1",
			 NULL };

	if (access(dir, F_OK) < 0)
		return strdup("");
	test_run(&r, argv);
	assert_int_equal(r.status, 0);
	return strdup(r.out);
}

/*
 * A jailed VM whose Firecracker dies, three times: each restart finds the jail as the
 * jailer left it (device nodes, the O_EXCL pid file, run/), and vmd clears it first. Then
 * the file removed: nothing is left under the chroot base.
 */
static void test_jail_restarts(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *base = path_in(f->dir, "jail"), *file = path_in(f->sb, "vm.yaml"),
			    *pidfile = path_in(f->dir, "jail/firecracker/vm/root/firecracker.pid"),
			    *root = path_in(f->dir, "jail/firecracker/vm/root"),
			    *dev = path_in(f->dir, "jail/firecracker/vm/root/dev"),
			    *outside = path_in(f->dir, "outside"),
			    *kept = path_in(f->dir, "outside/kvm"), *left = NULL;
	pid_t pid;
	json_t *s;

	jailed(f, base);
	/* A jail whose dev is a symlink out of it: the link goes, not what it points at. */
	assert_int_equal(mkdir_p(root, 0700), 0);
	assert_int_equal(mkdir(outside, 0700), 0);
	test_write_str(outside, "kvm", "keep");
	assert_int_equal(symlink(outside, dev), 0);
	put(f, "vm", "  memory: 64Mi\n  restartPolicy: always\n");
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "vm", ready, "Running");
	for (uintptr_t i = 1; i <= 3; i++) {
		_cleanup_free_ char *text = NULL;

		pid = pid_of(s);
		json_decref(s);
		/* The jailer's pid file names the process vmd watches. */
		text = test_read_file(pidfile, NULL);
		assert_int_equal(atoi(text), pid);
		assert_int_equal(kill(pid, SIGKILL), 0);
		s = fixture_wait_status(f, "vm", restarted, (void *)i);
		assert_int_not_equal(pid_of(s), pid);
	}
	json_decref(s);

	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "vm", absent, NULL));
	left = tree(base);
	assert_string_equal(left, "");
	assert_int_equal(access(kept, F_OK), 0);
}

/*
 * Firecracker on aarch64 has no SendCtrlAltDel (request/actions.rs): nothing can ask the
 * guest to shut down, so a stop forces it off at once, saying why.
 */
static void test_aarch64_stop(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *file = path_in(f->sb, "vm.yaml"), *log = NULL;

	setenv("VMD_SIM_FC_ARCH", "aarch64", 1);
	put(f, "vm", "  memory: 64Mi\n  stopTimeout: 1h\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "vm", ready, "Running"));
	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "vm", absent, NULL));
	log = test_read_file(f->log, NULL);
	assert_non_null(strstr(log, "vm: cannot ask the guest to shut down (PUT /actions: "
				    "SendCtrlAltDel does not supported on aarch64."));
}

/*
 * A disk's path changed in the file: PATCH /drives/ID, the same Firecracker (jailed: its
 * link in the jail is the new file's). Made read-only instead: a restart.
 */
static void test_disk_path(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *a = path_in(f->dir, "a.img"), *b = path_in(f->dir, "b.img"),
			    *base = path_in(f->dir, "jail"), *text = NULL,
			    *link_d = path_in(f->dir, "jail/firecracker/vm/root/disk-d-1"),
			    *file = path_in(f->sb, "vm.yaml");
	struct stat st_b, st_link;
	pid_t pid;
	json_t *s;

	jailed(f, base);
	test_write_str(f->dir, "a.img", "");
	test_write_str(f->dir, "b.img", "");
	assert_int_equal(chmod(a, 0666), 0);
	assert_int_equal(chmod(b, 0666), 0);
	assert_true(asprintf(&text,
			     "  memory: 64Mi\n  updatePolicy: restart\n"
			     "  disks:\n    - {id: d-1, path: \"%s\"}\n",
			     a) > 0);
	pid = start_vm(f, text);
	free(text);
	assert_true(asprintf(&text,
			     "  memory: 64Mi\n  updatePolicy: restart\n"
			     "  disks:\n    - {id: d-1, path: \"%s\"}\n",
			     b) > 0);
	put(f, "vm", text);
	fixture_wait_console(f, "vm", "SIM-GUEST-DRIVE-CHANGED d_1", 0);
	/*
	 * The guest sees the new drive as the PATCH is answered; the status says so once
	 * vmd has taken the answer in: the edit acted on, the same VMM.
	 */
	s = fixture_wait_status(f, "vm", settled_on_disk, b);
	assert_int_equal(pid_of(s), pid);
	json_decref(s);
	assert_int_equal(stat(b, &st_b), 0);
	assert_int_equal(stat(link_d, &st_link), 0);
	assert_int_equal(st_link.st_ino, st_b.st_ino);
	free(text);
	assert_true(asprintf(&text,
			     "  memory: 64Mi\n  updatePolicy: restart\n"
			     "  disks:\n    - {id: d-1, path: \"%s\", readOnly: true}\n",
			     b) > 0);
	put(f, "vm", text);
	json_decref(fixture_wait_status(f, "vm", running_as_other_pid, (void *)(intptr_t)pid));
	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "vm", absent, NULL));
}

/*
 * Disks from images on Firecracker, which takes raw disks only: a copy, not an overlay.
 * A raw image is copied sparse (a reflink where the filesystem can) and grown to size;
 * a qcow2 image is converted by qemu-img. The images are not written.
 */
static void test_image_copies(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *raw = path_in(f->dir, "base.raw"),
			    *qcow2 = path_in(f->dir, "base.qcow2"), *text = NULL,
			    *root = path_in(f->state, "disks/vm/root.raw"),
			    *q = path_in(f->state, "disks/vm/q.raw"), *head = NULL;
	_cleanup_(test_run_done) TestRun r = {};
	struct stat st;
	json_t *s;

	test_write_str(f->dir, "base.raw", "FC-BASE");
	assert_int_equal(truncate(raw, 8 << 20), 0);
	test_run(&r, (char *[]){ "/usr/bin/qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2",
				 raw, qcow2, NULL });
	assert_int_equal(r.status, 0);
	assert_true(asprintf(&text,
			     "  memory: 64Mi\n  disks:\n"
			     "    - {id: root, image: \"%s\", imageFormat: raw, size: 16Mi}\n"
			     "    - {id: q, image: \"%s\"}\n",
			     raw, qcow2) > 0);
	(void)start_vm(f, text);
	s = fixture_wait_status(f, "vm", ready, "Running");
	assert_string_equal(status_disk(s, 0, "path"), root);
	assert_string_equal(status_disk(s, 1, "format"), "raw");
	json_decref(s);
	/* Grown to size, sparse: the data of the image, and holes. */
	assert_int_equal(stat(root, &st), 0);
	assert_int_equal(st.st_size, 16 << 20);
	assert_true(st.st_blocks * 512 < (1 << 20));
	head = test_read_file(root, NULL);
	assert_string_equal(head, "FC-BASE");
	free(head);
	/* Converted from qcow2: raw bytes, the image's virtual size. */
	assert_int_equal(stat(q, &st), 0);
	assert_int_equal(st.st_size, 8 << 20);
	head = test_read_file(q, NULL);
	assert_string_equal(head, "FC-BASE");
	assert_int_equal(stat(raw, &st), 0);
	assert_int_equal(st.st_size, 8 << 20);
}

static bool copying(json_t *s, const void *arg)
{
	_cleanup_free_ char *text = s ? json_dumps(s, 0) : NULL;

	return text && strstr(text, arg);
}

/* A copy under way is said in the status; a stop then ends it, and leaves no part of it. */
static void test_image_copy_stopped(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *qcow2 = path_in(f->dir, "base.qcow2"), *text = NULL, *want = NULL,
			    *part = path_in(f->state, "disks/vm/q.raw.part"),
			    *file = path_in(f->sb, "vm.yaml");
	_cleanup_(test_run_done) TestRun r = {};
	pid_t stalled;

	test_run(&r, (char *[]){ "/usr/bin/qemu-img", "create", "-q", "-f", "qcow2", qcow2, "64M",
				 NULL });
	assert_int_equal(r.status, 0);
	assert_true(asprintf(&text, "  memory: 64Mi\n  disks:\n    - {id: q, image: \"%s\"}\n",
			     qcow2) > 0);
	put(f, "vm", text);
	fixture_stall_qemu_img(f); /* qemu-img convert, stopped */
	fixture_start_daemon(f);
	stalled = fixture_wait_stalled(f);
	assert_true(asprintf(&want, "copying image %s for disk 'q' (", qcow2) > 0);
	json_decref(fixture_wait_status(f, "vm", copying, want));
	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "vm", absent, NULL));
	fixture_wait_gone(stalled);
	assert_false(access(part, F_OK) == 0);
}

/* Jailed: the copy is hard-linked into the jail, and the jailer's uid may write it. */
static void test_image_copies_jailed(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *raw = path_in(f->dir, "base.raw"), *text = NULL,
			    *base = path_in(f->dir, "jail"),
			    *root = path_in(f->state, "disks/vm/root.raw"),
			    *link = path_in(f->dir, "jail/firecracker/vm/root/disk-root");
	struct stat st, st_link;

	jailed(f, base);
	test_write_str(f->dir, "base.raw", "FC-BASE");
	assert_int_equal(truncate(raw, 8 << 20), 0);
	assert_true(asprintf(&text,
			     "  memory: 64Mi\n  disks:\n"
			     "    - {id: root, image: \"%s\", imageFormat: raw}\n",
			     raw) > 0);
	(void)start_vm(f, text);
	assert_int_equal(stat(root, &st), 0);
	assert_int_equal(st.st_uid, (uid_t)atoi(FIXTURE_JAIL_UID));
	assert_int_equal(stat(link, &st_link), 0);
	assert_int_equal(st_link.st_ino, st.st_ino);
}

/* --jailer without the ids to drop to is refused before anything starts; so is uid 0. */
static void test_jailer_options(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r = {}, r0 = {};
	char *argv[] = { (char *)test_vmd(),
			 (char *)"daemon",
			 (char *)"--jailer",
			 jailer,
			 (char *)"--jailer-uid",
			 (char *)"4242",
			 NULL };
	char *argv0[] = { (char *)test_vmd(), (char *)"plan", (char *)"--jailer-gid", (char *)"0",
			  NULL };

	test_run(&r, argv);
	assert_int_equal(r.status, 2);
	assert_string_equal(r.err, "vmd daemon: --jailer needs --jailer-uid and --jailer-gid\n");
	test_run(&r0, argv0);
	assert_int_equal(r0.status, 2);
	assert_string_equal(r0.err,
			    "vmd plan: --jailer-gid takes a numeric id other than 0, not '0'\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		FC_TEST(test_lifecycle),
		FC_TEST(test_forced_stop),
		FC_TEST(test_memory_hotplug),
		FC_TEST(test_readopt),
		FC_TEST(test_crash),
		FC_TEST(test_errors_and_stale_socket),
		FC_TEST(test_dash_ids),
		FC_TEST(test_patch_drive_sim),
		FC_TEST(test_seed),
		FC_TEST(test_jailer),
		FC_TEST(test_jail_restarts),
		FC_TEST(test_aarch64_stop),
		FC_TEST(test_disk_path),
		FC_TEST(test_image_copies),
		FC_TEST(test_image_copies_jailed),
		FC_TEST(test_image_copy_stopped),
		cmocka_unit_test(test_jailer_options),
	};

	snprintf(binary, sizeof(binary), "%s", test_src("tests/sim/firecracker"));
	snprintf(jailer, sizeof(jailer), "%s", test_src("tests/sim/jailer"));
	/* VMMs outlive a daemon killed with -9: they come to this binary, which reaps them. */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	/*
	 * A network namespace of its own: the simulator opens taps as Firecracker does, and
	 * unjailed (root) that makes a missing one, which must not be the host's.
	 */
	if (unshare(CLONE_NEWNET) < 0) {
		fprintf(stderr, "test-firecracker: cannot make a network namespace: %m\n");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
