/* SPDX-License-Identifier: MIT */
/*
 * The Firecracker backend. Each VM is one `firecracker --api-sock ... --id NAME` process
 * that vmd starts and watches like every VMM (vmm-vm.c) and configures over its REST API
 * through the job machinery (vmm-job.c): GET / answers with the sandbox's name as the
 * instance id (api-up); serial to console.log, boot source, machine config, drives,
 * network interfaces (configure); InstanceStart (boot). Its runtime dir holds vm.json, api.sock,
 * console.log and fc.log (its stderr). Firecracker refuses an existing socket path: a stale one
 * (nobody listening) is removed first, inside the run dir only.
 *
 * Live changes: pause and resume only. Firecracker cannot hot-plug devices or change
 * vCPUs or memory of a running microVM, so its capabilities say so and the planner
 * restarts it or reports RestartRequired, per updatePolicy. Graceful stop is
 * SendCtrlAltDel (the guest reboots, and Firecracker exits); there is no API to quit, so
 * a forced stop is SIGKILL. A restarted vmd adopts a VM when the record's identity holds
 * and GET / answers with the sandbox's name as the instance id.
 *
 * With --jailer, Firecracker starts through the jailer as --jailer-uid/--jailer-gid,
 * chrooted in <chroot-base>/<firecracker's name>/<name>/root. vmd hard-links the kernel,
 * the initrd and the disks into that root (a link: the image itself is neither copied nor
 * changed, and stays the operator's to give the uid access to; it must be on the same
 * filesystem), gives the uid the root dir, and points api.sock and console.log in the
 * runtime dir at the jail's. The jailer execs Firecracker in the same process, so the pid
 * vmd watches stays the same; the record takes the jailed binary once the API answers.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>

#include "log.h"
#include "spec-json.h"
#include "util.h"
#include "vmm-vm.h"

#define JAIL_KERNEL "vmlinux"
#define JAIL_INITRD "initrd"
#define JAIL_DISK "disk-"
#define JAIL_SOCKET "api.sock"
#define JAIL_CONSOLE "console.log"

typedef struct FcVm {
	VmmVm vm;	       /* first */
	char *vmm_version;     /* "Firecracker v1.13.1": GET /'s app_name and vmm_version */
	unsigned major, minor; /* of vmm_version; 0.0 until GET / answers */
	/* virtio-mem (PUT /hotplug/memory): its room, and how much of it is asked for. */
	uint64_t hotplug_total, hotplug_requested;
} FcVm;

#define FC_VM(v) ((FcVm *)(v))

/*
 * Firecracker 1.14.0 brought PUT /serial (CHANGELOG #5350; before, the console is its
 * stdout) and memory hot-plug through virtio-mem (/hotplug/memory, #5534).
 */
static bool is_1_14(const VmmVm *v)
{
	return FC_VM(v)->major > 1 || (FC_VM(v)->major == 1 && FC_VM(v)->minor >= 14);
}

static bool has_serial(const VmmVm *v)
{
	return is_1_14(v);
}

static bool has_memory_hotplug(const VmmVm *v)
{
	return is_1_14(v);
}

/*
 * The virtio-mem room a VM boots with: 3 x its memory, as much as Cloud Hypervisor's, in
 * whole slots (128 MiB, slot_size_mib's default) as MemoryHotplugConfig::validate() asks.
 */
#define FC_HOTPLUG_SLOT (128ull << 20)
#define FC_HOTPLUG_BLOCK (2ull << 20) /* block_size_mib's default: requests are multiples */

static uint64_t hotplug_room(uint64_t memory)
{
	return (3 * memory + FC_HOTPLUG_SLOT - 1) / FC_HOTPLUG_SLOT * FC_HOTPLUG_SLOT;
}

typedef struct Fc {
	VmmBackend vmm; /* first */
	char *jailer;	/* absolute; NULL if not found (or not asked for) */
	int jailer_error;
} Fc;

#define FC(b) ((Fc *)(b)->data)

static bool jailed(const Backend *b)
{
	return b->options.jailer_binary != NULL;
}

static const char *jail_base(const Backend *b)
{
	return b->options.jailer_chroot_base ?: "/srv/jailer";
}

