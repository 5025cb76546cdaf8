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
 * sealed memfd copy (any uid may open a memfd's inode; a seal keeps it as it was); a disk,
 * which the guest writes, as the file itself, which the VMM user must be allowed to open:
 * vmd checks that before the start (vmm_vm_pass_file()), as that user.
 */
#include <fcntl.h>
#include <limits.h>
#include <grp.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

/* A regular file's whole content into a memfd, sealed so that nobody changes it. */
static int memfd_copy(int src, const char *name)
{
	_cleanup_close_ int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	struct stat st;
	off_t off = 0;

	if (fd < 0 || fstat(src, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	while (off < st.st_size) {
		ssize_t n = sendfile(fd, src, &off, (size_t)(st.st_size - off));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break; /* shorter than it said: what there is */
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
		return -errno;
	return TAKE_FD(fd);
}

int vmm_vm_pass_copy(VmmVm *v, const char *path, const char *what, char **ret)
{
	_cleanup_close_ int src = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	int fd = src < 0 ? -errno : memfd_copy(src, what);

	if (fd < 0) {
		backend_set_error(v->b, "cannot read the %s '%s': %s", what, path, strerror(-fd));
		return fd;
	}
	return pass_as_path(v, fd, ret);
}

/*
 * Whether user may open path with flags, as the VMM will: a child that drops to it as
 * vmm.c's spawn does and tries (a /proc/self/fd/N is the child's copy of vmd's fd). 0, or
 * the -errno it met.
 */
static int user_can_open(const VmmUser *user, const char *path, int flags)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int e = 0, f;

		if (setgroups(0, NULL) < 0 || setresgid(user->gid, user->gid, user->gid) < 0 ||
		    setresuid(user->uid, user->uid, user->uid) < 0)
			_exit(EPERM);
		f = open(path, flags | O_CLOEXEC | O_NOCTTY);
		if (f < 0)
			e = errno;
		_exit(e & 0xff);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (!WIFEXITED(status))
		return -EIO;
	return -WEXITSTATUS(status);
}

/* open_path (path, or vmd's fd of it) as the VMM user, with the words if it may not. */
static int check_user(const VmmVm *v, const char *path, const char *open_path, bool writable,
		      const char *what, char *why, size_t n)
{
	VmmUser buf;
	const VmmUser *user = vmm_vm_user(v, &buf);
	int r;

	if (!user || user->uid == 0)
		return 0;
	r = user_can_open(user, open_path, writable ? O_RDWR : O_RDONLY);
	if (r < 0)
		snprintf(why, n,
			 "%s: '%s' is not %s by the VMM user (uid %u, gid %u: --vmm-user): %s; chown it to that user, or give it access with an ACL (setfacl -m u:%u:%s '%s')",
			 what, path, writable ? "readable and writable" : "readable",
			 (unsigned)user->uid, (unsigned)user->gid, strerror(-r),
			 (unsigned)user->uid, writable ? "rw" : "r", path);
	return r;
}

int vmm_vm_user_may_open(const VmmVm *v, const char *path, bool writable, const char *what,
			 char *why, size_t n)
{
	return check_user(v, path, path, writable, what, why, n);
}

int vmm_vm_pass_file(VmmVm *v, const char *path, bool writable, const char *what, char **ret)
{
	_cleanup_close_ int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY);
	char self[64], why[PATH_MAX * 2 + 256];
	int r;

	if (fd < 0) {
		r = -errno;
		backend_set_error(v->b, "%s: cannot open '%s': %s", what, path, strerror(-r));
		return r;
	}
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	r = check_user(v, path, self, writable, what, why, sizeof(why));
	if (r < 0) {
		backend_set_error(v->b, "%s", why);
		return r;
	}
	return pass_as_path(v, TAKE_FD(fd), ret);
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
	_cleanup_free_ char *seed = NULL;
	int r = vmm_vm_own_dir(v, own_files, &p->own);

	if (r >= 0)
		r = vmm_vm_pass_copy(v, s->kernel, "kernel", &p->kernel);
	if (r >= 0 && s->initrd)
		r = vmm_vm_pass_copy(v, s->initrd, "initrd", &p->initrd);
	for (size_t i = 0; r >= 0 && i < s->n_disks; i++) {
		char what[SPEC_ID_MAX + 16];

		snprintf(what, sizeof(what), "disk '%s'", s->disks[i].id);
		r = vmm_vm_pass_file(v, s->disks[i].path, !s->disks[i].read_only, what, &p->disks[i]);
	}
	if (r < 0 || !s->cloud_init)
		return r;
	seed = vmm_vm_path(v->b, v->name, PROVISION_SEED);
	return seed ? vmm_vm_pass_copy(v, seed, "cloud-init seed", &p->seed) : -ENOMEM;
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
