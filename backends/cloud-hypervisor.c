/* SPDX-License-Identifier: MIT */
/*
 * The Cloud Hypervisor backend. Each VM is one `cloud-hypervisor --api-socket path=...`
 * process that vmd starts and watches like every VMM (vmm-vm.c) and drives over its REST
 * API through the job machinery (vmm-job.c): vmm.ping answers with the pid vmd started
 * (api-up), vm.create with the config, its NICs up to the first whose device vmd made,
 * and vm.add-net for the rest, in order, the descriptors of vmd's devices attached
 * (configure), vm.boot (boot). Its runtime dir holds vm.json, api.sock, serial.sock (the
 * serial port: mode Socket, which CH binds at vm.create and the daemon connects to, as for
 * QEMU: console.log, vmd console) and ch.log (its stderr).
 *
 * Live changes: pause and resume; disks and NICs (vm.add-disk, vm.add-net,
 * vm.remove-device: removed once the guest ejects it, which vm.info's device_tree shows); vCPUs and
 * memory (vm.resize) within the room fixed at boot: max_vcpus is the host's CPU count (or
 * vcpus, if more), and memory can grow to four times its size (ACPI hotplug, which cannot
 * give memory back). A restarted vmd adopts a VM when the record's identity holds and
 * vmm.ping answers with the same pid.
 *
 * Suspend (state: suspended; cloud-hypervisor-snapshot.c): vm.pause, vm.snapshot into the
 * snapshot dir (CH writes config.json, state.json and memory-ranges there itself,
 * synchronously: the reply is the end of the save), then vm.shutdown and vmm.shutdown.
 * Wake: a CH started as for a boot, vm.restore from the dir (the VM comes back paused, its
 * serial socket bound again), then vm.resume unless it is to stay paused.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>

#include "netdev.h"
#include "provision.h"
#include "spec-json.h"
#include "util.h"
#include "cloud-hypervisor.h"

static const VmmVmType ch_type;

/* The record: the resize room. */

int ch_save(VmmVm *vm, json_t *j)
{
	ChVm *v = (ChVm *)vm;

	if (json_object_set_new(j, "maxVcpus", json_integer(v->max_vcpus)) < 0 ||
	    json_object_set_new(j, "maxMemory", json_integer((json_int_t)v->max_memory)) < 0 ||
	    json_object_set_new(j, "memoryHotAdds", json_integer(v->hot_adds)) < 0)
		return -ENOMEM;
	return 0;
}

int ch_load(VmmVm *vm, const json_t *j)
{
	ChVm *v = (ChVm *)vm;

	v->max_vcpus = (unsigned)json_integer_value(json_object_get(j, "maxVcpus"));
	v->max_memory = (uint64_t)json_integer_value(json_object_get(j, "maxMemory"));
	v->hot_adds = (unsigned)json_integer_value(json_object_get(j, "memoryHotAdds"));
	return 0;
}

/*
 * A Cloud Hypervisor of vmd's has its API socket as --api-socket fd=N (ch_argv) and its
 * stderr in the runtime dir's ch.log; one started by an older vmd names the dir in
 * --api-socket path=....
 */
static int ch_argv_name(const Backend *b, pid_t pid, char *const *argv, char **ret)
{
	bool ours = false;
	int r = vmm_argv_names_dir(b, argv, "--api-socket", "path=", "api.sock", ret);

	if (r != 0)
		return r;
	for (size_t i = 0; argv[i] && argv[i + 1]; i++)
		ours = ours ||
		       (streq(argv[i], "--api-socket") && strncmp(argv[i + 1], "fd=", 3) == 0);
	return ours ? vmm_stderr_names_dir(b, pid, "ch.log", ret) : 0;
}

/* The VM's config, as vm.create takes it */

/*
 * image_type as the file says: CH checks it against what it detects (v51.0 on). A disk
 * from an image is vmd's raw copy of it (raw_image_copies): CH would open a qcow2 overlay's
 * backing file itself, by the path in its header, as the VMM user. backing_files stays off
 * (the default since v51.0: block/src/qcow, BackingFile::new(), MaxNestingDepthExceeded),
 * so a qcow2 with a backing file is refused, as CH trusts its header then
 * (docs/threat-model.md, "Disk Images"). An overlay an earlier vmd made is woken from its
 * snapshot only, whose config CH reads back with backing_files as it was.
 */
