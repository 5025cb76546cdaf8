/* SPDX-License-Identifier: MIT */
/*
 * The Firecracker backend. Each VM is one `firecracker --api-sock ... --id NAME` process
 * that vmd starts and watches like every VMM (vmm-vm.c) and configures over its REST API
 * (http-unix.c) before InstanceStart: serial to console.log, boot source, machine config,
 * drives, network interfaces. Its runtime dir holds vm.json, api.sock, console.log and
 * fc.log (its stderr). Firecracker refuses an existing socket path: a stale one (nobody
 * listening) is removed first, inside the run dir only.
 *
 * Live changes: pause and resume only. Firecracker cannot hot-plug devices or change
 * vCPUs or memory of a running microVM, so its capabilities say so and the planner
 * restarts it or reports RestartRequired, per updatePolicy. Graceful stop is
 * SendCtrlAltDel (the guest reboots, and Firecracker exits); there is no API to quit, so
 * a forced stop is SIGKILL. A restarted vmd adopts a VM when the record's identity holds
 * and GET / answers with the sandbox's name as the instance id.
 */
#include <inttypes.h>
#include <stdio.h>

#include "log.h"
#include "spec-json.h"
#include "util.h"
#include "vmm-vm.h"

#define FC_CALL_TIMEOUT_USEC (5ull * 1000000)
#define FC_PING_TIMEOUT_USEC (1ull * 1000000)

typedef struct FcVm {
	VmmVm vm; /* first */
	Http *http;
} FcVm;

static const VmmVmType fc_type;

static void fc_vm_free(VmmVm *vm)
{
	http_free(((FcVm *)vm)->http);
}

static void fc_vm_exited(VmmVm *vm)
{
	FcVm *v = (FcVm *)vm;

	v->http = http_free(v->http);
}

static int fc_call(FcVm *v, const char *method, const char *path, json_t *body, json_t **ret)
{
	return vmm_vm_rest(&v->vm, &v->http, method, path, body, FC_CALL_TIMEOUT_USEC, ret);
}

/* method (PUT, PATCH) on path with body, which this function consumes. */
static int fc_send(FcVm *v, const char *method, const char *path, json_t *body)
{
	_cleanup_(json_decrefp) json_t *b = body;

	return b ? fc_call(v, method, path, b, NULL) : -ENOMEM;
}

static int fc_put(FcVm *v, const char *path, json_t *body)
{
	return fc_send(v, "PUT", path, body);
}

static int fc_argv(VmmVm *vm, char ***ret)
{
	_cleanup_free_ char *sock = vmm_vm_path(vm->b, vm->name, "api.sock");
	char **argv = NULL;

	if (!sock)
		return -ENOMEM;
	if (strv_extendf(&argv, "%s", VMM_BACKEND(vm->b)->binary) < 0 ||
	    strv_extendf(&argv, "--api-sock") < 0 || strv_extendf(&argv, "%s", sock) < 0 ||
	    strv_extendf(&argv, "--id") < 0 || strv_extendf(&argv, "%s", vm->name) < 0) {
		strv_free(argv);
		return -ENOMEM;
	}
	*ret = argv;
	return 0;
}

/* GET /: the instance's state, if it is the one vmd started under this name. */
static int describe(FcVm *v, uint64_t timeout_usec, VmState *ret)
{
	_cleanup_(json_decrefp) json_t *info = NULL;
	const char *id, *state;
	int r;

	r = vmm_vm_rest(&v->vm, &v->http, "GET", "/", NULL, timeout_usec, &info);
	if (r < 0)
		return r;
	id = json_string_value(json_object_get(info, "id"));
	if (!streq_ptr(id, v->vm.name)) {
		backend_set_error(v->vm.b, "GET / answers for instance '%s', not '%s'", id ?: "",
				  v->vm.name);
		return -ESTALE;
	}
	state = json_string_value(json_object_get(info, "state"));
	*ret = streq_ptr(state, "Paused")    ? VM_PAUSED
	       : streq_ptr(state, "Running") ? VM_RUNNING
					     : VM_STARTING; /* Not started */
	return 0;
}

/* Everything before InstanceStart, in the order Firecracker takes it. */
static int configure(FcVm *v)
{
	const SandboxSpec *s = v->vm.config;
	_cleanup_free_ char *console = vmm_vm_path(v->vm.b, v->vm.name, "console.log");
	json_t *boot;
	int r;

	if (!console)
		return -ENOMEM;
	r = fc_put(v, "/serial", json_pack("{s:s}", "serial_out_path", console));
	if (r < 0)
		return r;
	boot = json_pack("{s:s}", "kernel_image_path", s->kernel);
	if (boot && s->initrd)
		json_object_set_new(boot, "initrd_path", json_string(s->initrd));
	if (boot && s->cmdline)
		json_object_set_new(boot, "boot_args", json_string(s->cmdline));
	r = fc_put(v, "/boot-source", boot);
	if (r < 0)
		return r;
	r = fc_put(v, "/machine-config",
		   json_pack("{s:i, s:I, s:b}", "vcpu_count", (int)s->vcpus, "mem_size_mib",
			     (json_int_t)(s->memory >> 20), "smt", false));
	for (size_t i = 0; r >= 0 && i < s->n_disks; i++) {
		_cleanup_free_ char *path = NULL;

		if (asprintf(&path, "/drives/%s", s->disks[i].id) < 0)
			return -ENOMEM;
		r = fc_put(v, path,
			   json_pack("{s:s, s:s, s:b, s:b}", "drive_id", s->disks[i].id,
				     "path_on_host", s->disks[i].path, "is_root_device", false,
				     "is_read_only", s->disks[i].read_only));
	}
	for (size_t i = 0; r >= 0 && i < s->n_networks; i++) {
		_cleanup_free_ char *path = NULL;
		char mac[18];

		spec_mac_format(s->networks[i].mac, mac);
		if (asprintf(&path, "/network-interfaces/%s", s->networks[i].id) < 0)
			return -ENOMEM;
		r = fc_put(v, path,
			   json_pack("{s:s, s:s, s:s}", "iface_id", s->networks[i].id,
				     "host_dev_name", s->networks[i].tap, "guest_mac", mac));
	}
	if (r < 0)
		return r;
	return fc_put(v, "/actions", json_pack("{s:s}", "action_type", "InstanceStart"));
}

