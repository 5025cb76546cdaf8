/* SPDX-License-Identifier: MIT */
/*
 * Disks from images under real QEMU (TCG) and qemu-img: the sandbox's copy-on-write
 * overlay in <state-dir>/disks/<name>/, what the guest reads and writes through it, the
 * base image never written, and the overlay's lifecycle: kept across restarts and the
 * removal of the file, deleted when ephemeral, kept beside when the image changes, and
 * never torn by a vmd killed while qemu-img makes it. The guest's vmd.disk=vda
 * (tests/guest/init) prints what the disk holds at 0 (the base's marker) and at 1 MiB
 * (what a guest wrote before), then writes its own marker at 1 MiB.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"
#include "qemu-fixture.h"
#include "util.h"

#define BASE_SIZE (16u << 20)
#define DISK_LINE "VMD-GUEST-DISK base="

/* A sparse raw base image in f's dir that begins with marker; its path. */
static char *make_base(Fixture *f, const char *file, const char *marker)
{
	char *path = path_in(f->dir, "%s", file);

	test_write_str(f->dir, file, marker);
	assert_int_equal(truncate(path, BASE_SIZE), 0);
	return path;
}

/* The FNV-1a hash of a file's bytes: the base image is never written. */
static uint64_t file_hash(const char *path)
{
	size_t len = 0;
	_cleanup_free_ char *data = test_read_file(path, &len);

	assert_non_null(data);
	return fnv1a64(0xcbf29ce484222325ull, data, len);
}

static void put_image(Fixture *f, const char *name, const char *image, const char *extra)
{
	_cleanup_free_ char *spec = NULL;

	assert_true(asprintf(&spec,
			     "  cmdline: console=ttyS0 quiet vmd.disk=vda\n"
			     "%s"
			     "  disks:\n"
			     "    - {id: root, image: %s, imageFormat: raw, size: 32Mi}\n",
			     extra, image) > 0);
	qemu_put(f, name, spec);
}

static bool is_qcow2(const char *path)
{
	char magic[4] = {};
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);

	return fd >= 0 && read(fd, magic, 4) == 4 && memcmp(magic, "QFI\xfb", 4) == 0;
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* Wait for the guest's line about its disk, after offset; where it ends. */
static size_t wait_disk(Fixture *f, const char *name, const char *base, const char *guest,
			size_t offset)
{
	char want[128];

	snprintf(want, sizeof(want), DISK_LINE "%s guest=%s\r", base, guest);
	offset = fixture_wait_console(f, name, want, offset);
	return fixture_wait_console(f, name, "VMD-GUEST-DISK-WRITTEN", offset);
}

/* A stop and a start by the file: state stopped, then running again. */
static void restart_by_file(Fixture *f, const char *name, const char *image)
{
	put_image(f, name, image, "  state: stopped\n");
	json_decref(fixture_wait_status(f, name, phase_is, "Stopped"));
	put_image(f, name, image, "");
}

static void test_overlay(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *base = make_base(f, "base.raw", "BASE-ONE"),
			    *overlay = path_in(f->state, "disks/img/root.qcow2"),
			    *record = path_in(f->state, "disks/img/root.json"),
			    *file = path_in(f->sb, "img.yaml"), *run_dir = path_in(f->run, "img");
	uint64_t hash = file_hash(base);
	struct stat st, st2;
	json_t *s;
	pid_t pid;

	/* Dropped in: the overlay is made before QEMU starts; the guest reads the base. */
	put_image(f, "img", base, "");
	fixture_start_daemon(f);
	wait_disk(f, "img", "BASE-ONE", "", 0);
	s = fixture_wait_status(f, "img", ready, "Running");
	assert_string_equal(status_disk(s, 0, "path"), overlay);
	assert_string_equal(status_disk(s, 0, "image"), base);
	json_decref(s);
	assert_true(is_qcow2(overlay));
	assert_true(exists(record));
	/* The guest wrote to its disk: into the overlay, never into the base. */
	assert_int_equal(file_hash(base), hash);
	assert_int_equal(stat(overlay, &st), 0);

	/* A new boot: the same overlay, with what the guest wrote. */
	restart_by_file(f, "img", base);
	wait_disk(f, "img", "BASE-ONE", "VMD-GUEST-WROTE", 0);
	assert_int_equal(stat(overlay, &st2), 0);
	assert_int_equal(st.st_ino, st2.st_ino);

	/* vmd restarted: the VM adopted as it runs, its overlay as it is. */
	pid = fixture_running(f, "img");
	fixture_stop_daemon(f, SIGKILL);
	fixture_start_daemon(f);
	/* Taken in by this daemon (its status.json is the killed one's until then). */
	fixture_wait_log(f, "img: re-adopted its running VM");
	assert_int_equal(fixture_running(f, "img"), pid);
	assert_int_equal(stat(overlay, &st2), 0);
	assert_int_equal(st.st_ino, st2.st_ino);

	/* The file removed: the VM goes, its overlay stays (not ephemeral). */
	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "img", gone_with, run_dir)); /* image.log with the rest */
	assert_true(is_qcow2(overlay));
	assert_int_equal(file_hash(base), hash);

	/* The file back: the same overlay, with what the guest wrote. */
	put_image(f, "img", base, "");
	wait_disk(f, "img", "BASE-ONE", "VMD-GUEST-WROTE", 0);
	assert_int_equal(stat(overlay, &st2), 0);
	assert_int_equal(st.st_ino, st2.st_ino);
}

