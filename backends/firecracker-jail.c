/* SPDX-License-Identifier: MIT */
/*
 * Firecracker's jail: with --jailer, Firecracker starts through the jailer as
 * --jailer-uid/--jailer-gid, chrooted in <chroot-base>/<firecracker's name>/<name>/root.
 * vmd hard-links the kernel, the initrd and the disks into that root (a link: the image
 * itself is neither copied nor changed, and stays the operator's to give the uid access
 * to; it must be on the same filesystem), copies the cloud-init seed in (vmd's own, in the
 * runtime dir), gives the uid the root dir, and points api.sock
 * and console.log in the runtime dir at the jail's. A snapshot is written and read in the
 * root too (snapshot.state, snapshot.mem) and hard-linked out of it into the daemon's
 * snapshot dir after a save, into it before a load: the state dir must be on the
 * filesystem of the chroot base, as the images must. Before each start and after removal,
 * what vmd and the jailer made there is cleared, as the jailer fails in a jail it ran in.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>

#include "firecracker.h"
#include "provision.h"
#include "util.h"

bool fc_jailed(const Backend *b)
{
	return b->options.jailer_binary != NULL;
}

const char *fc_jail_base(const Backend *b)
{
	return b->options.jailer_chroot_base ?: "/srv/jailer";
}

const char *fc_name(const Backend *b)
{
	const char *fc = VMM_BACKEND(b)->binary ?: "firecracker", *base = strrchr(fc, '/');

	return base ? base + 1 : fc;
}

/* <chroot-base>/<firecracker's name>/<name>: what the jailer makes, one per VM. */
static char *jail_dir(const Backend *b, const char *name)
{
	char *p = NULL;

	return asprintf(&p, "%s/%s/%s", fc_jail_base(b), fc_name(b), name) < 0 ? NULL : p;
}

/* A file in the jail's root as the host sees it (file NULL: the root). */
static char *jail_path(const Backend *b, const char *name, const char *file)
{
	_cleanup_free_ char *dir = jail_dir(b, name);
	char *p = NULL;

	if (!dir || asprintf(&p, "%s/root%s%s", dir, file ? "/" : "", file ?: "") < 0)
		return NULL;
	return p;
}

/* The path Firecracker is given for a host file: where it is in the jail, if jailed. */
char *fc_vm_path(const Backend *b, const char *host, const char *jail_name)
{
	char *p = NULL;

	if (!fc_jailed(b))
		return strdup(host);
	return asprintf(&p, "/%s", jail_name) < 0 ? NULL : p;
}

/* Jail */

/* The value of option in argv, or NULL. */
static const char *argv_value(char *const *argv, const char *option)
{
	for (size_t i = 0; argv[i] && argv[i + 1]; i++)
		if (streq(argv[i], option))
			return argv[i + 1];
	return NULL;
}

/*
 * A Firecracker of vmd's names its runtime dir in --api-sock (fc_argv). A jailed one names
 * only its --id, and runs in the jail of that name: the jailer, with vmd's chroot base and
 * binary; then Firecracker chrooted in it (/proc/PID/root), or the simulator of the tests,
 * which cannot chroot and works in it instead (/proc/PID/cwd).
 */
int fc_argv_name(const Backend *b, pid_t pid, char *const *argv, char **ret)
{
	static const char *const links[] = { "root", "cwd" };
	const char *id = argv_value(argv, "--id"), *binary = VMM_BACKEND(b)->binary, *sock;
	_cleanup_free_ char *root = NULL;
	int r;

	r = vmm_argv_names_dir(b, argv, "--api-sock", "", "api.sock", ret);
	if (r != 0)
		return r;
	if (!id || !*id || strchr(id, '/'))
		return r;
	/*
	 * Unjailed, its socket is in its own dir (/proc/self/fd/N/api.sock): its stderr, in a
	 * runtime dir of this run dir, says it is vmd's, and its --id for which sandbox.
	 */
	sock = argv_value(argv, "--api-sock");
	if (sock && strncmp(sock, "/proc/self/fd/", 14) == 0 && !argv_value(argv, "--exec-file")) {
		_cleanup_free_ char *dir = NULL;

		r = vmm_stderr_names_dir(b, pid, "fc.log", &dir);
		if (r <= 0)
			return r;
		*ret = strdup(id);
		return *ret ? 1 : -ENOMEM;
	}
	root = jail_path(b, id, NULL);
	if (!root)
		return -ENOMEM;
	r = streq_ptr(argv_value(argv, "--chroot-base-dir"), fc_jail_base(b)) &&
	    streq_ptr(argv_value(argv, "--exec-file"), binary);
	for (size_t i = 0; !r && i < ELEMENTSOF(links); i++) {
		_cleanup_free_ char *at = NULL;

		r = vmm_process_link(pid, links[i], &at) == 0 && streq(at, root);
	}
	if (!r)
		return 0;
	*ret = strdup(id);
	return *ret ? 1 : -ENOMEM;
}

