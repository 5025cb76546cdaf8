/* SPDX-License-Identifier: MIT */
/*
 * The Cloud Hypervisor backend. Each VM is one `cloud-hypervisor --api-socket path=...`
 * process that vmd starts and watches like every VMM (vmm-vm.c) and drives over its REST
 * API (http-unix.c): vm.create with the whole config, then vm.boot. Its runtime dir holds
 * vm.json, api.sock, console.log (the serial port, a file) and ch.log (its stderr).
 *
 * Live changes: pause and resume; disks and NICs (vm.add-disk, vm.add-net,
 * vm.remove-device: removed once the guest ejects it, which vm.info shows); vCPUs and
 * memory (vm.resize) within the room fixed at boot: max_vcpus is the host's CPU count (or
 * vcpus, if more), and memory can grow to four times its size (ACPI hotplug, which cannot
 * give memory back). A restarted vmd adopts a VM when the record's identity holds and
 * vmm.ping answers with the same pid.
 */
#include <inttypes.h>
#include <stdio.h>

#include "log.h"
#include "spec-json.h"
#include "util.h"
#include "vmm-vm.h"

#define CH_API "/api/v1/"
#define CH_CALL_TIMEOUT_USEC (5ull * 1000000)
#define CH_PING_TIMEOUT_USEC (1ull * 1000000)
#define CH_INFO_TIMEOUT_USEC (1ull * 1000000)
#define CH_REMOVE_POLL_USEC (50ull * 1000)
#define CH_REMOVE_TIMEOUT_USEC (30ull * 1000000) /* vm.remove-device to gone from vm.info */
#define CH_HOTPLUG_BLOCK (128ull << 20)		 /* memory hotplug_size granularity */
#define CH_MEMORY_GROWTH 4

typedef struct ChVm {
	VmmVm vm; /* first */
	Http *http;
	unsigned max_vcpus; /* as created */
	uint64_t max_memory;
	char **removing;	  /* ids asked to go, still in vm.info */
	uint64_t remove_deadline; /* CLOCK_MONOTONIC */
	bool remove_timed_out;
	sd_event_source *remove_timer;
} ChVm;

static const VmmVmType ch_type;

static ChVm *ch_vm_get(Backend *b, const char *name)
{
	return (ChVm *)vmm_vm_get(b, name);
}

static void ch_vm_free(VmmVm *vm)
{
	ChVm *v = (ChVm *)vm;

	sd_event_source_disable_unref(v->remove_timer);
	http_free(v->http);
	strv_free(v->removing);
}

static void ch_vm_exited(VmmVm *vm)
{
	ChVm *v = (ChVm *)vm;

	v->remove_timer = sd_event_source_disable_unref(v->remove_timer);
	v->http = http_free(v->http);
	v->removing = strv_free(v->removing);
	v->remove_timed_out = false;
}

static int ch_call(ChVm *v, const char *method, const char *op, json_t *body, json_t **ret)
{
	_cleanup_free_ char *path = NULL;

	if (asprintf(&path, CH_API "%s", op) < 0)
		return -ENOMEM;
	return vmm_vm_rest(&v->vm, &v->http, method, path, body, CH_CALL_TIMEOUT_USEC, ret);
}

/* The record: the resize room. */

static int ch_save(VmmVm *vm, json_t *j)
{
	ChVm *v = (ChVm *)vm;

	if (json_object_set_new(j, "maxVcpus", json_integer(v->max_vcpus)) < 0 ||
	    json_object_set_new(j, "maxMemory", json_integer((json_int_t)v->max_memory)) < 0)
		return -ENOMEM;
	return 0;
}

static int ch_load(VmmVm *vm, const json_t *j)
{
	ChVm *v = (ChVm *)vm;

	v->max_vcpus = (unsigned)json_integer_value(json_object_get(j, "maxVcpus"));
	v->max_memory = (uint64_t)json_integer_value(json_object_get(j, "maxMemory"));
	return 0;
}

/* The VM's config, as vm.create takes it */

static json_t *disk_config(const DiskSpec *d)
{
	return json_pack("{s:s, s:b, s:s, s:s}", "path", d->path, "readonly", d->read_only, "id",
			 d->id, "image_type", "Raw");
}

