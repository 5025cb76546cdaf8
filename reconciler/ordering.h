/* SPDX-License-Identifier: MIT */
#pragma once

#include "after-spec.h"
#include "status.h"

/*
 * The daemon's side of spec.after (docs/sandbox-file.md, "Ordering"): which of the
 * sandboxes a spec names are Ready, for the planner (a start waits for all of them); what
 * the status says while it waits; a file that would close a cycle, refused; and stops in
 * the reverse order when several go at once (removed files, the host's shutdown). Ready is
 * the daemon's own word: the Ready condition of each sandbox as its status says it.
 */

typedef struct Manager Manager;
typedef struct Sandbox Sandbox;

/* sb's spec in force changed (or came): it is one of Manager.ordered if it names any. */
void ordering_update(Manager *m, Sandbox *sb);
/* sb goes: those that wait for it, or that it waited to see stopped, are looked at again. */
void ordering_forget(Manager *m, Sandbox *sb);
/* The manager goes. */
void ordering_done(Manager *m);

/*
 * Whether spec, for sb from the file at path, would close a cycle of after: with the specs
 * in force of the others: the message ("PATH:LINE:COL: spec.after[N]: a cycle of after: ...",
 * every edge's place), or NULL when it does not (or no memory to say it does).
 */
char *ordering_cycle(Manager *m, const Sandbox *sb, const SandboxSpec *spec, const char *path);

/* The planner's input: the names of sb's spec.after that are Ready now, NULL-terminated. */
void ordering_ready(Manager *m, const Sandbox *sb, const char *ready[static SPEC_AFTER_MAX + 1]);
/* The planner's other: whether a stop of sb waits for one naming it, being stopped too. */
bool ordering_stop_waits(Manager *m, const Sandbox *sb);
/*
 * After a plan: what sb waits for, in sb->waiting ("waiting for db (Ready=False: Probing),
 * cache (no such sandbox)"), said once in the journal as it begins to wait.
 */
void ordering_update_waiting(Manager *m, Sandbox *sb, bool waits);

/*
 * sb's status was computed again, its phase and Ready before were these: those waiting
 * for it to be Ready, and those whose stop waits for it to stop, are reconciled again.
 */
void ordering_status_changed(Manager *m, Sandbox *sb, Phase old_phase, ConditionStatus old_ready,
			     const char *old_reason);