static json_t *disk_config_at(const DiskSpec *d, const char *path)
{
	return json_pack("{s:s, s:b, s:s, s:s}", "path", path, "readonly", d->read_only, "id",
			 d->id, "image_type", d->format == DISK_FORMAT_QCOW2 ? "Qcow2" : "Raw");
}

/* A disk hot-added: by its path, which the VMM opens itself. */
static json_t *disk_config(const DiskSpec *d)
{
	return disk_config_at(d, d->path);
}

/* A NIC of a device vmd makes has no tap: CH takes its descriptor instead (fds). */
/*
 * The cloud-init seed (provision.h), read-only raw. Its id has a '_', which no disk's or
 * network's id can have, so it never clashes in Cloud Hypervisor's one set of ids.
 */
static json_t *seed_config(ChVm *v)
{
	_cleanup_free_ char *seed = v->passed.seed
					    ? strdup(v->passed.seed)
					    : vmm_vm_path(v->vm.b, v->vm.name, PROVISION_SEED);

	return seed ? json_pack("{s:s, s:b, s:s, s:s}", "path", seed, "readonly", true, "id",
				CH_SEED_ID, "image_type", "Raw")
		    : NULL;
}

static json_t *net_config(const NetSpec *n)
{
	char mac[18];

	spec_mac_format(n->mac, mac);
	if (ch_vmd_made(n))
		return json_pack("{s:s, s:s}", "mac", mac, "id", n->id);
	return json_pack("{s:s, s:s, s:s}", "tap", n->tap, "mac", mac, "id", n->id);
}

/*
 * The NICs that vm.create takes: those before the first device vmd makes. vm.create takes
 * no descriptor in any release (v52.0 to main, vmm/src/api/http/http_endpoint.rs,
 * VmCreate::handle_request(): attach_fds_to_cfg(vec![], cfg) for every net, which drops
 * what came); the rest are added, in order, before vm.boot (add_nets()).
 */
static size_t nets_at_create(const SandboxSpec *s)
{
	size_t i = 0;

	while (i < s->n_networks && !ch_vmd_made(&s->networks[i]))
		i++;
	return i;
}

/*
 * vm.add-net with the NIC's device attached: the tap (or macvtap) made and opened by vmd,
 * sent as SCM_RIGHTS with the request, which VmAddNet's put_handler() gives to the NetConfig
 * (http_endpoint.rs, attach_fds_to_cfg()). One descriptor: CH's default of 2 queues is one
 * pair, which config.rs, NetConfig::validate() checks against the number of fds.
 */
static int add_net(VmmVm *vm, VmmJob *j, VmmRequests *rq, const NetSpec *n)
{
	char why[256];
	int tap, vhost, r;

	r = vmm_request_add(rq, "PUT", net_config(n), NULL, CH_API "vm.add-net");
	if (r < 0 || !ch_vmd_made(n))
		return r;
	/* No vhost-net: CH's virtio-net is its own (vhost-user only). */
	r = netdev_open(n, vm->dir, false, &tap, &vhost, why, sizeof(why));
	if (r < 0) {
		vmm_job_fail_message(j, "network '%s': %s", n->id, why);
		return r;
	}
	return vmm_request_pass_fd(rq, tap);
}

/* The NICs vm.create did not take, before the boot. */
static int add_nets(VmmVm *vm, VmmJob *j, VmmRequests *rq)
{
	const SandboxSpec *s = vm->config;
	int r = 0;

	for (size_t i = nets_at_create(s); r >= 0 && i < s->n_networks; i++)
		r = add_net(vm, j, rq, &s->networks[i]);
	return r;
}

/* What netdev_open() made that outlives CH (macvtaps): gone. */
static void release_nets(const SandboxSpec *s)
{
	for (size_t i = 0; s && i < s->n_networks; i++)
		(void)netdev_release(&s->networks[i]);
}

static unsigned host_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (unsigned)n : 1;
}

