/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "qmp.h"
#include "util.h"

typedef enum QmpPhase {
	QMP_READY,	/* commands can be sent */
	QMP_GREETING,	/* qmp_connect_async(): waiting for the greeting */
	QMP_NEGOTIATING /* ... for the reply to qmp_capabilities */
} QmpPhase;

struct Qmp {
	int fd;
	int error; /* why the connection broke, 0 while it works */
	QmpPhase phase;
	QmpReadyHandler on_ready;
	uint64_t next_id;
	char *buf; /* bytes read, not yet parsed */
	size_t len, size;
	json_t *events; /* queued, not yet handed out */

	sd_event_source *io, *defer;
	QmpEventHandler on_event;
	QmpCloseHandler on_close;
	void *userdata;
};

static int unix_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -EBADF;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* Connecting to a listening Unix socket completes at once or fails: no EINPROGRESS. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	return TAKE_FD(fd);
}

static void qmp_break(Qmp *q, int error)
{
	if (q->error == 0)
		q->error = error;
	/* After garbage nothing in the buffer can be trusted; after a close it still can. */
	if (IN_SET(error, -EBADMSG, -EMSGSIZE))
		q->len = 0;
}

Qmp *qmp_free(Qmp *q)
{
	if (!q)
		return NULL;
	sd_event_source_disable_unref(q->io);
	sd_event_source_disable_unref(q->defer);
	if (q->fd >= 0)
		close(q->fd);
	json_decref(q->events);
	free(q->buf);
	return mfree(q);
}

bool qmp_is_connected(const Qmp *q)
{
	return q && q->error == 0;
}

/* Read what the socket has. 0: some bytes or none yet; -errno: the connection is done. */
static int fill(Qmp *q)
{
	for (;;) {
		ssize_t n;

		if (q->size - q->len < 4096) {
			size_t size = q->size ? q->size * 2 : 8192;
			char *b;

			if (size > QMP_MESSAGE_MAX + 8192)
				size = QMP_MESSAGE_MAX + 8192;
			if (size <= q->len) {
				qmp_break(q, -EMSGSIZE);
				return -EMSGSIZE;
			}
			b = realloc(q->buf, size);
			if (!b)
				return -ENOMEM;
			q->buf = b;
			q->size = size;
		}
		n = recv(q->fd, q->buf + q->len, q->size - q->len, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			qmp_break(q, -errno);
			return -errno;
		}
		if (n == 0) {
			qmp_break(q, -ECONNRESET);
			return -ECONNRESET;
		}
		q->len += (size_t)n;
	}
}

/*
 * Take the next whole message out of the buffer. 1: *ret holds it; 0: none complete yet;
 * -errno: the peer sent something that is not QMP, and the connection is broken.
 */
static int next_message(Qmp *q, json_t **ret)
{
	char *nl;
	size_t n;
	json_error_t e;
	json_t *j;

	nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;
	if (!nl) {
		if (q->len > QMP_MESSAGE_MAX) {
			qmp_break(q, -EMSGSIZE);
			return -EMSGSIZE;
		}
		return q->error;
	}
	n = (size_t)(nl - q->buf) + 1;
	if (n > QMP_MESSAGE_MAX) {
		qmp_break(q, -EMSGSIZE);
		return -EMSGSIZE;
	}
	j = json_loadb(q->buf, n, JSON_REJECT_DUPLICATES, &e);
	memmove(q->buf, q->buf + n, q->len - n);
	q->len -= n;
	if (!j || !json_is_object(j)) {
		json_decref(j);
		qmp_break(q, -EBADMSG);
		return -EBADMSG;
	}
	*ret = j;
	return 1;
}

/* Wait for the socket to be readable until deadline (CLOCK_MONOTONIC usec). */
static int wait_readable(Qmp *q, uint64_t deadline)
{
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	struct pollfd p = { .fd = q->fd, .events = POLLIN };
	int r;

	if (now >= deadline)
		return -ETIMEDOUT;
	r = poll(&p, 1, (int)((deadline - now + 999) / 1000));
	if (r < 0)
		return errno == EINTR ? 0 : -errno;
	return r == 0 ? -ETIMEDOUT : 0;
}

static void queue_event(Qmp *q, json_t *msg)
{
	if (!q->events)
		q->events = json_array();
	if (q->events)
		json_array_append(q->events, msg);
	if (q->defer)
		(void)sd_event_source_set_enabled(q->defer, SD_EVENT_ONESHOT);
}