/* The directory name in dir_fd, if it is one: a symlink is not followed. -errno if not. */
static int open_dir_at(int dir_fd, const char *name)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

/* Remove each of names in dir_fd: a file, a node, a symlink (never its target), an empty dir. */
static void remove_at(int dir_fd, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (unlinkat(dir_fd, names[i], 0) < 0 && errno == EISDIR)
			(void)unlinkat(dir_fd, names[i], AT_REMOVEDIR);
}

/*
 * What the jailer made in a jail root (src/jailer/src/env.rs Env::run()): its copy of
 * Firecracker, the pid file it creates O_EXCL (save_exec_file_pid), the device nodes it
 * mknods, failing on an existing one (mknod_and_own_dev), its folders (FOLDER_HIERARCHY),
 * and pivot_root's old_root (chroot.rs), which it removes itself unless killed first.
 * Each must go before the jailer runs again in the same jail.
 */
static void jail_clear_jailer(const Backend *b, int root_fd)
{
	static const char *const net[] = { "tun" };
	static const char *const dev[] = { "net", "kvm", "urandom", "userfaultfd" };
	char exe[NAME_MAX + 1], pid[NAME_MAX + 1];
	const char *const top[] = { "dev", "run", exe, pid, "old_root" };
	_cleanup_close_ int dev_fd = open_dir_at(root_fd, "dev");

	if (dev_fd >= 0) {
		_cleanup_close_ int net_fd = open_dir_at(dev_fd, "net");

		if (net_fd >= 0)
			remove_at(net_fd, net, ELEMENTSOF(net));
		remove_at(dev_fd, dev, ELEMENTSOF(dev));
	}
	snprintf(exe, sizeof(exe), "%s", fc_name(b));
	snprintf(pid, sizeof(pid), "%s.pid", fc_name(b));
	remove_at(root_fd, top, ELEMENTSOF(top));
}

/*
 * Clear name's jail root of what vmd and the jailer put there: vmd's links to the kernel,
 * the initrd and the disks, a stale socket, and all the jailer made; with console too, the
 * console logs. Nothing else, and no symlink followed: a root that is not a directory of
 * its own is left alone.
 */
static void jail_clear(const Backend *b, const char *name, bool console)
{
	static const char *const consoles[] = { JAIL_CONSOLE, JAIL_CONSOLE ".1" };
	_cleanup_free_ char *root = jail_path(b, name, NULL), *dir = jail_dir(b, name),
			    *sock = jail_path(b, name, JAIL_SOCKET);
	_cleanup_close_ int root_fd = -EBADF;
	DIR *d;
	struct dirent *e;
	int fd;

	if (!root || !dir || !sock)
		return;
	(void)vmm_remove_stale_socket(dir, sock);
	root_fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (root_fd < 0)
		return;
	jail_clear_jailer(b, root_fd);
	if (console)
		remove_at(root_fd, consoles, ELEMENTSOF(consoles));
	fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 3);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d)))
		if (streq(e->d_name, JAIL_KERNEL) || streq(e->d_name, JAIL_INITRD) ||
		    strncmp(e->d_name, JAIL_DISK, strlen(JAIL_DISK)) == 0 ||
		    strncmp(e->d_name, JAIL_SNAPSHOT, strlen(JAIL_SNAPSHOT)) == 0)
			(void)unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
}

/* A hard link of host in the jail root, named name: same inode, nothing copied. */
static int jail_link(VmmVm *vm, const char *host, const char *file)
{
	_cleanup_free_ char *p = jail_path(vm->b, vm->name, file);

	if (!p)
		return -ENOMEM;
	if (link(host, p) < 0) {
		int r = -errno;

		backend_set_error(
			vm->b,
			r == -EXDEV ? "cannot link '%s' into the jail %s: %s; keep images on the filesystem of --jailer-chroot-base"
				    : "cannot link '%s' into the jail %s: %s",
			host, p, strerror(-r));
		return r;
	}
	return 0;
}

int fc_jail_relink(VmmVm *vm, const char *host, const char *file)
{
	char new_name[NAME_MAX + 1];
	_cleanup_free_ char *p = jail_path(vm->b, vm->name, file), *tmp = NULL;
	int r;

	snprintf(new_name, sizeof(new_name), "%s.new", file);
	tmp = jail_path(vm->b, vm->name, new_name);
	if (!p || !tmp)
		return -ENOMEM;
	(void)unlink(tmp);
	r = jail_link(vm, host, new_name);
	if (r < 0)
		return r;
	if (rename(tmp, p) < 0) {
		r = -errno;
		(void)unlink(tmp);
		return r;
	}
	return 0;
}