static json_t *net_config(const NetSpec *n)
{
	char mac[18];

	spec_mac_format(n->mac, mac);
	return json_pack("{s:s, s:s, s:s}", "tap", n->tap, "mac", mac, "id", n->id);
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
	_cleanup_free_ char *console = vmm_vm_path(v->vm.b, v->vm.name, "console.log");
	json_t *disks = json_array(), *nets = json_array(), *payload;

	if (!console || !disks || !nets)
		goto fail;
	for (size_t i = 0; i < s->n_disks; i++)
		if (json_array_append_new(disks, disk_config(&s->disks[i])) < 0)
			goto fail;
	for (size_t i = 0; i < s->n_networks; i++)
		if (json_array_append_new(nets, net_config(&s->networks[i])) < 0)
			goto fail;
	payload = json_pack("{s:s}", "kernel", s->kernel);
	if (!payload)
		goto fail;
	if (s->initrd)
		json_object_set_new(payload, "initramfs", json_string(s->initrd));
	if (s->cmdline)
		json_object_set_new(payload, "cmdline", json_string(s->cmdline));
	return json_pack("{s:{s:i, s:i}, s:{s:I, s:I}, s:o, s:o, s:o, s:{s:s, s:s}, s:{s:s}}",
			 "cpus", "boot_vcpus", (int)s->vcpus, "max_vcpus", (int)v->max_vcpus,
			 "memory", "size", (json_int_t)s->memory, "hotplug_size",
			 (json_int_t)(v->max_memory - s->memory), "payload", payload, "disks",
			 disks, "net", nets, "serial", "mode", "File", "file", console, "console",
			 "mode", "Off");
fail:
	json_decref(disks);
	json_decref(nets);
	return NULL;
}

/* Start */

static int ch_argv(VmmVm *vm, char ***ret)
{
	_cleanup_free_ char *sock = vmm_vm_path(vm->b, vm->name, "api.sock"), *opt = NULL;
	char **argv = NULL;
	ChVm *v = (ChVm *)vm;

	v->max_vcpus = MAX(vm->config->vcpus, host_cpus());
	v->max_memory = vm->config->memory + hotplug_size(vm->config->memory);
	if (!sock || asprintf(&opt, "path=%s", sock) < 0)
		return -ENOMEM;
	if (strv_extendf(&argv, "%s", VMM_BACKEND(vm->b)->binary) < 0 ||
	    strv_extendf(&argv, "--api-socket") < 0 || strv_extendf(&argv, "%s", opt) < 0) {
		strv_free(argv);
		return -ENOMEM;
	}
	*ret = argv;
	return 0;
}

/* Whether the API answers, and from the process vmd started (or adopted). */
static int ping(ChVm *v, uint64_t timeout_usec)
{
	_cleanup_(json_decrefp) json_t *pong = NULL;
	json_int_t pid;
	int r;

	r = vmm_vm_rest(&v->vm, &v->http, "GET", CH_API "vmm.ping", NULL, timeout_usec, &pong);
	if (r < 0)
		return r;
	pid = json_integer_value(json_object_get(pong, "pid"));
	if (pid != v->vm.id.pid) {
		backend_set_error(v->vm.b, "vmm.ping answers for pid %" PRId64 ", not %d",
				  (int64_t)pid, (int)v->vm.id.pid);
		return -ESTALE;
	}
	return 0;
}

/* What vm.info says: its state, as a VmState; -ENOENT if no VM is created. */
static int info(ChVm *v, json_t **ret)
{
	return vmm_vm_rest(&v->vm, &v->http, "GET", CH_API "vm.info", NULL, CH_INFO_TIMEOUT_USEC,
			   ret);
}

static VmState state_of(const json_t *info, VmState was)
{
	const char *s = json_string_value(json_object_get(info, "state"));

	if (streq_ptr(s, "Paused"))
		return was == VM_STOPPING ? VM_STOPPING : VM_PAUSED;
	if (streq_ptr(s, "Running"))
		return was == VM_STOPPING ? VM_STOPPING : VM_RUNNING;
	return VM_STOPPING; /* Shutdown, Created: on its way out (or never booted) */
}

/*
 * Poll a starting VM: once the API answers, create and boot it. A vmd that died half-way
 * left it created or booted: vm.info says which, and the start goes on from there.
 */
