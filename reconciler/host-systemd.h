/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

typedef struct HostSystemd HostSystemd;
typedef struct Manager Manager;
typedef struct SandboxSpec SandboxSpec;

/*
 * The system bus, when vmd runs as a systemd system service; *ret NULL otherwise (and when
 * the bus cannot be reached: said once), and nothing below does anything then.
 */
int host_systemd_new(sd_event *event, HostSystemd **ret);
void host_systemd_free(HostSystemd *h);
/* vmd's own unit ("vmd.service"), or NULL. */
const char *host_systemd_unit(const HostSystemd *h);

/*
 * Move a VMM that is still in vmd's control group into vmd-NAME.scope (machine.slice),
 * ordered before vmd's unit, with the limits of spec (reconciler/vm-scope.h; the guest can
 * grow to max_memory and max_vcpus, 0: not at all), then register it with systemd-machined
 * as vmd-NAME. A VMM in a scope already (adopted) is only registered, if it is not yet.
 * Asynchronous; a failure is logged once and leaves it where it is.
 */
void host_systemd_scope(HostSystemd *h, const char *name, pid_t pid, const SandboxSpec *spec,
			uint64_t max_memory, unsigned max_vcpus);
/* Raise vmd-NAME.scope's MemoryMax= (SetUnitProperties, runtime). Asynchronous, as above. */
void host_systemd_scope_memory(HostSystemd *h, const char *name, uint64_t memory_max);

/*
 * SIGTERM: when the host shuts down (the manager's SystemState is "stopping"), shut every
 * guest down as a stop does, then exit the loop; otherwise exit it at once, VMs running.
 */
void host_systemd_sigterm(Manager *m);
/* While the guests are shut down for the host: exit the loop once none is up any more. */
void host_systemd_check_shutdown(Manager *m);
/*
 * The host shuts down (SystemState "stopping" at SIGTERM): every guest is shut down as a
 * stop does, those others name in spec.after once these are down; vmd exits then.
 */
void host_systemd_shut_guests_down(Manager *m);
