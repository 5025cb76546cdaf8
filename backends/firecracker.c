/* SPDX-License-Identifier: MIT */
/*
 * The Firecracker backend. Each VM is one `firecracker --api-sock ... --id NAME` process
 * that vmd starts and watches like every VMM (vmm-vm.c) and configures over its REST API
 * through the job machinery (vmm-job.c): GET / answers with the sandbox's name as the
 * instance id, and its version (api-up); serial to console.log (from 1.14), boot source,
 * machine config, virtio-mem room (from 1.14), drives, network interfaces (configure; a
 * bridge's tap made persistent for it before it starts, as it opens taps by name);
 * InstanceStart (boot). Its runtime dir holds vm.json, api.sock, console.log, fc.log (its
 * stderr) and fc.out (its stdout: its log lines). Firecracker refuses an existing socket path: a
 * stale one (nobody listening) is removed first, inside the run dir only.
 *
 * Live changes: pause and resume; memory within the virtio-mem room from 1.14. Firecracker
 * cannot hot-plug devices or change vCPUs of a running microVM, so the planner restarts it
 * or reports RestartRequired, per updatePolicy. Graceful stop is SendCtrlAltDel (the guest
 * reboots, and Firecracker exits; x86_64 only); there is no API to quit, so a forced stop
 * is SIGKILL. A restarted vmd adopts a VM when the record's identity holds and GET /
 * answers with the sandbox's name as the instance id.
 *
 * Suspend (state: suspended): PATCH /vm Paused, PUT /snapshot/create (Full: vm.state and
 * vm.mem in the snapshot dir; written before it answers), then SIGKILL (no API to quit).
 * Wake: a Firecracker started as for a boot, its serial set, then PUT /snapshot/load
 * (before any boot resource: rpc_interface.rs, load_snapshot()) with resume_vm unless the
 * VM is to stay paused. The restored VM's memory is a private mapping of vm.mem.
 *
 * With --jailer, Firecracker runs in the jailer's chroot: firecracker-jail.c. The jailer
 * execs Firecracker in the same process, so the pid vmd watches stays the same; the
 * record takes the jailed binary once the API answers.
 */
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>

#include "log.h"
#include "netdev.h"
#include "spec-json.h"
#include "util.h"
#include "firecracker.h"
#include "provision.h"
#include "vmm-vm.h"