static int ch_poll_start(VmmVm *vm)
{
	ChVm *v = (ChVm *)vm;
	_cleanup_(json_decrefp) json_t *i = NULL, *config = NULL;
	const char *state = NULL;
	int r;

	r = ping(v, CH_PING_TIMEOUT_USEC);
	if (IN_SET(-r, ENOENT, ECONNREFUSED)) {
		free(backend_take_error(vm->b));
		return 0; /* not listening yet */
	}
	if (r >= 0) {
		r = info(v, &i);
		if (r == -ENOENT) {
			config = vm_config(v);
			r = config ? ch_call(v, "PUT", "vm.create", config, NULL) : -ENOMEM;
			state = "Created";
		} else
			state = json_string_value(json_object_get(i, "state"));
	}
	if (r >= 0 && streq_ptr(state, "Created"))
		r = ch_call(v, "PUT", "vm.boot", NULL, NULL);
	if (r < 0) {
		free(vm->start_failure);
		vm->start_failure = backend_take_error(vm->b);
		return r;
	}
	vm->state = VM_RUNNING;
	return 1;
}

/* Adopt */

static int ch_reconnect(VmmVm *vm)
{
	ChVm *v = (ChVm *)vm;
	_cleanup_(json_decrefp) json_t *i = NULL;
	int r;

	r = ping(v, CH_PING_TIMEOUT_USEC);
	if (r < 0)
		return r;
	r = info(v, &i);
	if (r < 0)
		return r;
	vm->state = state_of(i, vm->state);
	return 0;
}

/* Observe: devices and size from vm.info, the rest from what vmd started. */

/* The VM's config as vm.info shows it: devices gone from it are gone. */
static int observed_config(ChVm *v, const json_t *i, SandboxSpec **ret)
{
	const json_t *c = json_object_get(i, "config"), *mem = json_object_get(c, "memory");
	SandboxSpec *s = NULL;
	int r;

	r = vmm_vm_config_seen(v->vm.config, json_object_get(c, "disks"), "id",
			       json_object_get(c, "net"), "id", &s);
	if (r < 0)
		return r;
	if (json_is_integer(json_object_get(json_object_get(c, "cpus"), "boot_vcpus")))
		s->vcpus = (unsigned)json_integer_value(
			json_object_get(json_object_get(c, "cpus"), "boot_vcpus"));
	if (json_is_integer(json_object_get(mem, "size")))
		s->memory = (uint64_t)(json_integer_value(json_object_get(mem, "size")) +
				       json_integer_value(json_object_get(mem, "hotplugged_size")));
	*ret = s;
	return 0;
}

static char *progress(const ChVm *v)
{
	_cleanup_free_ char *ids = NULL;
	char *m = NULL;

	if (!v->removing)
		return NULL;
	for (char **id = v->removing; *id; id++) {
		char *n = NULL;

		if (asprintf(&n, "%s%s'%s'", ids ?: "", ids ? ", " : "", *id) < 0)
			return NULL;
		free(ids);
		ids = n;
	}
	if (v->remove_timed_out)
		return asprintf(&m, "the guest did not release %s within %llu s", ids,
				CH_REMOVE_TIMEOUT_USEC / 1000000) < 0
			       ? NULL
			       : m;
	return asprintf(&m, "removing %s: waiting for the guest to release it", ids) < 0 ? NULL : m;
}

static int ch_observe(Backend *b, const char *name, VmObserved *ret)
{
	ChVm *v = ch_vm_get(b, name);
	_cleanup_(json_decrefp) json_t *i = NULL;
	VmObserved o = {};
	int r;

	r = vmm_vm_observe(b, name, &o);
	if (r < 0 || !v) {
		*ret = o;
		return r;
	}
	o.max_vcpus = v->max_vcpus;
	o.min_memory = v->vm.config ? v->vm.config->memory : 0;
	o.max_memory = v->max_memory;
	o.busy = v->removing && !v->remove_timed_out;
	o.progress = progress(v);
	if (IN_SET(v->vm.state, VM_RUNNING, VM_PAUSED) && info(v, &i) >= 0) {
		VmState s = state_of(i, v->vm.state);

		if (s == VM_STOPPING) {
			/*
			 * The VM shut down (vm.shutdown from elsewhere) and its VMM lingers:
			 * end it, and the exit takes the usual way (restartPolicy).
			 */
			(void)vmm_vm_stop(b, name, 0, true);
			o.state = v->vm.state;
		} else if (s != v->vm.state) {
			/* Paused or resumed behind vmd's back. */
			v->vm.state = o.state = s;
			(void)vmm_vm_save(&v->vm);
		}
		r = observed_config(v, i, &o.config);
	} else {
		free(backend_take_error(b)); /* the record says what vmd last knew */
		r = v->vm.config ? spec_copy(v->vm.config, &o.config) : 0;
	}
	if (r < 0) {
		vm_observed_done(&o);
		return r;
	}
	*ret = o;
	return 0;
}