/* Read until a message arrives that match() takes; events on the way are queued. */
static int read_until(Qmp *q, uint64_t deadline, bool (*match)(json_t *m, const void *arg),
		      const void *arg, json_t **ret)
{
	for (;;) {
		json_t *m = NULL;
		int r = next_message(q, &m);

		if (r < 0)
			return r;
		if (r > 0) {
			if (match(m, arg)) {
				*ret = m;
				return 0;
			}
			if (json_object_get(m, "event"))
				queue_event(q, m);
			/* Anything else (a reply to a call that timed out) is dropped. */
			json_decref(m);
			continue;
		}
		r = wait_readable(q, deadline);
		if (r < 0)
			return r;
		/* A close after the reply still leaves the reply to parse: loop, do not return. */
		r = fill(q);
		if (r == -ENOMEM)
			return r;
	}
}

static bool is_greeting(json_t *m, const void *arg _unused_)
{
	return json_is_object(json_object_get(m, "QMP"));
}

static bool is_reply_to(json_t *m, const void *arg)
{
	json_t *id = json_object_get(m, "id");

	return json_is_integer(id) && (uint64_t)json_integer_value(id) == *(const uint64_t *)arg &&
	       (json_object_get(m, "return") || json_object_get(m, "error"));
}

static char *error_desc(json_t *m)
{
	json_t *e = json_object_get(m, "error");
	const char *desc = json_string_value(json_object_get(e, "desc"));
	const char *class = json_string_value(json_object_get(e, "class"));

	return strdup(desc ?: class ?: "QMP error without a description");
}

int qmp_call(Qmp *q, const char *command, json_t *args, uint64_t timeout_usec, json_t **ret,
	     char **ret_error)
{
	_cleanup_(json_decrefp) json_t *msg = NULL, *reply = NULL;
	_cleanup_free_ char *text = NULL;
	uint64_t id, deadline = now_usec(CLOCK_MONOTONIC) + timeout_usec;
	size_t off = 0, len;
	int r;

	if (args && !json_is_object(args)) {
		json_decref(args);
		return -EINVAL;
	}
	if (q->error) {
		json_decref(args);
		return -ENOTCONN;
	}
	id = ++q->next_id;
	msg = json_pack("{s:s, s:I}", "execute", command, "id", (json_int_t)id);
	if (!msg) {
		json_decref(args);
		return -ENOMEM;
	}
	if (args && json_object_set_new(msg, "arguments", args) < 0)
		return -ENOMEM;
	text = json_dumps(msg, JSON_COMPACT);
	if (!text)
		return -ENOMEM;
	len = strlen(text);
	text[len++] = '\n'; /* over the NUL: the length is known */

	while (off < len) {
		ssize_t n = send(q->fd, text + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = { .fd = q->fd, .events = POLLOUT };
			uint64_t now = now_usec(CLOCK_MONOTONIC);

			if (now >= deadline)
				return -ETIMEDOUT;
			(void)poll(&p, 1, (int)((deadline - now + 999) / 1000));
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			qmp_break(q, -errno);
			return -ENOTCONN;
		}
		off += (size_t)n;
	}

	r = read_until(q, deadline, is_reply_to, &id, &reply);
	if (r < 0)
		return r;
	if (json_object_get(reply, "error")) {
		if (ret_error)
			*ret_error = error_desc(reply);
		return -EREMOTEIO;
	}
	if (ret)
		*ret = json_incref(json_object_get(reply, "return"));
	return 0;
}

int qmp_connect(const char *path, uint64_t timeout_usec, Qmp **ret)
{
	_cleanup_(qmp_freep) Qmp *q = NULL;
	_cleanup_(json_decrefp) json_t *greeting = NULL;
	uint64_t deadline = now_usec(CLOCK_MONOTONIC) + timeout_usec;
	int r;

	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->fd = unix_connect(path);
	if (q->fd < 0)
		return q->fd;
	r = read_until(q, deadline, is_greeting, NULL, &greeting);
	if (r < 0)
		return r;
	r = qmp_call(q, "qmp_capabilities", NULL, deadline - now_usec(CLOCK_MONOTONIC), NULL, NULL);
	if (r < 0)
		return r == -EREMOTEIO ? -EPROTO : r;
	*ret = TAKE_PTR(q);
	return 0;
}

