/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>

#include "backend.h"

const char *const vm_state_table[_VM_STATE_MAX] = {
	[VM_ABSENT] = "absent", [VM_STARTING] = "starting", [VM_RUNNING] = "running",
	[VM_PAUSED] = "paused", [VM_STOPPING] = "stopping", [VM_EXITED] = "exited",
};
DEFINE_STRING_TABLE(vm_state, VmState, _VM_STATE_MAX)

const char *const backend_op_table[_BACKEND_OP_MAX] = {
	[BACKEND_OP_NONE] = "none",
	[BACKEND_OP_START] = "start",
	[BACKEND_OP_STOP] = "stop",
	[BACKEND_OP_PAUSE] = "pause",
	[BACKEND_OP_RESUME] = "resume",
	[BACKEND_OP_DISK_ADD] = "disk-add",
	[BACKEND_OP_DISK_REMOVE] = "disk-remove",
	[BACKEND_OP_NET_ADD] = "net-add",
	[BACKEND_OP_NET_REMOVE] = "net-remove",
	[BACKEND_OP_RESIZE] = "resize",
	[BACKEND_OP_DISK_UPDATE] = "disk-update",
	[BACKEND_OP_ADOPT] = "adopt",
	[BACKEND_OP_OBSERVE] = "observe",
	[BACKEND_OP_SUSPEND] = "suspend",
	[BACKEND_OP_RESTORE] = "restore",
};
DEFINE_STRING_TABLE(backend_op, BackendOp, _BACKEND_OP_MAX)

/* Every backend plugs in here. */
const BackendOps *const backend_ops[_BACKEND_KIND_MAX] = {
	[BACKEND_QEMU] = &backend_qemu_ops,
	[BACKEND_CLOUD_HYPERVISOR] = &backend_cloud_hypervisor_ops,
	[BACKEND_FIRECRACKER] = &backend_firecracker_ops,
	[BACKEND_NOOP] = &backend_noop_ops,
};

/* state: suspended needs a backend that can save a VM (BACKEND_CAP_SUSPEND). */
static void backend_check_suspend(const SandboxSpec *spec, const BackendOps *ops, SpecCheck *check)
{
	char buf[SPEC_CHECK_BACKEND_MAX];

	if (spec->state == SANDBOX_SUSPENDED && (!ops || !(ops->caps & BACKEND_CAP_SUSPEND)))
		spec_check_error(check, "spec.state",
				 "%s cannot suspend a VM to disk; use running, paused or stopped",
				 spec_check_backend(spec, buf));
}

int backend_validate_spec(const SandboxSpec *spec, SpecCheck *check)
{
	const BackendOps *ops;

	assert(spec->backend >= 0 && spec->backend < _BACKEND_KIND_MAX);
	ops = backend_ops[spec->backend];
	probe_spec_check(spec, check);
	backend_check_suspend(spec, ops, check);
	if (ops && ops->validate)
		(void)ops->validate(spec, check);
	return spec_check_result(check);
}

SpecLoadOptions backend_spec_load_options(BackendKind default_backend)
{
	return (SpecLoadOptions){ .default_backend = default_backend, .check = backend_validate_spec };
}

void backend_require_kernel(const SandboxSpec *spec, SpecCheck *check)
{
	char buf[SPEC_CHECK_BACKEND_MAX];

	if (!spec->kernel)
		spec_check_missing(check, "spec.kernel", "%s boots a kernel; give its absolute path",
				   spec_check_backend(spec, buf));
}

void backend_refuse_qcow2(const SandboxSpec *spec, SpecCheck *check)
{
	char buf[SPEC_CHECK_BACKEND_MAX], field[64];

	for (size_t i = 0; i < spec->n_disks; i++) {
		if (spec->disks[i].format != DISK_FORMAT_QCOW2)
			continue;
		snprintf(field, sizeof(field), "spec.disks[%zu].format", i);
		spec_check_error(
			check, field,
			"qcow2 needs the qemu or cloud-hypervisor backend; this sandbox uses %s",
			spec_check_backend(spec, buf));
	}
}

void backend_refuse_credentials(const SandboxSpec *spec, SpecCheck *check)
{
	char buf[SPEC_CHECK_BACKEND_MAX];

	/*
	 * Credentials go through QEMU's fw_cfg; Cloud Hypervisor and Firecracker have none, and
	 * SMBIOS type 11 would put their values on the command line.
	 */
	if (spec->n_credentials > 0)
		spec_check_error(
			check, "spec.credentials",
			"credentials need the qemu backend (fw_cfg); this sandbox uses %s, which has no way to pass them but its command line",
			spec_check_backend(spec, buf));
}