/* Memory can grow to CH_MEMORY_GROWTH times its size, in whole hotplug blocks. */
static uint64_t hotplug_size(uint64_t memory)
{
	uint64_t room = memory * (CH_MEMORY_GROWTH - 1);

	return (room + CH_HOTPLUG_BLOCK - 1) / CH_HOTPLUG_BLOCK * CH_HOTPLUG_BLOCK;
}

static json_t *vm_config(ChVm *v)
{
	const SandboxSpec *s = v->vm.config;
	/*
	 * CH binds and listens on it (serial mode Socket), in its own dir; the daemon keeps it
	 * (console.c), through the runtime dir's serial.sock that points there.
	 */
	_cleanup_free_ char *console = NULL;
	json_t *disks = json_array(), *nets = json_array(), *payload;

	if (v->passed.own)
		set_format(&console, "%s/" CONSOLE_SERIAL, v->passed.own);
	else
		console = vmm_vm_path(v->vm.b, v->vm.name, CONSOLE_SERIAL);
	if (!console || !disks || !nets)
		goto fail;
	for (size_t i = 0; i < s->n_disks; i++)
		if (json_array_append_new(
			    disks, disk_config_at(&s->disks[i],
						  v->passed.disks[i] ?: s->disks[i].path)) < 0)
			goto fail;
	if (s->cloud_init && json_array_append_new(disks, seed_config(v)) < 0)
		goto fail;
	for (size_t i = 0; i < nets_at_create(s); i++)
		if (json_array_append_new(nets, net_config(&s->networks[i])) < 0)
			goto fail;
	payload = json_pack("{s:s}", "kernel", v->passed.kernel ?: s->kernel);
	if (!payload)
		goto fail;
	if (s->initrd)
		json_object_set_new(payload, "initramfs", json_string(v->passed.initrd ?: s->initrd));
	if (s->cmdline)
		json_object_set_new(payload, "cmdline", json_string(s->cmdline));
	return json_pack("{s:{s:i, s:i}, s:{s:I, s:I}, s:o, s:o, s:o, s:{s:s, s:s}, s:{s:s}}",
			 "cpus", "boot_vcpus", (int)s->vcpus, "max_vcpus", (int)v->max_vcpus,
			 "memory", "size", (json_int_t)s->memory, "hotplug_size",
			 (json_int_t)(v->max_memory - s->memory), "payload", payload, "disks",
			 disks, "net", nets, "serial", "mode", "Socket", "socket", console,
			 "console", "mode", "Off");
fail:
	json_decref(disks);
	json_decref(nets);
	return NULL;
}

/* Start */

static void ch_free(VmmVm *vm)
{
	vmm_passed_done(&((ChVm *)vm)->passed);
}

/* CH opens the files of its vm.create itself: rather than files, it has each as an fd. */
static const char *const ch_own_files[] = { CONSOLE_SERIAL, NULL };

/*
 * Before the spawn, what vm.create will name, as fds (vmm-pass.c): the API socket vmd
 * listens on (--api-socket fd=N: v52.0 to main, cloud-hypervisor/src/main.rs,
 * parse_api_socket(); vmm/src/api/http/mod.rs, start_http_fd_thread(), which takes no lock
 * file); its own dir for the serial socket it binds; kernel and initrd as sealed copies
 * (vm.rs, Vm::new(): File::open of the payload's paths, at vm.boot); the disks as vmd
 * opened them (config.rs, DiskConfig: a path, no fd); the seed as a copy. CH, as the VMM
 * user, opens each as /proc/self/fd/N.
 */
static int ch_prepare(VmmVm *vm)
{
	ChVm *v = (ChVm *)vm;

	v->api_fd = vmm_vm_pass_listener(vm, "api.sock", "the API");
	if (v->api_fd < 0)
		return v->api_fd;
	return vmm_vm_pass_boot(vm, ch_own_files, &v->passed);
}

/* The files step: what ch_prepare() passes; a disk added, the VMM user's access to it. */
static int ch_files(VmmVm *vm, VmmJob *j, VmmFiles *f)
{
	if (j->type == BACKEND_OP_DISK_ADD)
		return vmm_vm_want_access(f, &j->disk);
	return IN_SET(j->type, BACKEND_OP_START, BACKEND_OP_RESTORE) ? vmm_vm_want_boot(vm, f) : 0;
}

