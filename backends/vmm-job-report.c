/* SPDX-License-Identifier: MIT */
/*
 * What a VM's jobs (vmm-job.c) are doing, as the status shows it: the job, its phase, since
 * when, and in words what is in flight and how long it may take yet.
 */
#include <inttypes.h>
#include <stdio.h>

#include "util.h"
#include "vmm-vm.h"

/* What the VM's jobs are doing, in words, for the status. */
static char *describe(const VmmVm *v, const VmmJob *j)
{
	uint64_t now = now_usec(CLOCK_MONOTONIC), in = (now - j->phase_since) / 1000000,
		 left = j->deadline > now ? (j->deadline - now + 999999) / 1000000 : 0;
	const char *kind =
		IN_SET(j->type, BACKEND_OP_DISK_REMOVE, BACKEND_OP_DISK_ADD, BACKEND_OP_DISK_UPDATE)
			? "disk"
			: "network";
	const char *vmm = v->type->display;
	char *m = NULL;
	int r = -1;

	switch (j->phase) {
	case VMM_PHASE_IMAGE:
		return vmm_image_describe(v, j);
	case VMM_PHASE_FILES:
		return vmm_files_describe(v, j);
	case VMM_PHASE_SPAWN:
		r = asprintf(&m, "starting %s", vmm);
		break;
	case VMM_PHASE_API_UP:
		r = asprintf(&m, "waiting for %s to answer on its API socket (%" PRIu64 " s)", vmm,
			     in);
		break;
	case VMM_PHASE_CONFIGURE:
		r = asprintf(&m, "configuring the VM");
		break;
	case VMM_PHASE_BOOT:
		r = asprintf(&m, "starting its vCPUs");
		break;
	case VMM_PHASE_IDENTITY:
	case VMM_PHASE_HANDSHAKE:
	case VMM_PHASE_OBSERVE:
		r = asprintf(&m, "checking that %s pid %d is the one vmd started", vmm,
			     (int)v->id.pid);
		break;
	case VMM_PHASE_GRACEFUL:
		r = asprintf(&m, "asking the guest to shut down");
		break;
	case VMM_PHASE_SHUTDOWN:
		r = asprintf(&m, "waiting for the guest to shut down (forced off in %" PRIu64 " s)",
			     left);
		break;
	case VMM_PHASE_QUIT:
		r = asprintf(&m, "asked %s to quit (SIGKILL in %" PRIu64 " s)", vmm, left);
		break;
	case VMM_PHASE_KILL:
		r = asprintf(&m, "SIGKILL sent; waiting for %s to exit", vmm);
		break;
	case VMM_PHASE_REQUEST:
		if (IN_SET(j->type, BACKEND_OP_DISK_REMOVE, BACKEND_OP_NET_REMOVE))
			r = asprintf(&m, "asking the guest to release %s '%s'", kind, j->device);
		else if (IN_SET(j->type, BACKEND_OP_DISK_ADD, BACKEND_OP_NET_ADD))
			r = asprintf(&m, "adding %s '%s'", kind, j->device);
		else if (j->type == BACKEND_OP_DISK_UPDATE)
			r = asprintf(&m, "giving disk '%s' its new path", j->device);
		else
			r = asprintf(&m, "%s: asked %s", backend_op_to_string(j->type), vmm);
		break;
	case VMM_PHASE_RELEASE:
		r = asprintf(&m, "waiting for the guest to release %s '%s' (asked %" PRIu64 " s ago)",
			     kind, j->device, in);
		break;
	case VMM_PHASE_CLEANUP:
		r = asprintf(&m, "freeing what backed %s '%s'", kind, j->device);
		break;
	case VMM_PHASE_ROLLBACK:
		r = asprintf(&m, "undoing the failed add of %s '%s'", kind, j->device);
		break;
	default:
		break;
	}
	return r < 0 ? NULL : m;
}

void vmm_job_report(const VmmVm *v, VmObserved *o)
{
	const VmmJob *j = v->job.type != BACKEND_OP_NONE ? &v->job : NULL;
	uint64_t now_mono = now_usec(CLOCK_MONOTONIC), now_real = now_usec(CLOCK_REALTIME);

	o->busy = v->unplug.type != BACKEND_OP_NONE;
	if (j) {
		o->job = j->type;
		o->job_phase = vmm_phase_table[j->phase];
		o->job_since_usec = now_real - MIN(now_real, now_mono - j->phase_since);
	}
	o->progress = j ? describe(v, j) : o->busy ? describe(v, &v->unplug) : NULL;
	o->unresponsive = v->unresponsive ? strdup(v->unresponsive) : NULL;
}
