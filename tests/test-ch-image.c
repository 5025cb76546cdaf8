/* SPDX-License-Identifier: MIT */
/*
 * Cloud Hypervisor's disks from images (its simulator, tests/sim/cloud-hypervisor, under
 * the real `vmd daemon`): a raw copy of the image, never a qcow2 overlay, since CH would
 * open an overlay's backing file itself, by the path in its header (backends/vmm-image.c).
 * A raw image is reflinked or copied sparse, a qcow2 one converted; the copy grows with
 * size. The upgrade from an earlier vmd, which made CH overlays: the overlay, with the
 * guest's writes, is converted into the raw copy at the next boot and kept aside; a
 * snapshot taken on it wakes on it still, and a VM running on it, adopted, keeps it.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "util.h"

static char binary[4096];

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

static void run_ok(char *const argv[])
{
	TestRun r;

	test_run(&r, argv);
	assert_int_equal(r.status, 0);
	test_run_done(&r);
}

/* The first n bytes of the file at path, into buf. */
static void read_head(const char *path, void *buf, size_t n, off_t at)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, n, at), (ssize_t)n);
	close(fd);
}

static bool all(const unsigned char *buf, size_t n, unsigned char byte)
{
	for (size_t i = 0; i < n; i++)
		if (buf[i] != byte)
			return false;
	return true;
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

static off_t size_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

/* The daemon started, and name running with its disk root. */
static void start_to_root(Fixture *f, const char *name)
{
	fixture_start_daemon(f);
	(void)fixture_running(f, name);
	(void)fixture_wait_console(f, name, "disks=root", 0);
}

/* An 8 MiB raw image beginning with "BASE", in f's dir. */
static char *raw_image(Fixture *f)
{
	char *base = path_in(f->dir, "base.raw");

	test_write_str(f->dir, "base.raw", "BASE");
	assert_int_equal(truncate(base, 8 << 20), 0);
	return base;
}

/*
 * A raw image: the copy is root.raw, its bytes (no overlay: the guest's disk is not a
 * qcow2), and CH gets no backing file to open. A qcow2 of the user's with a backing file is
 * refused by CH as upstream does (MaxNestingDepthExceeded): vmd gives it no trust.
 */
static void test_raw_image(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *base = raw_image(f), *spec = NULL, *own = NULL,
			    *copy = path_in(f->state, "disks/img/root.raw"),
			    *overlay = path_in(f->state, "disks/img/root.qcow2"),
			    *hand = path_in(f->dir, "hand.qcow2");
	char head[4] = {};
	struct stat st;

	assert_true(
		asprintf(&spec,
			 "  memory: 64Mi\n  disks:\n    - {id: root, image: \"%s\", imageFormat: raw}\n",
			 base) > 0);
	put(f, "img", spec);
	run_ok((char *[]){ "/usr/bin/qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
			   base, hand, NULL });
	assert_true(asprintf(&own,
			     "  memory: 64Mi\n  disks:\n    - {id: own, path: \"%s\", format: qcow2}\n",
			     hand) > 0);
	put(f, "own", own);
	start_to_root(f, "img");
	read_head(copy, head, sizeof(head), 0);
	assert_memory_equal(head, "BASE", 4);
	assert_int_equal(size_of(copy), 8 << 20);
	assert_int_equal(stat(copy, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 < (8u << 20)); /* sparse, or shared extents */
	assert_false(exists(overlay));
	json_decref(fixture_wait_status(f, "own", failing, "Maximum disk nesting depth exceeded"));
}

/* A qcow2 image: converted (qemu-img convert -O raw), its data in the raw copy. */
static void test_qcow2_image(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *base = path_in(f->dir, "base.qcow2"), *spec = NULL,
			    *copy = path_in(f->state, "disks/img/root.raw");
	unsigned char head[4096];

	run_ok((char *[]){ "/usr/bin/qemu-img", "create", "-q", "-f", "qcow2", base, "8M", NULL });
	run_ok((char *[]){ "/usr/bin/qemu-io", "-f", "qcow2", "-c", "write -q -P 0xcd 0 4k", base,
			   NULL });
	assert_true(asprintf(&spec, "  memory: 64Mi\n  disks:\n    - {id: root, image: \"%s\"}\n",
			     base) > 0);
	put(f, "img", spec);
	start_to_root(f, "img");
	read_head(copy, head, sizeof(head), 0);
	assert_true(all(head, sizeof(head), 0xcd));
	assert_int_equal(size_of(copy), 8 << 20);
}

static bool other_vmm(json_t *s, const void *arg)
{
	return ready(s, "Running") && pid_of(s) != 0 && pid_of(s) != (pid_t)(intptr_t)arg;
}

static void put_sized(Fixture *f, const char *base, const char *size)
{
	_cleanup_free_ char *spec = NULL;

	assert_true(asprintf(&spec,
			     "  memory: 64Mi\n  updatePolicy: restart\n  disks:\n"
			     "    - {id: root, image: \"%s\", imageFormat: raw, size: %s}\n",
			     base, size) > 0);
	put(f, "grow", spec);
}

/*
 * A larger size: a new boot, on the same raw copy grown in place (a larger file). A smaller
 * one than the copy's: the start is refused, and the copy is left as it is.
 */
static void test_image_resized(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *base = raw_image(f), *copy = path_in(f->state, "disks/grow/root.raw");
	struct stat st, st2;
	pid_t pid;

	put_sized(f, base, "8Mi");
	fixture_start_daemon(f);
	pid = fixture_running(f, "grow");
	assert_int_equal(size_of(copy), 8 << 20);
	assert_int_equal(stat(copy, &st), 0);

	put_sized(f, base, "24Mi");
	json_decref(fixture_wait_status(f, "grow", other_vmm, (void *)(intptr_t)pid));
	assert_int_equal(size_of(copy), 24 << 20);
	assert_int_equal(stat(copy, &st2), 0);
	assert_int_equal(st.st_ino, st2.st_ino);

	put_sized(f, base, "16Mi");
	json_decref(fixture_wait_status(f, "grow", failing,
					"size 16Mi is smaller than its copy's 24Mi"));
	assert_int_equal(size_of(copy), 24 << 20);
}

/*
 * What an earlier vmd left for sandbox vm's disk root from base: its qcow2 overlay, with
 * 64 KiB of 0xab the guest wrote at 0, and its record (generation 1). The overlay's inode.
 */
static ino_t earlier_overlay(Fixture *f, const char *base)
{
	_cleanup_free_ char *dir = path_in(f->state, "disks/vm"),
			    *overlay = path_in(f->state, "disks/vm/root.qcow2"), *record = NULL;
	struct stat st;

	assert_int_equal(mkdir_p(dir, 0700), 0);
	run_ok((char *[]){ "/usr/bin/qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
			   (char *)base, overlay, NULL });
	run_ok((char *[]){ "/usr/bin/qemu-io", "-f", "qcow2", "-c", "write -q -P 0xab 0 64k",
			   overlay, NULL });
	assert_true(
		asprintf(&record,
			 "{\n  \"image\": \"%s\",\n  \"imageFormat\": \"raw\",\n  \"generation\": 1\n}",
			 base) > 0);
	test_write_str(dir, "root.json", record);
	assert_int_equal(stat(overlay, &st), 0);
	return st.st_ino;
}

static char *image_spec(const char *base, const char *state)
{
	char *spec = NULL;

	assert_true(asprintf(&spec,
			     "  state: %s\n  memory: 64Mi\n  cmdline: \"sim.counter=1\"\n  disks:\n"
			     "    - {id: root, image: \"%s\", imageFormat: raw}\n",
			     state, base) > 0);
	return spec;
}

/*
 * The upgrade: the overlay an earlier vmd made holds the guest's writes. The next boot
 * converts it, read through its image, into the raw copy (0xab where the guest wrote, the
 * image's zeros after), and keeps it aside as root.gen1.qcow2, the same file.
 */
static void test_upgrade(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *base = raw_image(f), *spec = image_spec(base, "running"),
			    *copy = path_in(f->state, "disks/vm/root.raw"),
			    *overlay = path_in(f->state, "disks/vm/root.qcow2"),
			    *aside = path_in(f->state, "disks/vm/root.gen1.qcow2");
	static unsigned char data[64 << 10], after[4096];
	ino_t ino = earlier_overlay(f, base);
	struct stat st;

	put(f, "vm", spec);
	start_to_root(f, "vm");
	read_head(copy, data, sizeof(data), 0);
	assert_true(all(data, sizeof(data), 0xab));
	read_head(copy, after, sizeof(after), sizeof(data));
	assert_true(all(after, sizeof(after), 0));
	assert_int_equal(size_of(copy), 8 << 20);
	assert_false(exists(overlay));
	assert_int_equal(stat(aside, &st), 0);
	assert_int_equal(st.st_ino, ino);
	fixture_wait_log(
		f, "the qcow2 overlay an earlier vmd made, whose data the copy has, is kept as");
}

/*
 * In the JSON file at path, disk root (in the array "disks" of its object under key, or of
 * the file's own object: key NULL) given k1: v1 and k2: v2, as an earlier vmd wrote them.
 */
static void rewrite_root(const char *path, const char *key, const char *k1, json_t *v1,
			 const char *k2, json_t *v2)
{
	_cleanup_free_ char *text = test_read_file(path, NULL), *out = NULL;
	json_t *j = json_loads(text, 0, NULL), *disk;
	size_t i, n = 0;

	assert_non_null(j);
	json_array_foreach(json_object_get(key ? json_object_get(j, key) : j, "disks"), i, disk)
	{
		if (!streq_ptr(json_string_value(json_object_get(disk, "id")), "root"))
			continue;
		json_object_set(disk, k1, v1);
		json_object_set(disk, k2, v2);
		n++;
	}
	json_decref(v1);
	json_decref(v2);
	assert_int_equal(n, 1);
	out = json_dumps(j, 0);
	json_decref(j);
	assert_non_null(out);
	assert_int_equal(write_file_atomic(path, out, strlen(out), 0600, true), 0);
}

static bool running_as(json_t *s, const void *arg)
{
	return ready(s, "Running") && pid_of(s) == (pid_t)(intptr_t)arg;
}

static bool stopped(json_t *s, const void *arg _unused_)
{
	return phase_is(s, "Stopped") && pid_of(s) == 0;
}

/*
 * A VM an earlier vmd started on its overlay, adopted by today's: it runs on, on the
 * overlay, and nothing is converted under it; its next start converts it.
 */
static void test_adopted_overlay(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *base = raw_image(f), *running = image_spec(base, "running"),
			    *stop = image_spec(base, "stopped"),
			    *copy = path_in(f->state, "disks/vm/root.raw"),
			    *overlay = path_in(f->state, "disks/vm/root.qcow2"),
			    *aside = path_in(f->state, "disks/vm/root.gen1.qcow2"),
			    *record = path_in(f->run, "vm/vm.json");
	static unsigned char data[64 << 10];
	pid_t pid;

	put(f, "vm", running);
	start_to_root(f, "vm");
	pid = fixture_running(f, "vm");
	fixture_stop_daemon(f, SIGKILL);
	assert_int_equal(unlink(copy), 0); /* the VM has it open: as if it were the overlay */
	(void)earlier_overlay(f, base);
	/* vm.json saying, as an earlier vmd's did, that the disk is its overlay */
	rewrite_root(record, "config", "path", json_string(overlay), "format", json_string("qcow2"));

	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "vm", running_as, (void *)(intptr_t)pid));
	fixture_wait_log(f, "re-adopted its ");
	assert_false(exists(copy));
	assert_true(exists(overlay));

	put(f, "vm", stop);
	json_decref(fixture_wait_status(f, "vm", stopped, NULL));
	put(f, "vm", running);
	json_decref(fixture_wait_status(f, "vm", ready, "Running"));
	read_head(copy, data, sizeof(data), 0);
	assert_true(all(data, sizeof(data), 0xab));
	assert_false(exists(overlay));
	assert_true(exists(aside));
}

