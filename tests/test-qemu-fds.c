/* SPDX-License-Identifier: MIT */
/*
 * Real QEMU (TCG) as an unprivileged --vmm-user (nobody) that has no access to a single
 * file it boots from (issue 16): the kernel, the initrd, a disk's file, the base image under
 * an overlay and a credential are all mode 0600, root's, in a 0700 dir of root's; the seed
 * is vmd's, in its 0700 run dir. vmd opens each and QEMU gets descriptors: the guest boots,
 * reads the base through its overlay (the backing node vmd named, not the header's path),
 * sees its seed and its credential; a hot-added read-only disk of the same kind works, and
 * once removed QEMU holds no descriptor of it (remove-fd after blockdev-del). A disk's
 * symlink swapped, after the loader checked it, for another root file is never opened
 * for QEMU: the next start fails, naming the disk. One QEMU boot in all.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"
#include "qemu-fixture.h"
#include "util.h"

#define BASE_SIZE (16u << 20)

static int fds_setup(void **state)
{
	/* After the fixture's own --vmm-user root: the last one counts. */
	static const char *const args[] = { "--qemu-accel", "tcg", "--vmm-user", "65534:65534", NULL };
	int r = fixture_setup(state);

	((Fixture *)*state)->daemon_args = args;
	return r;
}

/* A copy of src as dir/name, root's, mode 0600. */
static char *put_secret(const char *dir, const char *name, const char *src)
{
	size_t len = 0;
	_cleanup_free_ char *data = test_read_file(src, &len);
	char *path = path_in(dir, "%s", name);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_non_null(data);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	return path;
}

/* dir/name, root's, 0600, beginning with marker, of size bytes (sparse). */
static char *put_marked(const char *dir, const char *name, const char *marker, off_t size)
{
	char *path = path_in(dir, "%s", name);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, marker, strlen(marker)), (ssize_t)strlen(marker));
	assert_int_equal(ftruncate(fd, size), 0);
	return path;
}

static void put_vm(Fixture *f, const char *secret, bool extra)
{
	_cleanup_free_ char *text = NULL, *more = NULL;

	if (extra)
		assert_true(asprintf(&more, "    - {id: extra, path: %s/extra.img, readOnly: true}\n",
				     secret) > 0);
	assert_true(asprintf(&text,
			     "apiVersion: vmd/v1\n"
			     "kind: Sandbox\n"
			     "spec:\n"
			     "  backend: qemu\n"
			     "  memory: 192Mi\n"
			     "  kernel: %s/vmlinux\n"
			     "  initrd: %s/initramfs.cpio\n"
			     "  cmdline: console=ttyS0 quiet vmd.disk=vdb\n"
			     "  cloudInit: {userData: \"#cloud-config\\n\"}\n"
			     "  credentials:\n"
			     "    - {name: fds.secret, fromFile: %s/cred}\n"
			     "  disks:\n"
			     "    - {id: root, image: %s/base.raw, imageFormat: raw, size: 32Mi}\n"
			     "    - {id: data, path: %s/link}\n"
			     "%s",
			     secret, secret, secret, secret, secret, more ?: "") > 0);
	fixture_put(f, "vm", text);
}

/* Whether a descriptor of pid resolves to path. */
static bool has_open(pid_t pid, const char *path)
{
	_cleanup_free_ char *dir = NULL;
	DIR *d;
	bool found = false;
	struct dirent *e;
	char link[4096];

	assert_true(asprintf(&dir, "/proc/%d/fd", (int)pid) > 0);
	d = opendir(dir);
	assert_non_null(d);
	while ((e = readdir(d))) {
		_cleanup_free_ char *p = path_in(dir, "%s", e->d_name);
		ssize_t n = readlink(p, link, sizeof(link) - 1);

		if (n > 0 && (link[n] = '\0', streq(link, path)))
			found = true;
	}
	closedir(d);
	return found;
}