/* <chroot-base>/<firecracker's name>/<name>: what the jailer makes, one per VM. */
/* Firecracker's file name: the jail is named after it, and the jailer copies it in. */
static const char *fc_name(const Backend *b)
{
	const char *fc = VMM_BACKEND(b)->binary ?: "firecracker", *base = strrchr(fc, '/');

	return base ? base + 1 : fc;
}

static char *jail_dir(const Backend *b, const char *name)
{
	char *p = NULL;

	return asprintf(&p, "%s/%s/%s", jail_base(b), fc_name(b), name) < 0 ? NULL : p;
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
static char *vm_path(const Backend *b, const char *host, const char *jail_name)
{
	char *p = NULL;

	if (!jailed(b))
		return strdup(host);
	return asprintf(&p, "/%s", jail_name) < 0 ? NULL : p;
}

static const VmmVmType fc_type;

static int fc_argv(VmmVm *vm, char ***ret)
{
	const Backend *b = vm->b;
	_cleanup_free_ char *sock = vmm_vm_path(b, vm->name, "api.sock");
	const char *binary = VMM_BACKEND(b)->binary;
	char uid[16], gid[16], **argv = NULL;

	if (!sock)
		return -ENOMEM;
	snprintf(uid, sizeof(uid), "%u", (unsigned)b->options.jailer_uid);
	snprintf(gid, sizeof(gid), "%u", (unsigned)b->options.jailer_gid);
	const char *const plain[] = { binary, "--api-sock", sock, "--id", vm->name, NULL };
	/* The jailer runs Firecracker in its chroot, with the arguments after "--". */
	const char *const jail[] = {
		FC(b)->jailer, "--id",
		vm->name,      "--exec-file",
		binary,	       "--uid",
		uid,	       "--gid",
		gid,	       "--chroot-base-dir",
		jail_base(b),  "--",
		"--api-sock",  "/" JAIL_SOCKET,
		NULL,
	};
	for (const char *const *a = jailed(b) ? jail : plain; *a; a++)
		if (strv_extendf(&argv, "%s", *a) < 0) {
			strv_free(argv);
			return -ENOMEM;
		}
	*ret = argv;
	return 0;
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
static int fc_argv_name(const Backend *b, pid_t pid, char *const *argv, char **ret)
{
	static const char *const links[] = { "root", "cwd" };
	const char *id = argv_value(argv, "--id"), *binary = VMM_BACKEND(b)->binary;
	_cleanup_free_ char *root = NULL;
	int r;

	r = vmm_argv_names_dir(b, argv, "--api-sock", "", "api.sock", ret);
	if (r != 0 || !id || !*id || strchr(id, '/'))
		return r;
	root = jail_path(b, id, NULL);
	if (!root)
		return -ENOMEM;
	r = streq_ptr(argv_value(argv, "--chroot-base-dir"), jail_base(b)) &&
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
		    strncmp(e->d_name, JAIL_DISK, strlen(JAIL_DISK)) == 0)
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
static int fc_prepare(VmmVm *vm)
{
	const Backend *b = vm->b;
	const SandboxSpec *s = vm->config;
	_cleanup_free_ char *root = jail_path(b, vm->name, NULL),
			    *console = jail_path(b, vm->name, JAIL_CONSOLE),
			    *old = jail_path(b, vm->name, JAIL_CONSOLE ".1");
	int r;

	if (!jailed(b))
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
static int fc_cleanup_jail(Backend *b, const char *name)
{
	_cleanup_free_ char *root = jail_path(b, name, NULL), *dir = jail_dir(b, name),
			    *parent = NULL;

	if (!jailed(b))
		return 0;
	if (!root || !dir)
		return -ENOMEM;
	jail_clear(b, name, true);
	(void)rmdir(root);
	(void)rmdir(dir);
	if (asprintf(&parent, "%s/%s", jail_base(b), fc_name(b)) >= 0)
		(void)rmdir(parent);
	return 0;
}

/* Ids */

/*
 * A disk's or NIC's id as Firecracker takes it: its API refuses path ids with anything but
 * alphanumerics and '_' (checked_id, parsed_request.rs), and vmd's ids are [a-z0-9-]. Each
 * '-' goes as '_'. vmd's ids never hold a '_', so the mapping is one to one, and vmd_id()
 * undoes it for what Firecracker reports: the file, the status and the logs keep the ids
 * as written.
 */
static void fc_id(const char *id, char ret[static SPEC_ID_MAX + 1])
{
	size_t i;

	for (i = 0; id[i] && i < SPEC_ID_MAX; i++)
		ret[i] = id[i] == '-' ? '_' : id[i];
	ret[i] = 0;
}

/* Firecracker's devices (items), each as {key: the vmd id}. */
static json_t *vmd_ids(const json_t *items, const char *key)
{
	json_t *out = json_array(), *d;
	size_t i;

	json_array_foreach(items, i, d)
	{
		_cleanup_free_ char *id = strdup(json_string_value(json_object_get(d, key)) ?: "");

		for (char *c = id; c && *c; c++)
			if (*c == '_')
				*c = '-';
		if (!id || !out || json_array_append_new(out, json_pack("{s:s}", key, id)) < 0) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

/* What the replies mean */

/* GET /'s app_name and vmm_version ("1.13.1", "1.17.0-dev"): what v runs, and what it has. */
static void fc_version(VmmVm *v, const json_t *info)
{
	const char *app = json_string_value(json_object_get(info, "app_name")),
		   *version = json_string_value(json_object_get(info, "vmm_version"));
	FcVm *f = FC_VM(v);
	char *s = NULL;

	if (!version || sscanf(version, "%u.%u", &f->major, &f->minor) != 2)
		f->major = f->minor = 0;
	if (version && asprintf(&s, "%s v%s", app ?: "Firecracker", version) >= 0) {
		free(f->vmm_version);
		f->vmm_version = s;
	}
}

/*
 * vCPUs stay as booted. Memory moves between the boot memory and the virtio-mem room on
 * top of it: none without one (before 1.14, or a VM started without it).
 */
static void fc_observed(const VmmVm *v, VmObserved *o)
{
	const FcVm *f = FC_VM(v);
	uint64_t boot;

	o->vmm_version = f->vmm_version ? strdup(f->vmm_version) : NULL;
	if (!v->config)
		return;
	boot = v->config->memory - f->hotplug_requested;
	o->min_vcpus = o->max_vcpus = v->config->vcpus;
	o->min_memory = boot;
	o->max_memory = boot + f->hotplug_total;
}

static void fc_free(VmmVm *v)
{
	free(FC_VM(v)->vmm_version);
}

/* GET /: the instance vmd started under this name, and its state. */
static int instance(VmmVm *v, VmmJob *j, const VmmReply *r, const char **ret_state)
{
	const char *id = json_string_value(json_object_get(r->json, "id"));

	if (r->error < 0)
		return r->error;
	fc_version(v, r->json);
	if (!streq_ptr(id, v->name)) {
		vmm_job_fail_message(j, "GET / answers for instance '%s', not '%s'", id ?: "",
				     v->name);
		return -ESTALE;
	}
	*ret_state = json_string_value(json_object_get(r->json, "state"));
	return 0;
}

static VmState state_of(const char *s)
{
	return streq_ptr(s, "Paused")	 ? VM_PAUSED
	       : streq_ptr(s, "Running") ? VM_RUNNING
					 : VM_STARTING;
}

/* A starting VMM: a vmd that died half-way may have started the instance already. */
static int check_not_started(VmmVm *v, VmmJob *j, const VmmReply *r)
{
	const char *s = NULL;
	int k = instance(v, j, r, &s);

	if (k < 0)
		return k;
	if (state_of(s) == VM_STARTING)
		return VMM_NEXT; /* Not started: configure it (PUTs before InstanceStart replace) */
	v->state = state_of(s);
	return VMM_FINISH;
}

/* Paused or resumed behind vmd's back. */
static int observe_instance(VmmVm *v, VmmJob *j, const VmmReply *r)
{
	const char *s = NULL;
	int k = instance(v, j, r, &s);

	if (k < 0)
		return k;
	if (state_of(s) != VM_STARTING && state_of(s) != v->state) {
		v->state = state_of(s);
		(void)vmm_vm_save(v);
		vmm_vm_changed(v);
	}
	return VMM_NEXT;
}

/* GET /hotplug/memory: the virtio-mem room and what is asked of it; an error: none. */
static int observe_hotplug(VmmVm *v, VmmJob *j _unused_, const VmmReply *r)
{
	FcVm *f = FC_VM(v);

	f->hotplug_total = f->hotplug_requested = 0;
	if (r->error < 0)
		return VMM_NEXT; /* started without one */
	f->hotplug_total = (uint64_t)json_integer_value(json_object_get(r->json, "total_size_mib"))
			   << 20;
	f->hotplug_requested =
		(uint64_t)json_integer_value(json_object_get(r->json, "requested_size_mib")) << 20;
	return VMM_NEXT;
}

/* Devices and size from GET /vm/config (memory: the boot memory and what virtio-mem adds). */
static int observe_config(VmmVm *v, VmmJob *j _unused_, const VmmReply *r)
{
	_cleanup_(sandbox_spec_freep) SandboxSpec *s = NULL;
	const json_t *mc = json_object_get(r->json, "machine-config");
	json_auto_t *drives = NULL, *nets = NULL;
	int k;

	if (r->error < 0)
		return r->error;
	drives = vmd_ids(json_object_get(r->json, "drives"), "drive_id");
	nets = vmd_ids(json_object_get(r->json, "network-interfaces"), "iface_id");
	if (!drives || !nets)
		return -ENOMEM;
	k = vmm_vm_config_seen(v->config, drives, "drive_id", nets, "iface_id", &s);
	if (k < 0)
		return k;
	if (json_is_integer(json_object_get(mc, "vcpu_count")))
		s->vcpus = (unsigned)json_integer_value(json_object_get(mc, "vcpu_count"));
	if (json_is_integer(json_object_get(mc, "mem_size_mib")))
		s->memory =
			((uint64_t)json_integer_value(json_object_get(mc, "mem_size_mib")) << 20) +
			FC_VM(v)->hotplug_requested;
	if (!spec_equal(s, v->config)) {
		sandbox_spec_free(v->config);
		v->config = TAKE_PTR(s);
		(void)vmm_vm_save(v);
		vmm_vm_changed(v);
	}
	return VMM_NEXT;
}

static int fc_put(VmmRequests *rq, json_t *body, const char *path)
{
	return body ? vmm_request_add(rq, "PUT", body, NULL, "%s", path) : -ENOMEM;
}

static int actions(VmmRequests *rq, const char *action)
{
	return fc_put(rq, json_pack("{s:s}", "action_type", action), "/actions");
}

static int patch_vm(VmmRequests *rq, const char *state)
{
	return vmm_request_add(rq, "PATCH", json_pack("{s:s}", "state", state), NULL, "/vm");
}

/*
 * Before 1.14 the guest's console is Firecracker's stdout, which goes to fc.log with its
 * own log lines and stderr: console.log points there (into the jail no more).
 */
static int console_is_stdout(VmmVm *v)
{
	_cleanup_free_ char *console = vmm_vm_path(v->b, v->name, "console.log");

	if (!console)
		return -ENOMEM;
	(void)unlink(console);
	return symlink("fc.log", console) < 0 ? -errno : 0;
}

/* Everything before InstanceStart, in the order Firecracker takes it. */
static int configure(VmmVm *v, VmmRequests *rq)
{
	const Backend *b = v->b;
	const SandboxSpec *s = v->config;
	_cleanup_free_ char *host_console = vmm_vm_path(b, v->name, "console.log"), *console = NULL,
			    *kernel = vm_path(b, s->kernel, JAIL_KERNEL),
			    *initrd = s->initrd ? vm_path(b, s->initrd, JAIL_INITRD) : NULL;
	json_t *boot;
	int r;

	console = host_console ? vm_path(b, host_console, JAIL_CONSOLE) : NULL;
	if (!console || !kernel || (s->initrd && !initrd))
		return -ENOMEM;
	r = has_serial(v) ? fc_put(rq, json_pack("{s:s}", "serial_out_path", console), "/serial")
			  : console_is_stdout(v);
	if (r < 0)
		return r;
	boot = json_pack("{s:s}", "kernel_image_path", kernel);
	if (boot && initrd)
		json_object_set_new(boot, "initrd_path", json_string(initrd));
	if (boot && s->cmdline)
		json_object_set_new(boot, "boot_args", json_string(s->cmdline));
	r = fc_put(rq, boot, "/boot-source");
	if (r >= 0)
		r = fc_put(rq,
			   json_pack("{s:i, s:I, s:b}", "vcpu_count", (int)s->vcpus, "mem_size_mib",
				     (json_int_t)(s->memory >> 20), "smt", false),
			   "/machine-config");
	FC_VM(v)->hotplug_total = FC_VM(v)->hotplug_requested = 0;
	if (r >= 0 && has_memory_hotplug(v)) {
		FC_VM(v)->hotplug_total = hotplug_room(s->memory);
		r = fc_put(rq,
			   json_pack("{s:I}", "total_size_mib",
				     (json_int_t)(FC_VM(v)->hotplug_total >> 20)),
			   "/hotplug/memory");
	}
	for (size_t i = 0; r >= 0 && i < s->n_disks; i++) {
		_cleanup_free_ char *disk = NULL;
		char name[sizeof(JAIL_DISK) + SPEC_ID_MAX], id[SPEC_ID_MAX + 1];

		snprintf(name, sizeof(name), JAIL_DISK "%s", s->disks[i].id);
		disk = vm_path(b, s->disks[i].path, name);
		if (!disk)
			return -ENOMEM;
		fc_id(s->disks[i].id, id);
		r = vmm_request_add(rq, "PUT",
				    json_pack("{s:s, s:s, s:b, s:b}", "drive_id", id,
					      "path_on_host", disk, "is_root_device", false,
					      "is_read_only", s->disks[i].read_only),
				    NULL, "/drives/%s", id);
	}
	for (size_t i = 0; r >= 0 && i < s->n_networks; i++) {
		char mac[18], id[SPEC_ID_MAX + 1];

		spec_mac_format(s->networks[i].mac, mac);
		fc_id(s->networks[i].id, id);
		r = vmm_request_add(rq, "PUT",
				    json_pack("{s:s, s:s, s:s}", "iface_id", id, "host_dev_name",
					      s->networks[i].tap, "guest_mac", mac),
				    NULL, "/network-interfaces/%s", id);
	}
	return r;
}

/* A resize done: the guest is asked for the new size (its virtio-mem driver plugs it). */
static int resized(VmmVm *v, VmmJob *j, const VmmReply *r)
{
	if (r->error < 0)
		return r->error;
	FC_VM(v)->hotplug_requested = j->memory - (v->config->memory - FC_VM(v)->hotplug_requested);
	return VMM_NEXT;
}

/* Memory only (fc_observed keeps the vCPUs), within the virtio-mem room. */
static int resize(VmmVm *v, VmmJob *j, VmmRequests *rq)
{
	uint64_t boot = v->config->memory - FC_VM(v)->hotplug_requested;

	if (j->vcpus != v->config->vcpus || j->memory < boot ||
	    j->memory - boot > FC_VM(v)->hotplug_total)
		return -EOPNOTSUPP;
	return vmm_request_add(
		rq, "PATCH",
		json_pack("{s:I}", "requested_size_mib", (json_int_t)((j->memory - boot) >> 20)),
		resized, "/hotplug/memory");
}

static int fc_build(VmmVm *v, VmmJob *j, VmmRequests *rq)
{
	int r = 0;

	switch (j->phase) {
	case VMM_PHASE_API_UP:
		return vmm_request_add(rq, "GET", NULL, check_not_started, "/");
	case VMM_PHASE_CONFIGURE:
		return configure(v, rq);
	case VMM_PHASE_BOOT:
		return actions(rq, "InstanceStart");
	case VMM_PHASE_HANDSHAKE:
		return vmm_request_add(rq, "GET", NULL, observe_instance, "/");
	case VMM_PHASE_OBSERVE:
		r = vmm_request_add(rq, "GET", NULL, observe_instance, "/");
		if (r >= 0 && has_memory_hotplug(v))
			r = vmm_request_add(rq, "GET", NULL, observe_hotplug, "/hotplug/memory");
		return r < 0 ? r : vmm_request_add(rq, "GET", NULL, observe_config, "/vm/config");
	case VMM_PHASE_GRACEFUL:
		/* A paused guest cannot hear the keys: it runs again first. */
		if (j->was_paused)
			r = patch_vm(rq, "Resumed");
		/* The guest reboots, and Firecracker exits. */
		return r < 0 ? r : actions(rq, "SendCtrlAltDel");
	case VMM_PHASE_QUIT:
		return 0; /* no API to quit: SIGKILL */
	case VMM_PHASE_REQUEST:
		if (j->type == BACKEND_OP_PAUSE)
			return patch_vm(rq, "Paused");
		if (j->type == BACKEND_OP_RESUME)
			return patch_vm(rq, "Resumed");
		if (j->type == BACKEND_OP_RESIZE)
			return resize(v, j, rq);
		return -EOPNOTSUPP;
	default:
		return 0;
	}
}

static int fc_init(Backend *b)
{
	/* A missing jailer fails the starts, with a clear reason, not the daemon. */
	if (jailed(b))
		FC(b)->jailer_error = vmm_find_binary(b->options.jailer_binary, &FC(b)->jailer);
	return vmm_backend_init(b, &fc_type, b->options.firecracker_binary, "firecracker");
}

static void fc_done(Backend *b)
{
	vmm_backend_done(b);
	free(FC(b)->jailer);
}

static const VmmVmType fc_type = {
	.vmm = "firecracker",
	.display = "Firecracker",
	.api = VMM_API_REST,
	.socket = "api.sock",
	.log = "fc.log",
	.log_stdout = true, /* where it logs (logger/logging.rs), and its console before 1.14 */
	.size = sizeof(FcVm),
	.free = fc_free,
	.observed = fc_observed,
	.prepare = fc_prepare,
	.argv = fc_argv,
	.argv_name = fc_argv_name,
	.build = fc_build,
	.cleanup = fc_cleanup_jail,
};

/*
 * PUT /machine-config takes 1 to 32 vCPUs (tests/sim/specs/firecracker-openapi.yaml); the
 * sandbox file also asks for 1 or an even number, which Firecracker itself asks only with
 * SMT on (vmd turns it off). Firecracker boots a kernel and attaches raw images and taps.
 */
#define FC_VCPUS_MAX 32u

static int fc_validate(const SandboxSpec *spec, SpecCheck *check)
{
	char buf[SPEC_CHECK_BACKEND_MAX];

	backend_require_kernel(spec, check);
	backend_refuse_qcow2(spec, check);
	backend_refuse_user_net(spec, check);
	/* virtio-mem takes multiples of its block: so that each resize is one, so is the size. */
	if (spec->memory % FC_HOTPLUG_BLOCK != 0)
		spec_check_error(check, "spec.memory",
				 "%s takes memory in multiples of 2Mi (virtio-mem's block)",
				 spec_check_backend(spec, buf));
	if (spec->vcpus > FC_VCPUS_MAX || (spec->vcpus > 1 && spec->vcpus % 2 != 0))
		spec_check_error(check, "spec.vcpus",
				 "%u vCPUs do not fit %s: it takes 1 or an even number up to %u",
				 spec->vcpus, spec_check_backend(spec, buf), FC_VCPUS_MAX);
	return spec_check_result(check);
}

const BackendOps backend_firecracker_ops = {
	.name = "firecracker",
	.takes_host_resources = true,
	.caps = BACKEND_CAP_PAUSE | BACKEND_CAP_RESIZE, /* memory, from 1.14 (fc_observed) */
	.data_size = sizeof(Fc),
	.validate = fc_validate,
	.init = fc_init,
	.done = fc_done,
	.observe = vmm_vm_observe,
	.list = vmm_vm_list,
	.adopt = vmm_vm_adopt,
	.refresh = vmm_vm_refresh,
	.reload = vmm_backend_reload,
	.start = vmm_vm_start,
	.stop = vmm_vm_stop,
	.pause = vmm_vm_pause,
	.resume = vmm_vm_resume,
	.resize = vmm_vm_resize,
	.cleanup = vmm_vm_cleanup,
};
