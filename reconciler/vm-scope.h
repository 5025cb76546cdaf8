/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spec.h"

/*
 * What a VMM's scope (vmd-NAME.scope, reconciler/host-systemd.c) is given: its limits and
 * the devices it may open, computed from the sandbox's spec alone (pure: no I/O but what
 * the is_block callback does), so that the formulas are tested as a table.
 */

#define VM_SCOPE_DEVICES_MAX (3 + SPEC_DISKS_MAX)
#define VM_SCOPE_CPU_WEIGHT_DEFAULT 100
/* The memory above the guest's that the VMM itself may use: see vm_scope_memory_max(). */
#define VM_SCOPE_MEMORY_BASE (UINT64_C(1) << 30)
#define VM_SCOPE_MEMORY_DIVISOR 8
/* The tasks a VMM may have: see vm_scope_tasks_max(). */
#define VM_SCOPE_TASKS_BASE 128
#define VM_SCOPE_TASKS_PER_VCPU 4

typedef struct ScopeDevice {
	const char *path;   /* borrowed from the spec, or a literal */
	const char *access; /* "rw", "r" or "rwm" */
} ScopeDevice;

typedef struct ScopeLimits {
	uint64_t memory_max;			   /* MemoryMax=, bytes */
	uint64_t tasks_max;			   /* TasksMax= */
	uint64_t cpu_weight;			   /* CPUWeight= */
	uint64_t cpu_quota_per_sec_usec;	   /* CPUQuota= as systemd keeps it; 0: none */
	uint64_t io_weight;			   /* IOWeight=; 0: not set (the default) */
	ScopeDevice devices[VM_SCOPE_DEVICES_MAX]; /* DeviceAllow=, with DevicePolicy=closed */
	size_t n_devices;
} ScopeLimits;

/*
 * The guest's most memory: max_memory (how far it can grow live, as its VMM reported it
 * when started; 0: it cannot) or its spec's memory, whichever is more; then the VMM's own
 * on top: VM_SCOPE_MEMORY_BASE (QEMU's TCG translation cache is 1 GiB on a 64-bit host,
 * tcg_init's default tb-size, besides its heap, and threads' stacks) plus an eighth of the
 * guest's (page tables, dirty bitmaps, I/O buffers and the page cache of its images, which
 * is charged to the scope and reclaimed within it).
 */
uint64_t vm_scope_memory_max(uint64_t memory, uint64_t max_memory);
/*
 * VM_SCOPE_TASKS_BASE (QEMU's thread pool has up to 64 workers, plus its main loop, RCU,
 * I/O threads; Cloud Hypervisor a thread per virtio device; Firecracker's API and VMM
 * threads) plus VM_SCOPE_TASKS_PER_VCPU per vCPU (a vCPU thread, and room to grow).
 */
uint64_t vm_scope_tasks_max(unsigned vcpus, unsigned max_vcpus);

/*
 * The limits of spec's VMM, which can grow to max_memory and max_vcpus (0: not at all).
 * The devices are those the VMM opens itself, not through vmd's fds: /dev/kvm; for
 * Firecracker, which opens its taps by name, and whose jailer mknods them in its jail,
 * /dev/net/tun and /dev/userfaultfd too, all with "m"; every disk path is_block says is a
 * block device (QEMU, Cloud Hypervisor and Firecracker open their disks by path).
 */
void vm_scope_limits(const SandboxSpec *spec, uint64_t max_memory, unsigned max_vcpus,
		     bool (*is_block)(const char *path), ScopeLimits *ret);

/*
 * Its name for systemd-machined, "vmd-NAME": a machine name is a valid host name
 * (machine_name_is_valid(): at most HOST_NAME_MAX, 64, bytes), which a sandbox name of
 * more than 60 is not with the prefix: -ENAMETOOLONG then, and no machine is registered.
 */
#define VM_SCOPE_MACHINE_NAME_MAX 64
int vm_scope_machine_name(const char *name, char ret[static VM_SCOPE_MACHINE_NAME_MAX + 1]);
