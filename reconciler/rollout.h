/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>

#include "plan.h"

/*
 * Safe rollouts (docs/daemon.md, docs/sandbox-file.md): the host-wide disruption budget
 * and the rollback of a generation that does not become Ready.
 *
 * A disruption is a restart that a spec change (updatePolicy restart) or a rollback asks
 * for; crash restarts and first starts are none. It holds one of --max-disruptions slots
 * from the moment it is begun until its sandbox is Ready again; a restart finding no free
 * slot waits, and its status says for which sandbox (RestartRequired). One that fails to
 * become Ready (its probe timed out, a crash loop, a failed action) keeps its slot: the
 * others are blocked by it until it is Ready again, rolled back or edited.
 *
 * With rollback on, the generation of the last Ready spec is kept in
 * <state-dir>/rollout/NAME.json with that spec; a newer generation whose readiness times
 * out (or, without a readiness probe, that is not Ready within the probe's default
 * timeout), or that crash-loops, is rolled back to it: the planner gets that spec and its
 * generation, the file stays as it is, and the status says RolledBack until a newer edit
 * of the file. The rollback is kept in that file too: a restarted vmd goes on with it.
 */

typedef struct Manager Manager;
typedef struct Sandbox Sandbox;
typedef struct SandboxStatus SandboxStatus;

/* A new sandbox: what the state dir keeps of its rollout. */
void rollout_load(Manager *m, Sandbox *sb);
/* The sandbox goes: its slot, if it holds one, is free for the others. */
void rollout_free(Manager *m, Sandbox *sb);
/* The sandbox and its file are gone for good: what the state dir kept of it goes too. */
void rollout_forget(Manager *m, Sandbox *sb);
/* A rollout's part of a plan's input: the spec in force and its generation, the budget. */
void rollout_plan_input(Manager *m, Sandbox *sb, PlanInput *in);
/* A restart was begun for sb: it holds a disruption slot until it is Ready. */
void rollout_restart_begun(Manager *m, Sandbox *sb);
/*
 * Its conditions were computed for plan: a Ready sandbox gives back its slot and its
 * generation is the last Ready one; a new generation that is not Ready in time is rolled
 * back. Sets RolledBack, and RestartRequired when a restart waits for a slot.
 */
void rollout_status_updated(Manager *m, Sandbox *sb, const Plan *plan, uint64_t now_realtime);
/* The spec the VM is to run: the one rolled back to, or its file's; and its generation. */
const SandboxSpec *rollout_spec(const Sandbox *sb);
uint64_t rollout_generation(const Sandbox *sb);
/*
 * A restart of a sandbox waits for a slot (Plan.disruption_waits): RestartRequired's reason
 * (WaitingForDisruptionSlot, RolloutBlocked), and its message in buf.
 */
const char *rollout_wait_why(Manager *m, char *buf, size_t size);