static int ch_cleanup(Backend *b, const char *name)
{
	return vmm_own_dir_cleanup(b, name, ch_own_files);
}

static int ch_argv(VmmVm *vm, char ***ret)
{
	_cleanup_free_ char *opt = NULL;
	char **argv = NULL;
	ChVm *v = (ChVm *)vm;

	if (!ch_restored_room(v)) {
		v->max_vcpus = MAX(vm->config->vcpus, host_cpus());
		v->max_memory = vm->config->memory + hotplug_size(vm->config->memory);
		v->hot_adds = 0;
	}
	if (asprintf(&opt, "fd=%d", v->api_fd) < 0)
		return -ENOMEM;
	if (strv_extendf(&argv, "%s", VMM_BACKEND(vm->b)->binary) < 0 ||
	    strv_extendf(&argv, "--api-socket") < 0 || strv_extendf(&argv, "%s", opt) < 0) {
		strv_free(argv);
		return -ENOMEM;
	}
	*ret = argv;
	return 0;
}

/* What the replies mean */

/*
 * The release, from vmm.ping: build_version is `git describe` ("v52.0",
 * "v53.0-246-gae44c2971"), version the crate's ("52.0.0"), whose major counts. Starting,
 * a release older than CH_MIN_MAJOR is refused: -EPROTONOSUPPORT.
 */
static int read_version(ChVm *v, VmmJob *j, const json_t *ping)
{
	const char *build = json_string_value(json_object_get(ping, "build_version"));
	const char *version = json_string_value(json_object_get(ping, "version"));
	unsigned major = 0;

	if (!version || sscanf(version, "%u.", &major) != 1)
		if (!build || sscanf(build, "v%u.", &major) != 1)
			major = 0;
	v->major = major;
	if (j->phase == VMM_PHASE_API_UP && major > 0 && major < CH_MIN_MAJOR) {
		vmm_job_fail_message(j, "Cloud Hypervisor %s is too old: vmd needs v%u.0 or later",
				     build ?: version, CH_MIN_MAJOR);
		return -EPROTONOSUPPORT;
	}
	if (!build && !version)
		return 0;
	return vmm_vm_set_version(&v->vm, "cloud-hypervisor %s", build ?: version);
}

/* The API answers, and from the process vmd started (or adopted): -ESTALE if not. */
static int check_ping(VmmVm *v, VmmJob *j, const VmmReply *r)
{
	json_int_t pid = json_integer_value(json_object_get(r->json, "pid"));
	int k;

	if (r->error < 0)
		return r->error;
	if (pid != v->id.pid) {
		vmm_job_fail_message(j, "vmm.ping answers for pid %" PRId64 ", not %d",
				     (int64_t)pid, (int)v->id.pid);
		return -ESTALE;
	}
	k = read_version((ChVm *)v, j, r->json);
	return k < 0 ? k : VMM_NEXT;
}

static const char *vm_state(const VmmReply *r)
{
	return json_string_value(json_object_get(r->json, "state"));
}

/*
 * "VM is not created": 404 from v53.0 on; v52.0 answers every API error with 500
 * (http_endpoint.rs, VmInfo), the cause in its words.
 */
static bool not_created(const ChVm *v, const VmmReply *r)
{
	if (r->error == -ENOENT)
		return true;
	return v->major < 53 && r->error == -EREMOTEIO && r->message &&
	       strstr(r->message, "VM is not created");
}

/*
 * Before vm.create: a vmd that died half-way may have left the VM created or booted; not
 * created is what a fresh VMM says. Any other error fails the start.
 */
static int check_created(VmmVm *v, VmmJob *j _unused_, const VmmReply *r)
{
	const char *s = vm_state(r);

	if (r->error < 0)
		return not_created((ChVm *)v, r) ? VMM_NEXT : r->error;
	if (streq_ptr(s, "Created"))
		return VMM_SKIP;
	if (streq_ptr(s, "Paused"))
		v->state = VM_PAUSED;
	return VMM_FINISH; /* booted already */
}

