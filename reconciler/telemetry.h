/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "plan.h"

/*
 * What the daemon tells about itself beside the status files: <run-dir>/daemon.json (its
 * pid, when its last pass ended), rewritten after passes at most once a second, so that
 * `vmd status` can tell a daemon that runs from one that stopped or hangs; and with
 * --metrics-file, the same moments, Prometheus' text format for node_exporter's textfile
 * collector (docs/daemon.md, "Metrics").
 */

#define DAEMON_INFO_FILE "daemon.json"

typedef struct Manager Manager;
typedef struct Sandbox Sandbox;

typedef enum ActionResult {
	ACTION_RESULT_DONE,
	ACTION_RESULT_FAILED,
	ACTION_RESULT_REFUSED, /* not tried: the host cannot hold it */
	_ACTION_RESULT_MAX,
} ActionResult;

extern const char *const action_result_table[_ACTION_RESULT_MAX];

/* How long one kind of action took on a sandbox, from its request to its completion. */
typedef struct ActionStats {
	uint64_t count;
	uint64_t usec; /* summed */
} ActionStats;

typedef enum PassKind {
	PASS_EVENT,  /* the sandboxes events marked dirty */
	PASS_RESYNC, /* every sandbox: the resync timer, SIGHUP, a watcher overflow */
	_PASS_KIND_MAX,
} PassKind;

extern const char *const pass_kind_table[_PASS_KIND_MAX];

typedef struct Telemetry {
	uint64_t started_at; /* CLOCK_REALTIME */
	uint64_t passes[_PASS_KIND_MAX];
	uint64_t pass_usec[_PASS_KIND_MAX]; /* summed */
	uint64_t last_pass_end;		    /* CLOCK_REALTIME, 0 before the first */
	uint64_t resync_began;		    /* CLOCK_MONOTONIC, of the resync under way */
	uint64_t actions[_ACTION_TYPE_MAX][_ACTION_RESULT_MAX];
	uint64_t last_write; /* CLOCK_MONOTONIC */
	/* The last write's error (-errno, 0 for none): said once, not at every write. */
	int info_error, metrics_error;
	sd_event_source *write_timer;
} Telemetry;

void telemetry_init(Manager *m);
void telemetry_done(Manager *m);
/* A pass that began at began (CLOCK_MONOTONIC) ended now: count it, write soon. */
void telemetry_pass_done(Manager *m, PassKind kind, uint64_t began);
/* An action (by its name: "start", "disk-add"...) requested at sb->action_began ended. */
void telemetry_action(Manager *m, Sandbox *sb, const char *what, ActionResult result);
/* The metrics as the file has them (the caller frees it); -errno. */
int telemetry_metrics(Manager *m, char **ret, size_t *ret_len);

/* What daemon.json and vmd.lock say, for vmd status. */
typedef struct DaemonLiveness {
	bool ran;	      /* a vmd ran with this run dir (vmd.lock is there) */
	bool running;	      /* and one holds its lock; false if it cannot tell */
	bool unknown;	      /* whether one runs cannot be told (/proc/locks unreadable) */
	pid_t pid;	      /* the pid vmd.lock names, 0 if none */
	uint64_t last_pass;   /* CLOCK_REALTIME, 0 if daemon.json does not say */
	uint64_t resync_usec; /* how often it passes over everything at the least */
} DaemonLiveness;

int daemon_liveness(const char *run_dir, DaemonLiveness *ret);
