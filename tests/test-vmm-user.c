/* SPDX-License-Identifier: MIT */
/*
 * Cloud Hypervisor and an unjailed Firecracker (their simulators, tests/sim/) as an
 * unprivileged --vmm-user (issue 16): the daemon runs as root and starts each as nobody
 * (65534:65534) through its drop between fork and exec, so the simulator really opens what
 * it opens as that uid, as the real VMM would. What it needs comes as descriptors: the
 * kernel, 0600 root in a directory nobody may list, as a sealed memfd copy; the disks as
 * vmd opened them, each /proc/self/fd/N, which the kernel reopens checking the file's own
 * permission only; the API socket (CH: --api-socket fd=N); and a dir of its own, the
 * runtime dir's vmm/, for what it binds or creates itself. A disk the VMM user may not
 * open is refused by vmd before the VMM starts, with what to do.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "util.h"

#define USER_ID 65534

static char ch[4096], fc[4096];

static int setup(void **state)
{
	static const char *const args[] = {
		"--cloud-hypervisor-binary", ch, "--firecracker-binary", fc,
		/* after the fixture's own --vmm-user root: the last counts */
		"--vmm-user", "65534:65534", NULL
	};
	_cleanup_free_ char *kernel = NULL;
	Fixture *f;
	int r = fixture_setup(state);

	f = *state;
	kernel = path_in(f->dir, "vmlinux");
	f->daemon_args = args;
	fixture_vmm_user(f, USER_ID);
	/* The kernel: root's alone. */
	test_write_str(f->dir, "vmlinux", "not really a kernel\n");
	assert_int_equal(chmod(kernel, 0600), 0);
	return r;
}

static const char *backend(bool firecracker)
{
	return firecracker ? "firecracker" : "cloud-hypervisor";
}

/* Disks: a (the VMM user's, read-write) and b (root's 0644, read-only). */
static char *disks_ab(Fixture *f)
{
	_cleanup_free_ char *a = path_in(f->dir, "a.img"), *b = path_in(f->dir, "b.img");
	char *text = NULL;

	test_write_str(f->dir, "a.img", "");
	assert_int_equal(chown(a, USER_ID, USER_ID), 0);
	assert_int_equal(chmod(a, 0600), 0);
	test_write_str(f->dir, "b.img", "");
	assert_int_equal(chmod(b, 0644), 0);
	assert_true(
		asprintf(&text,
			 "  memory: 64Mi\n  cmdline: console=ttyS0\n  disks:\n"
			 "    - {id: a, path: \"%s\"}\n    - {id: b, path: \"%s\", readOnly: true}\n",
			 a, b) > 0);
	return text;
}

static void expect_owner(const char *path, uid_t uid)
{
	struct stat st;

	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_uid, uid);
}

/*
 * Boots as the VMM user, without capabilities, in a minimal environment; what it made
 * itself is in its own dir, the runtime dir stays root's; all gone with the sandbox.
 */
static void unprivileged(Fixture *f, bool firecracker)
{
	_cleanup_free_ char *text = disks_ab(f), *dir = path_in(f->run, "vm"),
			    *own = path_in(f->run, "vm/vmm"), *file = path_in(f->sb, "vm.yaml"),
			    *made = path_in(f->run,
					    firecracker ? "vm/vmm/api.sock" : "vm/vmm/serial.sock");
	struct stat st;
	pid_t pid;

	fixture_put_sim(f, "vm", backend(firecracker), text);
	fixture_start_daemon(f);
	pid = fixture_running(f, "vm");
	fixture_wait_console(f, "vm", "SIM-GUEST-BOOT cmdline=console=ttyS0", 0);
	fixture_wait_console(f, "vm", firecracker ? "drives=a,b" : "disks=a,b", 0);
	test_expect_unprivileged(pid, USER_ID, USER_ID);

	assert_int_equal(stat(dir, &st), 0);
	/* Nothing in it for the VMM user: not its owner, not its group, nothing for others. */
	assert_int_equal(st.st_uid, 0);
	assert_int_not_equal(st.st_gid, USER_ID);
	assert_int_equal(st.st_mode & 007, 0);
	expect_owner(own, USER_ID);
	expect_owner(made, USER_ID); /* bound by the VMM, as the VMM user */
	if (firecracker && !getenv("VMD_SIM_FC_VERSION")) {
		_cleanup_free_ char *console = path_in(f->run, "vm/vmm/console.log");

		expect_owner(console, USER_ID); /* PUT /serial: made by the VMM */
	}
	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "vm", gone_with, dir));
}

