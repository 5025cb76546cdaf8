/* SPDX-License-Identifier: MIT */
#pragma once

#include <dirent.h>
#include <sys/stat.h>
#include <systemd/sd-event.h>

#include "backend.h"
#include "deletion-guard.h"
#include "host-ports.h"
#include "host-systemd.h"
#include "hashmap.h"
#include "list.h"
#include "plan.h"
#include "prioq.h"
#include "sandbox-file.h"
#include "source-revision.h"
#include "snapshot.h"
#include "spec.h"
#include "status.h"
#include "telemetry.h"

/*
 * The daemon's one context. manager.c runs the loop and its events; desired.c reads the
 * sandbox directory; executor.c carries out plans through the backends; status.c reports.
 * These files share the structs below and nothing else does.
 */

typedef struct ManagerConfig {
	const char *sandbox_dir;
	const char *run_dir;
	const char *state_dir;
	BackendKind default_backend;
	BackendKind backend_override; /* _BACKEND_KIND_INVALID for none */
	uint64_t resync_usec;
	uint64_t grace_usec;
	Trust trust; /* who may write the sandbox files: --trusted-uid, --trusted-gid */
	DeletionLimit max_deletions;
	bool allow_overcommit;	  /* start what needs more memory or CPUs than the host has */
	const char *metrics_file; /* --metrics-file: Prometheus text format, or NULL */
	const char *dhcp_leases;  /* --dhcp-leases: a dnsmasq lease file, or NULL */
	BackendOptions backend_options;
	unsigned max_disruptions; /* --max-disruptions: restarts for spec changes at once; 0 any */
	bool rollback;		  /* --rollback: the default of files without spec.rollback */
} ManagerConfig;

/* An exit sooner than this after a start counts towards a crash loop (executor.c, rollout.c). */
#define CRASH_LOOP_USEC (10ull * 1000u * 1000u)

/* In <run-dir>/<name>/: what vmd did about a sandbox, so that the next vmd goes on from it. */
#define SANDBOX_BACKOFF_FILE "backoff.json"

typedef struct Watcher Watcher;
typedef struct Scan Scan;

typedef struct Manager Manager;

