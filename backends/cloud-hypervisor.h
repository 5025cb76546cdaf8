/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the Cloud Hypervisor backend's two files share: cloud-hypervisor.c (boot, adopt,
 * live changes, stop) and cloud-hypervisor-snapshot.c (suspend and wake).
 */

#include "vmm-vm.h"

#define CH_API "/api/v1/"
#define CH_REMOVE_POLL_USEC (50ull * 1000)
#define CH_HOTPLUG_BLOCK (128ull << 20) /* memory hotplug_size granularity */
#define CH_HOTPLUG_COUNT 8		/* ACPI memory hot-adds per boot */
#define CH_MEMORY_GROWTH 4
#define CH_SEED_ID "vmd_seed" /* the cloud-init seed's disk */
/*
 * The oldest release vmd is known to work with (tests/sim/cloud-hypervisor behaves as it,
 * and as upstream's main); older ones are refused at the start, naming this.
 */
#define CH_MIN_MAJOR 52

typedef struct ChVm {
	VmmVm vm; /* first */
	/* What vm.create names, as the VMM has them (ch_prepare()): its own dir, its files. */
	VmmPassed passed;
	int api_fd;	    /* the API socket vmd listens on, as the VMM has it */
	unsigned max_vcpus; /* as created */
	uint64_t max_memory;
	unsigned major;	   /* of the release, from vmm.ping; 0 if it did not say */
	unsigned hot_adds; /* memory hot-adds since the boot, of CH_HOTPLUG_COUNT */
} ChVm;

/* A device vmd makes (netdev.c), which CH gets as a descriptor, not by name. */
static inline bool ch_vmd_made(const NetSpec *n)
{
	return IN_SET(n->type, NET_BRIDGE, NET_MACVTAP);
}

static inline int ch_put(VmmRequests *rq, const char *op, json_t *body)
{
	return vmm_request_add(rq, "PUT", body, NULL, CH_API "%s", op);
}

/* VmmVmType's save and load: the record's resize room. */
int ch_save(VmmVm *vm, json_t *j);
int ch_load(VmmVm *vm, const json_t *j);
/* A restore's room, from the snapshot; false if it has none (then computed as for a boot). */
bool ch_restored_room(ChVm *v);
/* The requests of a suspend's freeze, save and thaw, and of a restore's load and boot. */
int ch_build_snapshot(VmmVm *vm, VmmJob *j, VmmRequests *rq);
/* The loader's refusal of a suspend the restore could not give its devices back to. */
void ch_refuse_suspended_fd_nets(const SandboxSpec *spec, SpecCheck *check);
