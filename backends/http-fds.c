/* SPDX-License-Identifier: MIT */
/*
 * An HTTP/1.1 request over a Unix socket with descriptors attached (SCM_RIGHTS), for what
 * libcurl cannot send: a NIC's tap for Cloud Hypervisor's vm.add-net. Its HTTP server
 * (micro_http, src/connection.rs: Connection::recv_with_fds() and read()) keeps every
 * descriptor that arrives with the bytes of a request and hands them to that request when
 * it is complete, so the descriptors go with the first sendmsg() and the rest follows.
 *
 * One connection per request, non-blocking, on the sd-event loop: connect (a Unix socket
 * answers at once), send as the socket takes it, read the reply up to its Content-Length.
 * One time source bounds it all, and runs a failure to connect from the loop too, so that
 * the handler is never called from inside http_request_fds().
 */
#include <stdio.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "http-unix.h"
#include "util.h"

#define TIMER_ACCURACY_USEC 1000ull

struct HttpFdsRequest {
	sd_event *event;
	int sock;
	sd_event_source *io, *timer;
	char *method, *path;
	char *out; /* the request, head and body */
	size_t out_len, sent;
	int fds[HTTP_FDS_MAX]; /* the caller's, sent with the first bytes */
	size_t n_fds;
	char *in; /* the reply so far */
	size_t in_len, in_cap;
	int error; /* set before the timer fires at once: a failed connect */
	HttpFdsHandler handler;
	void *userdata;
};

static HttpFdsRequest *request_free(HttpFdsRequest *req)
{
	if (!req)
		return NULL;
	sd_event_source_disable_unref(req->io);
	sd_event_source_disable_unref(req->timer);
	if (req->sock >= 0)
		close(req->sock);
	sd_event_unref(req->event);
	free(req->method);
	free(req->path);
	free(req->out);
	free(req->in);
	return mfree(req);
}
DEFINE_POINTER_CLEANUP(HttpFdsRequest, request_free)

void http_request_fds_cancel(HttpFdsRequest *req)
{
	request_free(req);
}

static void complete(HttpFdsRequest *req, int error, long status, const char *body, size_t len)
{
	HttpReply reply = {};
	int r;

	if (error < 0) {
		set_format(&reply.error, "%s %s: %s", req->method, req->path, strerror(-error));
		r = error;
	} else
		r = http_reply_parse(status, body, len, req->method, req->path, &reply);
	req->handler(r, &reply, req->userdata);
	http_reply_done(&reply);
	request_free(req);
}

/*
 * The reply, if it is all there: 1 with *ret_status and the body, 0 if more is to come,
 * -EBADMSG if it is no HTTP reply, -ECONNRESET if the peer hung up before it was all
 * there. eof: the peer closed, so a reply without a length ends.
 */
static int parse_reply(HttpFdsRequest *req, bool eof, long *ret_status, const char **ret_body,
		       size_t *ret_len)
{
	const char *end = req->in ? strstr(req->in, "\r\n\r\n") : NULL, *line;
	unsigned long status, length = 0;
	bool has_length = false;

	if (!end)
		return eof ? -ECONNRESET : 0;
	if (sscanf(req->in, "HTTP/1.%*1[01] %3lu", &status) != 1)
		return -EBADMSG;
	for (line = strstr(req->in, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2)
		if (strncasecmp(line, "Content-Length:", 15) == 0) {
			if (sscanf(line + 15, " %lu", &length) != 1)
				return -EBADMSG;
			has_length = true;
		}
	end += 4;
	/*
	 * 1xx, 204 and 304 have no body, and no length: micro_http (src/response.rs,
	 * Response::new()) sends none for a 204, and keeps the connection open.
	 */
	if ((status >= 100 && status < 200) || status == 204 || status == 304) {
		has_length = true;
		length = 0;
	}
	if (has_length && (size_t)(req->in + req->in_len - end) < length)
		return eof ? -ECONNRESET : 0;
	if (!has_length && !eof)
		return 0;
	*ret_status = (long)status;
	*ret_body = end;
	*ret_len = has_length ? length : (size_t)(req->in + req->in_len - end);
	return 1;
}

static int receive(HttpFdsRequest *req)
{
	const char *body = NULL;
	long status = 0;
	size_t len = 0;
	ssize_t n;
	int r;

	if (req->in_len + 4096 + 1 > req->in_cap) {
		size_t cap = MAX(req->in_cap * 2, req->in_len + 4096 + 1);
		char *p;

		if (cap > HTTP_REPLY_MAX + 4096)
			return -EMSGSIZE;
		p = realloc(req->in, cap);
		if (!p)
			return -ENOMEM;
		req->in = p;
		req->in_cap = cap;
	}
	n = recv(req->sock, req->in + req->in_len, req->in_cap - req->in_len - 1, 0);
	if (n < 0)
		return IN_SET(errno, EAGAIN, EINTR) ? 0 : -errno;
	req->in_len += (size_t)n;
	req->in[req->in_len] = '\0';
	r = parse_reply(req, n == 0, &status, &body, &len);
	if (r <= 0)
		return r;
	complete(req, 0, status, body, len);
	return 1;
}

/* The descriptors with the first bytes, then what is left as the socket takes it. */
static int send_more(HttpFdsRequest *req)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * HTTP_FDS_MAX)];
		struct cmsghdr align;
	} control = {};
	struct iovec iov = { .iov_base = req->out + req->sent, .iov_len = req->out_len - req->sent };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (req->sent == 0 && req->n_fds > 0) {
		struct cmsghdr *c;

		mh.msg_control = control.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * req->n_fds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * req->n_fds);
		memcpy(CMSG_DATA(c), req->fds, sizeof(int) * req->n_fds);
	}
	n = sendmsg(req->sock, &mh, MSG_NOSIGNAL);
	if (n < 0)
		return IN_SET(errno, EAGAIN, EINTR) ? 0 : errno == EPIPE ? -ECONNRESET : -errno;
	req->sent += (size_t)n;
	if (req->sent < req->out_len)
		return 0;
	return sd_event_source_set_io_events(req->io, EPOLLIN);
}