/* Commands on a running VM */

static int for_command(Backend *b, const char *name, ChVm **ret)
{
	ChVm *v = ch_vm_get(b, name);

	if (!v || IN_SET(v->vm.state, VM_EXITED, VM_STARTING))
		return -ESRCH;
	*ret = v;
	return 0;
}

static int ch_set_paused(VmmVm *vm, bool paused)
{
	return ch_call((ChVm *)vm, "PUT", paused ? "vm.pause" : "vm.resume", NULL, NULL);
}

static int ch_power_button(VmmVm *vm)
{
	return ch_call((ChVm *)vm, "PUT", "vm.power-button", NULL, NULL);
}

/* Shut the VM down and the VMM with it. */
static int ch_quit(VmmVm *vm)
{
	(void)ch_call((ChVm *)vm, "PUT", "vm.shutdown", NULL, NULL);
	return ch_call((ChVm *)vm, "PUT", "vmm.shutdown", NULL, NULL);
}

/* Hot-add a disk or a NIC; the config vmd records follows. */
static int add_device(Backend *b, const char *name, const char *op, json_t *body, const DiskSpec *d,
		      const NetSpec *n, uint64_t generation)
{
	ChVm *v = ch_vm_get(b, name);
	int r;

	if (!v || IN_SET(v->vm.state, VM_EXITED, VM_STARTING))
		return -ESRCH;
	if (!body)
		return -ENOMEM;
	r = ch_call(v, "PUT", op, body, NULL);
	if (r < 0)
		return r;
	r = d ? spec_add_disk(v->vm.config, d) : spec_add_net(v->vm.config, n);
	if (r < 0 && r != -EEXIST)
		return r;
	v->vm.generation = generation;
	return vmm_vm_save(&v->vm);
}

static int ch_disk_add(Backend *b, const char *name, const DiskSpec *d, uint64_t generation)
{
	_cleanup_(json_decrefp) json_t *body = disk_config(d);

	return add_device(b, name, "vm.add-disk", body, d, NULL, generation);
}

static int ch_net_add(Backend *b, const char *name, const NetSpec *n, uint64_t generation)
{
	_cleanup_(json_decrefp) json_t *body = net_config(n);

	return add_device(b, name, "vm.add-net", body, NULL, n, generation);
}

/* Removals: done when vm.info no longer lists the device. */

static int remove_timer_fired(sd_event_source *s, uint64_t usec, void *userdata);

static int arm_remove_timer(ChVm *v)
{
	v->remove_timer = sd_event_source_disable_unref(v->remove_timer);
	return sd_event_add_time_relative(v->vm.b->event, &v->remove_timer, CLOCK_MONOTONIC,
					  CH_REMOVE_POLL_USEC, 10000, remove_timer_fired, v);
}

static int remove_timer_fired(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	ChVm *v = userdata;
	_cleanup_(json_decrefp) json_t *i = NULL;
	_cleanup_(sandbox_spec_freep) SandboxSpec *seen = NULL;
	bool changed = false;
	size_t k = 0;

	v->remove_timer = sd_event_source_disable_unref(v->remove_timer);
	if (!v->removing || info(v, &i) < 0 || observed_config(v, i, &seen) < 0) {
		free(backend_take_error(v->vm.b));
		return v->removing ? arm_remove_timer(v) : 0;
	}
	for (size_t n = 0; v->removing[n]; n++) {
		char *id = v->removing[n];

		if (spec_find_disk(seen, id) || spec_find_net(seen, id)) {
			v->removing[k++] = id;
			continue;
		}
		(void)spec_remove_disk(v->vm.config, id);
		(void)spec_remove_net(v->vm.config, id);
		free(id);
		changed = true;
	}
	v->removing[k] = NULL;
	if (k == 0)
		v->removing = strv_free(v->removing);
	if (changed)
		(void)vmm_vm_save(&v->vm);
	if (v->removing && !v->remove_timed_out && now_usec(CLOCK_MONOTONIC) >= v->remove_deadline) {
		v->remove_timed_out = true; /* reported; the planner asks again */
		changed = true;
	}
	if (changed)
		vmm_vm_changed(&v->vm);
	return v->removing ? arm_remove_timer(v) : 0;
}