typedef struct Sandbox {
	Manager *manager;
	char *name;
	BackendKind vm_backend; /* where its VM runs, once known; _BACKEND_KIND_INVALID before */

	/* What its file asks for. */
	char *path;	     /* the file it comes from; NULL once the file is gone */
	struct stat file_st; /* identity of the file as last read, to skip unchanged files */
	uint64_t file_hash;  /* fnv1a64 of its bytes as last read, if file_hashed */
	bool file_hashed;
	/* source-revision.c: where desired's content came from (a commit, a version link) */
	SourceRevisionKind source_kind;
	char *source_revision;	/* NULL with SOURCE_REVISION_NONE */
	SandboxSpec *desired;	/* the last valid spec; NULL if it never had one */
	uint64_t generation;	/* bumped on every change of desired */
	uint64_t desired_since; /* CLOCK_MONOTONIC: when desired (or the file's presence) changed */
	char *config_error;	/* why the file is refused now, or NULL */
	const char *config_reason; /* InvalidConfig, Untrusted, PathEscape, NameConflict */
	/*
	 * desired is the state dir's copy, no file has been taken since; and that copy turned out
	 * older than what the VM runs (its write failed, or vmd died first): act on nothing then,
	 * until the file is valid again. stale_generation is the copy's.
	 */
	bool spec_from_state_dir;
	bool spec_stale;
	uint64_t stale_generation;
	/* The newest generation vmd has done all it is going to do about: observedGeneration. */
	uint64_t settled_generation;

	/* What runs. */
	VmObserved observed;
	bool observe_failed; /* its backend could not say: act on nothing */
	bool stranger;	     /* runtime state vmd cannot prove is its own: act on nothing */
	HostPort **ports;    /* the host ports its spec in force forwards (host-ports.c) */
	size_t n_ports;
	pid_t scope_pid; /* its VMM moved into a scope of its own (host-systemd.c), or 0 */
	uint64_t scope_memory_max; /* that scope's MemoryMax=, as vmd asked for it, or 0 */
	bool host_stop;		   /* its guest is being shut down for the host's shutdown */
	bool stray_reported;	   /* the journal was told of observed.stray */
	/* Found running, its VMM did not answer: left alone, adopted later (backoff, SIGHUP). */
	bool quarantined;
	unsigned adopt_failures;
	uint64_t adopt_retry_at; /* CLOCK_MONOTONIC */
	char *adopt_error;

	/* probe.c: its VM's readiness and liveness probes, while it runs */
	struct Prober *prober;
	uint64_t console_offset; /* console.log's size when vmd last started its VM */
	char *liveness_kill;	 /* why liveness forced its VM off, until the next start */
	bool counted_ready;	 /* in Manager.n_ready */
	struct Rollout *rollout; /* rollout.c: its disruption slot, its last Ready spec, a rollback */

	/* ordering.c: spec.after */
	ListNode ordered_node; /* Manager.ordered, while its spec names sandboxes in after: */
	char **after_counted;  /* the names it counts in Manager.named (its spec's after:) */
	char *waiting;	       /* what its start waits for (WaitingForDependencies), or NULL */
	bool host_stop_waits;  /* host_stop: its stop waits for those naming it to stop first */

	/* What vmd did about it. */
	unsigned restarts;
	unsigned failures;    /* in a row, for backoff */
	unsigned quick_exits; /* exits in a row within CRASH_LOOP_USEC of the start: a crash loop */
	uint64_t retry_at;    /* CLOCK_MONOTONIC, 0 for none */
	char *last_error;
	char *exit_reason;     /* how its VM last exited on its own: the VMM's words, its status */
	uint64_t action_began; /* CLOCK_MONOTONIC: the action under way was asked for; 0 none */
	ActionStats action_stats[_ACTION_TYPE_MAX]; /* telemetry.c */
	uint64_t phase_since;			    /* CLOCK_REALTIME: status.phase last changed */
	uint64_t backoff_hash; /* fingerprint of the above as backoff.json last kept them */
	bool restart_required;
	const char *restart_why;  /* static: RestartRequired's message, NULL for the usual one */
	uint64_t resize_retry_at; /* CLOCK_MONOTONIC: the VMM was busy for a resize; 0 */
	char *refusal; /* why its start (or restart, resize) is refused: InsufficientResources */
	sd_event_source *wake; /* plans again when held actions come due */

	/* suspend.c: its complete snapshot (state: suspended), or NULL */
	Snapshot *snapshot;
	/* The .new dir of a save under way, or of one saved whose commit failed (retried). */
	char *snapshot_new;
	Snapshot *snapshot_saving;	/* what that save is of: its manifest to be */
	sd_event_source *snapshot_sync; /* a child syncing that save to disk, before the commit */
	unsigned wake_failures; /* in a row: at WAKE_FAILURES_MAX its snapshot is set aside */
	bool boot_afresh;	/* its snapshot was set aside: it boots at once */
	/* WakeFailed's message once it was set aside, until it suspends or its file changes */
	char *wake_failed;
	uint64_t wake_failed_generation; /* the generation it was set aside at */
	/* template.c (startFrom: snapshot): its template, or NULL */
	Snapshot *template;
	bool template_saving;	 /* the save under way (snapshot_new) is of its template */
	bool template_resume;	 /* its VMM ended with that save: it is started from it at once */
	bool template_restoring; /* its start under way restores its template */
	char *start_note;	 /* how its VM last started: "restored from its template of ..." */

	/* idle.c: suspendAfterIdle */
	sd_event_source *idle_timer;	/* samples its activity while it runs */
	uint64_t idle_count;		/* its activity count as last sampled */
	uint64_t idle_active_at;	/* CLOCK_MONOTONIC: when that count last changed */
	uint64_t asleep_generation;	/* suspended for idling at this generation; 0: awake */
	uint64_t asleep_idle_ms;	/* after how long idle */
	SandboxSpec *asleep_spec;	/* its spec as suspended: what the planner goes by */
	char *asleep_reason;		/* "idle for 10m: suspended" */
	sd_event_source **asleep_ports; /* its forwarded TCP ports, held by vmd while it sleeps */
	size_t n_asleep_ports;
	bool asleep_ports_said; /* a port that could not be held was said, this sleep */

	/* status.phase changes in sandbox_update_status() alone: the STATUS= tallies follow it. */
	SandboxStatus status;
	uint64_t status_hash; /* fingerprint of the status.json last written, to skip rewrites */
	unsigned failing_idx; /* its place in Manager.failing; 0 if it is not failing */
	char *persist_text;   /* its last valid spec, waiting to be written to the state dir */
	bool persist_failed;  /* a write of it failed: it is retried (StateWriteFailed) */

	uint64_t event_id; /* events.c: its place in Manager.all, for a client's snapshot */

	/* Where it waits: each list of the Manager's it can be in. */
	ListNode all_node;     /* Manager.all */
	ListNode dirty_node;   /* Manager.dirty */
	ListNode persist_node; /* Manager.persist_queue */
	ListNode removal_node; /* Manager.guard.removals */
	uint64_t seen_scan;    /* the last Manager.scan_id that found its file */

	/* deletion-guard.c */
	bool has_vm;		/* counted in Manager.guard.n_vms */
	bool deletion_approved; /* an approval lets its stop go ahead, until its file is back */
} Sandbox;