static bool suspended(json_t *s, const void *arg _unused_)
{
	return phase_is(s, "Suspended") && pid_of(s) == 0;
}

/*
 * A snapshot taken before the upgrade names the overlay (CH reads its config back, and
 * opens the disk it names, a Qcow2): the wake keeps the overlay, and makes no raw copy
 * under it; the guest counts on. Made here from a suspend of today's vmd: its raw copy
 * replaced by an overlay, and the snapshot's config by what an earlier vmd sent.
 */
static void test_wake_before_upgrade(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *base = raw_image(f), *running = image_spec(base, "running"),
			    *suspend = image_spec(base, "suspended"),
			    *copy = path_in(f->state, "disks/vm/root.raw"),
			    *overlay = path_in(f->state, "disks/vm/root.qcow2"),
			    *config = path_in(f->state, "snapshots/vm/current/config.json");
	_cleanup_free_ char *c = NULL;
	size_t at;

	put(f, "vm", running);
	fixture_start_daemon(f);
	(void)fixture_running(f, "vm");
	fixture_wait_console(f, "vm", "SIM-GUEST-COUNTER 3", 0);
	put(f, "vm", suspend);
	json_decref(fixture_wait_status(f, "vm", suspended, NULL));
	fixture_stop_daemon(f, SIGTERM);

	assert_int_equal(unlink(copy), 0);
	(void)earlier_overlay(f, base);
	/* the snapshot's config.json as an earlier vmd's vm.create said it */
	rewrite_root(config, NULL, "image_type", json_string("Qcow2"), "backing_files", json_true());

	fixture_start_daemon(f);
	put(f, "vm", running);
	json_decref(fixture_wait_status(f, "vm", ready, "Running"));
	at = fixture_wait_console(f, "vm", "SIM-GUEST-RESTORED counter=", 0);
	c = fixture_console(f, "vm");
	assert_null(strstr(c + at, "SIM-GUEST-BOOT"));
	assert_true(exists(overlay));
	assert_false(exists(copy));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_raw_image, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_qcow2_image, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_image_resized, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_upgrade, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_wake_before_upgrade, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_adopted_overlay, setup, fixture_teardown),
	};

	snprintf(binary, sizeof(binary), "%s", test_src("tests/sim/cloud-hypervisor"));
	/* VMMs outlive a daemon killed with -9: they come to this binary, which reaps them. */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	if (getenv("VMD_TEST_FILTER")) /* one test, for a run by hand */
		cmocka_set_test_filter(getenv("VMD_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
