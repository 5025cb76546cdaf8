/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/socket.h>

#include "list.h"
#include "qmp.h"
#include "util.h"

#define QMP_ACCURACY_USEC 1000

typedef enum QmpPhase {
	QMP_GREETING,	 /* waiting for the greeting */
	QMP_NEGOTIATING, /* ... for the reply to qmp_capabilities */
	QMP_READY,	 /* commands run */
} QmpPhase;

typedef struct QmpCall QmpCall;

struct QmpCall {
	Qmp *q;
	uint64_t id;
	char *text; /* the command's line; NULL once it is out */
	int fd;	    /* to send with it (SCM_RIGHTS), until it is queued; -EBADF: none */
	QmpReplyHandler handler;
	void *userdata;
	sd_event_source *timer;
	ListNode node; /* in Qmp.calls */
};

struct Qmp {
	unsigned n_ref;
	bool freed; /* by its owner: no handler runs again */
	int fd;
	int error;	 /* why the connection broke, 0 while it works */
	bool error_told; /* the ready or close handler has heard of it */
	bool heard;	 /* something came since qmp_take_heard() */
	QmpPhase phase;
	QmpHandlers handlers;
	sd_event *event;
	bool own_event; /* qmp_open(): a private loop */
	uint64_t next_id, caps_id;
	char version[48]; /* "7.2.22", from the greeting; "" if it said none */

	char *in; /* bytes read, not yet parsed */
	size_t in_len, in_size;
	char *out; /* bytes to send, not yet taken by the socket */
	size_t out_len, out_size;
	/* Descriptors to send with the byte at out + at (a command's first), in order. */
	struct {
		size_t at;
		int fd;
	} marks[QMP_FDS_MAX];
	size_t n_marks;

	List calls; /* QmpCall in flight, oldest first */
	sd_event_source *io, *fail_source;
};

static Qmp *qmp_ref(Qmp *q)
{
	q->n_ref++;
	return q;
}

static void call_free(QmpCall *c)
{
	Qmp *q = c->q;

	list_remove(&q->calls, &c->node);
	sd_event_source_disable_unref(c->timer);
	if (c->fd >= 0)
		close(c->fd);
	free(c->text);
	free(c);
}

static QmpCall *call_find(Qmp *q, uint64_t id)
{
	for (ListNode *n = q->calls.first; n; n = n->next)
		if (list_entry(n, QmpCall, node)->id == id)
			return list_entry(n, QmpCall, node);
	return NULL;
}

static void qmp_unref(Qmp *q)
{
	if (!q || --q->n_ref > 0)
		return;
	while (q->calls.first)
		call_free(list_entry(q->calls.first, QmpCall, node));
	sd_event_source_disable_unref(q->io);
	sd_event_source_disable_unref(q->fail_source);
	while (q->n_marks > 0)
		close(q->marks[--q->n_marks].fd);
	if (q->fd >= 0)
		close(q->fd);
	if (q->event)
		sd_event_unref(q->event);
	free(q->in);
	free(q->out);
	free(q);
}

Qmp *qmp_free(Qmp *q)
{
	if (!q)
		return NULL;
	q->freed = true;
	/* Nothing runs for it any more; sources go now, the memory once no handler holds it. */
	q->io = sd_event_source_disable_unref(q->io);
	q->fail_source = sd_event_source_disable_unref(q->fail_source);
	while (q->calls.first)
		call_free(list_entry(q->calls.first, QmpCall, node));
	qmp_unref(q);
	return NULL;
}

bool qmp_is_connected(const Qmp *q)
{
	return q && q->error == 0 && q->phase == QMP_READY;
}

bool qmp_take_heard(Qmp *q)
{
	bool h = q && q->heard;

	if (q)
		q->heard = false;
	return h;
}

/* The connection is done: tell whoever waits, from the loop. */
static void qmp_break(Qmp *q, int error)
{
	if (q->error == 0)
		q->error = error;
	q->in_len = 0; /* what is left cannot be trusted, or belongs to a closed peer */
	q->io = sd_event_source_disable_unref(q->io);
	if (q->fail_source)
		(void)sd_event_source_set_enabled(q->fail_source, SD_EVENT_ONESHOT);
}