static void test_ch_unprivileged(void **state)
{
	unprivileged(*state, false);
}

static void test_fc_unprivileged(void **state)
{
	unprivileged(*state, true);
}

/* Firecracker 1.13, without PUT /serial: its console is its stdout, fc.out, vmd's. */
static int setup_1_13(void **state)
{
	setenv("VMD_SIM_FC_VERSION", "1.13.1", 1);
	return setup(state);
}

static int teardown_1_13(void **state)
{
	unsetenv("VMD_SIM_FC_VERSION");
	return fixture_teardown(state);
}

static void test_fc_1_13_unprivileged(void **state)
{
	unprivileged(*state, true);
}

/*
 * A disk the VMM user may not open (0600 root): vmd refuses the start before the VMM runs,
 * naming the disk, its path, the user and what to do; the VMM is asked nothing.
 */
static void refused(Fixture *f, bool firecracker)
{
	_cleanup_free_ char *secret = path_in(f->dir, "secret.img"), *text = NULL, *want = NULL;

	test_write_str(f->dir, "secret.img", "");
	assert_int_equal(chmod(secret, 0600), 0);
	assert_true(asprintf(&text, "  memory: 64Mi\n  disks:\n    - {id: s, path: \"%s\"}\n",
			     secret) > 0);
	assert_true(
		asprintf(&want,
			 "disk 's': '%s' is not readable and writable by the VMM user (uid 65534, gid 65534: --vmm-user): Permission denied; chown it to that user, or give it access with an ACL (setfacl -m u:65534:rw '%s')",
			 secret, secret) > 0);
	fixture_put_sim(f, "vm", backend(firecracker), text);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "vm", failing, want));
	assert_int_equal(
		fixture_count_requests(f, firecracker ? "PUT /drives" : "PUT /api/v1/vm.create"), 0);
}

static void test_ch_refused(void **state)
{
	refused(*state, false);
}

static void test_fc_refused(void **state)
{
	refused(*state, true);
}

/*
 * A sandbox whose spec (fmt, with the image's path) has a disk from an 8 MiB raw image
 * (mode), booted to devices: vmd's copy, copy in the state dir, is the VMM user's.
 */
static void boot_image(Fixture *f, bool firecracker, mode_t mode, const char *fmt,
		       const char *devices, const char *copy)
{
	_cleanup_free_ char *raw = path_in(f->dir, "base.raw"), *text = NULL,
			    *made = path_in(f->state, "disks/vm/%s", copy);

	test_write_str(f->dir, "base.raw", "BASE");
	assert_int_equal(chmod(raw, mode), 0);
	assert_int_equal(truncate(raw, 8 << 20), 0);
	assert_true(asprintf(&text, fmt, raw) > 0);
	fixture_put_sim(f, "vm", backend(firecracker), text);
	fixture_start_daemon(f);
	(void)fixture_running(f, "vm");
	fixture_wait_console(f, "vm", devices, 0);
	expect_owner(made, USER_ID);
	expect_owner(raw, 0);
}

/* Firecracker's raw copy of an image root's alone (vmd made it, the VMM never opens it). */
static void test_fc_image_copy(void **state)
{
	boot_image(*state, true, 0600,
		   "  memory: 64Mi\n  disks:\n"
		   "    - {id: root, image: \"%s\", imageFormat: raw, size: 16Mi}\n",
		   "drives=root", "root.raw");
}

