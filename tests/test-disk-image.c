/* SPDX-License-Identifier: MIT */
/*
 * Base images: the header check that stands for `imageFormat`, never a probe of it
 * (reconciler/disk-image.c), on headers built here byte by byte, and the probe of a file.
 */
#include <endian.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "disk-image.h"
#include "helpers.h"

/* A qcow2 header: magic, version, and the virtual size at offset 24, big-endian. */
static void qcow2_header(uint8_t h[QCOW2_HEADER_SIZE], uint32_t version, uint64_t size)
{
	uint32_t v = htobe32(version);
	uint64_t s = htobe64(size);

	memset(h, 0, QCOW2_HEADER_SIZE);
	memcpy(h, QCOW2_MAGIC, 4);
	memcpy(h + 4, &v, 4);
	memcpy(h + 24, &s, 8);
}

static void test_qcow2_sizes(void **state _unused_)
{
	uint8_t h[QCOW2_HEADER_SIZE];
	uint64_t size = 0;

	qcow2_header(h, 3, 10ull << 30);
	assert_int_equal(disk_image_header_check(h, sizeof(h), 196608, DISK_FORMAT_QCOW2, &size), 0);
	assert_int_equal(size, 10ull << 30); /* the header's, not the file's */
	qcow2_header(h, 2, 0x0102030405060708ull);
	assert_int_equal(disk_image_header_check(h, sizeof(h), 1, DISK_FORMAT_QCOW2, &size), 0);
	assert_int_equal(size, 0x0102030405060708ull); /* big-endian, all eight bytes */
}

static void test_qcow2_refused(void **state _unused_)
{
	uint8_t h[QCOW2_HEADER_SIZE];
	uint64_t size = 7;

	qcow2_header(h, 4, 1 << 20);
	assert_int_equal(disk_image_header_check(h, sizeof(h), 1, DISK_FORMAT_QCOW2, &size), -EPROTO);
	qcow2_header(h, 3, 1 << 20);
	assert_int_equal(disk_image_header_check(h, 40, 40, DISK_FORMAT_QCOW2, &size), -EPROTO);
	h[3] = 0xfa;
	assert_int_equal(disk_image_header_check(h, sizeof(h), 1, DISK_FORMAT_QCOW2, &size),
			 -EMEDIUMTYPE);
	assert_int_equal(disk_image_header_check(h, 0, 0, DISK_FORMAT_QCOW2, &size), -EMEDIUMTYPE);
	assert_int_equal(size, 7); /* untouched on failure */
}

static void test_raw(void **state _unused_)
{
	uint8_t h[QCOW2_HEADER_SIZE] = "BASE-MARKER";
	uint64_t size = 0;

	assert_int_equal(disk_image_header_check(h, sizeof(h), 1 << 30, DISK_FORMAT_RAW, &size), 0);
	assert_int_equal(size, 1 << 30);
	assert_int_equal(disk_image_header_check(h, 0, 0, DISK_FORMAT_RAW, &size), 0);
	assert_int_equal(size, 0);
	/* Stated raw, but it begins as a qcow2 does: a mistaken format, or a guest's doing. */
	qcow2_header(h, 3, 1 << 20);
	assert_int_equal(disk_image_header_check(h, sizeof(h), 1 << 20, DISK_FORMAT_RAW, &size),
			 -EMEDIUMTYPE);
}

static void test_probe(void **state _unused_)
{
	_cleanup_free_ char *dir = test_tmpdir(), *img = NULL, *why = NULL;
	uint8_t h[QCOW2_HEADER_SIZE];
	uint64_t size = 0;
	int fd;

	assert_true(asprintf(&img, "%s/base.qcow2", dir) > 0);
	qcow2_header(h, 3, 64ull << 20);
	fd = open(img, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, h, sizeof(h)), sizeof(h));
	close(fd);
	assert_int_equal(disk_image_probe(img, DISK_FORMAT_QCOW2, &size, &why), 0);
	assert_int_equal(size, 64ull << 20);
	assert_null(why);
	assert_int_equal(disk_image_probe(img, DISK_FORMAT_RAW, &size, &why), -EMEDIUMTYPE);
	assert_string_equal(
		why, "begins with a qcow2 header; set imageFormat: qcow2 if it is a qcow2 image");
	why = mfree(why);
	assert_int_equal(disk_image_probe(dir, DISK_FORMAT_RAW, &size, &why), -EBADFD);
	assert_string_equal(why, "is not a regular file");
	why = mfree(why);
	assert_int_equal(unlink(img), 0);
	assert_int_equal(disk_image_probe(img, DISK_FORMAT_QCOW2, &size, &why), -ENOENT);
	assert_string_equal(why, "cannot be opened: No such file or directory");
	test_tmpdir_remove(TAKE_PTR(dir));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qcow2_sizes),
		cmocka_unit_test(test_qcow2_refused),
		cmocka_unit_test(test_raw),
		cmocka_unit_test(test_probe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
