/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>
#include <systemd/sd-event.h>

#include "macro.h"

/*
 * A client of QEMU's QMP, over its Unix socket. One persistent connection per VM: QEMU
 * serves one QMP client at a time. Commands are synchronous with a timeout (QEMU answers
 * them in well under a millisecond when it is healthy); every command carries an id and
 * only the reply with that id ends the call. Events, which may come before a reply or on
 * their own, are handed to the event handler from the event loop, never inside a call.
 *
 * Messages are one JSON object per line (QEMU ends each with CRLF and never pretty-prints
 * on a socket). A message over QMP_MESSAGE_MAX, invalid JSON, duplicate keys or a
 * non-object break the connection: every later call fails with -ENOTCONN.
 */

#define QMP_MESSAGE_MAX (1u << 20)

typedef struct Qmp Qmp;

/* An event: its name, its "data" (may be NULL), its "timestamp" in usec (0 if none). */
typedef void (*QmpEventHandler)(Qmp *q, const char *event, json_t *data, uint64_t ts_usec,
				void *userdata);
/* The connection is gone (QEMU exited or closed it, or it broke): q is still to be freed. */
typedef void (*QmpCloseHandler)(Qmp *q, int error, void *userdata);

/*
 * Connect, read the greeting and leave capabilities negotiation mode, all within
 * timeout_usec. -ECONNREFUSED or -ENOENT: nobody listens there; -ETIMEDOUT: no greeting.
 */
int qmp_connect(const char *path, uint64_t timeout_usec, Qmp **ret);
Qmp *qmp_free(Qmp *q);
DEFINE_POINTER_CLEANUP(Qmp, qmp_free)

/*
 * The same without blocking, for a QEMU that is still starting: connect at once (-ENOENT or
 * -ECONNREFUSED: nobody listens yet), then greeting and capabilities from the event loop.
 * on_ready gets 0 once commands can be sent, or -errno; it is the last thing the
 * connection does in that callback, so the handler may free q.
 */
typedef void (*QmpReadyHandler)(Qmp *q, int error, void *userdata);
int qmp_connect_async(const char *path, sd_event *e, QmpReadyHandler on_ready, void *userdata,
		      Qmp **ret);

/*
 * Watch the connection from an event loop: events and the close come from there. With
 * e NULL, only set the handlers, for qmp_dispatch_events().
 */
int qmp_attach(Qmp *q, sd_event *e, QmpEventHandler on_event, QmpCloseHandler on_close,
	       void *userdata);

/*
 * Run a command; args (may be NULL) is consumed. On success *ret (if not NULL) gets the
 * "return" value. A QMP error gives -EREMOTEIO and its "desc" in *ret_error (if not NULL),
 * which the caller frees; -ETIMEDOUT when no reply came in time (a late reply is dropped).
 */
int qmp_call(Qmp *q, const char *command, json_t *args, uint64_t timeout_usec, json_t **ret,
	     char **ret_error);

/* Hand the queued events to the handler now (for callers without an event loop). */
void qmp_dispatch_events(Qmp *q);

/* Whether the connection still works. */
bool qmp_is_connected(const Qmp *q);