static int on_io(sd_event_source *s _unused_, int fd _unused_, uint32_t revents, void *userdata)
{
	HttpFdsRequest *req = userdata;
	int r;

	if (req->sent < req->out_len)
		r = (revents & (EPOLLOUT | EPOLLERR | EPOLLHUP)) ? send_more(req) : 0;
	else
		r = receive(req);
	if (r < 0)
		complete(req, r == -EPIPE ? -ECONNRESET : r, 0, NULL, 0);
	return 0;
}

static int on_timer(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	HttpFdsRequest *req = userdata;

	complete(req, req->error < 0 ? req->error : -ETIMEDOUT, 0, NULL, 0);
	return 0;
}

static int format_request(HttpFdsRequest *req, json_t *body)
{
	_cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	int n;

	if (body && !text)
		return -ENOMEM;
	/* A known length, never chunked; no Expect: neither VMM speaks 100-continue. */
	n = asprintf(&req->out,
		     "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
		     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
		     req->method, req->path, text ? strlen(text) : 0, text ?: "");
	if (n < 0) {
		req->out = NULL;
		return -ENOMEM;
	}
	req->out_len = (size_t)n;
	return 0;
}

int http_request_fds(sd_event *e, const char *socket_path, const char *method, const char *path,
		     json_t *body, const int *fds, size_t n_fds, uint64_t timeout_usec,
		     HttpFdsHandler handler, void *userdata, HttpFdsRequest **ret)
{
	_cleanup_(request_freep) HttpFdsRequest *req = NULL;
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	int r;

	if (n_fds > HTTP_FDS_MAX)
		return -E2BIG;
	req = calloc(1, sizeof(HttpFdsRequest));
	if (!req)
		return -ENOMEM;
	req->sock = -EBADF;
	req->event = sd_event_ref(e);
	req->handler = handler;
	req->userdata = userdata;
	req->method = strdup(method);
	req->path = strdup(path);
	if (!req->method || !req->path)
		return -ENOMEM;
	for (size_t i = 0; i < n_fds; i++)
		req->fds[i] = fds[i];
	req->n_fds = n_fds;
	r = format_request(req, body);
	if (r < 0)
		return r;
	r = sd_event_add_time(e, &req->timer, CLOCK_MONOTONIC, now + MAX(timeout_usec, 1ull),
			      TIMER_ACCURACY_USEC, on_timer, req);
	if (r < 0)
		return r;
	req->sock = unix_connect_nofollow(socket_path);
	if (req->sock < 0) {
		/* Nobody listens: its handler hears so from the loop. */
		req->error = IN_SET(req->sock, -ENOENT, -ECONNREFUSED, -EACCES, -ENOTSOCK)
				     ? req->sock
				     : -ECONNREFUSED;
		r = sd_event_source_set_time(req->timer, now);
	} else
		r = sd_event_add_io(e, &req->io, req->sock, EPOLLOUT, on_io, req);
	if (r < 0)
		return r;
	if (ret)
		*ret = req;
	TAKE_PTR(req);
	return 0;
}
