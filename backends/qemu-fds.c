/* SPDX-License-Identifier: MIT */
/*
 * What QEMU opens, vmd opens (issue 16, docs/backends.md "What QEMU opens"): QEMU runs as
 * the VMM user, which needs no access to any of the host's files. Each disk's file and the
 * base image under an overlay are opened here, checked to be the file the loader checked
 * (spec.h FileIdentity) and of the kind the spec says, and go to QEMU in an fdset
 * (-add-fd, /dev/fdset/N: QEMU 7.2 util/osdep.c qemu_open_internal() takes a dup of the
 * set's fd of the access mode it asks for, monitor/fds.c monitor_fdset_dup_fd_add()). The
 * kernel, the initrd and the credentials, which QEMU reads by path only (hw/i386/x86.c
 * x86_load_linux(), softmmu/vl.c parse_fw_cfg()), are copied into sealed memfds that QEMU
 * reads as /proc/self/fd/N: the reopen of a magic link checks the inode's mode, and a
 * memfd's is vmd's to give. QEMU keeps the kernel and the initrd mapped for as long as it
 * runs (hw/core/loader.c: ROMs of a GMappedFile, copied again at each reset): the memfds
 * are sealed whole (F_SEAL_SHRINK too: an emptied one would be SIGBUS in QEMU at its next
 * read) and vmd keeps no end of them.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk-image.h"
#include "provision.h"
#include "qemu-vm.h"
#include "util.h"

/* The open of a file the loader checked: still that file, and of its kind. */
static int open_checked(const char *what, const char *path, int flags, DiskDevice device,
			const FileIdentity *id, char *why, size_t n)
{
	_cleanup_close_ int fd = -EBADF;
	struct stat st;

	/* O_NONBLOCK: a FIFO put there must not hang vmd; cleared once it is known not one. */
	fd = open(path, flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(why, n, "%s: cannot open %s: %m", what, path);
		return -errno;
	}
	if (!file_identity_matches(id, &st)) {
		snprintf(why, n,
			 "%s: %s is no longer the file vmd checked (symlink changed?); vmd checks it again when its sandbox file is loaded again",
			 what, path);
		return -ESTALE;
	}
	if (device == DISK_DEVICE_BLOCK ? !S_ISBLK(st.st_mode) : !S_ISREG(st.st_mode)) {
		snprintf(why, n, "%s: %s is %s", what, path,
			 device == DISK_DEVICE_BLOCK
				 ? "not a block device, and device: block says it is"
			 : S_ISBLK(st.st_mode) ? "a block device: say device: block to use one"
					       : "not a regular file");
		return -EBADFD;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
		snprintf(why, n, "%s: %s: %m", what, path);
		return -errno;
	}
	return TAKE_FD(fd);
}

int qemu_open_disk(const DiskSpec *d, char *why, size_t n)
{
	char what[SPEC_ID_MAX + 16];

	snprintf(what, sizeof(what), "disk '%s'", d->id);
	/* A copy of an image is vmd's own file: what the loader checked is its image. */
	return open_checked(what, d->path, d->read_only ? O_RDONLY : O_RDWR,
			    d->image ? DISK_DEVICE_FILE : d->device,
			    d->image ? &(FileIdentity){} : &d->checked, why, n);
}

int qemu_open_base(const DiskSpec *d, char *why, size_t n)
{
	_cleanup_free_ char *bad = NULL;
	char what[SPEC_ID_MAX + 16];
	uint64_t size;
	int fd, r;

	snprintf(what, sizeof(what), "disk '%s'", d->id);
	fd = open_checked(what, d->image, O_RDONLY, DISK_DEVICE_FILE, &d->checked, why, n);
	if (fd < 0)
		return fd;
	/* Of the format it was checked to be, still: a header rewritten since is refused. */
	r = disk_image_check_fd(fd, d->image_format, &size, &bad);
	if (r < 0) {
		snprintf(why, n, "%s: image %s %s", what, d->image, bad ?: strerror(-r));
		close(fd);
		return r;
	}
	return fd;
}