void backend_refuse_user_net(const SandboxSpec *spec, SpecCheck *check)
{
	char buf[SPEC_CHECK_BACKEND_MAX], field[64];

	/* User mode is QEMU's own network stack (slirp); the other VMMs have none. */
	for (size_t i = 0; i < spec->n_networks; i++) {
		if (spec->networks[i].type != NET_USER)
			continue;
		snprintf(field, sizeof(field), "spec.networks[%zu].type", i);
		spec_check_error(check, field,
				 "user-mode networking needs the qemu backend; this sandbox uses %s",
				 spec_check_backend(spec, buf));
	}
}

void backend_refuse_guest_agent(const SandboxSpec *spec, SpecCheck *check)
{
	char buf[SPEC_CHECK_BACKEND_MAX];

	if (spec->guest_agent)
		spec_check_error(check, "spec.guestAgent",
				 "the QEMU guest agent needs the qemu backend; this sandbox uses %s",
				 spec_check_backend(spec, buf));
}

void vm_observed_done(VmObserved *o)
{
	sandbox_spec_free(o->config);
	free(o->progress);
	free(o->unresponsive);
	free(o->stray_message);
	free(o->vmm_version);
	for (size_t i = 0; i < o->n_net_addresses; i++)
		free(o->net_addresses[i]);
	free(o->net_addresses);
	*o = (VmObserved){};
}

void backend_set_error(Backend *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_vformat(&b->error, fmt, ap);
	va_end(ap);
}

char *backend_take_error(Backend *b)
{
	return TAKE_PTR(b->error);
}

int backend_new(BackendKind kind, sd_event *event, const char *run_dir,
		const BackendCallbacks *callbacks, const BackendOptions *options, Backend **ret)
{
	_cleanup_(backend_freep) Backend *b = NULL;
	const BackendOps *ops;
	int r;

	if (kind < 0 || kind >= _BACKEND_KIND_MAX)
		return -EINVAL;
	ops = backend_ops[kind];
	if (!ops)
		return -EOPNOTSUPP;

	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->ops = ops;
	b->event = event ? sd_event_ref(event) : NULL;
	b->run_dir = strdup(run_dir);
	if (callbacks)
		b->callbacks = *callbacks;
	if (options)
		b->options = *options;
	b->data = ops->data_size ? calloc(1, ops->data_size) : NULL;
	if (!b->run_dir || (ops->data_size && !b->data))
		return -ENOMEM;
	if (ops->init) {
		r = ops->init(b);
		if (r < 0) {
			b->ops = NULL; /* half-built: do not run done() */
			return r;
		}
	}
	*ret = TAKE_PTR(b);
	return 0;
}

Backend *backend_free(Backend *b)
{
	if (!b)
		return NULL;
	if (b->ops && b->ops->done)
		b->ops->done(b);
	free(b->data);
	free(b->error);
	free(b->run_dir);
	sd_event_unref(b->event);
	free(b);
	return NULL;
}

int backend_list_runtime_dirs(Backend *b, const char *file, char ***ret_names, size_t *ret_n)
{
	DIR *d = opendir(b->run_dir);
	char **names = NULL;
	size_t n = 0;
	struct dirent *e;

	if (!d) {
		*ret_names = NULL;
		*ret_n = 0;
		return errno == ENOENT ? 0 : -errno;
	}
	while ((e = readdir(d))) {
		_cleanup_free_ char *path = NULL;
		char **nn;

		if (e->d_name[0] == '.' ||
		    asprintf(&path, "%s/%s/%s", b->run_dir, e->d_name, file) < 0 ||
		    access(path, F_OK) < 0)
			continue;
		nn = reallocarray(names, n + 1, sizeof(char *));
		if (nn)
			names = nn;
		if (!nn || !(names[n] = strdup(e->d_name))) {
			/* A partial list would hide a VM from adoption: all or nothing. */
			while (n > 0)
				free(names[--n]);
			free(names);
			closedir(d);
			return -ENOMEM;
		}
		n++;
	}
	closedir(d);
	*ret_names = names;
	*ret_n = n;
	return 0;
}
