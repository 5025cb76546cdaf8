/* SPDX-License-Identifier: MIT */
#pragma once

#include "backend.h"
#include "snapshot.h"
#include "spec.h"

/*
 * The planner: what to do about one sandbox, as a pure function of what its file asks
 * for, what its backend reports and what the backend can do live. No I/O, no clock, no
 * logging: time comes in as an argument. The daemon and `vmd plan` both call it.
 */

typedef enum ActionType {
	ACTION_START,
	ACTION_STOP,
	ACTION_RESTART,
	ACTION_PAUSE,
	ACTION_RESUME,
	ACTION_DISK_ADD,
	ACTION_DISK_REMOVE,
	ACTION_NET_ADD,
	ACTION_NET_REMOVE,
	ACTION_RESIZE,
	ACTION_DISK_UPDATE,
	ACTION_CLEANUP,
	ACTION_SUSPEND,	      /* state: suspended: saved into a snapshot, its VMM ended */
	ACTION_WAKE,	      /* restored from its snapshot */
	ACTION_DROP_SNAPSHOT, /* its snapshot deleted (never its disks) */
	ACTION_SAVE_TEMPLATE, /* startFrom: snapshot: its template saved, and it runs on */
	_ACTION_TYPE_MAX,
	_ACTION_TYPE_INVALID = -EINVAL,
} ActionType;

DECLARE_STRING_TABLE(action_type, ActionType);

/* Whether an action may take away something that runs: it waits out the grace window. */
bool action_is_destructive(ActionType t);

typedef struct Action {
	ActionType type;
	const char *device; /* disk or network id, NULL otherwise; points into the inputs */
	const char *reason; /* why, for humans: a static string */
} Action;

#define PLAN_ACTIONS_MAX (4 + 2 * SPEC_DISKS_MAX + 2 * SPEC_NETWORKS_MAX)

/* What the host has, for admission: 0 for what is not known (not checked). */
typedef struct HostResources {
	unsigned cpus;	 /* online */
	uint64_t memory; /* bytes, in total */
} HostResources;

/* Whether a VM of spec fits the host: its memory and its vCPUs each no more than it has. */
bool plan_fits_host(const SandboxSpec *spec, const HostResources *host);

typedef struct PlanInput {
	const SandboxSpec *desired; /* NULL: its file is gone */
	uint64_t generation;	    /* of desired */
	const VmObserved *observed; /* state VM_ABSENT when nothing runs */
	BackendCaps caps;	    /* of the backend it runs on */
	uint64_t desired_since;	    /* when desired last changed, in the caller's clock */
	uint64_t retry_at;	    /* no actions before this (backoff); 0 for none */
	/* The VMM was too busy for the last resize (no failure): none before this; 0 for none. */
	uint64_t resize_retry_at;
	/*
	 * Admission: a start, a restart or a resize to a spec that does not fit this host is
	 * refused (Plan.insufficient). NULL: nothing is checked (--allow-overcommit, or a
	 * backend whose VMs take nothing from the host).
	 */
	const HostResources *host;
	/*
	 * spec.after (ordering.c): which of the sandboxes desired names there are Ready now,
	 * NULL-terminated (NULL: none is). A start, and a restart, wait for every one of them;
	 * a VM that runs is never stopped because one is not Ready any more.
	 */
	const char *const *ready;
	/* A stop waits: a sandbox that names this one in its spec.after is being stopped too. */
	bool stop_waits;
	/* Its complete snapshot (state: suspended), NULL if it has none. */
	const Snapshot *snapshot;
	/* startFrom: snapshot: it is Ready and has no template yet (template.c) */
	bool template_due;
	/* Its VMM ended with the save of its template: started again (from it) at once. */
	bool template_resume;
	/* Its snapshot was set aside after wakes that failed (suspend.c): it boots at once. */
	bool boot_afresh;
	/*
	 * The host-wide disruption budget (--max-disruptions, reconciler/rollout.c): a restart
	 * for a spec change is not begun while no slot is free (Plan.disruption_waits).
	 */
	bool no_disruption_slot;
	/* desired is the last Ready generation, rolled back to: it restarts whatever updatePolicy. */
	bool rollback;
} PlanInput;

typedef struct Plan {
	Action actions[PLAN_ACTIONS_MAX];
	size_t n_actions;
	bool restart_required;	 /* a change waits for the next boot (updatePolicy on-next-boot) */
	const char *restart_why; /* static: why, when more can be said than "a new boot" */
	bool resize_waits;	 /* a resize waits for a VMM that was busy (resize_retry_at) */
	bool held;		 /* destructive actions wait for the grace window or backoff */
	bool insufficient; /* a start, restart or resize refused: the spec does not fit the host */
	uint64_t wake_at;  /* when to plan again for what is held; 0 if nothing is */
	bool waits_for_after;  /* a start or restart waits for spec.after's sandboxes to be Ready */
	bool stop_waits;       /* a stop waits for those naming it in spec.after to be stopped */
	bool disruption_waits; /* a restart waits for a disruption slot (no_disruption_slot) */
} Plan;

/* Whether every sandbox spec names in spec.after is among ready (NULL-terminated, or NULL). */
bool plan_after_ready(const SandboxSpec *spec, const char *const *ready);

/* Whether a template (startFrom: snapshot) stands for a boot of want: boot config, disks, NICs. */
bool plan_template_matches(const Snapshot *t, const SandboxSpec *want);

void plan_sandbox(const PlanInput *in, uint64_t now, uint64_t grace, Plan *ret);