/*
 * Cloud Hypervisor's disk from an image, root's alone (vmd's raw copy: with an overlay, CH
 * would open the image by the path in its header, and fail: "Failed to open backing
 * file"), and its cloud-init seed (a sealed copy).
 */
static void test_ch_image_and_seed(void **state)
{
	boot_image(*state, false, 0600,
		   "  memory: 64Mi\n  cloudInit: {userData: hello}\n  disks:\n"
		   "    - {id: root, image: \"%s\", imageFormat: raw}\n",
		   "disks=root,vmd_seed", "root.raw");
}

/* Whether pid has a descriptor on the file at path (its inode). */
static bool holds(pid_t pid, const char *path)
{
	char dir[64];
	struct stat want, st;
	bool found = false;

	assert_int_equal(stat(path, &want), 0);
	for (int fd = 0; fd < 1024 && !found; fd++) {
		snprintf(dir, sizeof(dir), "/proc/%d/fd/%d", (int)pid, fd);
		found = stat(dir, &st) == 0 && st.st_dev == want.st_dev && st.st_ino == want.st_ino;
	}
	return found;
}

/*
 * A disk that is a symlink: what vmd opened at the start is what the VMM has, whatever the
 * link says later; swapped to a file root's alone, the next start (after a crash) is
 * refused with QEMU's words (vmm-files.c): it is no longer the file the loader checked, and
 * it is never handed over.
 */
static void swapped_symlink(Fixture *f, bool firecracker)
{
	_cleanup_free_ char *a = path_in(f->dir, "a.img"), *secret = path_in(f->dir, "secret.img"),
			    *link_path = path_in(f->dir, "disk.img"),
			    *tmp = path_in(f->dir, "tmp.lnk"), *text = NULL, *want = NULL;
	pid_t pid;

	test_write_str(f->dir, "a.img", "");
	assert_int_equal(chown(a, USER_ID, USER_ID), 0);
	test_write_str(f->dir, "secret.img", "");
	assert_int_equal(chmod(secret, 0600), 0);
	assert_int_equal(symlink(a, link_path), 0);
	assert_true(asprintf(&text, "  memory: 64Mi\n  disks:\n    - {id: d, path: \"%s\"}\n",
			     link_path) > 0);
	fixture_put_sim(f, "vm", backend(firecracker), text);
	fixture_start_daemon(f);
	pid = fixture_running(f, "vm");
	assert_true(holds(pid, a));

	assert_int_equal(symlink(secret, tmp), 0);
	assert_int_equal(rename(tmp, link_path), 0);
	assert_true(holds(pid, a));
	assert_false(holds(pid, secret));
	assert_true(asprintf(&want,
			     "disk 'd': %s is no longer the file vmd checked (symlink changed?)",
			     link_path) > 0);
	assert_int_equal(kill(pid, SIGKILL), 0);
	json_decref(fixture_wait_status(f, "vm", failing, want));
}

static void test_ch_swapped_symlink(void **state)
{
	swapped_symlink(*state, false);
}

static void test_fc_swapped_symlink(void **state)
{
	swapped_symlink(*state, true);
}

/*
 * The VMM's own dir is the VMM's to fill: a console.log it replaced by a link to a file
 * root's alone is not read through by `vmd console --log` (an error instead), and an
 * api.sock it replaced by a link to another socket is never connected to (the stop that
 * follows reaches the VMM otherwise, or kills it): the other socket has no caller.
 */
