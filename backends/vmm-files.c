/* SPDX-License-Identifier: MIT */
/*
 * The opens of what vmd hands to a VMM, for QEMU (qemu-fds.c) and for the VMMs that open
 * files by path themselves (vmm-pass.c) alike: vmm-files.h.
 *
 * A kernel or an initrd is copied once for the file as it is (device, inode, size, mtime,
 * ctime) and the copy is shared by every VM that boots from it while one of them runs, so
 * that ten guests of one kernel hold one copy and the copy is made once: a VMM maps it
 * MAP_PRIVATE or reads it, and the pages are the memfd's, for all of them. The memfds are
 * sealed whole (F_SEAL_SHRINK too: QEMU keeps the kernel mapped, hw/core/loader.c, and an
 * emptied one would be SIGBUS in it at its next read). The copies are made by the start's
 * files step, in a worker (vmm-boot.c), which opens the path and makes none if the file
 * it opened is one of the copies vmd had when it started the worker (their identities,
 * held for it: a stat in the loop would wait on a hung filesystem). Two starts at once from one
 * file not copied yet each make one: the first back is the one kept, the other is closed as it
 * comes back.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk-image.h"
#include "util.h"
#include "vmm-files.h"
#include "vmm-vm.h"

int vmm_open_checked(const char *what, const char *path, int flags, DiskDevice device,
		     const FileIdentity *id, char *why, size_t n)
{
	_cleanup_close_ int fd = -EBADF;
	struct stat st;
	int r;

	/* O_NONBLOCK: a FIFO put there must not hang vmd; cleared once it is known not one. */
	fd = open(path, flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = -errno;
		snprintf(why, n, "%s: cannot open '%s': %m", what, path);
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

int vmm_open_disk(const DiskSpec *d, char *why, size_t n)
{
	char what[SPEC_ID_MAX + 16];

	snprintf(what, sizeof(what), "disk '%s'", d->id);
	/* A copy of an image is vmd's own file: what the loader checked is its image. */
	return vmm_open_checked(what, d->path, d->read_only ? O_RDONLY : O_RDWR,
				d->image ? DISK_DEVICE_FILE : d->device,
				d->image ? &(FileIdentity){} : &d->checked, why, n);
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
	/* Nobody changes it from now on, vmd or the VMM. */
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
		snprintf(why, n, "%s: cannot open '%s': %m", what, path);
		return r;
	}
	if (!S_ISREG(st->st_mode)) {
		snprintf(why, n, "%s: %s is not a regular file", what, path);
		return -EBADFD;
	}
	return TAKE_FD(in);
}

int vmm_memfd_copy(const char *what, const char *path, struct stat *ret_st, char *why, size_t n)
{
	struct stat st;
	_cleanup_close_ int in = open_regular(what, path, &st, why, n);
	int fd = in < 0 ? in : memfd_of(in, &st, what, path, why, n);

	if (fd >= 0 && ret_st)
		*ret_st = st;
	return fd;
}

int vmm_open_base(const char *what, const char *path, DiskFormat format, const FileIdentity *id,
		  char *why, size_t n)
{
	_cleanup_free_ char *bad = NULL;
	_cleanup_close_ int fd = vmm_open_checked(what, path, O_RDONLY, DISK_DEVICE_FILE, id, why, n);
	uint64_t size;
	int r;

	if (fd < 0)
		return fd;
	/* Of the format it was checked to be, still: a header rewritten since is refused. */
	r = disk_image_check_fd(fd, format, &size, &bad);
	if (r < 0) {
		snprintf(why, n, "%s: image %s %s", what, path, bad ?: strerror(-r));
		return r;
	}
	return TAKE_FD(fd);
}

struct VmmBootFile {
	struct stat st;
	int fd;
	unsigned users;
	VmmBootFile *next;
};

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static VmmBootFile *boot_file_find(VmmBootFile *list, const struct stat *st)
{
	for (VmmBootFile *i = list; i; i = i->next)
		if (same_file(&i->st, st))
			return i;
	return NULL;
}

