/* SPDX-License-Identifier: MIT */
#include <endian.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk-image.h"
#include "util.h"

static uint64_t be64_at(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return be64toh(v);
}

static uint32_t be32_at(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return be32toh(v);
}

int disk_image_header_check(const uint8_t *header, size_t len, uint64_t file_size,
			    DiskFormat format, uint64_t *ret_size)
{
	bool magic = len >= 4 && memcmp(header, QCOW2_MAGIC, 4) == 0;
	uint32_t version;

	if (format == DISK_FORMAT_RAW) {
		if (magic)
			return -EMEDIUMTYPE;
		*ret_size = file_size;
		return 0;
	}
	if (!magic)
		return -EMEDIUMTYPE;
	if (len < QCOW2_HEADER_SIZE)
		return -EPROTO;
	/* QEMU's block/qcow2.c qcow2_do_open(): versions 2 and 3. */
	version = be32_at(header + 4);
	if (version != 2 && version != 3)
		return -EPROTO;
	*ret_size = be64_at(header + 24);
	return 0;
}

static int why(char **ret_why, const char *fmt, ...) _printf_(2, 3);
static int why(char **ret_why, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(ret_why, fmt, ap) < 0)
		*ret_why = NULL;
	va_end(ap);
	return *ret_why ? 0 : -ENOMEM;
}

int disk_image_check_fd(int fd, DiskFormat format, uint64_t *ret_size, char **ret_why)
{
	uint8_t header[QCOW2_HEADER_SIZE];
	struct stat st;
	ssize_t n;
	int r;

	*ret_why = NULL;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		return why(ret_why, "cannot be looked at: %s", strerror(-r)) ?: r;
	}
	if (!S_ISREG(st.st_mode))
		return why(ret_why, "is not a regular file") ?: -EBADFD;
	n = pread(fd, header, sizeof(header), 0);
	if (n < 0) {
		r = -errno;
		return why(ret_why, "cannot be read: %s", strerror(-r)) ?: r;
	}
	r = disk_image_header_check(header, (size_t)n, (uint64_t)st.st_size, format, ret_size);
	if (r == -EMEDIUMTYPE && format == DISK_FORMAT_QCOW2)
		return why(ret_why,
			   "is not a qcow2 image (no QFI\\xfb magic at its start); set imageFormat: raw if it is a raw image")
			       ?: r;
	if (r == -EMEDIUMTYPE)
		return why(ret_why,
			   "begins with a qcow2 header; set imageFormat: qcow2 if it is a qcow2 image")
			       ?: r;
	if (r == -EPROTO)
		return why(ret_why, "has a qcow2 header vmd cannot read (version 2 or 3 expected)")
			       ?: r;
	return r;
}

int disk_image_probe(const char *path, DiskFormat format, uint64_t *ret_size, char **ret_why)
{
	_cleanup_close_ int fd = -EBADF;
	int r;

	*ret_why = NULL;
	/* O_NONBLOCK: a FIFO named as an image must not hang the loader. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		r = -errno;
		return why(ret_why, "cannot be opened: %s", strerror(-r)) ?: r;
	}
	return disk_image_check_fd(fd, format, ret_size, ret_why);
}

void disk_image_identity(const char *path, FileIdentity *ret)
{
	struct stat st;

	*ret = (FileIdentity){};
	if (stat(path, &st) == 0)
		*ret = (FileIdentity){ .set = true, .dev = st.st_dev, .ino = st.st_ino };
}

bool file_identity_matches(const FileIdentity *id, const struct stat *st)
{
	return !id->set || (id->dev == st->st_dev && id->ino == st->st_ino);
}