int qmp_parse(const char *buf, size_t len, size_t *ret_used, json_t **ret)
{
	const char *nl = len ? memchr(buf, '\n', MIN(len, (size_t)QMP_MESSAGE_MAX + 1)) : NULL;
	json_t *j;
	size_t n;

	if (!nl)
		return len > QMP_MESSAGE_MAX ? -EMSGSIZE : 0;
	n = (size_t)(nl - buf) + 1;
	*ret_used = n;
	j = json_loadb(buf, n, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(j)) {
		json_decref(j);
		return -EBADMSG;
	}
	*ret = j;
	return 1;
}

/* Read what the socket has. 0: some bytes or none yet; -errno: the connection is done. */
static int fill(Qmp *q)
{
	for (;;) {
		ssize_t n;

		if (q->in_size - q->in_len < 4096) {
			size_t size = MIN(q->in_size ? q->in_size * 2 : 8192,
					  (size_t)QMP_MESSAGE_MAX + 8192);
			char *b;

			if (size <= q->in_len)
				return 0; /* full: parsing tells what that means */
			b = realloc(q->in, size);
			if (!b)
				return -ENOMEM;
			q->in = b;
			q->in_size = size;
		}
		n = recv(q->fd, q->in + q->in_len, q->in_size - q->in_len, MSG_DONTWAIT);
		if (n < 0)
			return IN_SET(errno, EAGAIN, EINTR) ? 0 : -errno;
		if (n == 0)
			return -ECONNRESET;
		q->in_len += (size_t)n;
		q->heard = true;
	}
}

static int update_io(Qmp *q)
{
	if (!q->io)
		return 0;
	return sd_event_source_set_io_events(q->io, EPOLLIN | (q->out_len ? EPOLLOUT : 0));
}

