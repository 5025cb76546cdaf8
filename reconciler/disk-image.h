/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>
#include <sys/stat.h>

#include "spec.h"

/*
 * Base images, as a disk's `image:` names them: what their header says, never guessed
 * from it. A qcow2 image starts with the magic "QFI\xfb" and has its virtual size as a
 * big-endian 64-bit number at offset 24 (QEMU's docs/interop/qcow2.txt); a raw image is
 * its bytes, its size the file's.
 */

#define QCOW2_MAGIC "QFI\xfb"
#define QCOW2_HEADER_SIZE 72 /* version 2's header; version 3's begins the same */

/*
 * What a header of len bytes says about an image stated to be format, whose file has
 * file_size bytes: 0 and *ret_size, its virtual size; -EMEDIUMTYPE if it is not what
 * format says (a raw image beginning as a qcow2 does is refused too: the format was
 * mistaken, or a guest wrote the header); -EPROTO for a qcow2 header vmd cannot read.
 */
int disk_image_header_check(const uint8_t *header, size_t len, uint64_t file_size,
			    DiskFormat format, uint64_t *ret_size);

/*
 * Open the image at path read-only and check it as above: 0 and *ret_size, or -errno and
 * *ret_why, what is wrong in words ("cannot be opened: No such file or directory", "is not a
 * regular file", "is not a qcow2 image (no QFI\xfb magic); set imageFormat: raw if it is
 * raw").
 */
int disk_image_probe(const char *path, DiskFormat format, uint64_t *ret_size, char **ret_why);

/* The same, of an image already open as fd (its offset unchanged): what the start checks. */
int disk_image_check_fd(int fd, DiskFormat format, uint64_t *ret_size, char **ret_why);

/* The file at path now (symlinks followed), for the start to compare; unset if none. */
void disk_image_identity(const char *path, FileIdentity *ret);

/* Whether st is the file id recorded (or nothing was recorded). */
bool file_identity_matches(const FileIdentity *id, const struct stat *st);