static void test_fc_no_link_followed(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *secret = path_in(f->dir, "secret.log"),
			    *other = path_in(f->dir, "other.sock"),
			    *log = path_in(f->run, "vm/vmm/console.log"),
			    *api = path_in(f->run, "vm/vmm/api.sock"),
			    *tmp = path_in(f->run, "vm/vmm/tmp.lnk"),
			    *file = path_in(f->sb, "vm.yaml");
	char *const argv[] = {
		(char *)test_vmd(), "console", "--run-dir", f->run, "--log", "vm", NULL
	};
	_cleanup_close_ int lfd = -EBADF;
	TestRun r;
	pid_t pid;

	test_write_str(f->dir, "secret.log", "ROOT-SECRET\n");
	assert_int_equal(chmod(secret, 0600), 0);
	fixture_put_sim(f, "vm", "firecracker", "  memory: 64Mi\n  cmdline: console=ttyS0\n");
	fixture_start_daemon(f);
	pid = fixture_running(f, "vm");
	fixture_wait_console(f, "vm", "SIM-GUEST-BOOT", 0);

	assert_int_equal(symlink(secret, tmp), 0);
	assert_int_equal(rename(tmp, log), 0);
	test_run(&r, argv);
	assert_int_not_equal(r.status, 0);
	assert_null(strstr(r.out, "ROOT-SECRET"));
	assert_non_null(strstr(r.err, "symbolic links"));
	test_run_done(&r);

	lfd = unix_listen(other, 0600);
	assert_true(lfd >= 0);
	assert_int_equal(symlink(other, tmp), 0);
	assert_int_equal(rename(tmp, api), 0);
	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "vm", absent, NULL));
	fixture_wait_gone(pid);
	assert_true(accept4(lfd, NULL, NULL, SOCK_NONBLOCK) < 0 && errno == EAGAIN);
}

static bool error_is(json_t *s, const void *arg)
{
	const char *e = json_string_value(json_object_get(s, "lastError"));

	return e && strstr(e, arg);
}

/*
 * A disk hot-added to a running Cloud Hypervisor goes by its path (vm.add-disk takes no
 * fd), which CH opens as the VMM user: one root's alone is refused by vmd, saying so,
 * before CH is asked; one of the user's is added.
 */
static void test_ch_hot_add(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *secret = path_in(f->dir, "secret.img"), *a = path_in(f->dir, "a.img"),
			    *text = NULL, *want = NULL;

	test_write_str(f->dir, "secret.img", "");
	assert_int_equal(chmod(secret, 0600), 0);
	test_write_str(f->dir, "a.img", "");
	assert_int_equal(chown(a, USER_ID, USER_ID), 0);
	fixture_put_sim(f, "vm", "cloud-hypervisor", "  memory: 64Mi\n");
	fixture_start_daemon(f);
	(void)fixture_running(f, "vm");

	assert_true(asprintf(&text, "  memory: 64Mi\n  disks:\n    - {id: s, path: \"%s\"}\n",
			     secret) > 0);
	assert_true(asprintf(&want, "disk 's': '%s' is not readable and writable by the VMM user",
			     secret) > 0);
	fixture_put_sim(f, "vm", "cloud-hypervisor", text);
	json_decref(fixture_wait_status(f, "vm", error_is, want));
	assert_int_equal(fixture_count_requests(f, "PUT /api/v1/vm.add-disk"), 0);

	free(text);
	assert_true(asprintf(&text, "  memory: 64Mi\n  disks:\n    - {id: a, path: \"%s\"}\n", a) > 0);
	fixture_put_sim(f, "vm", "cloud-hypervisor", text);
	fixture_wait_console(f, "vm", "disks=a ", 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ch_unprivileged, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_fc_unprivileged, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_fc_1_13_unprivileged, setup_1_13, teardown_1_13),
		cmocka_unit_test_setup_teardown(test_ch_refused, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_fc_refused, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_fc_image_copy, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_ch_image_and_seed, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_ch_swapped_symlink, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_fc_swapped_symlink, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_ch_hot_add, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_fc_no_link_followed, setup, fixture_teardown),
	};

	snprintf(ch, sizeof(ch), "%s", test_src("tests/sim/cloud-hypervisor"));
	snprintf(fc, sizeof(fc), "%s", test_src("tests/sim/firecracker"));
	/* VMMs outlive a daemon killed with -9: they come to this binary, which reaps them. */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	if (getenv("VMD_TEST_FILTER"))
		cmocka_set_test_filter(getenv("VMD_TEST_FILTER"));
	return cmocka_run_group_tests_name("vmm-user", tests, NULL, NULL);
}