/* vm.info's memory: size plus what was hot-plugged; false if that is no size in bytes. */
static bool memory_size(const json_t *mem, uint64_t *ret)
{
	const json_t *size = json_object_get(mem, "size");
	json_int_t hot = json_integer_value(json_object_get(mem, "hotplugged_size")), sum;

	/* A VMM's words, not vmd's: negative, or a sum past 64 bits, is left alone. */
	if (!json_is_integer(size) || json_integer_value(size) <= 0 || hot < 0 ||
	    __builtin_add_overflow(json_integer_value(size), hot, &sum))
		return false;
	*ret = (uint64_t)sum;
	return true;
}

/* The VM's config as vm.info shows it: devices gone from it are gone; its size. */
static int observed_config(ChVm *v, const json_t *i, SandboxSpec **ret)
{
	const json_t *c = json_object_get(i, "config"), *mem = json_object_get(c, "memory");
	const json_t *boot_vcpus = json_object_get(json_object_get(c, "cpus"), "boot_vcpus");
	SandboxSpec *s = NULL;
	int r;

	r = vmm_vm_config_seen(v->vm.config, json_object_get(c, "disks"), "id",
			       json_object_get(c, "net"), "id", &s);
	if (r < 0)
		return r;
	if (json_is_integer(boot_vcpus))
		s->vcpus = (unsigned)json_integer_value(boot_vcpus);
	(void)memory_size(mem, &s->memory);
	*ret = s;
	return 0;
}

/* What runs, from vm.info: paused or resumed behind vmd's back, devices, size; shut down. */
static int observe_info(VmmVm *vm, VmmJob *j _unused_, const VmmReply *r)
{
	_cleanup_(sandbox_spec_freep) SandboxSpec *seen = NULL;
	const char *s = vm_state(r);
	VmState state = vm->state;
	int k;

	if (r->error < 0)
		return r->error;
	if (streq_ptr(s, "Paused"))
		state = VM_PAUSED;
	else if (streq_ptr(s, "Running"))
		state = VM_RUNNING;
	else
		vm->guest_shutdown =
			true; /* Shutdown (vm.shutdown from elsewhere), or never booted */
	k = observed_config((ChVm *)vm, r->json, &seen);
	if (k < 0)
		return k;
	if (state != vm->state || !spec_equal(seen, vm->config)) {
		vm->state = state;
		sandbox_spec_free(vm->config);
		vm->config = TAKE_PTR(seen);
		(void)vmm_vm_save(vm);
		vmm_vm_changed(vm);
	}
	return VMM_NEXT;
}

/*
 * A removal is done when the guest has ejected the device: CH drops it from vm.info's
 * config as soon as it takes vm.remove-device, but from its device_tree (an object keyed
 * by id) only on the guest's eject, and until then refuses a new device of that id.
 */
static int check_released(VmmVm *vm _unused_, VmmJob *j, const VmmReply *r)
{
	const json_t *tree = json_object_get(r->json, "device_tree");

	if (r->error < 0 || !json_is_object(tree))
		return VMM_NEXT; /* asked again at the next poll */
	return json_object_get(tree, j->device) ? VMM_NEXT : VMM_SKIP;
}

/*
 * A resize taken: a growth of memory was one ACPI hot-add (memory_manager.rs,
 * hotplug_ram_region()), of CH_HOTPLUG_COUNT a boot. 429 is a vCPU removal the guest has
 * not acked yet: -EBUSY, which the daemon tries again later.
 */
static int check_resized(VmmVm *vm, VmmJob *j, const VmmReply *r)
{
	ChVm *v = (ChVm *)vm;

	if (r->error < 0)
		return r->error;
	if (vm->config && j->memory > vm->config->memory)
		v->hot_adds++;
	return VMM_NEXT;
}

static int get(VmmRequests *rq, const char *op, int (*reply)(VmmVm *, VmmJob *, const VmmReply *))
{
	return vmm_request_add(rq, "GET", NULL, reply, CH_API "%s", op);
}

/*
 * vm.add-disk takes a path only (DiskConfig), which CH opens itself, as the VMM user: one
 * it may not open was refused in the job's files phase (ch_files), with what to do, before
 * CH is asked.
 */
static int add_disk(VmmJob *j, VmmRequests *rq)
{
	return ch_put(rq, "vm.add-disk", disk_config(&j->disk));
}

