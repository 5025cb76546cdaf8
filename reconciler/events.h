/* SPDX-License-Identifier: MIT */
#pragma once

#include "status.h"

/*
 * The daemon's event stream (docs/events.md): <run-dir>/events.sock, a Unix stream socket
 * that writes one JSON object a line to every client, and reads nothing from them. A client
 * gets a snapshot of every sandbox first, then each transition as it happens: a phase, a
 * condition, an action begun and its end, a file loaded, refused or removed. A client that
 * does not keep up is dropped (said in the journal); the loop never waits for one.
 */

#define EVENTS_SOCKET "events.sock"

typedef struct Manager Manager;
typedef struct Sandbox Sandbox;
typedef struct EventServer EventServer;

/* Serve <run-dir>/events.sock; what fails is said, and the daemon goes on without it. */
void events_start(Manager *m);
void events_stop(Manager *m);

/* A sandbox made (its place in the snapshot's order), or about to be dropped. */
void events_sandbox_new(Manager *m, Sandbox *sb);
void events_forget(Manager *m, Sandbox *sb);

/* What a sandbox's status was before it is computed again, to tell what changed. */
typedef struct EventsMark {
	Phase phase;
	ConditionStatus status[_CONDITION_TYPE_MAX];
	uint64_t conditions[_CONDITION_TYPE_MAX]; /* fingerprints of status, reason, message */
} EventsMark;

void events_mark(const Sandbox *sb, EventsMark *ret);
/* After its status.json is written: a "phase" and a "condition" event for what changed. */
void events_status_changed(Manager *m, const Sandbox *sb, const EventsMark *before);

/* An action begun (detail: why it was planned), succeeded, or failed (detail: why). */
void events_action(Manager *m, const Sandbox *sb, const char *action, const char *device,
		   const char *result, const char *detail);

/* A sandbox forgotten: its file gone, its VM cleaned up, its status removed. */
void events_deleted(Manager *m, const Sandbox *sb);

/* A file loaded (a new generation), refused (detail: why), or removed. */
void events_file(Manager *m, const Sandbox *sb, const char *result, const char *detail);