static void boot_file_put(VmmBootFile **list, VmmBootFile *bf)
{
	if (!bf || --bf->users > 0)
		return;
	for (VmmBootFile **i = list; *i; i = &(*i)->next)
		if (*i == bf) {
			*i = bf->next;
			break;
		}
	close(bf->fd);
	free(bf);
}

/* v holds bf, one more user of it, in slot. */
static void boot_file_hold(VmmVm *v, VmmBootSlot slot, VmmBootFile *bf)
{
	bf->users++;
	boot_file_put(&VMM_BACKEND(v->b)->boot_files, TAKE_PTR(v->boot_files[slot]));
	v->boot_files[slot] = bf;
}

int vmm_boot_files_hold(VmmVm *v, VmmBootFile ***ret, size_t *ret_n)
{
	size_t n = 0;
	VmmBootFile **all;

	for (VmmBootFile *i = VMM_BACKEND(v->b)->boot_files; i; i = i->next)
		n++;
	all = n > 0 ? calloc(n, sizeof(*all)) : NULL;
	if (n > 0 && !all)
		return -ENOMEM;
	n = 0;
	for (VmmBootFile *i = VMM_BACKEND(v->b)->boot_files; i; i = i->next, n++) {
		i->users++;
		all[n] = i;
	}
	*ret = all;
	*ret_n = n;
	return 0;
}

void vmm_boot_files_release(VmmVm *v, VmmBootFile **all, size_t n)
{
	for (size_t i = 0; i < n; i++)
		boot_file_put(&VMM_BACKEND(v->b)->boot_files, all[i]);
	free(all);
}

int vmm_boot_copy(const char *what, const char *path, VmmBootFile *const *known, size_t n_known,
		  struct stat *ret_st, unsigned *ret_match, char *why, size_t n)
{
	_cleanup_close_ int in = open_regular(what, path, ret_st, why, n);

	if (in < 0)
		return in;
	/* The file as it is now, opened: a copy of it is there already, none is made. */
	for (size_t i = 0; i < n_known; i++)
		if (same_file(&known[i]->st, ret_st)) {
			*ret_match = (unsigned)i + 1;
			return 0;
		}
	return memfd_of(in, ret_st, what, path, why, n);
}

void vmm_boot_file_use(VmmVm *v, VmmBootSlot slot, VmmBootFile *bf)
{
	boot_file_hold(v, slot, bf);
}

int vmm_boot_file_add(VmmVm *v, VmmBootSlot slot, int fd, const struct stat *st)
{
	VmmBootFile **list = &VMM_BACKEND(v->b)->boot_files, *bf = boot_file_find(*list, st);

	/* Another VM's start made one of that very file meanwhile: one copy is enough. */
	if (bf) {
		close(fd);
		boot_file_hold(v, slot, bf);
		return 0;
	}
	bf = calloc(1, sizeof(*bf));
	if (!bf) {
		close(fd);
		return -ENOMEM;
	}
	*bf = (VmmBootFile){ .st = *st, .fd = fd, .next = *list };
	*list = bf;
	boot_file_hold(v, slot, bf);
	return 0;
}

int vmm_boot_file_fd(VmmVm *v, VmmBootSlot slot, const char *what, char *why, size_t n)
{
	int fd;

	if (!v->boot_files[slot]) {
		snprintf(why, n, "%s: vmd has no copy of it", what);
		return -ENOENT;
	}
	fd = fcntl(v->boot_files[slot]->fd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0) {
		fd = -errno;
		snprintf(why, n, "%s: %s", what, strerror(-fd));
	}
	return fd;
}

void vmm_boot_files_put(VmmVm *v)
{
	for (size_t i = 0; i < ELEMENTSOF(v->boot_files); i++)
		boot_file_put(&VMM_BACKEND(v->b)->boot_files, TAKE_PTR(v->boot_files[i]));
}
