/* SPDX-License-Identifier: MIT */
/*
 * The operations on a VM that runs, for every VMM backend: each begins a job (vmm-job.c)
 * in the VM's main slot, or, for a removal that waits on the guest, in its unplug slot,
 * and returns 1: its op_done tells how it ended.
 */
#include <stdio.h>

#include "util.h"
#include "vmm-vm.h"

/* The main job of name's VM, for op of generation: when it runs and no other job does. */
static int prepare(Backend *b, const char *name, uint64_t generation, VmmJob **ret)
{
	VmmVm *v = vmm_vm_get(b, name);

	if (!v || !IN_SET(v->state, VM_RUNNING, VM_PAUSED))
		return -ESRCH;
	if (v->job.type != BACKEND_OP_NONE)
		return -EBUSY;
	v->job.generation = generation;
	*ret = &v->job;
	return 0;
}

/* Begin j, prepared, as op on device (or NULL): 1, it completes later (op_done). */
static int launch(VmmJob *j, BackendOp op, const char *device)
{
	int r;

	if (device)
		snprintf(j->device, sizeof(j->device), "%s", device);
	/* A disk the VMM opens by path: whether the VMM user may, first (VmmVmType.files). */
	r = vmm_job_begin(j->vm, j, op,
			  IN_SET(op, BACKEND_OP_DISK_ADD, BACKEND_OP_DISK_UPDATE)
				  ? VMM_PHASE_FILES
				  : VMM_PHASE_REQUEST);
	return r < 0 ? r : 1;
}

int vmm_vm_stop(Backend *b, const char *name, uint64_t timeout_ms, bool force)
{
	VmmVm *v = vmm_vm_get(b, name);
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	VmmJob *j;

	if (!v || v->state == VM_EXITED)
		return -ESRCH;
	j = &v->job;
	if (j->type == BACKEND_OP_STOP) {
		/* Stopping already: at once harder if asked, else it goes on as it is. */
		if (force && IN_SET(j->phase, VMM_PHASE_GRACEFUL, VMM_PHASE_SHUTDOWN))
			vmm_job_enter(v, j, VMM_PHASE_QUIT);
		return 1;
	}
	if (IN_SET(j->type, BACKEND_OP_START, BACKEND_OP_RESTORE) &&
	    IN_SET(j->phase, VMM_PHASE_IMAGE, VMM_PHASE_FILES)) {
		/* No VMM yet, only its images or its files being made: those stop, and that is all. */
		vmm_job_complete(v, j, -ECANCELED, NULL);
		v->stop_requested = true;
		v->state = VM_EXITED;
		v->exit_status = 0;
		return 0;
	}
	/* A stop supersedes whatever else is at work on the VM. */
	vmm_job_complete(v, j, -ECANCELED, NULL);
	vmm_job_complete(v, &v->unplug, -ECANCELED, NULL);
	if (j->type == BACKEND_OP_STOP)
		return 1; /* the guest turned out to be off: it is being ended already */
	j->was_paused = v->state == VM_PAUSED;
	/* A guest that has not booted cannot hear the button: it is forced. */
	force = force || v->state == VM_STARTING;
	j->stop_deadline = now + timeout_ms * 1000;
	v->stop_requested = true;
	v->state = VM_STOPPING;
	(void)vmm_job_begin(v, j, BACKEND_OP_STOP, force ? VMM_PHASE_QUIT : VMM_PHASE_GRACEFUL);
	(void)vmm_vm_save(v);
	return 1;
}

int vmm_vm_pause(Backend *b, const char *name)
{
	VmmJob *j;
	int r = prepare(b, name, 0, &j);

	return r < 0 ? r : launch(j, BACKEND_OP_PAUSE, NULL);
}

int vmm_vm_resume(Backend *b, const char *name)
{
	VmmJob *j;
	int r = prepare(b, name, 0, &j);

	return r < 0 ? r : launch(j, BACKEND_OP_RESUME, NULL);
}