/* Which directory a scan read: the same path may come to lead to another one (a mount). */
typedef struct DirIdentity {
	char *real; /* its canonical path; NULL: none yet */
	dev_t dev;
	ino_t ino;
} DirIdentity;

/*
 * deletion-guard.c: the stops of removed files, held when too many come at once
 * (--max-deletions) or when the directory was replaced, until the files are back or an
 * approval comes (vmd approve-deletions).
 */
typedef struct DeletionGuard {
	List removals;	/* Sandboxes whose file is gone while their VM runs: a stop would follow */
	size_t n_vms;	/* Sandboxes that have a VM */
	bool tripped;	/* every stop of removals is held */
	bool replaced;	/* the trip's cause: the directory was replaced, not a count */
	char id[33];	/* the trip's: an approval names it, and no other trip */
	uint64_t since; /* CLOCK_REALTIME: when it tripped */
	bool deferred;	/* a stop came due while a pass was still finding files gone */
	DirIdentity accepted; /* the directory vmd goes by */
	bool dir_replaced;    /* the one read now is another: what it lacks is suspect */
	dev_t seen_dev;	      /* that other one, while dir_replaced */
	ino_t seen_ino;
	sd_event_source *write_event; /* rewrites deletions-held.json, at idle priority */
} DeletionGuard;

struct Manager {
	ManagerConfig config;
	sd_event *event;
	Hashmap *sandboxes; /* name -> Sandbox */
	Backend *backends[_BACKEND_KIND_MAX];
	Watcher *watcher;
	int lock_fd;	     /* <run-dir>/vmd.lock */
	int sandbox_lock_fd; /* the sandbox directory itself, flocked */

	List all; /* every Sandbox, oldest first: what a pass in slices walks (a hashmap cannot) */

	sd_event_source *resync_timer;
	sd_event_source *reconcile_event; /* a deferred pass over the dirty sandboxes */
	List dirty;	    /* Sandboxes to reconcile in that pass, in the order marked */
	List persist_queue; /* Sandboxes with a spec to write to the state dir, oldest first */
	sd_event_source *persist_event; /* writes them, at idle priority */
	/* A write to the state dir failed (why, or NULL): retried with a backoff, then. */
	char *state_write_error;
	unsigned state_write_failures;
	sd_event_source *persist_retry;
	bool stopping; /* manager_free: the last writes, not retried */

	/*
	 * A pass over every sandbox (the resync timer, SIGHUP, a watcher overflow): read the
	 * directory again, then reconcile each one, in slices at a priority below the events'.
	 */
	sd_event_source *resync_event;
	bool resync_scanning; /* reading the directory, which comes first */
	Sandbox *resync_next; /* then the next one of all to reconcile; NULL when done */
	bool resync_again;    /* asked for while one is under way: another follows it */
	bool resync_reload;   /* this pass is a SIGHUP's: READY=1 when it is done */
	bool reload_asked;    /* a SIGHUP came: the next pass to start is its */
	Scan *scan;	      /* desired.c: a scan under way */
	uint64_t scan_id;     /* bumped at the start of each scan */
	bool scan_complete;   /* the last scan read the whole directory */
	/*
	 * desired.c: candidate files whose name is no sandbox's (Web.yaml), by path: each is
	 * reported once, and counted in STATUS= until it goes.
	 */
	Hashmap *ignored;
	Prioq *ignored_order; /* the same, by path: STATUS= names the first */

	/* status-line.c: what STATUS= says, kept as sandboxes change instead of counted over all */
	unsigned phase_tally[_PHASE_MAX];
	unsigned n_ready; /* sandboxes whose Ready is True */
	Prioq *failing;	  /* Sandboxes that are Failed or whose file is refused, by name */

	DeletionGuard guard;
	Telemetry telemetry; /* telemetry.c: passes counted, daemon.json */