static int build_request(VmmJob *j, VmmRequests *rq)
{
	switch (j->type) {
	case BACKEND_OP_PAUSE:
		return ch_put(rq, "vm.pause", NULL);
	case BACKEND_OP_RESUME:
		return ch_put(rq, "vm.resume", NULL);
	case BACKEND_OP_DISK_ADD:
		return add_disk(j, rq);
	case BACKEND_OP_NET_ADD:
		return add_net(j->vm, j, rq, &j->net);
	case BACKEND_OP_DISK_REMOVE:
	case BACKEND_OP_NET_REMOVE:
		return ch_put(rq, "vm.remove-device", json_pack("{s:s}", "id", j->device));
	case BACKEND_OP_RESIZE:
		return vmm_request_add(rq, "PUT",
				       json_pack("{s:i, s:I}", "desired_vcpus", (int)j->vcpus,
						 "desired_ram", (json_int_t)j->memory),
				       check_resized, CH_API "vm.resize");
	default:
		return -EOPNOTSUPP;
	}
}

static int ch_build(VmmVm *vm, VmmJob *j, VmmRequests *rq)
{
	ChVm *v = (ChVm *)vm;
	json_t *config;
	int r = 0;

	if (IN_SET(j->phase, VMM_PHASE_FREEZE, VMM_PHASE_SAVE, VMM_PHASE_THAW, VMM_PHASE_LOAD) ||
	    (j->type == BACKEND_OP_RESTORE && j->phase == VMM_PHASE_BOOT))
		return ch_build_snapshot(vm, j, rq);
	switch (j->phase) {
	case VMM_PHASE_API_UP:
	case VMM_PHASE_HANDSHAKE:
		return get(rq, "vmm.ping", check_ping);
	case VMM_PHASE_CONFIGURE:
		r = vmm_vm_refuse_fresh_boot(vm, j);
		if (r < 0)
			return r;
		config = vm_config(v);
		if (!config)
			return -ENOMEM;
		r = get(rq, "vm.info", check_created);
		if (r < 0) {
			json_decref(config);
			return r;
		}
		r = ch_put(rq, "vm.create", config);
		return r < 0 ? r : add_nets(vm, j, rq);
	case VMM_PHASE_BOOT:
		/*
		 * vm.create bound the serial socket: vmd is its client before the guest runs.
		 * Up to v52.0 CH drops what the guest prints while nobody is connected.
		 */
		console_connect_now(vm->console);
		return ch_put(rq, "vm.boot", NULL);
	case VMM_PHASE_OBSERVE:
		return get(rq, "vm.info", observe_info);
	case VMM_PHASE_GRACEFUL:
		/*
		 * A paused guest cannot hear the button: it runs again first. The button works on
		 * every architecture CH runs on (device_manager.rs, notify_power_button(): ACPI
		 * GED on x86_64, a GPIO key and GED on aarch64), unlike Firecracker's
		 * SendCtrlAltDel.
		 */
		if (j->was_paused)
			r = ch_put(rq, "vm.resume", NULL);
		return r < 0 ? r : ch_put(rq, "vm.power-button", NULL);
	case VMM_PHASE_QUIT:
		/* The VM down, and the VMM with it. */
		r = ch_put(rq, "vm.shutdown", NULL);
		return r < 0 ? r : ch_put(rq, "vmm.shutdown", NULL);
	case VMM_PHASE_REQUEST:
		return build_request(j, rq);
	case VMM_PHASE_RELEASE:
		rq->poll_usec = CH_REMOVE_POLL_USEC;
		return get(rq, "vm.info", check_released);
	case VMM_PHASE_CLEANUP:
	case VMM_PHASE_ROLLBACK:
		/*
		 * A macvtap made for a NIC that is gone, or never came; a bridge's tap went
		 * with CH's descriptor.
		 */
		if (IN_SET(j->type, BACKEND_OP_NET_ADD, BACKEND_OP_NET_REMOVE))
			(void)netdev_release(&j->net);
		return 0;
	default:
		return 0;
	}
}

static void ch_exited(VmmVm *vm)
{
	release_nets(vm->config);
}