void qmp_dispatch_events(Qmp *q)
{
	while (q->events && json_array_size(q->events) > 0) {
		_cleanup_(json_decrefp) json_t *m = json_incref(json_array_get(q->events, 0));
		json_t *ts = json_object_get(m, "timestamp");
		uint64_t usec =
			(uint64_t)json_integer_value(json_object_get(ts, "seconds")) * 1000000 +
			(uint64_t)json_integer_value(json_object_get(ts, "microseconds"));
		const char *name = json_string_value(json_object_get(m, "event"));

		json_array_remove(q->events, 0);
		if (q->on_event && name)
			q->on_event(q, name, json_object_get(m, "data"), usec, q->userdata);
	}
}

static int on_defer(sd_event_source *s _unused_, void *userdata)
{
	qmp_dispatch_events(userdata);
	return 0;
}

/* Send a command without waiting for its reply (it is small: the socket takes it whole). */
static int send_command(Qmp *q, const char *command, uint64_t *ret_id)
{
	char buf[128];
	ssize_t n;
	int len;

	*ret_id = ++q->next_id;
	len = snprintf(buf, sizeof(buf), "{\"execute\": \"%s\", \"id\": %llu}\n", command,
		       (unsigned long long)*ret_id);
	if (len < 0 || (size_t)len >= sizeof(buf))
		return -EINVAL;
	n = send(q->fd, buf, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0)
		return -errno;
	return n == len ? 0 : -EAGAIN;
}

/* Greeting, then capabilities, as they come in. 1: still on the way; 0: ready; -errno. */
static int handshake_step(Qmp *q)
{
	json_t *m;
	int r;

	while ((r = next_message(q, &m)) > 0) {
		bool greeting = is_greeting(m, NULL), reply = is_reply_to(m, &q->next_id),
		     failed = reply && json_object_get(m, "error");

		json_decref(m);
		if (q->phase == QMP_GREETING && greeting) {
			uint64_t id;

			r = send_command(q, "qmp_capabilities", &id);
			if (r < 0)
				return r;
			q->phase = QMP_NEGOTIATING;
		} else if (q->phase == QMP_NEGOTIATING && reply) {
			if (failed)
				return -EPROTO;
			q->phase = QMP_READY;
			return 0;
		}
	}
	return r < 0 ? r : 1;
}

static int on_io(sd_event_source *s _unused_, int fd _unused_, uint32_t revents _unused_,
		 void *userdata)
{
	Qmp *q = userdata;
	json_t *m;
	int r;

	(void)fill(q);
	if (q->phase != QMP_READY) {
		r = handshake_step(q);
		if (r > 0)
			return 0;
		if (r < 0) {
			qmp_break(q, r);
			q->io = sd_event_source_disable_unref(q->io);
		}
		/* Last: the handler may free q. */
		q->on_ready(q, r, q->userdata);
		return 0;
	}
	while ((r = next_message(q, &m)) > 0) {
		if (json_object_get(m, "event"))
			queue_event(q, m);
		json_decref(m);
	}
	qmp_dispatch_events(q);
	if (q->error) {
		q->io = sd_event_source_disable_unref(q->io);
		if (q->on_close)
			q->on_close(q, q->error, q->userdata);
	}
	return 0;
}

int qmp_attach(Qmp *q, sd_event *e, QmpEventHandler on_event, QmpCloseHandler on_close, void *userdata)
{
	int r;

	q->on_event = on_event;
	q->on_close = on_close;
	q->userdata = userdata;
	if (!e)
		return 0; /* the caller dispatches with qmp_dispatch_events() */
	if (!q->io) {
		r = sd_event_add_io(e, &q->io, q->fd, EPOLLIN, on_io, q);
		if (r < 0)
			return r;
	}
	r = sd_event_add_defer(e, &q->defer, on_defer, q);
	if (r < 0)
		return r;
	/* Events that came with the greeting or a reply wait for the next iteration. */
	return sd_event_source_set_enabled(
		q->defer, q->events && json_array_size(q->events) ? SD_EVENT_ONESHOT : SD_EVENT_OFF);
}

int qmp_connect_async(const char *path, sd_event *e, QmpReadyHandler on_ready, void *userdata,
		      Qmp **ret)
{
	_cleanup_(qmp_freep) Qmp *q = calloc(1, sizeof(Qmp));
	int r;

	if (!q)
		return -ENOMEM;
	q->fd = unix_connect(path);
	if (q->fd < 0)
		return q->fd;
	q->phase = QMP_GREETING;
	q->on_ready = on_ready;
	q->userdata = userdata;
	r = sd_event_add_io(e, &q->io, q->fd, EPOLLIN, on_io, q);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(q);
	return 0;
}