	bool ready;
	bool read_only;		  /* vmd plan: look, change nothing, write nothing */
	HostSystemd *systemd;	  /* the system bus when vmd is a systemd service, or NULL */
	Hashmap *ports;		  /* "tcp/2222" -> HostPort: which sandbox forwards it */
	struct NeighTable *neigh; /* the host's neighbour table, as read last (manager_neigh()) */
	uint64_t neigh_read_at;	  /* CLOCK_MONOTONIC */
	bool leases_error_said;	  /* --dhcp-leases could not be read: said once */
	struct NeighMonitor *neigh_monitor; /* addresses.c: the kernel's neighbour events */
	sd_event_source *neigh_event;
	sd_event_source *leases_event; /* --dhcp-leases' directory, watched */
	bool sigterm_asked; /* SIGTERM came: whether the host shuts down is being asked */
	bool host_stopping; /* the host shuts down: the guests are shut down, nothing planned */
	char boot_id[64];
	DIR *sweep;		      /* the run dir, while its leftovers are removed */
	sd_event_source *sweep_event; /* that, at idle priority */
	char *degraded;		      /* why the sandbox directory cannot be read, or NULL */
	char *watch_error;	      /* why the directory is not watched but polled, or NULL */
	char *notified_status;
	HostResources host; /* what the host has, for admission */
	List ordered;	    /* ordering.c: the Sandboxes whose spec in force has an after: */
	Hashmap *named;	    /* ordering.c: name -> how many of those name it */
	struct EventServer *events; /* events.c: <run-dir>/events.sock, or NULL */
	/* rollout.c: the restarts that hold a disruption slot, and those that wait for one */
	List disruptions, disruption_waiters;
};