int fc_jail_take(VmmVm *vm, const char *file, const char *host)
{
	_cleanup_free_ char *p = jail_path(vm->b, vm->name, file);

	if (!p)
		return -ENOMEM;
	if (link(p, host) < 0)
		return -errno;
	(void)unlink(p);
	return 0;
}

void fc_jail_drop(VmmVm *vm, const char *file)
{
	_cleanup_free_ char *p = jail_path(vm->b, vm->name, file);

	if (p)
		(void)unlink(p);
}

/*
 * The cloud-init seed, which vmd made in the runtime dir: copied into the jail's root and
 * given to the uid (a link would cross filesystems: /run is not the chroot base's).
 */
static int jail_seed(VmmVm *vm)
{
	const Backend *b = vm->b;
	_cleanup_free_ char *host = vmm_vm_path(b, vm->name, PROVISION_SEED),
			    *p = jail_path(b, vm->name, JAIL_SEED), *image = NULL;
	size_t len;
	int r;

	if (!host || !p)
		return -ENOMEM;
	r = read_regular_file(host, PROVISION_SEED_MAX, &image, &len);
	if (r >= 0)
		r = write_file_atomic(p, image, len, 0400, false);
	if (r >= 0 && chown(p, b->options.jailer_uid, b->options.jailer_gid) < 0)
		r = -errno;
	if (r < 0)
		backend_set_error(vm->b, "cannot copy the cloud-init seed into the jail %s: %s", p,
				  strerror(-r));
	return r;
}

/* runtime dir's file -> the jail's, so that vmd and operators find them where they always are. */
static int point_at_jail(VmmVm *vm, const char *file)
{
	_cleanup_free_ char *link_path = vmm_vm_path(vm->b, vm->name, file),
			    *target = jail_path(vm->b, vm->name, file);

	if (!link_path || !target)
		return -ENOMEM;
	(void)unlink(link_path);
	return symlink(target, link_path) < 0 ? -errno : 0;
}

/* The jail root, its files linked in, the uid its owner; the runtime dir pointing at it. */
int fc_jail_prepare(VmmVm *vm)
{
	const Backend *b = vm->b;
	const SandboxSpec *s = vm->config;
	_cleanup_free_ char *root = jail_path(b, vm->name, NULL),
			    *console = jail_path(b, vm->name, JAIL_CONSOLE),
			    *old = jail_path(b, vm->name, JAIL_CONSOLE ".1");
	int r;

	if (!fc_jailed(b))
		return 0;
	if (!FC(b)->jailer) {
		backend_set_error(vm->b, "cannot find the jailer %s: %s", b->options.jailer_binary,
				  strerror(-FC(b)->jailer_error));
		return FC(b)->jailer_error;
	}
	if (!root || !console || !old)
		return -ENOMEM;
	r = mkdir_p(root, 0750);
	if (r < 0)
		return r;
	if (chown(root, b->options.jailer_uid, b->options.jailer_gid) < 0)
		return -errno;
	jail_clear(b, vm->name, false);
	(void)rename(console, old); /* the boot before */
	r = jail_link(vm, s->kernel, JAIL_KERNEL);
	if (r >= 0 && s->initrd)
		r = jail_link(vm, s->initrd, JAIL_INITRD);
	for (size_t i = 0; r >= 0 && i < s->n_disks; i++) {
		char name[sizeof(JAIL_DISK) + SPEC_ID_MAX];

		snprintf(name, sizeof(name), JAIL_DISK "%s", s->disks[i].id);
		r = jail_link(vm, s->disks[i].path, name);
	}
	if (r >= 0 && s->cloud_init)
		r = jail_seed(vm);
	if (r >= 0)
		r = point_at_jail(vm, JAIL_SOCKET);
	if (r >= 0)
		r = point_at_jail(vm, JAIL_CONSOLE);
	if (r >= 0)
		r = point_at_jail(vm, JAIL_CONSOLE ".1");
	return r;
}

/*
 * What vmd and the jailer made for name, and only that; the jail root, its directory and
 * <chroot-base>/<firecracker's name> go if empty then.
 */
int fc_jail_cleanup(Backend *b, const char *name)
{
	_cleanup_free_ char *root = jail_path(b, name, NULL), *dir = jail_dir(b, name),
			    *parent = NULL;

	if (!fc_jailed(b))
		return 0;
	if (!root || !dir)
		return -ENOMEM;
	jail_clear(b, name, true);
	(void)rmdir(root);
	(void)rmdir(dir);
	if (asprintf(&parent, "%s/%s", fc_jail_base(b), fc_name(b)) >= 0)
		(void)rmdir(parent);
	return 0;
}