/* Copy what in has into out, in the kernel (sendfile), from the start. */
static int copy_all(int in, int out, off_t size)
{
	off_t off = 0;

	while (off < size) {
		ssize_t k = sendfile(out, in, &off, (size_t)MIN(size - off, (off_t)1 << 30));

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -EIO; /* shrunk meanwhile */
	}
	return 0;
}

int qemu_memfd_copy(const char *what, const char *path, char *why, size_t n)
{
	_cleanup_close_ int in = -EBADF, mfd = -EBADF;
	struct stat st;
	int r;

	in = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (in < 0 || fstat(in, &st) < 0) {
		snprintf(why, n, "%s: cannot open %s: %m", what, path);
		return -errno;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, n, "%s: %s is not a regular file", what, path);
		return -EBADFD;
	}
	mfd = memfd_create(what, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (mfd < 0) {
		snprintf(why, n, "%s: cannot make a memfd: %m", what);
		return -errno;
	}
	r = copy_all(in, mfd, st.st_size);
	/* Nobody changes it from now on, vmd or QEMU. */
	if (r >= 0 &&
	    fcntl(mfd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0)
		r = -errno;
	if (r < 0) {
		snprintf(why, n, "%s: cannot copy %s: %s", what, path, strerror(-r));
		return r;
	}
	return TAKE_FD(mfd);
}

static int pass_copy(QemuVm *v, const char *what, const char *path, int *ret)
{
	char why[512];
	int fd = qemu_memfd_copy(what, path, why, sizeof(why));

	if (fd < 0) {
		backend_set_error(v->vm.b, "%s", why);
		return fd;
	}
	*ret = vmm_vm_pass_fd(&v->vm, fd);
	return *ret < 0 ? *ret : 0;
}

static int pass_open(QemuVm *v, int fd, const char *why, int *ret)
{
	if (fd < 0) {
		backend_set_error(v->vm.b, "%s", why);
		return fd;
	}
	*ret = vmm_vm_pass_fd(&v->vm, fd);
	return *ret < 0 ? *ret : 0;
}

int qemu_prepare_files(QemuVm *v)
{
	const SandboxSpec *s = v->vm.config;
	char why[512];
	int r = 0;

	v->kernel_fd = v->initrd_fd = v->seed_fd = -1;
	for (size_t i = 0; i < s->n_disks && r >= 0; i++) {
		const DiskSpec *d = &s->disks[i];

		v->base_fds[i] = -1;
		r = pass_open(v, qemu_open_disk(d, why, sizeof(why)), why, &v->disk_fds[i]);
		if (r >= 0 && d->image)
			r = pass_open(v, qemu_open_base(d, why, sizeof(why)), why, &v->base_fds[i]);
	}
	if (r >= 0 && s->kernel)
		r = pass_copy(v, "kernel", s->kernel, &v->kernel_fd);
	if (r >= 0 && s->initrd)
		r = pass_copy(v, "initrd", s->initrd, &v->initrd_fd);
	for (size_t i = 0; i < s->n_credentials && r >= 0; i++) {
		_cleanup_free_ char *copy = NULL;

		if (asprintf(&copy, "%s/" PROVISION_CREDENTIALS "/%s", v->vm.dir,
			     s->credentials[i].name) < 0)
			return -ENOMEM;
		r = pass_copy(v, "credential", copy, &v->credential_fds[i]);
	}
	if (r >= 0 && s->cloud_init) {
		_cleanup_free_ char *seed = vmm_vm_path(v->vm.b, v->vm.name, PROVISION_SEED);

		if (!seed)
			return -ENOMEM;
		r = pass_open(v,
			      open_checked("the seed", seed, O_RDONLY, DISK_DEVICE_FILE,
					   &(FileIdentity){}, why, sizeof(why)),
			      why, &v->seed_fd);
	}
	return r;
}