static int disk_job(Backend *b, const char *name, const DiskSpec *disk, uint64_t generation,
		    BackendOp op)
{
	VmmJob *j;
	int r = prepare(b, name, generation, &j);

	if (r < 0)
		return r;
	j->disk = *disk;
	/* The job's own copies: the caller's spec may be gone by the time it completes. */
	j->disk.path = disk->path ? strdup(disk->path) : NULL;
	j->disk.image = disk->image ? strdup(disk->image) : NULL;
	if ((disk->path && !j->disk.path) || (disk->image && !j->disk.image))
		return -ENOMEM;
	return launch(j, op, disk->id);
}

int vmm_vm_disk_add(Backend *b, const char *name, const DiskSpec *disk, uint64_t generation)
{
	return disk_job(b, name, disk, generation, BACKEND_OP_DISK_ADD);
}

int vmm_vm_disk_update(Backend *b, const char *name, const DiskSpec *disk, uint64_t generation)
{
	return disk_job(b, name, disk, generation, BACKEND_OP_DISK_UPDATE);
}

int vmm_vm_net_add(Backend *b, const char *name, const NetSpec *net, uint64_t generation)
{
	VmmJob *j;
	int r = prepare(b, name, generation, &j);

	if (r < 0)
		return r;
	j->net = *net;
	return launch(j, BACKEND_OP_NET_ADD, net->id);
}

/* A removal waits on the guest, beside whatever else the VM is asked meanwhile. */
static int remove_device(Backend *b, const char *name, BackendOp op, const char *id,
			 uint64_t generation)
{
	VmmVm *v = vmm_vm_get(b, name);
	bool has;

	if (!v || !IN_SET(v->state, VM_RUNNING, VM_PAUSED))
		return -ESRCH;
	has = op == BACKEND_OP_DISK_REMOVE ? spec_find_disk(v->config, id) != NULL
					   : spec_find_net(v->config, id) != NULL;
	if (!has) {
		v->generation = generation;
		return vmm_vm_save(v); /* not there: nothing to remove */
	}
	if (v->unplug.type != BACKEND_OP_NONE)
		return -EBUSY;
	v->unplug.generation = generation;
	/* What backed a NIC, for the backend to free once it is gone (a macvtap). */
	if (op == BACKEND_OP_NET_REMOVE)
		v->unplug.net = *spec_find_net(v->config, id);
	return launch(&v->unplug, op, id);
}

int vmm_vm_disk_remove(Backend *b, const char *name, const char *id, uint64_t generation)
{
	return remove_device(b, name, BACKEND_OP_DISK_REMOVE, id, generation);
}

int vmm_vm_net_remove(Backend *b, const char *name, const char *id, uint64_t generation)
{
	return remove_device(b, name, BACKEND_OP_NET_REMOVE, id, generation);
}

int vmm_vm_resize(Backend *b, const char *name, unsigned vcpus, uint64_t memory, uint64_t generation)
{
	VmmJob *j;
	int r = prepare(b, name, generation, &j);

	if (r < 0)
		return r;
	j->vcpus = vcpus;
	j->memory = memory;
	return launch(j, BACKEND_OP_RESIZE, NULL);
}

int vmm_vm_suspend(Backend *b, const char *name, const char *snapshot_dir)
{
	VmmJob *j;
	int r = prepare(b, name, 0, &j);

	if (r < 0)
		return r;
	if (j->vm->unplug.type != BACKEND_OP_NONE)
		return -EBUSY; /* a device on its way out is in no state to be saved */
	j->snapshot_dir = strdup(snapshot_dir);
	if (!j->snapshot_dir)
		return -ENOMEM;
	j->was_paused = j->vm->state == VM_PAUSED;
	r = vmm_job_begin(j->vm, j, BACKEND_OP_SUSPEND, VMM_PHASE_FREEZE);
	return r < 0 ? r : 1;
}

int vmm_vm_refuse_fresh_boot(VmmVm *v, VmmJob *j)
{
	if (!v->restoring)
		return 0;
	vmm_job_fail_message(
		j,
		"its VMM was restoring a snapshot when the vmd before died: it is not booted afresh, which would write to the disks the snapshot belongs to");
	return -ESTALE;
}