typedef struct FcVm {
	VmmVm vm;	       /* first */
	char *vmm_version;     /* "Firecracker v1.13.1": GET /'s app_name and vmm_version */
	unsigned major, minor; /* of vmm_version; 0.0 until GET / answers */
	/* virtio-mem (PUT /hotplug/memory): its room, and how much of it is asked for. */
	uint64_t hotplug_total, hotplug_requested;
	/* Unjailed, its own dir (API socket, console) and its files, as it has them (fc_pass()). */
	VmmPassed passed;
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

static const VmmVmType fc_type;

static int fc_argv(VmmVm *vm, char ***ret)
{
	const Backend *b = vm->b;
	_cleanup_free_ char *sock = NULL;
	const char *binary = VMM_BACKEND(b)->binary;
	char uid[16], gid[16], **argv = NULL;

	/* Unjailed, it binds its socket in its own dir (vmm-pass.c): api.sock points there. */
	if (FC_VM(vm)->passed.own)
		set_format(&sock, "%s/api.sock", FC_VM(vm)->passed.own);
	else
		sock = vmm_vm_path(b, vm->name, "api.sock");
	if (!sock)
		return -ENOMEM;
	snprintf(uid, sizeof(uid), "%u", (unsigned)b->options.jailer_uid);
	snprintf(gid, sizeof(gid), "%u", (unsigned)b->options.jailer_gid);
	const char *const plain[] = { binary, "--api-sock", sock, "--id", vm->name, NULL };
	/* The jailer runs Firecracker in its chroot, with the arguments after "--". */
	const char *const jail[] = {
		FC(b)->jailer,
		"--id",
		vm->name,
		"--exec-file",
		binary,
		"--uid",
		uid,
		"--gid",
		gid,
		"--chroot-base-dir",
		fc_jail_base(b),
		"--",
		"--api-sock",
		"/" JAIL_SOCKET,
		NULL,
	};
	for (const char *const *a = fc_jailed(b) ? jail : plain; *a; a++)
		if (strv_extendf(&argv, "%s", *a) < 0) {
			strv_free(argv);
			return -ENOMEM;
		}
	*ret = argv;
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
	vmm_passed_done(&FC_VM(v)->passed);
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

/* The cloud-init seed (provision.h), read-only: the jail's copy when jailed. */
static int put_seed(VmmVm *v, VmmRequests *rq)
{
	_cleanup_free_ char *host = vmm_vm_path(v->b, v->name, PROVISION_SEED), *seed = NULL;

	seed = FC_VM(v)->passed.seed ? strdup(FC_VM(v)->passed.seed)
	       : host		     ? fc_vm_path(v->b, host, JAIL_SEED)
				     : NULL;
	if (!seed)
		return -ENOMEM;
	return vmm_request_add(rq, "PUT",
			       json_pack("{s:s, s:s, s:b, s:b}", "drive_id", FC_SEED_ID,
					 "path_on_host", seed, "is_root_device", false,
					 "is_read_only", true),
			       NULL, "/drives/" FC_SEED_ID);
}

int fc_put(VmmRequests *rq, json_t *body, const char *path)
{
	return body ? vmm_request_add(rq, "PUT", body, NULL, "%s", path) : -ENOMEM;
}

static int actions(VmmRequests *rq, const char *action)
{
	return fc_put(rq, json_pack("{s:s}", "action_type", action), "/actions");
}

int fc_patch_vm(VmmRequests *rq, const char *state)
{
	return vmm_request_add(rq, "PATCH", json_pack("{s:s}", "state", state), NULL, "/vm");
}

/*
 * Before 1.14 the guest's console is Firecracker's stdout, which goes to fc.out with its
 * own log lines: console.log points there (into the jail no more).
 */
static int console_is_stdout(VmmVm *v)
{
	_cleanup_free_ char *console = vmm_vm_path(v->b, v->name, "console.log");

	if (!console)
		return -ENOMEM;
	(void)unlink(console);
	return symlink("fc.out", console) < 0 ? -errno : 0;
}

/*
 * The guest's console: from 1.14 PUT /serial, to console.log in the jail, or unjailed in
 * its own dir (vmm-pass.c), where the run dir's console.log points; before, its stdout.
 */
int fc_put_console(VmmVm *v, VmmRequests *rq)
{
	_cleanup_free_ char *host = NULL, *console = NULL;

	if (!has_serial(v))
		return console_is_stdout(v);
	if (FC_VM(v)->passed.own)
		set_format(&console, "%s/" JAIL_CONSOLE, FC_VM(v)->passed.own);
	else if ((host = vmm_vm_path(v->b, v->name, "console.log")))
		console = fc_vm_path(v->b, host, JAIL_CONSOLE);
	if (!console)
		return -ENOMEM;
	return fc_put(rq, json_pack("{s:s}", "serial_out_path", console), "/serial");
}

/* Everything before InstanceStart, in the order Firecracker takes it. */
static int configure(VmmVm *v, VmmRequests *rq)
{
	const Backend *b = v->b;
	const SandboxSpec *s = v->config;
	FcVm *f = FC_VM(v);
	_cleanup_free_ char *kernel = f->passed.kernel ? strdup(f->passed.kernel)
						       : fc_vm_path(b, s->kernel, JAIL_KERNEL),
			    *initrd = f->passed.initrd ? strdup(f->passed.initrd)
				      : s->initrd      ? fc_vm_path(b, s->initrd, JAIL_INITRD)
						       : NULL;
	json_t *boot;
	int r;

	if (!kernel || (s->initrd && !initrd))
		return -ENOMEM;
	r = fc_put_console(v, rq);
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
		disk = f->passed.disks[i] ? strdup(f->passed.disks[i])
					  : fc_vm_path(b, s->disks[i].path, name);
		if (!disk)
			return -ENOMEM;
		fc_id(s->disks[i].id, id);
		r = vmm_request_add(rq, "PUT",
				    json_pack("{s:s, s:s, s:b, s:b}", "drive_id", id,
					      "path_on_host", disk, "is_root_device", false,
					      "is_read_only", s->disks[i].read_only),
				    NULL, "/drives/%s", id);
	}
	if (r >= 0 && s->cloud_init)
		r = put_seed(v, rq);
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

/*
 * A disk's new backing file: PATCH /drives/ID (request/drive.rs parse_patch_drive(), after
 * InstanceStart), and Firecracker opens it in place of the old. Jailed, the jail's link
 * /disk-ID is replaced by one to the new file first (Firecracker keeps the old one open
 * until then).
 */
static int disk_update(VmmVm *v, VmmJob *j, VmmRequests *rq)
{
	_cleanup_free_ char *disk = NULL;
	char name[sizeof(JAIL_DISK) + SPEC_ID_MAX], id[SPEC_ID_MAX + 1];
	int r;

	snprintf(name, sizeof(name), JAIL_DISK "%s", j->disk.id);
	if (fc_jailed(v->b)) {
		r = fc_jail_relink(v, j->disk.path, name);
		if (r < 0)
			return r;
	}
	disk = fc_vm_path(v->b, j->disk.path, name);
	if (!disk)
		return -ENOMEM;
	/* Unjailed, Firecracker opens the new path itself, as the VMM user: fc_files checked it. */
	fc_id(j->disk.id, id);
	return vmm_request_add(rq, "PATCH",
			       json_pack("{s:s, s:s}", "drive_id", id, "path_on_host", disk), NULL,
			       "/drives/%s", id);
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

	if (IN_SET(j->type, BACKEND_OP_SUSPEND, BACKEND_OP_RESTORE) &&
	    IN_SET(j->phase, VMM_PHASE_FREEZE, VMM_PHASE_SAVE, VMM_PHASE_THAW, VMM_PHASE_QUIT,
		   VMM_PHASE_LOAD, VMM_PHASE_BOOT))
		return fc_build_snapshot(v, j, rq);
	switch (j->phase) {
	case VMM_PHASE_API_UP:
		return vmm_request_add(rq, "GET", NULL, check_not_started, "/");
	case VMM_PHASE_CONFIGURE:
		r = vmm_vm_refuse_fresh_boot(v, j);
		return r < 0 ? r : configure(v, rq);
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
			r = fc_patch_vm(rq, "Resumed");
		/* The guest reboots, and Firecracker exits. */
		return r < 0 ? r : actions(rq, "SendCtrlAltDel");
	case VMM_PHASE_QUIT:
		return 0; /* no API to quit: SIGKILL */
	case VMM_PHASE_REQUEST:
		if (j->type == BACKEND_OP_PAUSE)
			return fc_patch_vm(rq, "Paused");
		if (j->type == BACKEND_OP_RESUME)
			return fc_patch_vm(rq, "Resumed");
		if (j->type == BACKEND_OP_RESIZE)
			return resize(v, j, rq);
		if (j->type == BACKEND_OP_DISK_UPDATE)
			return disk_update(v, j, rq);
		return -EOPNOTSUPP;
	default:
		return 0;
	}
}

static int fc_init(Backend *b)
{
	/* A missing jailer fails the starts, with a clear reason, not the daemon. */
	if (fc_jailed(b))
		FC(b)->jailer_error = vmm_find_binary(b->options.jailer_binary, &FC(b)->jailer);
	return vmm_backend_init(b, &fc_type, b->options.firecracker_binary, "firecracker");
}

static void fc_done(Backend *b)
{
	vmm_backend_done(b);
	free(FC(b)->jailer);
}

/*
 * Networks on a bridge: Firecracker takes no descriptor, only host_dev_name, and opens the
 * tap itself at PUT /network-interfaces (src/vmm/src/devices/virtio/net/tap.rs,
 * Tap::open_named(): TUNSETIFF IFF_TAP|IFF_NO_PI|IFF_VNET_HDR), jailed as the jail's uid
 * without capabilities. So vmd makes the tap persistent, owned by that uid and gid, on
 * the bridge (netdev.c), before Firecracker starts. A stop, or the guest's own power-off,
 * removes it; a crash leaves it for the restart to take again; the sandbox gone removes it
 * (release, at cleanup).
 */
static void remove_taps(VmmVm *v)
{
	for (size_t i = 0; v->config && i < v->config->n_networks; i++)
		(void)netdev_persistent_tap_remove(&v->config->networks[i]);
}

/* Unjailed, Firecracker makes these itself, in its own dir (vmm-pass.c). */
static const char *const fc_own_files[] = { JAIL_SOCKET, JAIL_CONSOLE, JAIL_CONSOLE ".1", NULL };

/*
 * Unjailed, what its configuration names, as fds (vmm-pass.c), which Firecracker, as the
 * VMM user, opens as /proc/self/fd/N: kernel and initrd as sealed copies (at PUT
 * /boot-source: src/vmm/src/vmm_config/boot_source.rs, BootConfig::new(), File::open), the
 * drives as vmd opened them (path_on_host, no fd), the seed as a copy; its own dir for the
 * API socket it binds (--api-sock takes a path only: src/firecracker/src/main.rs) and the
 * console it creates (PUT /serial).
 */
static int fc_pass(VmmVm *v)
{
	if (fc_jailed(v->b)) {
		vmm_passed_done(&FC_VM(v)->passed);
		return 0;
	}
	return vmm_vm_pass_boot(v, fc_own_files, &FC_VM(v)->passed);
}

/*
 * The files step, unjailed: what fc_pass() passes; a drive's new path, the VMM user's access
 * to it. Jailed, the jail has links to the files, which the jailer's uid opens.
 */
static int fc_files(VmmVm *v, VmmJob *j, VmmFiles *f)
{
	if (fc_jailed(v->b))
		return 0;
	if (j->type == BACKEND_OP_DISK_UPDATE)
		return vmm_vm_want_access(f, &j->disk);
	return IN_SET(j->type, BACKEND_OP_START, BACKEND_OP_RESTORE) ? vmm_vm_want_boot(v, f) : 0;
}

static int fc_prepare(VmmVm *v)
{
	const Backend *b = v->b;
	VmmUser buf;
	const VmmUser *user = vmm_vm_user(v, &buf);
	/* The tap is the uid's that opens it: the jail's, or the VMM user's. */
	uid_t uid = fc_jailed(b) ? b->options.jailer_uid : user ? user->uid : (uid_t)-1;
	gid_t gid = fc_jailed(b) ? b->options.jailer_gid : user ? user->gid : (gid_t)-1;
	char why[256];
	int r = fc_jail_prepare(v);

	if (r >= 0)
		r = fc_pass(v);

	for (size_t i = 0; r >= 0 && i < v->config->n_networks; i++) {
		const NetSpec *n = &v->config->networks[i];

		if (n->type != NET_BRIDGE)
			continue;
		r = netdev_persistent_tap(n, uid, gid, why, sizeof(why));
		if (r < 0) {
			backend_set_error(v->b, "network '%s': %s", n->id, why);
			remove_taps(v);
		}
	}
	return r;
}

static int fc_cleanup(Backend *b, const char *name)
{
	int r = vmm_own_dir_cleanup(b, name, fc_own_files);

	return r < 0 ? r : fc_jail_cleanup(b, name);
}

static void fc_exited(VmmVm *v)
{
	if (v->stop_requested || v->guest_shutdown)
		remove_taps(v);
}

static const VmmVmType fc_type = {
	.vmm = "firecracker",
	.display = "Firecracker",
	.api = VMM_API_REST,
	.socket = "api.sock",
	.log = "fc.log",
	/* where it logs (logger/logging.rs), and its console before 1.14; fc.log keeps its stderr */
	.out = "fc.out",
	.drops_root = fc_jailed,  /* the jailer drops to --jailer-uid/gid itself */
	.raw_image_copies = true, /* virtio-blk on a raw file only (vmm/src/devices/virtio/block) */
	.extra_files = (const char *const[]){ "fc.out", NULL },
	.size = sizeof(FcVm),
	.free = fc_free,
	.observed = fc_observed,
	.prepare = fc_prepare,
	.files = fc_files,
	.exited = fc_exited,
	.release = remove_taps,
	.argv = fc_argv,
	.argv_name = fc_argv_name,
	.build = fc_build,
	.cleanup = fc_cleanup,
};

/*
 * PUT /machine-config takes 1 to 32 vCPUs (tests/sim/specs/firecracker-openapi.yaml); the
 * sandbox file also asks for 1 or an even number, which Firecracker itself asks only with
 * SMT on (vmd turns it off). Firecracker boots a kernel and attaches raw images and taps.
 */
#define FC_VCPUS_MAX 32u

/*
 * Firecracker opens a tap by name, with TUNSETIFF on /dev/net/tun (tap.rs,
 * Tap::open_named()), which a macvtap does not answer: a macvtap is a character device of
 * its own (/dev/tapN), never reached through /dev/net/tun, so Firecracker cannot use one.
 */
static void refuse_macvtap(const SandboxSpec *spec, SpecCheck *check)
{
	char field[64];

	for (size_t i = 0; i < spec->n_networks; i++) {
		if (spec->networks[i].type != NET_MACVTAP)
			continue;
		snprintf(field, sizeof(field), "spec.networks[%zu].type", i);
		spec_check_error(
			check, field,
			"a macvtap network needs the qemu or cloud-hypervisor backend: Firecracker opens its tap by name through /dev/net/tun, which a macvtap is not reached by; use type bridge");
	}
}

static int fc_validate(const SandboxSpec *spec, SpecCheck *check)
{
	char buf[SPEC_CHECK_BACKEND_MAX];

	backend_require_kernel(spec, check);
	backend_refuse_qcow2(spec, check);
	backend_refuse_user_net(spec, check);
	backend_refuse_guest_agent(spec, check);
	refuse_macvtap(spec, check);
	backend_refuse_credentials(spec, check);
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
	/* memory from 1.14 (fc_observed); a disk's path in every version (PATCH /drives/ID) */
	.caps = BACKEND_CAP_PAUSE | BACKEND_CAP_RESIZE | BACKEND_CAP_DISK_PATH | BACKEND_CAP_SUSPEND,
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
	.disk_update = vmm_vm_disk_update,
	.suspend = vmm_vm_suspend,
	.restore = vmm_vm_restore,
	.cleanup = vmm_vm_cleanup,
	.activity = vmm_vm_activity,
};
