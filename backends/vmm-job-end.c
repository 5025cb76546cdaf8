/* SPDX-License-Identifier: MIT */
/*
 * The end of a VM's jobs (vmm-job.c runs them): what a job that did its work changes in the
 * VM's record, the completion the daemon hears of, what the VMM's exit ends, and the observe
 * job that refreshes what a running VM does.
 */
#include <stdio.h>

#include "log.h"
#include "provision.h"
#include "spec-json.h"
#include "util.h"
#include "vmm-vm.h"

#define VMM_RETRY_UNRESPONSIVE_USEC (5ull * 1000000) /* ask a silent VMM again */

static void retry_observe_later(VmmVm *v);

/* What a job that did its work changes in what the VM runs. */
static void apply(VmmVm *v, VmmJob *j)
{
	SandboxSpec *c = v->config;
	VmmIdentity id;

	/* A restored VM runs as it was woken for: running, or paused. */
	if (j->type == BACKEND_OP_RESTORE && v->state == VM_STARTING)
		v->state = v->config->state == SANDBOX_PAUSED ? VM_PAUSED : VM_RUNNING;
	if (j->type == BACKEND_OP_RESTORE)
		v->restoring = false;
	switch (j->type) {
	case BACKEND_OP_RESTORE:
	case BACKEND_OP_START:
		/*
		 * What answers may be another binary than the one started (a jailer execs
		 * Firecracker): the same process, so record what it runs now.
		 */
		if (vmm_identity(v->id.pid, &id) == 0 && id.start_time == v->id.start_time)
			v->id = id;
		if (v->state == VM_STARTING)
			v->state = VM_RUNNING;
		/* The VMM read the credentials' copies while it started: none stays on disk. */
		(void)credentials_remove(v->dir);
		break;
	case BACKEND_OP_PAUSE:
		v->state = VM_PAUSED;
		break;
	case BACKEND_OP_RESUME:
		v->state = VM_RUNNING;
		break;
	case BACKEND_OP_DISK_ADD:
		(void)spec_add_disk(c, &j->disk);
		break;
	case BACKEND_OP_NET_ADD:
		(void)spec_add_net(c, &j->net);
		break;
	case BACKEND_OP_DISK_REMOVE:
		(void)spec_remove_disk(c, j->device);
		break;
	case BACKEND_OP_DISK_UPDATE:
		(void)spec_remove_disk(c, j->device);
		(void)spec_add_disk(c, &j->disk);
		break;
	case BACKEND_OP_NET_REMOVE:
		(void)spec_remove_net(c, j->device);
		break;
	case BACKEND_OP_RESIZE:
		c->vcpus = j->vcpus;
		c->memory = j->memory;
		break;
	default:
		return;
	}
	if (j->generation)
		v->generation = j->generation;
	(void)vmm_vm_save(v);
}

void vmm_job_complete(VmmVm *v, VmmJob *j, int error, const char *message)
{
	_cleanup_free_ char *name = strdup(v->name), *msg = message ? strdup(message) : NULL;
	char device[SPEC_ID_MAX + 1];
	BackendOp type = j->type;
	Backend *b = v->b;

	if (type == BACKEND_OP_NONE)
		return;
	snprintf(device, sizeof(device), "%s", j->device);
	vmm_api_cancel(v, j);
	if (error == 0)
		apply(v, j);
	vmm_job_free(j);

	if (type == BACKEND_OP_ADOPT && error < 0) {
		/* Not taken in charge: the record stays, the daemon may ask again. */
		vmm_vm_forget(v);
		v = NULL;
	} else if (v->guest_shutdown && v->job.type == BACKEND_OP_NONE &&
		   IN_SET(v->state, VM_RUNNING, VM_PAUSED)) {
		/* After what the job did, or found, the guest is off and its VMM still there. */
		vmm_job_log(v, LOG_INFO, "exited", 0, "the guest shut down; ending its %s",
			    v->type->display);
		v->state = VM_STOPPING;
		(void)vmm_job_begin(v, &v->job, BACKEND_OP_STOP, VMM_PHASE_QUIT);
		(void)vmm_vm_save(v);
	}
	if (type == BACKEND_OP_OBSERVE) {
		/* An unanswered observe is asked again soon; anything else waits for the next. */
		if (v && error == -ETIMEDOUT)
			retry_observe_later(v);
		return;
	}
	if (b->callbacks.op_done && name)
		b->callbacks.op_done(b->callbacks.userdata, name, type, device[0] ? device : NULL,
				     error, msg);
}

/* Observe */

void vmm_job_refresh(VmmVm *v)
{
	if (!IN_SET(v->state, VM_RUNNING, VM_PAUSED) || v->job.type != BACKEND_OP_NONE ||
	    v->observe.type != BACKEND_OP_NONE)
		return;
	(void)vmm_job_begin(v, &v->observe, BACKEND_OP_OBSERVE, VMM_PHASE_OBSERVE);
}

static int observe_retry_fired(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	VmmVm *v = userdata;

	v->observe_retry = sd_event_source_disable_unref(v->observe_retry);
	vmm_job_refresh(v);
	return 0;
}

static void retry_observe_later(VmmVm *v)
{
	v->observe_retry = sd_event_source_disable_unref(v->observe_retry);
	(void)sd_event_add_time_relative(v->b->event, &v->observe_retry, CLOCK_MONOTONIC,
					 VMM_RETRY_UNRESPONSIVE_USEC, 100000, observe_retry_fired, v);
}

bool vmm_job_vm_exited(VmmVm *v, const char *start_error)
{
	bool started = IN_SET(v->job.type, BACKEND_OP_START, BACKEND_OP_RESTORE),
	     stopped = v->job.type == BACKEND_OP_STOP,
	     saved = v->job.type == BACKEND_OP_SUSPEND &&
		     IN_SET(v->job.phase, VMM_PHASE_QUIT, VMM_PHASE_KILL);

	v->observe_retry = sd_event_source_disable_unref(v->observe_retry);
	/* What the VM was doing ends with it: its exit, not these, is what the daemon acts on. */
	vmm_job_complete(v, &v->observe, -ECANCELED, NULL);
	vmm_job_complete(v, &v->unplug, -ECANCELED, "the VM exited");
	if (started)
		vmm_job_complete(v, &v->job, v->job.error ?: -ESRCH,
				 v->job.error ? v->job.message : start_error);
	else if (stopped || saved)
		vmm_job_complete(v, &v->job, 0, NULL);
	else if (v->job.type == BACKEND_OP_SUSPEND)
		vmm_job_complete(v, &v->job, -EIO, "the VMM exited before its state was saved");
	else
		vmm_job_complete(v, &v->job, -ECANCELED, "the VM exited");
	/* A suspend's exit is the suspend's: no vm_exited for it. */
	return started || saved;
}
