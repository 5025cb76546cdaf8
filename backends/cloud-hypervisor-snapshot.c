/* SPDX-License-Identifier: MIT */
/*
 * Cloud Hypervisor's suspend and wake (cloud-hypervisor.c has the rest of the backend):
 * the requests of the suspend's and the restore's phases, the resize room kept beside CH's
 * own files, and what cannot be suspended.
 */
#include <stdio.h>

#include "cloud-hypervisor.h"
#include "console.h"
#include "netdev.h"
#include "util.h"

/*
 * A NIC of a device vmd makes is CH's by descriptor, and vm.restore wants new ones for it
 * (net_fds, config.rs, RestoreConfig::validate(): RestoreMissingRequiredNetId), a field
 * the pinned OpenAPI document does not have: such a VM is not suspended (-EOPNOTSUPP,
 * before anything is paused).
 */
static int refuse_fd_nets(VmmVm *vm, VmmJob *j)
{
	for (size_t i = 0; vm->config && i < vm->config->n_networks; i++)
		if (ch_vmd_made(&vm->config->networks[i])) {
			vmm_job_fail_message(
				j,
				"network '%s': Cloud Hypervisor cannot be given a new descriptor for it at vm.restore, so a VM with a bridge or macvtap network is not suspended",
				vm->config->networks[i].id);
			return -EOPNOTSUPP;
		}
	return 0;
}

/*
 * The resize room the VM was created with (ch_save()'s keys), kept beside CH's files: a
 * wake gets the room and the hot-adds used of the VM as it was, not one computed afresh
 * from its size then (CH keeps both in its own state: max_vcpus, hotplug_size, the slots).
 */
#define CH_SNAPSHOT_ROOM "vmd-room.json"

static int saved_room(VmmVm *vm, VmmJob *j, const VmmReply *r)
{
	_cleanup_free_ char *path = NULL, *text = NULL;
	json_auto_t *room = json_object();
	int k;

	if (r->error < 0)
		return r->error;
	if (!room || ch_save(vm, room) < 0 ||
	    asprintf(&path, "%s/" CH_SNAPSHOT_ROOM, j->snapshot_dir) < 0 ||
	    !(text = json_dumps(room, JSON_COMPACT)))
		return -ENOMEM;
	k = write_file_atomic(path, text, strlen(text), 0600, true);
	if (k < 0)
		vmm_job_fail_message(j, "cannot write %s: %s", path, strerror(-k));
	return k < 0 ? k : VMM_NEXT;
}

/* A restore's room, from the snapshot; false if it has none (then computed as for a boot). */
bool ch_restored_room(ChVm *v)
{
	_cleanup_free_ char *path = NULL, *text = NULL;
	json_auto_t *room = NULL;
	size_t len;

	if (!v->vm.job.snapshot_dir ||
	    asprintf(&path, "%s/" CH_SNAPSHOT_ROOM, v->vm.job.snapshot_dir) < 0 ||
	    read_regular_file(path, 4096, &text, &len) < 0)
		return false;
	room = json_loadb(text, len, 0, NULL);
	if (!json_is_object(room) || ch_load(&v->vm, room) < 0)
		return false;
	return v->max_vcpus > 0 && v->max_memory > 0;
}

/* vm.snapshot's destination_url, vm.restore's source_url: the dir, as a file:// URL. */
static json_t *snapshot_url(const char *key, const char *dir)
{
	_cleanup_free_ char *url = NULL;

	if (asprintf(&url, "file://%s", dir) < 0)
		return NULL;
	return json_pack("{s:s}", key, url);
}

/*
 * Suspend: pause (unless paused), vm.snapshot (vm.rs, Snapshottable for Vm, snapshot():
 * a VM not paused is refused), which writes the whole state before it answers; a failure
 * resumes it (thaw). Restore: vm.restore on a VMM with no VM (lib.rs, vm_restore()),
 * which leaves it Paused (vm.rs, new_from_memory_manager()); boot then resumes it.
 */
int ch_build_snapshot(VmmVm *vm, VmmJob *j, VmmRequests *rq)
{
	int r;

	switch (j->phase) {
	case VMM_PHASE_FREEZE:
		r = refuse_fd_nets(vm, j);
		if (r < 0 || j->was_paused)
			return r;
		return ch_put(rq, "vm.pause", NULL);
	case VMM_PHASE_SAVE:
		return vmm_request_add(rq, "PUT", snapshot_url("destination_url", j->snapshot_dir),
				       saved_room, CH_API "vm.snapshot");
	case VMM_PHASE_THAW:
		return j->was_paused ? 0 : ch_put(rq, "vm.resume", NULL);
	case VMM_PHASE_LOAD:
		return ch_put(rq, "vm.restore", snapshot_url("source_url", j->snapshot_dir));
	case VMM_PHASE_BOOT:
		/* vm.restore bound the serial socket again: vmd is its client before the guest runs. */
		console_connect_now(vm->console);
		return vm->config->state == SANDBOX_PAUSED ? 0 : ch_put(rq, "vm.resume", NULL);
	default:
		return 0;
	}
}

/*
 * state: suspended with a NIC of a device vmd makes: Cloud Hypervisor has it as a
 * descriptor, and vm.restore would need a new one (net_fds), which the OpenAPI document
 * vmd is held to does not have (refuse_fd_nets() is the same rule at the suspend).
 */
void ch_refuse_suspended_fd_nets(const SandboxSpec *spec, SpecCheck *check)
{
	char field[64];

	/* suspendAfterIdle suspends it as state: suspended does. */
	if (spec->state != SANDBOX_SUSPENDED && !spec->suspend_after_idle_ms)
		return;
	for (size_t i = 0; i < spec->n_networks; i++) {
		if (!ch_vmd_made(&spec->networks[i]))
			continue;
		snprintf(field, sizeof(field), "spec.networks[%zu].type", i);
		spec_check_error(
			check, field,
			"a %s network cannot be suspended on cloud-hypervisor: it takes the device as a descriptor, and a wake would need a new one, which vmd cannot give it; use type tap, or the qemu backend",
			net_type_to_string(spec->networks[i].type));
	}
}
