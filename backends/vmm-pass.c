/* SPDX-License-Identifier: MIT */
/*
 * What a VMM that opens files by path itself (Cloud Hypervisor, an unjailed Firecracker)
 * gets from vmd so that it can run as the VMM user (vmm-vm.h): the files it opens, as
 * descriptors vmd opened, named to it as /proc/self/fd/N; and a directory of its own for
 * what it creates itself (its sockets, its console), reached the same way.
 *
 * Opening /proc/self/fd/N reopens the very file vmd opened, whatever its path does
 * meanwhile, and without a lookup through its parents: only the file's own permission is
 * checked, as the VMM's uid. So a kernel or an initrd, which a VMM only reads, goes as a
 * sealed memfd copy (any uid may open a memfd's inode; a seal keeps it as it was; one for
 * every VM that boots from the file, vmm-files.c); a disk, which the guest writes, as the
 * file itself, opened as QEMU's are (the file the loader checked, of its kind: a symlink
 * swapped since is refused), which the VMM user must be allowed to open: vmd checks that
 * before the start, as that user. The opens, the copies and the checks are the start's
 * files step's, made by a worker (vmm-boot.c); what is here takes what it got.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "console.h"
#include "provision.h"
#include "util.h"
#include "vmm-vm.h"

const VmmUser *vmm_vm_user(const VmmVm *v, VmmUser *buf)
{
	const BackendOptions *o = &v->b->options;

	if (!o->vmm_user_set || (v->type->drops_root && v->type->drops_root(v->b)))
		return NULL;
	*buf = (VmmUser){ .uid = o->vmm_uid, .gid = o->vmm_gid };
	return buf;
}

static char *proc_fd_path(int n, const char *file)
{
	char *p = NULL;

	if (asprintf(&p, "/proc/self/fd/%d%s%s", n, file ? "/" : "", file ?: "") < 0)
		return NULL;
	return p;
}

/* fd, passed: its /proc/self/fd/N in the VMM. */
static int pass_as_path(VmmVm *v, int fd, char **ret)
{
	int n = vmm_vm_pass_fd(v, fd);

	if (n < 0)
		return n;
	*ret = proc_fd_path(n, NULL);
	return *ret ? 0 : -ENOMEM;
}

/* fd, or why it is none (said in the backend's error), passed: its /proc/self/fd/N. */
static int pass_opened(VmmVm *v, int fd, const char *why, char **ret)
{
	if (fd < 0) {
		backend_set_error(v->b, "%s", why);
		return fd;
	}
	return pass_as_path(v, fd, ret);
}

/* A kernel or an initrd: the copy every VM that boots from it shares (vmm-files.c). */
static int pass_boot_file(VmmVm *v, VmmBootSlot slot, const char *what, char **ret)
{
	char why[PATH_MAX + 256];

	return pass_opened(v, vmm_boot_file_fd(v, slot, what, why, sizeof(why)), why, ret);
}

/* What the files step opened (a disk, the seed's copy). */
static int pass_taken(VmmVm *v, unsigned key, const char *what, char **ret)
{
	char why[PATH_MAX + 256];

	return pass_opened(v, vmm_files_take(v, key, what, why, sizeof(why)), why, ret);
}

int vmm_vm_want_access(VmmFiles *f, const DiskSpec *d)
{
	char what[SPEC_ID_MAX + 16];

	snprintf(what, sizeof(what), "disk '%s'", d->id);
	return vmm_files_add_access(f, what, d->path, !d->read_only, false);
}

/*
 * What the files step makes for pass_boot(): kernel and initrd (the copies VMs share), each
 * disk opened by vmd as QEMU's are (vmm-files.c: the file the loader checked, of its kind),
 * read-write unless readOnly, and checked, as the VMM user, to be one it may reopen as its
 * /proc/self/fd/N; the seed's copy.
 */
int vmm_vm_want_boot(VmmVm *v, VmmFiles *f)
{
	const SandboxSpec *s = v->config;
	_cleanup_free_ char *seed = NULL;
	char what[SPEC_ID_MAX + 16];
	int r = vmm_files_add_boot(f, VMM_BOOT_KERNEL, "kernel", s->kernel);

	if (r >= 0 && s->initrd)
		r = vmm_files_add_boot(f, VMM_BOOT_INITRD, "initrd", s->initrd);
	for (size_t i = 0; r >= 0 && i < s->n_disks; i++) {
		const DiskSpec *d = &s->disks[i];

		snprintf(what, sizeof(what), "disk '%s'", d->id);
		r = vmm_files_add_disk(f, d, VMM_KEY_DISK + (unsigned)i);
		if (r >= 0)
			r = vmm_files_add_access(f, what, d->path, !d->read_only, true);
	}
	if (r < 0 || !s->cloud_init)
		return r;
	seed = vmm_vm_path(v->b, v->name, PROVISION_SEED);
	if (!seed || !vmm_files_add(f, VMM_FILE_COPY, VMM_KEY_SEED, "cloud-init seed", seed))
		return -ENOMEM;
	return 0;
}