/* len bytes of buf, and fd with the first of them (SCM_RIGHTS), as getfd wants it. */
static ssize_t send_fd(int sock, const char *buf, size_t len, int fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} control = {};
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov,
			      .msg_iovlen = 1,
			      .msg_control = control.buf,
			      .msg_controllen = sizeof(control.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Send what is queued, as much as the socket takes now; the rest when it is writable. */
static int flush(Qmp *q)
{
	while (q->out_len > 0) {
		/* A descriptor goes with its command's first byte, and with no other command's. */
		bool with_fd = q->n_marks > 0 && q->marks[0].at == 0;
		size_t len = q->n_marks > (with_fd ? 1u : 0u) ? q->marks[with_fd ? 1 : 0].at
							      : q->out_len;
		ssize_t n = with_fd ? send_fd(q->fd, q->out, len, q->marks[0].fd)
				    : send(q->fd, q->out, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			return -errno;
		if (with_fd) {
			close(q->marks[0].fd); /* QEMU holds it now */
			memmove(q->marks, q->marks + 1, --q->n_marks * sizeof(q->marks[0]));
		}
		for (size_t i = 0; i < q->n_marks; i++)
			q->marks[i].at -= (size_t)n;
		memmove(q->out, q->out + n, q->out_len - (size_t)n);
		q->out_len -= (size_t)n;
	}
	return update_io(q);
}

/* Queue a command's line; fd (taken, -EBADF: none) goes with its first byte. */
static int queue_out(Qmp *q, const char *text, int fd)
{
	_cleanup_close_ int owned = fd;
	size_t len = strlen(text);

	if (owned >= 0 && q->n_marks >= QMP_FDS_MAX)
		return -E2BIG;
	if (q->out_len + len > q->out_size) {
		size_t size = MAX(q->out_size * 2, q->out_len + len);
		char *b = realloc(q->out, size);

		if (!b)
			return -ENOMEM;
		q->out = b;
		q->out_size = size;
	}
	if (owned >= 0) {
		q->marks[q->n_marks].at = q->out_len;
		q->marks[q->n_marks++].fd = TAKE_FD(owned);
	}
	memcpy(q->out + q->out_len, text, len);
	q->out_len += len;
	return 0;
}

/* Put the calls that waited for negotiation on the wire, oldest first. */
static int send_waiting(Qmp *q)
{
	int r;

	for (ListNode *n = q->calls.first; n; n = n->next) {
		QmpCall *c = list_entry(n, QmpCall, node);

		if (!c->text)
			continue;
		r = queue_out(q, c->text, TAKE_FD(c->fd));
		if (r < 0)
			return r;
		c->text = mfree(c->text);
	}
	return flush(q);
}

static char *command_line(const char *command, json_t *args, uint64_t id)
{
	_cleanup_(json_decrefp) json_t *msg = NULL;
	char *text, *line = NULL;

	msg = json_pack("{s:s, s:I}", "execute", command, "id", (json_int_t)id);
	if (!msg || (args && json_object_set(msg, "arguments", args) < 0))
		return NULL;
	text = json_dumps(msg, JSON_COMPACT);
	if (text && asprintf(&line, "%s\n", text) < 0)
		line = NULL;
	free(text);
	return line;
}

static int call_timer_fired(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	QmpCall *c = userdata;
	Qmp *q = qmp_ref(c->q);
	QmpReplyHandler h = c->handler;
	void *u = c->userdata;
	/* A call that never went out because the connection was gone says so. */
	int error = q->error && c->text ? -ENOTCONN : -ETIMEDOUT;

	call_free(c);
	if (h)
		h(q, error, NULL, NULL, u);
	qmp_unref(q);
	return 0;
}

int qmp_send_fd(Qmp *q, const char *command, json_t *args, int fd, uint64_t timeout_usec,
		QmpReplyHandler handler, void *userdata, uint64_t *ret_id)
{
	_cleanup_(json_decrefp) json_t *a = args;
	QmpCall *c;
	int r;

	if (a && !json_is_object(a))
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = -EBADF;
	if (fd >= 0 && (c->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0) {
		free(c);
		return -errno;
	}
	c->q = q;
	c->id = ++q->next_id;
	c->handler = handler;
	c->userdata = userdata;
	c->text = command_line(command, a, c->id);
	list_append(&q->calls, &c->node);
	if (!c->text) {
		call_free(c);
		return -ENOMEM;
	}
	/* On a broken connection the timer fires at once: the handler hears it from the loop. */
	r = sd_event_add_time_relative(q->event, &c->timer, CLOCK_MONOTONIC,
				       q->error ? 0 : timeout_usec, QMP_ACCURACY_USEC,
				       call_timer_fired, c);
	if (r < 0) {
		call_free(c);
		return r;
	}
	if (ret_id)
		*ret_id = c->id;
	if (q->error || q->phase != QMP_READY)
		return 0; /* sent once negotiated */
	r = queue_out(q, c->text, TAKE_FD(c->fd));
	if (r < 0)
		return r;
	c->text = mfree(c->text);
	r = flush(q);
	if (r < 0 && r != -ENOMEM)
		qmp_break(q, r);
	return r == -ENOMEM ? r : 0;
}

int qmp_send(Qmp *q, const char *command, json_t *args, uint64_t timeout_usec,
	     QmpReplyHandler handler, void *userdata, uint64_t *ret_id)
{
	return qmp_send_fd(q, command, args, -EBADF, timeout_usec, handler, userdata, ret_id);
}

void qmp_cancel(Qmp *q, uint64_t id)
{
	QmpCall *c = q ? call_find(q, id) : NULL;

	if (c)
		call_free(c);
}

static bool is_greeting(json_t *m)
{
	return json_is_object(json_object_get(m, "QMP"));
}

static bool is_reply(json_t *m)
{
	return json_is_integer(json_object_get(m, "id")) &&
	       (json_object_get(m, "return") || json_object_get(m, "error"));
}

static void dispatch_event(Qmp *q, json_t *m)
{
	json_t *ts = json_object_get(m, "timestamp");
	const char *name = json_string_value(json_object_get(m, "event"));
	uint64_t usec = (uint64_t)json_integer_value(json_object_get(ts, "seconds")) * 1000000 +
			(uint64_t)json_integer_value(json_object_get(ts, "microseconds"));

	if (name && q->handlers.event)
		q->handlers.event(q, name, json_object_get(m, "data"), usec, q->handlers.userdata);
}

static void dispatch_reply(Qmp *q, json_t *m)
{
	QmpCall *c = call_find(q, (uint64_t)json_integer_value(json_object_get(m, "id")));
	json_t *e = json_object_get(m, "error");
	const char *desc = json_string_value(json_object_get(e, "desc"));
	QmpReplyHandler h;
	void *u;

	if (!c || c->text)
		return; /* not ours, or no longer waited for: dropped */
	h = c->handler;
	u = c->userdata;
	call_free(c);
	if (!h)
		return;
	if (e)
		h(q, -EREMOTEIO, NULL,
		  desc ?: json_string_value(json_object_get(e, "class")) ?: "QMP error", u);
	else
		h(q, 0, json_object_get(m, "return"), NULL, u);
}

/* The greeting's {"QMP": {"version": {"qemu": {"major", "minor", "micro"}}}}. */
static void greeting_version(Qmp *q, const json_t *m)
{
	const json_t *qemu =
		json_object_get(json_object_get(json_object_get(m, "QMP"), "version"), "qemu");

	if (json_is_integer(json_object_get(qemu, "major")) &&
	    json_is_integer(json_object_get(qemu, "minor")) &&
	    json_is_integer(json_object_get(qemu, "micro")))
		snprintf(q->version, sizeof(q->version),
			 "%" JSON_INTEGER_FORMAT ".%" JSON_INTEGER_FORMAT ".%" JSON_INTEGER_FORMAT,
			 json_integer_value(json_object_get(qemu, "major")),
			 json_integer_value(json_object_get(qemu, "minor")),
			 json_integer_value(json_object_get(qemu, "micro")));
}

const char *qmp_version(const Qmp *q)
{
	return q && q->version[0] ? q->version : NULL;
}

/* The greeting came: leave capabilities negotiation mode. */
static void negotiate(Qmp *q)
{
	uint64_t id = ++q->next_id;
	_cleanup_free_ char *line = command_line("qmp_capabilities", NULL, id);

	if (!line || queue_out(q, line, -EBADF) < 0) {
		qmp_break(q, -ENOMEM);
		return;
	}
	q->caps_id = id;
	q->phase = QMP_NEGOTIATING;
	if (flush(q) < 0)
		qmp_break(q, -ECONNRESET);
}

/* One message, as the phase takes it. */
static void handle(Qmp *q, json_t *m)
{
	switch (q->phase) {
	case QMP_GREETING:
		/* QEMU greets first; anything else is not QMP, and the greeting is still awaited. */
		if (is_greeting(m)) {
			greeting_version(q, m);
			negotiate(q);
		}
		return;
	case QMP_NEGOTIATING:
		if (!is_reply(m) ||
		    (uint64_t)json_integer_value(json_object_get(m, "id")) != q->caps_id)
			return;
		if (json_object_get(m, "error")) {
			qmp_break(q, -EPROTO);
			return;
		}
		q->phase = QMP_READY;
		if (send_waiting(q) < 0) {
			qmp_break(q, -ECONNRESET);
			return;
		}
		if (q->handlers.ready)
			q->handlers.ready(q, 0, q->handlers.userdata);
		return;
	case QMP_READY:
		if (is_reply(m))
			dispatch_reply(q, m);
		else if (json_is_string(json_object_get(m, "event")))
			dispatch_event(q, m);
		return;
	}
}

/* The messages that came in whole, in order, until one breaks the connection or frees it. */
static void process(Qmp *q)
{
	size_t off = 0;

	while (!q->freed && q->error == 0) {
		_cleanup_(json_decrefp) json_t *m = NULL;
		size_t used = 0;
		int r = qmp_parse(q->in + off, q->in_len - off, &used, &m);

		if (r == 0)
			break;
		if (r < 0) {
			qmp_break(q, r);
			return;
		}
		off += used;
		handle(q, m);
	}
	if (!q->freed && q->error == 0 && off > 0) {
		memmove(q->in, q->in + off, q->in_len - off);
		q->in_len -= off;
	}
}

static int on_io(sd_event_source *s _unused_, int fd _unused_, uint32_t revents, void *userdata)
{
	Qmp *q = qmp_ref(userdata);
	int r = 0;

	if (revents & EPOLLOUT)
		r = flush(q);
	if (r >= 0)
		/* A close after a reply still leaves the reply to parse: parse, then break. */
		r = fill(q);
	process(q);
	if (r < 0 && !q->freed)
		qmp_break(q, r);
	qmp_unref(q);
	return 0;
}

/* The connection broke: every call in flight fails, then ready or close hears why. */
static int on_fail(sd_event_source *s _unused_, void *userdata)
{
	Qmp *q = qmp_ref(userdata);

	while (!q->freed && q->calls.first) {
		QmpCall *c = list_entry(q->calls.first, QmpCall, node);
		QmpReplyHandler h = c->handler;
		void *u = c->userdata;

		call_free(c);
		if (h)
			h(q, q->error, NULL, NULL, u);
	}
	if (!q->freed && !q->error_told) {
		q->error_told = true;
		if (q->phase != QMP_READY && q->handlers.ready)
			q->handlers.ready(q, q->error, q->handlers.userdata);
		else if (q->phase == QMP_READY && q->handlers.close)
			q->handlers.close(q, q->error, q->handlers.userdata);
	}
	qmp_unref(q);
	return 0;
}

int qmp_connect_fd(int fd, sd_event *e, const QmpHandlers *handlers, Qmp **ret)
{
	Qmp *q = calloc(1, sizeof(Qmp));
	int r;

	if (!q) {
		close(fd);
		return -ENOMEM;
	}
	q->n_ref = 1;
	q->event = sd_event_ref(e);
	q->handlers = *handlers;
	q->fd = fd;
	r = sd_event_add_io(e, &q->io, q->fd, EPOLLIN, on_io, q);
	if (r >= 0)
		r = sd_event_add_defer(e, &q->fail_source, on_fail, q);
	if (r >= 0)
		r = sd_event_source_set_enabled(q->fail_source, SD_EVENT_OFF);
	if (r < 0) {
		qmp_free(q);
		return r;
	}
	*ret = q;
	return 0;
}

int qmp_connect(const char *path, sd_event *e, const QmpHandlers *handlers, Qmp **ret)
{
	int fd = unix_connect(path);

	return fd < 0 ? fd : qmp_connect_fd(fd, e, handlers, ret);
}

/* Blocking helpers, on a loop of their own */

typedef struct Waiter {
	bool done;
	int error;
	json_t *ret;
	char *desc;
} Waiter;

static void waiter_ready(Qmp *q _unused_, int error, void *userdata)
{
	Waiter *w = userdata;

	w->done = true;
	w->error = error;
}

static void waiter_reply(Qmp *q _unused_, int error, json_t *ret, const char *desc, void *userdata)
{
	Waiter *w = userdata;

	w->done = true;
	w->error = error;
	w->ret = json_incref(ret);
	w->desc = desc ? strdup(desc) : NULL;
}

/* Run q's private loop until w is done or the deadline passes. */
static int run_until(Qmp *q, Waiter *w, uint64_t deadline)
{
	while (!w->done) {
		uint64_t now = now_usec(CLOCK_MONOTONIC);
		int r;

		if (now >= deadline)
			return -ETIMEDOUT;
		r = sd_event_run(q->event, deadline - now);
		if (r < 0)
			return r;
	}
	return 0;
}

int qmp_open(const char *path, uint64_t timeout_usec, Qmp **ret)
{
	_cleanup_(qmp_freep) Qmp *q = NULL;
	sd_event *e = NULL;
	Waiter w = {};
	int r;

	r = sd_event_new(&e);
	if (r < 0)
		return r;
	r = qmp_connect(path, e, &(QmpHandlers){ .ready = waiter_ready, .userdata = &w }, &q);
	sd_event_unref(e);
	if (r < 0)
		return r;
	q->own_event = true;
	r = run_until(q, &w, now_usec(CLOCK_MONOTONIC) + timeout_usec);
	if (r < 0)
		return r;
	if (w.error < 0)
		return w.error;
	q->handlers = (QmpHandlers){};
	*ret = TAKE_PTR(q);
	return 0;
}

int qmp_call(Qmp *q, const char *command, json_t *args, uint64_t timeout_usec, json_t **ret,
	     char **ret_error)
{
	Waiter w = {};
	uint64_t id = 0;
	int r;

	if (!q->own_event) {
		json_decref(args);
		return -EINVAL; /* never on the daemon's loop */
	}
	r = qmp_send(q, command, args, timeout_usec, waiter_reply, &w, &id);
	if (r < 0)
		return r;
	r = run_until(q, &w, now_usec(CLOCK_MONOTONIC) + timeout_usec + QMP_ACCURACY_USEC);
	if (r < 0) {
		qmp_cancel(q, id);
		return r;
	}
	if (w.error == 0 && ret)
		*ret = TAKE_PTR(w.ret);
	if (w.error == -EREMOTEIO && ret_error)
		*ret_error = TAKE_PTR(w.desc);
	json_decref(w.ret);
	free(w.desc);
	return w.error;
}
