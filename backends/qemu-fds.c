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
 * read), and one of a kernel is shared by the guests that boot from it (QemuBootFile).
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
	int r;

	/* O_NONBLOCK: a FIFO put there must not hang vmd; cleared once it is known not one. */
	fd = open(path, flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = -errno;
		snprintf(why, n, "%s: cannot open %s: %m", what, path);
		return r;
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
		r = -errno;
		snprintf(why, n, "%s: %s: %m", what, path);
		return r;
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

/* A sealed memfd with what the regular file in (of st) has. */
static int memfd_of(int in, const struct stat *st, const char *what, const char *path, char *why,
		    size_t n)
{
	_cleanup_close_ int mfd = memfd_create(what, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	int r;

	if (mfd < 0) {
		r = -errno;
		snprintf(why, n, "%s: cannot make a memfd: %m", what);
		return r;
	}
	r = copy_all(in, mfd, st->st_size);
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

static int open_regular(const char *what, const char *path, struct stat *st, char *why, size_t n)
{
	_cleanup_close_ int in = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	int r;

	if (in < 0 || fstat(in, st) < 0) {
		r = -errno;
		snprintf(why, n, "%s: cannot open %s: %m", what, path);
		return r;
	}
	if (!S_ISREG(st->st_mode)) {
		snprintf(why, n, "%s: %s is not a regular file", what, path);
		return -EBADFD;
	}
	return TAKE_FD(in);
}

static int memfd_copy(const char *what, const char *path, char *why, size_t n)
{
	struct stat st;
	_cleanup_close_ int in = open_regular(what, path, &st, why, n);

	return in < 0 ? in : memfd_of(in, &st, what, path, why, n);
}

/*
 * Kernels and initrds: one memfd for each file as it is (device, inode, size, mtime,
 * ctime), shared by every QEMU that boots from it while one of them runs, so that ten
 * guests of one kernel hold one copy and the copy is made once (QEMU maps it MAP_PRIVATE
 * and only reads it: the pages are the memfd's, for all of them).
 */
struct QemuBootFile {
	struct stat st;
	int fd;
	unsigned users;
	QemuBootFile *next;
};

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* The memfd of the file at path as it is now, made if none is: *ret, one more user of it. */
static int boot_file_get(QemuBootFile **list, const char *what, const char *path, char *why,
			 size_t n, QemuBootFile **ret)
{
	_cleanup_free_ QemuBootFile *bf = NULL;
	_cleanup_close_ int in = -EBADF;
	struct stat st;

	in = open_regular(what, path, &st, why, n);
	if (in < 0)
		return in;
	for (QemuBootFile *i = *list; i; i = i->next)
		if (same_file(&i->st, &st)) {
			i->users++;
			*ret = i;
			return 0;
		}
	bf = calloc(1, sizeof(*bf));
	if (!bf) {
		snprintf(why, n, "%s: %s", what, strerror(ENOMEM));
		return -ENOMEM;
	}
	bf->fd = memfd_of(in, &st, what, path, why, n);
	if (bf->fd < 0)
		return bf->fd;
	bf->st = st;
	bf->users = 1;
	bf->next = *list;
	*list = bf;
	*ret = TAKE_PTR(bf);
	return 0;
}

static void boot_file_put(QemuBootFile **list, QemuBootFile *bf)
{
	if (!bf || --bf->users > 0)
		return;
	for (QemuBootFile **i = list; *i; i = &(*i)->next)
		if (*i == bf) {
			*i = bf->next;
			break;
		}
	close(bf->fd);
	free(bf);
}

void qemu_boot_files_put(QemuVm *v)
{
	for (size_t i = 0; i < ELEMENTSOF(v->boot_files); i++)
		boot_file_put(qemu_boot_files(v->vm.b), TAKE_PTR(v->boot_files[i]));
}

/* fd (taken), or why it is none, to v's QEMU: *ret, the number it has there. */
static int pass_open(QemuVm *v, int fd, const char *why, int *ret)
{
	if (fd < 0) {
		backend_set_error(v->vm.b, "%s", why);
		return fd;
	}
	*ret = vmm_vm_pass_fd(&v->vm, fd);
	return *ret < 0 ? *ret : 0;
}

static int pass_boot_file(QemuVm *v, size_t i, const char *what, const char *path, int *ret)
{
	char why[512];
	int r = boot_file_get(qemu_boot_files(v->vm.b), what, path, why, sizeof(why),
			      &v->boot_files[i]);

	if (r >= 0 && (r = fcntl(v->boot_files[i]->fd, F_DUPFD_CLOEXEC, 3)) < 0) {
		r = -errno;
		snprintf(why, sizeof(why), "%s: %s", what, strerror(-r));
	}
	return pass_open(v, r, why, ret);
}

static int pass_copy(QemuVm *v, const char *what, const char *path, int *ret)
{
	char why[512];
	int fd = memfd_copy(what, path, why, sizeof(why));

	return pass_open(v, fd, why, ret);
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
		r = pass_boot_file(v, 0, "kernel", s->kernel, &v->kernel_fd);
	if (r >= 0 && s->initrd)
		r = pass_boot_file(v, 1, "initrd", s->initrd, &v->initrd_fd);
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