static int remove_device(Backend *b, const char *name, const char *id, uint64_t generation)
{
	_cleanup_(json_decrefp) json_t *body = json_pack("{s:s}", "id", id);
	ChVm *v;
	int r;

	r = for_command(b, name, &v);
	if (r < 0)
		return r;
	if (!body)
		return -ENOMEM;
	r = ch_call(v, "PUT", "vm.remove-device", body, NULL);
	if (r < 0)
		return r;
	v->vm.generation = generation;
	if (!strv_contains(v->removing, id) && strv_extendf(&v->removing, "%s", id) < 0)
		return -ENOMEM;
	v->remove_timed_out = false;
	v->remove_deadline = now_usec(CLOCK_MONOTONIC) + CH_REMOVE_TIMEOUT_USEC;
	r = arm_remove_timer(v);
	if (r < 0)
		return r;
	(void)vmm_vm_save(&v->vm);
	return 1; /* the guest has to let go first */
}

static int ch_disk_remove(Backend *b, const char *name, const char *id, uint64_t generation)
{
	return remove_device(b, name, id, generation);
}

static int ch_net_remove(Backend *b, const char *name, const char *id, uint64_t generation)
{
	return remove_device(b, name, id, generation);
}

static int ch_resize(Backend *b, const char *name, unsigned vcpus, uint64_t memory,
		     uint64_t generation)
{
	_cleanup_(json_decrefp) json_t *body = json_pack("{s:i, s:I}", "desired_vcpus", (int)vcpus,
							 "desired_ram", (json_int_t)memory);
	ChVm *v;
	int r;

	r = for_command(b, name, &v);
	if (r < 0)
		return r;
	if (!body)
		return -ENOMEM;
	r = ch_call(v, "PUT", "vm.resize", body, NULL);
	if (r < 0)
		return r;
	v->vm.config->vcpus = vcpus;
	v->vm.config->memory = memory;
	v->vm.generation = generation;
	return vmm_vm_save(&v->vm);
}

static int ch_init(Backend *b)
{
	return vmm_backend_init(b, &ch_type, b->options.cloud_hypervisor_binary, "cloud-hypervisor");
}

static const VmmVmType ch_type = {
	.vmm = "cloud-hypervisor",
	.display = "Cloud Hypervisor",
	.socket = "api.sock",
	.log = "ch.log",
	.size = sizeof(ChVm),
	.free = ch_vm_free,
	.save = ch_save,
	.load = ch_load,
	.argv = ch_argv,
	.poll_start = ch_poll_start,
	.reconnect = ch_reconnect,
	.exited = ch_vm_exited,
	.set_paused = ch_set_paused,
	.power_button = ch_power_button,
	.quit = ch_quit,
};

/* Cloud Hypervisor boots a kernel (payload), opens raw images and attaches tap devices. */
static int ch_validate(const SandboxSpec *spec, SpecCheck *check)
{
	backend_require_kernel(spec, check);
	backend_refuse_qcow2(spec, check);
	backend_refuse_user_net(spec, check);
	return spec_check_result(check);
}

const BackendOps backend_cloud_hypervisor_ops = {
	.name = "cloud-hypervisor",
	.caps = BACKEND_CAP_PAUSE | BACKEND_CAP_DISK_HOTPLUG | BACKEND_CAP_NET_HOTPLUG |
		BACKEND_CAP_RESIZE,
	.data_size = sizeof(VmmBackend),
	.validate = ch_validate,
	.init = ch_init,
	.done = vmm_backend_done,
	.observe = ch_observe,
	.list = vmm_vm_list,
	.adopt = vmm_vm_adopt,
	.start = vmm_vm_start,
	.stop = vmm_vm_stop,
	.pause = vmm_vm_pause,
	.resume = vmm_vm_resume,
	.disk_add = ch_disk_add,
	.disk_remove = ch_disk_remove,
	.net_add = ch_net_add,
	.net_remove = ch_net_remove,
	.resize = ch_resize,
	.cleanup = vmm_vm_cleanup,
};
