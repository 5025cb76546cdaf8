/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>

#include "macro.h"
#include "util.h"

/* A sandbox's status, as <run-dir>/<name>/status.json says it (docs/status.md). */

typedef enum Phase {
	PHASE_PENDING,
	PHASE_STARTING,
	PHASE_RUNNING,
	PHASE_PAUSED,
	PHASE_STOPPING,
	PHASE_STOPPED,
	PHASE_FAILED,
	PHASE_UNKNOWN,
	PHASE_SUSPENDED, /* its state in a snapshot, no VMM (state: suspended) */
	_PHASE_MAX,
	_PHASE_INVALID = -EINVAL,
} Phase;

DECLARE_STRING_TABLE(phase, Phase);

typedef enum ConditionType {
	CONDITION_CONFIG_VALID,
	CONDITION_READY,
	CONDITION_RESTART_REQUIRED,
	CONDITION_DEGRADED,
	CONDITION_RUNNING,     /* the VMM runs the guest; Ready may wait for a probe besides */
	CONDITION_ROLLED_BACK, /* a generation not Ready in time went back (rollout.c) */
	CONDITION_WAKE_FAILED, /* its snapshot could not be woken: set aside (suspend.c) */
	_CONDITION_TYPE_MAX,
} ConditionType;

extern const char *const condition_type_table[_CONDITION_TYPE_MAX];

typedef enum ConditionStatus {
	CONDITION_FALSE,
	CONDITION_TRUE,
	CONDITION_UNKNOWN, /* vmd cannot tell (its VMM does not answer) */
	_CONDITION_STATUS_MAX,
} ConditionStatus;

extern const char *const condition_status_table[_CONDITION_STATUS_MAX];

typedef struct Condition {
	ConditionStatus status;
	const char *reason; /* static: CamelCase, as Kubernetes conditions */
	char *message;
	uint64_t last_transition; /* CLOCK_REALTIME usec */
} Condition;

typedef struct SandboxStatus {
	Phase phase;
	Condition conditions[_CONDITION_TYPE_MAX];
} SandboxStatus;

void sandbox_status_done(SandboxStatus *s);

/* Set a condition; its transition time moves only when its status does. */
void condition_set(SandboxStatus *s, ConditionType t, ConditionStatus status, const char *reason,
		   const char *message, uint64_t now_realtime);

/*
 * A status.json's fileHash: "fnv1a64:" and 16 hex digits, of the bytes of the sandbox file
 * as vmd last read them (vmd wait --for applied compares it with the file's now).
 */
void status_file_hash_format(uint64_t h, char buf[static 32]);

/* RFC 3339 UTC time ("2026-11-21T23:10:00.123Z") of a CLOCK_REALTIME usec. */
void format_timestamp(uint64_t usec, char buf[static 32]);

/* A field ("status", "reason", "message") of a condition in a status.json; "" if none. */
const char *status_condition(json_t *status, const char *type, const char *field);

/* Read every status.json under run_dir (names sorted), or one. */
int status_read_all(const char *run_dir, json_t **ret_array);
int status_read_one(const char *run_dir, const char *name, json_t **ret);