static void test_ephemeral(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *base = make_base(f, "base.raw", "BASE-EPH"), *spec = NULL,
			    *dir = path_in(f->state, "disks/eph"),
			    *root = path_in(f->state, "disks/eph/root.qcow2"),
			    *data = path_in(f->state, "disks/eph/data.qcow2"),
			    *file = path_in(f->sb, "eph.yaml");

	/* Two disks from one image: root ephemeral, data not. */
	assert_true(asprintf(&spec,
			     "  cmdline: console=ttyS0 quiet vmd.disk=vda\n"
			     "  disks:\n"
			     "    - {id: root, image: %s, imageFormat: raw, ephemeral: true}\n"
			     "    - {id: data, image: %s, imageFormat: raw}\n",
			     base, base) > 0);
	qemu_put(f, "eph", spec);
	fixture_start_daemon(f);
	wait_disk(f, "eph", "BASE-EPH", "", 0);
	qemu_wait_devices(f, "eph", "vda,vdb", "");
	assert_true(is_qcow2(root) && is_qcow2(data));

	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "eph", absent, NULL));
	assert_false(exists(root));
	assert_true(is_qcow2(data));

	/* deleteDisksOnRemove: every copy goes, and the directory. */
	free(spec);
	assert_true(asprintf(&spec,
			     "  deleteDisksOnRemove: true\n"
			     "  disks:\n"
			     "    - {id: data, image: %s, imageFormat: raw}\n",
			     base) > 0);
	qemu_put(f, "eph", spec);
	json_decref(fixture_wait_status(f, "eph", ready, "Running"));
	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "eph", absent, NULL));
	assert_false(exists(dir));
}

static void test_image_changed(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *one = make_base(f, "one.raw", "BASE-ONE"),
			    *two = make_base(f, "two.raw", "BASE-TWO"),
			    *overlay = path_in(f->state, "disks/chg/root.qcow2"),
			    *kept = path_in(f->state, "disks/chg/root.gen1.qcow2");
	_cleanup_free_ char *log = NULL;
	json_t *s;

	put_image(f, "chg", one, "  updatePolicy: restart\n");
	fixture_start_daemon(f);
	wait_disk(f, "chg", "BASE-ONE", "", 0);

	/* Another image: a new boot on a new overlay; the one before is kept beside. */
	put_image(f, "chg", two, "  updatePolicy: restart\n");
	wait_disk(f, "chg", "BASE-TWO", "", 0);
	s = fixture_wait_status(f, "chg", ready, "Running");
	json_decref(s);
	assert_true(is_qcow2(overlay));
	assert_true(is_qcow2(kept));
	log = test_read_file(f->log, NULL);
	assert_non_null(strstr(log, "its copy of the image before is kept as"));

	/* And back: the overlay of two is kept as gen2, a new one made of one. */
	put_image(f, "chg", one, "  updatePolicy: restart\n");
	wait_disk(f, "chg", "BASE-ONE", "", 0);
	free(kept);
	kept = path_in(f->state, "disks/chg/root.gen2.qcow2");
	assert_true(is_qcow2(kept));
}

static bool making_overlay(json_t *s, const void *arg _unused_)
{
	_cleanup_free_ char *text = s ? json_dumps(s, 0) : NULL;

	return text && strstr(text, "\"image\"") && strstr(text, "making disk 'root'");
}

static void test_killed_while_made(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *base = make_base(f, "base.raw", "BASE-KILL"),
			    *overlay = path_in(f->state, "disks/kill/root.qcow2"),
			    *part = path_in(f->state, "disks/kill/root.qcow2.part"),
			    *file = path_in(f->sb, "kill.yaml"), *spec = NULL;
	pid_t stalled;

	/* Without size: qemu-img's last argument is the file it makes. */
	assert_true(asprintf(&spec,
			     "  cmdline: console=ttyS0 quiet vmd.disk=vda\n"
			     "  disks:\n"
			     "    - {id: root, image: %s, imageFormat: raw}\n",
			     base) > 0);
	qemu_put(f, "kill", spec);
	fixture_stall_qemu_img(f);
	fixture_start_daemon(f);
	stalled = fixture_wait_stalled(f);
	/* The status says what the start does meanwhile. */
	json_decref(fixture_wait_status(f, "kill", making_overlay, NULL));
	assert_true(exists(part));
	assert_false(exists(overlay));

	/* The file removed meanwhile: the start stops there, qemu-img and its .part with it. */
	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "kill", absent, NULL));
	fixture_wait_gone(stalled);
	assert_false(exists(part));
	assert_false(exists(overlay));

	/* Back, and vmd killed in the middle: qemu-img goes with it; no overlay, torn or not. */
	qemu_put(f, "kill", spec);
	stalled = fixture_wait_stalled(f);
	fixture_stop_daemon(f, SIGKILL);
	fixture_wait_gone(stalled);
	assert_false(exists(overlay));

	/* The next vmd, with the real qemu-img: makes it anew, and the guest boots on it. */
	f->before_exec = NULL;
	fixture_start_daemon(f);
	wait_disk(f, "kill", "BASE-KILL", "", 0);
	assert_true(is_qcow2(overlay));
	assert_false(exists(part));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_overlay, qemu_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_ephemeral, qemu_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_image_changed, qemu_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_killed_while_made, qemu_setup, fixture_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