/* Observe: the resize room, as created. */
static void ch_observed(const VmmVm *vm, VmObserved *o)
{
	const ChVm *v = (const ChVm *)vm;

	o->max_vcpus = v->max_vcpus;
	o->min_memory = vm->config ? vm->config->memory : 0;
	o->max_memory = v->max_memory;
	o->memory_step = CH_HOTPLUG_BLOCK;
	o->memory_grows_left = v->hot_adds < CH_HOTPLUG_COUNT ? CH_HOTPLUG_COUNT - v->hot_adds : 0;
}

static int ch_init(Backend *b)
{
	return vmm_backend_init(b, &ch_type, b->options.cloud_hypervisor_binary, "cloud-hypervisor");
}

static const VmmVmType ch_type = {
	.vmm = "cloud-hypervisor",
	.display = "Cloud Hypervisor",
	.api = VMM_API_REST,
	.socket = "api.sock",
	.log = "ch.log",
	/* v53.0 on, CH flocks "api.sock.lock" beside its socket and leaves it at exit. */
	.extra_files = (const char *const[]){ "api.sock.lock", NULL },
	.serial_vmm_socket = true,
	.raw_image_copies = true, /* an overlay's backing file it opens by path: disk_config_at() */
	.size = sizeof(ChVm),
	.free = ch_free,
	.save = ch_save,
	.load = ch_load,
	.prepare = ch_prepare,
	.files = ch_files,
	.cleanup = ch_cleanup,
	.argv = ch_argv,
	.argv_name = ch_argv_name,
	.build = ch_build,
	.observed = ch_observed,
	.exited = ch_exited,
};

/*
 * Disks and NICs share one set of ids in Cloud Hypervisor (config.rs, VmConfig::validate():
 * IdentifierNotUnique), where vmd's loader needs them unique only per list.
 */
static void refuse_shared_ids(const SandboxSpec *spec, SpecCheck *check)
{
	char field[64];

	for (size_t i = 0; i < spec->n_networks; i++) {
		if (!spec_find_disk(spec, spec->networks[i].id))
			continue;
		snprintf(field, sizeof(field), "spec.networks[%zu].id", i);
		spec_check_error(
			check, field,
			"network id '%s' is a disk's id too: Cloud Hypervisor takes one id per device, disks and networks together",
			spec->networks[i].id);
	}
}

/*
 * Cloud Hypervisor boots a kernel (payload), opens raw and qcow2 images (image_type, v51.0
 * on) and attaches tap devices: an existing one by name, a tap or macvtap vmd makes by
 * descriptor.
 */
static int ch_validate(const SandboxSpec *spec, SpecCheck *check)
{
	backend_require_kernel(spec, check);
	backend_refuse_user_net(spec, check);
	backend_refuse_guest_agent(spec, check);
	refuse_shared_ids(spec, check);
	ch_refuse_suspended_fd_nets(spec, check);
	backend_refuse_credentials(spec, check);
	return spec_check_result(check);
}

const BackendOps backend_cloud_hypervisor_ops = {
	.name = "cloud-hypervisor",
	.takes_host_resources = true,
	.caps = BACKEND_CAP_PAUSE | BACKEND_CAP_DISK_HOTPLUG | BACKEND_CAP_NET_HOTPLUG |
		BACKEND_CAP_RESIZE | BACKEND_CAP_SUSPEND,
	.data_size = sizeof(VmmBackend),
	.validate = ch_validate,
	.init = ch_init,
	.done = vmm_backend_done,
	.observe = vmm_vm_observe,
	.list = vmm_vm_list,
	.adopt = vmm_vm_adopt,
	.refresh = vmm_vm_refresh,
	.reload = vmm_backend_reload,
	.start = vmm_vm_start,
	.stop = vmm_vm_stop,
	.pause = vmm_vm_pause,
	.resume = vmm_vm_resume,
	.disk_add = vmm_vm_disk_add,
	.disk_remove = vmm_vm_disk_remove,
	.net_add = vmm_vm_net_add,
	.net_remove = vmm_vm_net_remove,
	.resize = vmm_vm_resize,
	.suspend = vmm_vm_suspend,
	.restore = vmm_vm_restore,
	.cleanup = vmm_vm_cleanup,
	.activity = vmm_vm_activity,
};