/* What a VMM made in its dir before: a socket nobody listens on goes; its console is kept. */
static int own_dir_clear(VmmVm *v, const char *own, const char *const *files)
{
	for (const char *const *f = files; *f; f++) {
		_cleanup_free_ char *p = NULL, *old = NULL;

		if (asprintf(&p, "%s/%s", own, *f) < 0)
			return -ENOMEM;
		if (streq(*f, CONSOLE_LOG)) {
			if (asprintf(&old, "%s/%s", own, CONSOLE_LOG_OLD) < 0)
				return -ENOMEM;
			(void)rename(p, old); /* the boot before */
			continue;
		}
		if (!streq(*f, CONSOLE_LOG_OLD))
			(void)vmm_remove_stale_socket(v->b->run_dir, p);
	}
	return 0;
}

/* <dir>/file -> VMM_OWN_DIR/file, where vmd and operators look for it. */
static int own_dir_link(VmmVm *v, const char *file)
{
	_cleanup_free_ char *link_path = vmm_vm_path(v->b, v->name, file), *target = NULL;

	if (!link_path || asprintf(&target, VMM_OWN_DIR "/%s", file) < 0)
		return -ENOMEM;
	(void)unlink(link_path);
	return symlink(target, link_path) < 0 ? -errno : 0;
}

int vmm_vm_own_dir(VmmVm *v, const char *const *files, char **ret)
{
	_cleanup_free_ char *own = vmm_vm_path(v->b, v->name, VMM_OWN_DIR);
	_cleanup_close_ int fd = -EBADF;
	VmmUser buf;
	const VmmUser *user = vmm_vm_user(v, &buf);
	int n, r;

	if (!own)
		return -ENOMEM;
	if (mkdir(own, 0700) < 0 && errno != EEXIST)
		return -errno;
	/* Never through a symlink: the dir is the VMM's to fill, not to swap. */
	fd = open(own, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (user && fchownat(fd, "", user->uid, user->gid, AT_EMPTY_PATH) < 0)
		r = -errno;
	else
		r = own_dir_clear(v, own, files);
	for (const char *const *f = files; r >= 0 && *f; f++)
		r = own_dir_link(v, *f);
	if (r < 0) {
		backend_set_error(v->b, "cannot make the VMM's own dir %s: %s", own, strerror(-r));
		return r;
	}
	n = vmm_vm_pass_fd(v, TAKE_FD(fd));
	if (n < 0)
		return n;
	*ret = proc_fd_path(n, NULL);
	return *ret ? 0 : -ENOMEM;
}

int vmm_own_dir_cleanup(Backend *b, const char *name, const char *const *files)
{
	_cleanup_free_ char *own = vmm_vm_path(b, name, VMM_OWN_DIR);
	_cleanup_close_ int fd = -EBADF;

	if (!own)
		return -ENOMEM;
	fd = open(own, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	for (const char *const *f = files; *f; f++)
		(void)unlinkat(fd, *f, 0);
	return rmdir(own) < 0 && errno != ENOENT ? -errno : 0;
}

void vmm_passed_done(VmmPassed *p)
{
	p->own = mfree(p->own);
	p->kernel = mfree(p->kernel);
	p->initrd = mfree(p->initrd);
	p->seed = mfree(p->seed);
	for (size_t i = 0; i < ELEMENTSOF(p->disks); i++)
		p->disks[i] = mfree(p->disks[i]);
}

static int pass_boot(VmmVm *v, const char *const *own_files, VmmPassed *p)
{
	const SandboxSpec *s = v->config;
	int r = vmm_vm_own_dir(v, own_files, &p->own);

	char what[SPEC_ID_MAX + 16];

	if (r >= 0)
		r = pass_boot_file(v, VMM_BOOT_KERNEL, "kernel", &p->kernel);
	if (r >= 0 && s->initrd)
		r = pass_boot_file(v, VMM_BOOT_INITRD, "initrd", &p->initrd);
	for (size_t i = 0; r >= 0 && i < s->n_disks; i++) {
		snprintf(what, sizeof(what), "disk '%s'", s->disks[i].id);
		r = pass_taken(v, VMM_KEY_DISK + (unsigned)i, what, &p->disks[i]);
	}
	if (r >= 0 && s->cloud_init)
		r = pass_taken(v, VMM_KEY_SEED, "cloud-init seed", &p->seed);
	return r;
}

int vmm_vm_pass_boot(VmmVm *v, const char *const *own_files, VmmPassed *p)
{
	int r;

	vmm_passed_done(p);
	r = pass_boot(v, own_files, p);
	if (r < 0)
		vmm_passed_done(p);
	return r;
}
