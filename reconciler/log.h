/* SPDX-License-Identifier: MIT */
#pragma once

#include <syslog.h>

#include "macro.h"

/*
 * vmd's log: to journald as structured entries (VMD_SANDBOX, VMD_BACKEND, VMD_ACTION,
 * VMD_RESULT, ERRNO, MESSAGE_ID), or to standard error for foreground use. The message ids
 * are a stable contract, listed in docs/journal.md: `journalctl MESSAGE_ID=...` finds
 * every event of one kind. While the journal takes no entries (its socket gone, journald
 * stopped), they go to standard error, which says so once.
 */

#define LOG_MESSAGE_ACTION_DONE "57778e3611874f63ae7e3793a57af4db"
#define LOG_MESSAGE_ACTION_FAILED "38f80e01d6c445f78e922716180a2829"
#define LOG_MESSAGE_CONFIG_INVALID "a899425d8991455cb2e0a31d8d4d9d43"
#define LOG_MESSAGE_VM_EXITED "9d49ae449f984ebc9a097b3aead0c465"
#define LOG_MESSAGE_ADOPTED "325e38f0c7c64644884bab1b49da1ff3"
#define LOG_MESSAGE_DAEMON                                                                         \
	"83a9824971ec45bd8c78cacdd5d04e93" /* started, reloaded, stopping, degraded */
#define LOG_MESSAGE_CONFIG_VALID "b1c2f6b406524639b3fb79e073d5223b" /* a file became valid again */
/* Stops of removed files held (too many at once, the directory replaced), released, approved. */
#define LOG_MESSAGE_DELETIONS "eecc8e796ee942fab6b70420831f4306"
/* An action done after failed attempts: the sandbox's failures end. */
#define LOG_MESSAGE_RECOVERED "25722bd8c7614c3a9a88466d5c58b1d4"
/* A sandbox forgotten: its file gone, its VM cleaned up. */
#define LOG_MESSAGE_REMOVED "cc84ba335c2b476ba54332141ab9edc2"
/* A VMM in trouble: forced off, killed, unresponsive, its connection lost, answering again. */
#define LOG_MESSAGE_VMM "0fc9dc1a31734bd1be4914b3ea13e142"
/* A probe of the guest: readiness passed or timed out, liveness failed and the VM forced off. */
#define LOG_MESSAGE_PROBE "44a20135d6c747859ea1c2ae022faabf"

typedef enum LogTarget {
	LOG_TARGET_AUTO, /* journal when stderr is connected to it (JOURNAL_STREAM), else console */
	LOG_TARGET_JOURNAL,
	LOG_TARGET_CONSOLE,
	_LOG_TARGET_MAX,
	_LOG_TARGET_INVALID = -EINVAL,
} LogTarget;

extern const char *const log_target_table[];
LogTarget log_target_from_string(const char *s);

void log_setup(LogTarget target);

/*
 * What one entry is about; any field may be NULL or 0. A sandbox's name leads the message
 * ("web-1: re-adopted its running VM"); an entry without a message_id is the daemon's.
 */
typedef struct LogFields {
	const char *sandbox;
	const char *backend;
	const char *action;
	const char *result; /* "done", "failed", "refused", ... */
	int error;	    /* errno (positive), 0 for none */
	const char *message_id;
} LogFields;

/* Log at priority (LOG_INFO, ...) with fields; returns -error, so it can end a function. */
int log_fields(int priority, const LogFields *f, const char *fmt, ...) _printf_(3, 4);

#define log_info(...) log_fields(LOG_INFO, &(LogFields){}, __VA_ARGS__)
#define log_warning(...) log_fields(LOG_WARNING, &(LogFields){}, __VA_ARGS__)
#define log_warning_errno(e, ...)                                                                  \
	log_fields(LOG_WARNING, &(LogFields){ .error = (e) < 0 ? -(e) : (e) }, __VA_ARGS__)
#define log_error_errno(e, ...)                                                                    \
	log_fields(LOG_ERR, &(LogFields){ .error = (e) < 0 ? -(e) : (e) }, __VA_ARGS__)