/*
 * Poll a starting VM: once the API answers, configure and start it. A vmd that died
 * half-way left it configured in part (PUTs before InstanceStart replace what was there)
 * or started: GET / says which.
 */
static int fc_poll_start(VmmVm *vm)
{
	FcVm *v = (FcVm *)vm;
	VmState state;
	int r;

	r = describe(v, FC_PING_TIMEOUT_USEC, &state);
	if (IN_SET(-r, ENOENT, ECONNREFUSED)) {
		free(backend_take_error(vm->b));
		return 0; /* not listening yet */
	}
	if (r >= 0 && state == VM_STARTING) {
		r = configure(v);
		state = VM_RUNNING;
	}
	if (r < 0) {
		free(vm->start_failure);
		vm->start_failure = backend_take_error(vm->b);
		return r;
	}
	vm->state = state;
	return 1;
}

static int fc_reconnect(VmmVm *vm)
{
	VmState state;
	int r;

	r = describe((FcVm *)vm, FC_PING_TIMEOUT_USEC, &state);
	if (r < 0)
		return r;
	if (vm->state != VM_STOPPING)
		vm->state = state;
	return 0;
}

static int fc_set_paused(VmmVm *vm, bool paused)
{
	return fc_send((FcVm *)vm, "PATCH", "/vm",
		       json_pack("{s:s}", "state", paused ? "Paused" : "Resumed"));
}

static int fc_power_button(VmmVm *vm)
{
	return fc_put((FcVm *)vm, "/actions", json_pack("{s:s}", "action_type", "SendCtrlAltDel"));
}

/* Observe: state from GET /, devices and size from GET /vm/config. */

static int observed_config(FcVm *v, SandboxSpec **ret)
{
	_cleanup_(json_decrefp) json_t *c = NULL;
	_cleanup_(sandbox_spec_freep) SandboxSpec *s = NULL;
	const json_t *mc;
	int r;

	r = fc_call(v, "GET", "/vm/config", NULL, &c);
	if (r < 0)
		return r;
	r = vmm_vm_config_seen(v->vm.config, json_object_get(c, "drives"), "drive_id",
			       json_object_get(c, "network-interfaces"), "iface_id", &s);
	if (r < 0)
		return r;
	mc = json_object_get(c, "machine-config");
	if (json_is_integer(json_object_get(mc, "vcpu_count")))
		s->vcpus = (unsigned)json_integer_value(json_object_get(mc, "vcpu_count"));
	if (json_is_integer(json_object_get(mc, "mem_size_mib")))
		s->memory = (uint64_t)json_integer_value(json_object_get(mc, "mem_size_mib")) << 20;
	*ret = TAKE_PTR(s);
	return 0;
}

static int fc_observe(Backend *b, const char *name, VmObserved *ret)
{
	FcVm *v = (FcVm *)vmm_vm_get(b, name);
	VmObserved o = {};
	VmState s;
	int r;

	r = vmm_vm_observe(b, name, &o);
	if (r < 0 || !v) {
		*ret = o;
		return r;
	}
	if (IN_SET(v->vm.state, VM_RUNNING, VM_PAUSED) && describe(v, FC_PING_TIMEOUT_USEC, &s) >= 0 &&
	    IN_SET(s, VM_RUNNING, VM_PAUSED) && observed_config(v, &o.config) >= 0) {
		if (s != v->vm.state) {
			/* Paused or resumed behind vmd's back. */
			v->vm.state = o.state = s;
			(void)vmm_vm_save(&v->vm);
		}
	} else
		free(backend_take_error(b)); /* the record says what vmd last knew */
	r = o.config ? 0 : v->vm.config ? spec_copy(v->vm.config, &o.config) : 0;
	if (r < 0) {
		vm_observed_done(&o);
		return r;
	}
	*ret = o;
	return 0;
}

static int fc_init(Backend *b)
{
	return vmm_backend_init(b, &fc_type, b->options.firecracker_binary, "firecracker");
}

static const VmmVmType fc_type = {
	.vmm = "firecracker",
	.display = "Firecracker",
	.socket = "api.sock",
	.log = "fc.log",
	.size = sizeof(FcVm),
	.free = fc_vm_free,
	.argv = fc_argv,
	.poll_start = fc_poll_start,
	.reconnect = fc_reconnect,
	.exited = fc_vm_exited,
	.set_paused = fc_set_paused,
	.power_button = fc_power_button,
};

const BackendOps backend_firecracker_ops = {
	.name = "firecracker",
	.caps = BACKEND_CAP_PAUSE,
	.data_size = sizeof(VmmBackend),
	.init = fc_init,
	.done = vmm_backend_done,
	.observe = fc_observe,
	.list = vmm_vm_list,
	.adopt = vmm_vm_adopt,
	.start = vmm_vm_start,
	.stop = vmm_vm_stop,
	.pause = vmm_vm_pause,
	.resume = vmm_vm_resume,
	.cleanup = vmm_vm_cleanup,
};
