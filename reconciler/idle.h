/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * suspendAfterIdle (docs/sandbox-file.md, "Idle suspend"): a running sandbox whose backend
 * saw no activity (BackendOps.activity: its console's bytes, its taps' packets) for that
 * long is suspended as state: suspended would, its file untouched: the spec the planner
 * goes by says suspended until a wake: `vmd wake NAME`, or a new generation of its file.
 * That it sleeps is kept in <state-dir>/idle/NAME.json (the generation it fell asleep at),
 * so that a restarted vmd keeps it asleep.
 */

#include <stdbool.h>

#include "plan.h"

typedef struct Manager Manager;
typedef struct Sandbox Sandbox;

/* Wake requests: `vmd wake NAME` writes <run-dir>/wake/NAME, then sends SIGHUP. */
#define IDLE_WAKE_DIR "wake"

/* What the state dir says of a new sandbox: asleep, or not. */
void idle_load(Manager *m, Sandbox *sb);
/* The spec to plan for: its file's, or that as suspended while it sleeps (a new generation wakes it). */
void idle_plan_input(Manager *m, Sandbox *sb, PlanInput *in);
/* After a pass: its activity sampled on a coarse timer while it runs and may fall asleep; else not. */
void idle_update(Manager *m, Sandbox *sb);
/* Its suspend's reason, while it sleeps: "idle for 10m: suspended", not the file's state. */
void idle_plan_reasons(const Sandbox *sb, Plan *plan);
/* The spec its status is judged by: as idle_plan_input() gives it. */
const SandboxSpec *idle_wanted(const Sandbox *sb);
/* Why it sleeps ("idle for 10m: suspended"), NULL if it does not. */
const char *idle_reason(const Sandbox *sb);
/* SIGHUP: the wake requests in the run dir, taken (and removed). */
void idle_take_wakes(Manager *m);
/* Its file and VM are gone: what the state dir kept of it goes. */
void idle_forget(Manager *m, Sandbox *sb);
void idle_free(Sandbox *sb);
