/* SPDX-License-Identifier: MIT */
/*
 * The limits of a VMM's scope. The scope gets them at StartTransientUnit, from the start:
 * a guest that grows its memory live grows within the MemoryMax computed from the most it
 * can have, so no resize changes them (a room known only after the spawn raises it once:
 * the executor's scope_update()).
 */
#include <errno.h>
#include <stdio.h>

#include "macro.h"
#include "vm-scope.h"

#define USEC_PER_SEC UINT64_C(1000000)

uint64_t vm_scope_memory_max(uint64_t memory, uint64_t max_memory)
{
	uint64_t guest = MAX(memory, max_memory);

	return guest + VM_SCOPE_MEMORY_BASE + guest / VM_SCOPE_MEMORY_DIVISOR;
}

uint64_t vm_scope_tasks_max(unsigned vcpus, unsigned max_vcpus)
{
	return VM_SCOPE_TASKS_BASE + (uint64_t)VM_SCOPE_TASKS_PER_VCPU * MAX(vcpus, max_vcpus);
}

static void add_device(ScopeLimits *l, const char *path, const char *access)
{
	for (size_t i = 0; i < l->n_devices; i++)
		if (streq(l->devices[i].path, path))
			return;
	if (l->n_devices < ELEMENTSOF(l->devices))
		l->devices[l->n_devices++] = (ScopeDevice){ .path = path, .access = access };
}

void vm_scope_limits(const SandboxSpec *spec, uint64_t max_memory, unsigned max_vcpus,
		     bool (*is_block)(const char *path), ScopeLimits *ret)
{
	const ResourcesSpec *res = &spec->resources;

	*ret = (ScopeLimits){
		.memory_max = vm_scope_memory_max(spec->memory, max_memory),
		.tasks_max = vm_scope_tasks_max(spec->vcpus, max_vcpus),
		.cpu_weight = res->cpu_weight ?: VM_SCOPE_CPU_WEIGHT_DEFAULT,
		.cpu_quota_per_sec_usec = (uint64_t)res->cpu_quota * USEC_PER_SEC / 100,
		.io_weight = res->io_weight,
	};
	/*
	 * Firecracker's jailer mknods its jail's /dev/kvm, /dev/net/tun and /dev/userfaultfd
	 * (src/jailer/src/env.rs Env::run(), whatever the VM has), maybe after the move into
	 * the scope: those take "m" too. Firecracker opens its taps by name, through tun.
	 */
	if (spec->backend == BACKEND_FIRECRACKER) {
		add_device(ret, "/dev/kvm", "rwm");
		add_device(ret, "/dev/net/tun", "rwm");
		add_device(ret, "/dev/userfaultfd", "rwm");
	} else
		add_device(ret, "/dev/kvm", "rw");
	for (size_t i = 0; i < spec->n_disks; i++) {
		const DiskSpec *d = &spec->disks[i];

		if (d->path && is_block && is_block(d->path))
			add_device(ret, d->path, d->read_only ? "r" : "rw");
	}
}

int vm_scope_machine_name(const char *name, char ret[static VM_SCOPE_MACHINE_NAME_MAX + 1])
{
	int n = snprintf(ret, VM_SCOPE_MACHINE_NAME_MAX + 1, "vmd-%s", name);

	return n < 0 || n > VM_SCOPE_MACHINE_NAME_MAX ? -ENAMETOOLONG : 0;
}