/* Wait until pid has no descriptor of path (the removal's cleanup runs after the guest). */
static void wait_closed(pid_t pid, const char *path)
{
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	while (has_open(pid, path)) {
		if (ms_now() > end)
			fail_msg("QEMU (pid %d) still has %s open", (int)pid, path);
		usleep(50000);
	}
}

static bool start_refused(json_t *s, const void *arg)
{
	const char *e = json_string_value(json_object_get(s, "lastError"));

	return e && strstr(e, arg);
}

static void test_qemu_fds(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *secret = path_in(f->dir, "secret"), *kernel = NULL, *initrd = NULL,
			    *src_kernel = qemu_guest_file("vmlinux"),
			    *src_initrd = qemu_guest_file("initramfs.cpio"), *base = NULL, *a = NULL,
			    *b = NULL, *extra = NULL, *cred = NULL, *link = NULL, *link_new = NULL;
	pid_t pid;

	assert_int_equal(mkdir(secret, 0700), 0);
	kernel = put_secret(secret, "vmlinux", src_kernel);
	initrd = put_secret(secret, "initramfs.cpio", src_initrd);
	base = put_marked(secret, "base.raw", "BASE-FDS", BASE_SIZE);
	a = put_marked(secret, "data-a.img", "DATA-A", 1 << 20);
	b = put_marked(secret, "data-b.img", "DATA-B", 1 << 20);
	extra = put_marked(secret, "extra.img", "EXTRA", 1 << 20);
	cred = put_marked(secret, "cred", "s3cret", 6);
	link = path_in(secret, "link");
	link_new = path_in(secret, "link.new");
	assert_int_equal(symlink(a, link), 0);

	put_vm(f, secret, false);
	fixture_start_daemon(f);
	/* The overlay reads the base through vmd's descriptor: QEMU (nobody) cannot open it. */
	(void)fixture_wait_console(f, "vm", "VMD-GUEST-DISK base=BASE-FDS guest=", 0);
	(void)fixture_wait_console(f, "vm", "VMD-GUEST-SEED hostname=vm ", 0);
	(void)fixture_wait_console(f, "vm", "VMD-GUEST-CREDENTIAL fds.secret sha256=", 0);
	qemu_wait_devices(f, "vm", "vda,vdb,vdc", "");
	pid = fixture_running(f, "vm");
	assert_true(has_open(pid, a));
	assert_true(has_open(pid, base));
	assert_false(has_open(pid, b));

	/*
	 * Hot-added read-only: vmd opens it O_RDONLY, add-fd gives it to QEMU, whose read-only
	 * node takes that one; removed: blockdev-del, then remove-fd, and QEMU closes it.
	 */
	put_vm(f, secret, true);
	qemu_wait_devices(f, "vm", "vda,vdb,vdc,vdd", "");
	assert_true(has_open(pid, extra));
	put_vm(f, secret, false);
	qemu_wait_devices(f, "vm", "vda,vdb,vdc", "");
	json_decref(fixture_wait_status(f, "vm", disks_are, (void *)(uintptr_t)2));
	wait_closed(pid, extra);

	/* The symlink swapped for another root file after the loader checked it. */
	assert_int_equal(symlink(b, link_new), 0);
	assert_int_equal(rename(link_new, link), 0);
	assert_int_equal(kill(pid, SIGKILL), 0);
	fixture_wait_gone(pid);
	json_decref(fixture_wait_status(f, "vm", start_refused, "disk 'data': "));
	{
		json_t *s = fixture_status(f, "vm");
		const char *e = json_string_value(json_object_get(s, "lastError"));

		assert_non_null(strstr(e, "is no longer the file vmd checked (symlink changed?)"));
		json_decref(s);
	}
	fixture_stop_daemon(f, SIGTERM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_qemu_fds, fds_setup, fixture_teardown),
	};

	return cmocka_run_group_tests_name("qemu-fds", tests, NULL, NULL);
}
