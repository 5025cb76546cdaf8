/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>
#include <systemd/sd-event.h>

#include "macro.h"

/*
 * A client of QEMU's QMP, over its Unix socket, driven by an sd-event loop: nothing here
 * waits on QEMU. One connection per VM (QEMU serves one QMP client at a time). The
 * greeting and capabilities negotiation run from the loop; every command carries an id,
 * is sent at once (or queued until negotiation is done) and its reply, or its timeout,
 * comes to its handler from the loop, never from inside the call that sent it. Events go
 * to the event handler in the order they came, between replies as QEMU interleaved them.
 *
 * Messages are one JSON object per line (QEMU ends each with CRLF and never pretty-prints
 * on a socket). A message over QMP_MESSAGE_MAX, invalid JSON, duplicate keys or a
 * non-object break the connection: every call in flight fails, later ones fail with
 * -ENOTCONN. A reply whose id matches no call in flight (one that timed out, or a
 * confused peer) is dropped.
 */

#define QMP_MESSAGE_MAX (1u << 20)

typedef struct Qmp Qmp;

typedef struct QmpHandlers {
	/* Negotiation done: commands run (0); or it failed (-errno, the connection is broken). */
	void (*ready)(Qmp *q, int error, void *userdata);
	/* An event: its name, its "data" (may be NULL), its "timestamp" in usec (0 if none). */
	void (*event)(Qmp *q, const char *event, json_t *data, uint64_t ts_usec, void *userdata);
	/* A ready connection is gone (QEMU exited or closed it, or it broke); q is still to be freed. */
	void (*close)(Qmp *q, int error, void *userdata);
	void *userdata;
} QmpHandlers;

/*
 * The outcome of a command: 0 and ret, its "return" value (borrowed); -EREMOTEIO and desc,
 * QEMU's words, for a QMP error; -ETIMEDOUT when no reply came within its timeout;
 * -ENOTCONN or the connection's error when the connection went first. Every handler may
 * free q.
 */
typedef void (*QmpReplyHandler)(Qmp *q, int error, json_t *ret, const char *desc, void *userdata);

/*
 * Connect to path at once (-ENOENT or -ECONNREFUSED: nobody listens there), then greet and
 * negotiate from e's loop: handlers->ready says when commands run.
 */
int qmp_connect(const char *path, sd_event *e, const QmpHandlers *handlers, Qmp **ret);
/*
 * The same on fd, a connected stream socket, non-blocking (taken over: closed by qmp_free(),
 * or at once if this fails). For a peer that is not at a path: a socketpair (the fuzz target).
 */
int qmp_connect_fd(int fd, sd_event *e, const QmpHandlers *handlers, Qmp **ret);
/* Close the connection; no handler is called after this. */
Qmp *qmp_free(Qmp *q);
/* QEMU's version as its greeting said it ("7.2.22"), or NULL (not greeted yet, or none). */
const char *qmp_version(const Qmp *q);
DEFINE_POINTER_CLEANUP(Qmp, qmp_free)

/*
 * Send command with args (an object or NULL; consumed). Before negotiation is done it waits
 * for it. The handler (may be NULL) gets the reply within timeout_usec. ret_id (may be
 * NULL) is for qmp_cancel(). -ENOMEM or -EINVAL only; a broken connection is the
 * handler's -ENOTCONN.
 */
int qmp_send(Qmp *q, const char *command, json_t *args, uint64_t timeout_usec,
	     QmpReplyHandler handler, void *userdata, uint64_t *ret_id);
/*
 * The same, with a copy of fd (>= 0) sent along (SCM_RIGHTS), as getfd and add-fd take one;
 * the caller keeps fd. At most QMP_FDS_MAX wait to be sent at once (-E2BIG).
 */
#define QMP_FDS_MAX 8
int qmp_send_fd(Qmp *q, const char *command, json_t *args, int fd, uint64_t timeout_usec,
		QmpReplyHandler handler, void *userdata, uint64_t *ret_id);
/* Forget a command in flight: its handler is not called; its reply, if any, is dropped. */
void qmp_cancel(Qmp *q, uint64_t id);

/* Whether commands can be sent and answered now: negotiated, and not broken. */
bool qmp_is_connected(const Qmp *q);
/* Whether anything came from QEMU since the last call (proof of life of a slow monitor). */
bool qmp_take_heard(Qmp *q);

/*
 * Take the next message from buf[0..len): 1 with *ret (the caller decrefs it) and *ret_used
 * bytes consumed; 0 when no whole line is there yet; -EBADMSG (not a JSON object, or
 * duplicate keys) with *ret_used set past the bad line; -EMSGSIZE for a line over
 * QMP_MESSAGE_MAX. The connection's only parser (and the fuzz target's).
 */
int qmp_parse(const char *buf, size_t len, size_t *ret_used, json_t **ret);

/*
 * Blocking helpers for tools and tests, never for the daemon: a connection on a private
 * loop of its own, negotiated within timeout_usec (-ETIMEDOUT: no greeting; -EPROTO:
 * capabilities refused), and one command at a time on it: 0 and *ret (may be NULL; the
 * caller decrefs), -EREMOTEIO and *ret_error (may be NULL; the caller frees), -ETIMEDOUT.
 */
int qmp_open(const char *path, uint64_t timeout_usec, Qmp **ret);
int qmp_call(Qmp *q, const char *command, json_t *args, uint64_t timeout_usec, json_t **ret,
	     char **ret_error);