/* manager.c */
int manager_new(const ManagerConfig *config, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_POINTER_CLEANUP(Manager, manager_free)
int manager_run(Manager *m);
/*
 * One vmd per sandbox directory, whatever its run dir: a flock on the directory's own fd
 * (vmd writes nothing there), taken again for a directory that appeared since or replaced
 * the one locked. -EBUSY, said in the journal, when another vmd holds it.
 */
int manager_lock_sandbox_dir(Manager *m);
/* The host's neighbour table, read again when older than 2 s; NULL if it cannot be read. */
struct NeighTable *manager_neigh(Manager *m);
/*
 * addresses.c: a sandbox whose NIC's address is learned, changes or goes (a neighbour
 * event, a write of the --dhcp-leases file) is reconciled then, so that its status shows
 * it. What cannot be watched is said once; the resync still finds it.
 */
void addresses_watch(Manager *m);
void addresses_done(Manager *m);
/* For vmd plan: no lock, no loop, no writes; backends only list and observe. */
int manager_new_read_only(const ManagerConfig *config, Manager **ret);
/* A sandbox for every VM a backend has runtime state for (adopted when reconciled). */
void manager_find_vms(Manager *m);
Sandbox *manager_sandbox(Manager *m, const char *name, bool create);
void manager_drop_sandbox(Manager *m, Sandbox *sb);
void manager_mark_dirty(Manager *m, Sandbox *sb);
/* The backend a sandbox runs on (or would), NULL if this build has none for it. */
Backend *manager_backend_of(Manager *m, const Sandbox *sb);
BackendKind manager_backend_kind(const Manager *m, const Sandbox *sb);
/* What the host has, for the planner's admission check on b; NULL: nothing is checked. */
const HostResources *manager_admission(const Manager *m, const Backend *b);

/* desired.c */
void manager_load_persisted(Manager *m);
/* Read the whole directory again now; -errno if it cannot be read. */
int manager_scan(Manager *m);
/*
 * The same in steps: start (again, if one is under way), then steps of about budget_usec
 * until one returns 0 (done) or -errno (the directory cannot be read). Then check each
 * sandbox: one whose file the scan did not see has none.
 */
int manager_scan_start(Manager *m);
int manager_scan_step(Manager *m, uint64_t budget_usec);
void manager_scan_check_gone(Manager *m, Sandbox *sb);
void manager_scan_done(Manager *m);
void manager_file_event(Manager *m, const char *path);
void manager_forget_persisted(Manager *m, const char *name);
void manager_free_ignored(Manager *m);
/* The ignored files: how many, and the first by path (NULL if none). */
size_t manager_ignored(const Manager *m, const char **ret_first);
/*
 * Write pending copies to the state dir for about budget_usec; returns how many are left.
 * A failed write stops the slice and is retried later (state_write_error says why).
 */
size_t manager_write_persisted(Manager *m, uint64_t budget_usec);

/* executor.c */
void sandbox_reconcile(Manager *m, Sandbox *sb);
/* An operation the backend completed later: log it, back off a failure, plan again. */
void sandbox_op_done(Manager *m, Sandbox *sb, BackendOp op, const char *device, int error,
		     const char *message);
/* What backoff.json says of a new sandbox: restarts, backoff, when to try again (the daemon). */
void sandbox_load_backoff(Manager *m, Sandbox *sb);
/* Its VM exited on its own or as asked: count quick exits, back off a crash loop. */
void sandbox_vm_exited(Manager *m, Sandbox *sb, int status, const char *reason);
void sandbox_observe(Manager *m, Sandbox *sb);
/* Why spec does not fit the host (InsufficientResources), in words; NULL if it does. */
char *sandbox_refusal_message(const SandboxSpec *spec, const HostResources *host);

/* deletion-guard.c */
int deletion_guard_init(Manager *m);
void deletion_guard_done(Manager *m);
/* sb's file or VM may have changed: count it again. */
void deletion_guard_update(Manager *m, Sandbox *sb);
void deletion_guard_forget(Manager *m, Sandbox *sb);
/* Take out of a plan for sb (its file gone) a stop that the guard holds. */
void deletion_guard_filter(Manager *m, Sandbox *sb, Plan *plan);
/* Whether the guard holds sb's stop (its status says so). */
bool deletion_guard_holds(const Manager *m, const Sandbox *sb);
/* A whole scan read the directory real, which is st: the one vmd goes by, or another? */
void deletion_guard_scanned(Manager *m, const char *real, const struct stat *st);
/* A pass over every sandbox is over: judge what it found gone. */
void deletion_guard_pass_done(Manager *m);
/* SIGHUP: take the approval in the run dir, if there is one. */
void deletion_guard_approve(Manager *m);
/* What the daemon's STATUS= says while the guard holds stops; "" if it holds none. */
void deletion_guard_describe(const Manager *m, char *buf, size_t size);

/* suspend.c */
/* The snapshots in the state dir: each a sandbox's, found suspended; what saves left, gone. */
void manager_load_snapshots(Manager *m);
void sandbox_suspend_done(Sandbox *sb);
/* Whether it has a snapshot, or a save under way: its sandbox is not forgotten. */
bool sandbox_has_snapshot(const Sandbox *sb);
/* The actions: 0 done, > 0 under way (op_done), -errno with the backend's error. */
int sandbox_suspend(Manager *m, Sandbox *sb, Backend *b);
int sandbox_wake(Manager *m, Sandbox *sb, Backend *b);
int sandbox_drop_snapshot(Manager *m, Sandbox *sb);
/* A save whose commit failed, tried again; -errno, with last_error, if it fails again. */
int sandbox_suspend_commit(Manager *m, Sandbox *sb);
void sandbox_suspend_abort(Sandbox *sb);
/* A suspend or restore that the backend completed: the snapshot follows. */
void sandbox_suspend_op_done(Manager *m, Sandbox *sb, BackendOp op, int error);
/* The WakeFailed condition: True from a snapshot set aside until it suspends again or its
 * file changes. */
void sandbox_wake_condition(Sandbox *sb, uint64_t now_realtime);

/* template.c: startFrom: snapshot */
char *sandbox_template_root(const Manager *m);
/* The templates in the state dir: each a sandbox's that exists. */
void manager_load_templates(Manager *m);
void sandbox_template_done(Sandbox *sb);
/* Whether its template is to be saved now: startFrom snapshot, Ready, none yet. */
bool sandbox_template_due(const Sandbox *sb, const Backend *b);
/* ACTION_SAVE_TEMPLATE: as sandbox_suspend(), into the templates. */
int sandbox_template_save(Manager *m, Sandbox *sb, Backend *b);
/*
 * A start of want: restored from its template if it has one that matches (-ENOENT: it
 * has none, or it was deleted or set aside: boot), else as the backend's restore returns.
 */
int sandbox_template_start(Manager *m, Sandbox *sb, Backend *b, const SandboxSpec *want,
			   uint64_t generation);
/* Its template, deleted (why, for the journal). */
int sandbox_template_drop(Manager *m, Sandbox *sb, const char *why);
void sandbox_template_op_done(Manager *m, Sandbox *sb, BackendOp op, int error);

/* status.c; the tallies and STATUS= in status-line.c */
void sandbox_update_status(Manager *m, Sandbox *sb, const Plan *plan);
void sandbox_remove_status(Manager *m, Sandbox *sb);
/* The STATUS= tallies: a sandbox comes, goes, or its config_error came or went. */
void manager_tally_add(Manager *m, Sandbox *sb);
void manager_tally_remove(Manager *m, Sandbox *sb);
void manager_tally_update(Manager *m, Sandbox *sb);
/* Its Ready was computed again: Manager.n_ready follows it. */
void manager_tally_ready(Manager *m, Sandbox *sb);
void manager_notify_status(Manager *m);
void manager_notify_ready(Manager *m);
