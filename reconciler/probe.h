/* SPDX-License-Identifier: MIT */
#pragma once

#include "status.h"

/*
 * The probes of a sandbox's running VM (probe-spec.h says what they are): its readiness,
 * tried every period until it passes or its timeout ends, then its liveness, whose
 * failureThreshold failures in a row force the VM off, to be restarted as its
 * restartPolicy says. All of it on the event loop: a connect is non-blocking, watched with
 * an io source, each try bounded by a timer of min(period, what is left of the timeout).
 * Nothing of it is kept across a restart of vmd: a VM it adopts is probed again.
 */

typedef struct Manager Manager;
typedef struct Sandbox Sandbox;
typedef struct Prober Prober;

/* Start, go on with or stop probing sb, as its spec and its VM are now (every status update). */
void probe_sync(Manager *m, Sandbox *sb);
void probe_free(Sandbox *sb);
/*
 * Whether a readiness probe holds Ready back (false: no probe, or it passed); then
 * *reason (static: Probing, ProbeFailed, ProbeTimeout) and *message (sb's) say why.
 */
bool probe_holds_ready(const Sandbox *sb, const char **reason, const char **message);
/* Its VM is being started: a console probe reads what the guest prints from here. */
void probe_vm_starting(Manager *m, Sandbox *sb);
/*
 * Its VM exited: if a liveness failure forced it off, the reason (sb's, or NULL). The
 * exit then counts as a failure for the backoff.
 */
const char *probe_liveness_kill(const Sandbox *sb);
