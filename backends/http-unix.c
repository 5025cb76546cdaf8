/* SPDX-License-Identifier: MIT */
#include <curl/curl.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "http-unix.h"
#include "list.h"
#include "util.h"

/* sd-event's default accuracy is 250 ms: far too coarse for curl's timeouts. */
#define TIMER_ACCURACY_USEC 1000ull

typedef struct Buffer {
	char *data;
	size_t len, cap;
	bool overflow;
} Buffer;

/* A socket curl asked to watch: its io source, kept with curl_multi_assign(). */
typedef struct HttpSocket HttpSocket;
struct HttpSocket {
	HttpLoop *loop;
	sd_event_source *io;
	ListNode node; /* in loop->sockets */
};

struct HttpRequest {
	HttpLoop *loop;
	/* &loop->running (its easy handle is in the multi handle), &loop->finished (done, its
	 * handler not called yet), or NULL while its handler runs. */
	List *list;
	ListNode node;
	CURL *curl;
	char *method, *path;
	char *socket_path; /* connected to by open_socket() */
	int path_fd;	   /* its O_PATH descriptor, which curl connects to, or -EBADF */
	int path_error;	   /* why there is none: the errno of the failed connect */
	char *text;	   /* the body: CURLOPT_POSTFIELDS does not copy it */
	Buffer buf;
	char errbuf[CURL_ERROR_SIZE];
	CURLcode result;
	HttpHandler handler;
	void *userdata;
};

struct HttpLoop {
	sd_event *event;
	CURLM *multi;
	sd_event_source *timer;
	struct curl_slist *headers; /* the same for every request */
	List sockets;		    /* HttpSocket */
	List running, finished;	    /* HttpRequest */
	unsigned dispatching;	    /* handlers are being called: a free waits for them to return */
	bool dead;		    /* freed from a handler: gone once they have */
};

struct Http {
	sd_event *event;
	HttpLoop *loop;
	char *socket_path;
};

void http_reply_done(HttpReply *r)
{
	json_decref(r->json);
	free(r->error);
	*r = (HttpReply){};
}

int http_status_to_errno(long status)
{
	switch (status) {
	case 400:
	case 422:
		return -EINVAL;
	case 401:
	case 403:
		return -EACCES;
	case 404:
		return -ENOENT;
	case 405:
		return -EPERM; /* not in this state (Cloud Hypervisor) */
	case 408:
	case 504:
		return -ETIMEDOUT;
	case 409:
		return -EEXIST;
	case 413:
		return -E2BIG;
	case 429:
		return -EBUSY; /* a resize still in progress */
	case 501:
		return -EOPNOTSUPP;
	default:
		return -EREMOTEIO;
	}
}

/* The one place a CURLcode becomes an errno. */
static int curl_to_errno(CURLcode c, long os_errno, bool overflow)
{
	switch (c) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return IN_SET(os_errno, ENOENT, ECONNREFUSED, EACCES, ENOTSOCK, ELOOP)
			       ? -(int)os_errno
			       : -ECONNREFUSED;
	case CURLE_WRITE_ERROR:
		return overflow ? -EMSGSIZE : -EIO;
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		return -ECONNRESET;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EPROTO;
	}
}

static size_t on_data(char *p, size_t size, size_t n, void *userdata)
{
	Buffer *b = userdata;
	size_t len = size * n;

	if (len > HTTP_REPLY_MAX - b->len) {
		b->overflow = true;
		return 0; /* aborts the transfer: a reply this large is not read */
	}
	if (b->len + len + 1 > b->cap) {
		size_t cap = MAX(b->cap * 2, b->len + len + 1);
		char *d = realloc(b->data, cap);

		if (!d)
			return 0;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, len);
	b->len += len;
	b->data[b->len] = '\0';
	return len;
}

static char *join_strings(const json_t *a)
{
	char *m = NULL;
	size_t i;
	json_t *s;

	json_array_foreach(a, i, s)
	{
		char *n = NULL;

		if (!json_is_string(s))
			continue;
		if (asprintf(&n, "%s%s%s", m ?: "", m ? ": " : "", json_string_value(s)) < 0) {
			free(m);
			return NULL;
		}
		free(m);
		m = n;
	}
	return m;
}

char *http_error_message(const char *body, size_t len)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	const char *fault;

	if (!body || len == 0)
		return NULL;
	j = json_loadb(body, len, JSON_DECODE_ANY, NULL);
	if (json_is_array(j))
		return join_strings(j); /* Cloud Hypervisor: the chain of causes */
	fault = json_string_value(json_object_get(j, "fault_message")); /* Firecracker */
	if (fault)
		return strdup(fault);
	if (j)
		return json_dumps(j, JSON_COMPACT);
	/* Not JSON: the text itself, up to its first line, within reason. */
	return strndup(body, MIN(strcspn(body, "\r\n"), (size_t)512));
}

static int reply_error(HttpReply *ret, int r, const char *fmt, ...) _printf_(3, 4);
static int reply_error(HttpReply *ret, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_vformat(&ret->error, fmt, ap);
	va_end(ap);
	return r;
}

static HttpRequest *request_free(HttpRequest *req)
{
	if (!req)
		return NULL;
	if (req->curl)
		curl_easy_cleanup(req->curl);
	free(req->method);
	free(req->path);
	free(req->socket_path);
	if (req->path_fd >= 0)
		close(req->path_fd);
	free(req->text);
	free(req->buf.data);
	return mfree(req);
}
DEFINE_POINTER_CLEANUP(HttpRequest, request_free)

/*
 * curl's socket for a connection: the address it connects to is the socket at the path as
 * open_path_nofollow() finds it, named "/proc/self/fd/N" of that O_PATH descriptor (which
 * connects to that very inode), so that a link a VMM put in its own dir (vmm/api.sock) is
 * never followed. (curl 7.88 connects a socket the callback connected again, curl issue
 * 10626: so curl connects, to the address given.)
 */
static curl_socket_t open_socket(void *userdata, curlsocktype purpose, struct curl_sockaddr *address)
{
	HttpRequest *req = userdata;
	struct sockaddr_un *sa = (struct sockaddr_un *)&address->addr;
	struct stat st;
	int fd;

	if (purpose != CURLSOCKTYPE_IPCXN || address->family != AF_UNIX)
		return CURL_SOCKET_BAD;
	if (req->path_fd >= 0)
		req->path_fd = (close(req->path_fd), -EBADF);
	req->path_fd = open_path_nofollow(req->socket_path);
	if (req->path_fd >= 0 && fstat(req->path_fd, &st) == 0 && !S_ISSOCK(st.st_mode))
		req->path_fd = (close(req->path_fd), -ENOTSOCK);
	if (req->path_fd < 0) {
		req->path_error = -req->path_fd;
		return CURL_SOCKET_BAD;
	}
	snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d", req->path_fd);
	address->addrlen = (unsigned)sizeof(*sa);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	return fd < 0 ? CURL_SOCKET_BAD : fd;
}

static int set_request(HttpRequest *req, const char *socket_path, const char *url,
		       uint64_t timeout_usec)
{
	CURL *c = req->curl;
	CURLcode e = CURLE_OK;

#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (e == CURLE_OK)                                                                 \
			e = curl_easy_setopt(c, opt, val);                                         \
	} while (0)
	SET(CURLOPT_PRIVATE, req);
	SET(CURLOPT_UNIX_SOCKET_PATH, socket_path);
	SET(CURLOPT_OPENSOCKETFUNCTION, open_socket);
	SET(CURLOPT_OPENSOCKETDATA, req);
	SET(CURLOPT_URL, url);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)(HTTP_CONNECT_TIMEOUT_USEC / 1000));
	SET(CURLOPT_TIMEOUT_MS, (long)MAX(timeout_usec / 1000, 1ull));
	SET(CURLOPT_HTTPHEADER, req->loop->headers);
	SET(CURLOPT_WRITEFUNCTION, on_data);
	SET(CURLOPT_WRITEDATA, &req->buf);
	SET(CURLOPT_ERRORBUFFER, req->errbuf);
	SET(CURLOPT_PROTOCOLS_STR, "http");
	if (req->text) {
		/* A known length, never chunked: both VMMs refuse chunked bodies. */
		SET(CURLOPT_POSTFIELDSIZE, (long)strlen(req->text));
		SET(CURLOPT_POSTFIELDS, req->text);
		SET(CURLOPT_CUSTOMREQUEST, req->method);
	} else if (!streq(req->method, "GET")) {
		SET(CURLOPT_POSTFIELDSIZE, 0L);
		SET(CURLOPT_POSTFIELDS, "");
		SET(CURLOPT_CUSTOMREQUEST, req->method);
	} else
		SET(CURLOPT_HTTPGET, 1L);
#undef SET
	return curl_to_errno(e, 0, false);
}

int http_request(HttpLoop *l, const char *socket_path, const char *method, const char *path,
		 json_t *body, uint64_t timeout_usec, HttpHandler handler, void *userdata,
		 HttpRequest **ret)
{
	_cleanup_(request_freep) HttpRequest *req = calloc(1, sizeof(HttpRequest));
	_cleanup_free_ char *url = NULL;
	int r;

	if (!req)
		return -ENOMEM;
	req->path_fd = -EBADF;
	req->loop = l;
	req->handler = handler;
	req->userdata = userdata;
	req->method = strdup(method);
	req->path = strdup(path);
	req->socket_path = strdup(socket_path);
	req->curl = curl_easy_init();
	if (!req->method || !req->path || !req->socket_path || !req->curl)
		return -ENOMEM;
	if (body && !(req->text = json_dumps(body, JSON_COMPACT)))
		return -ENOMEM;
	if (asprintf(&url, "http://localhost%s", path) < 0)
		return -ENOMEM;
	r = set_request(req, socket_path, url, timeout_usec);
	if (r < 0)
		return r;
	/* Only arms the timer: the transfer starts from the loop. Fails only without memory. */
	if (curl_multi_add_handle(l->multi, req->curl) != CURLM_OK)
		return -ENOMEM;
	req->list = &l->running;
	list_append(&l->running, &req->node);
	if (ret)
		*ret = req;
	TAKE_PTR(req);
	return 0;
}

void http_request_cancel(HttpRequest *req)
{
	if (!req || !req->list)
		return; /* its handler runs: it is freed when that returns */
	if (req->list == &req->loop->running)
		(void)curl_multi_remove_handle(req->loop->multi, req->curl);
	list_remove(req->list, &req->node);
	request_free(req);
}

/* What a finished transfer came to: the errno its handler gets, and the reply. */
static int request_reply(HttpRequest *req, HttpReply *ret)
{
	long os_errno = 0;
	int r;

	(void)curl_easy_getinfo(req->curl, CURLINFO_RESPONSE_CODE, &ret->status);
	(void)curl_easy_getinfo(req->curl, CURLINFO_OS_ERRNO, &os_errno);
	if (req->result == CURLE_COULDNT_CONNECT && req->path_error)
		os_errno = req->path_error; /* open_socket() found no socket to name */
	if (req->result != CURLE_OK) {
		r = curl_to_errno(req->result, os_errno, req->buf.overflow);
		if (r == -EMSGSIZE)
			return reply_error(ret, r, "%s %s: the reply is over %u bytes", req->method,
					   req->path, HTTP_REPLY_MAX);
		return reply_error(ret, r, "%s %s: %s", req->method, req->path,
				   req->errbuf[0] ? req->errbuf : curl_easy_strerror(req->result));
	}
	return http_reply_parse(ret->status, req->buf.data, req->buf.len, req->method, req->path,
				ret);
}

int http_reply_parse(long status, const char *body, size_t len, const char *method,
		     const char *path, HttpReply *ret)
{
	_cleanup_free_ char *words = NULL;

	ret->status = status;
	if (status < 200 || status > 299) {
		words = http_error_message(body, len);
		return reply_error(ret, http_status_to_errno(status), "%s (HTTP %ld)",
				   words ?: "no reason given", status);
	}
	if (len == 0)
		return 0;
	ret->json = json_loadb(body, len, 0, NULL);
	if (!ret->json)
		return reply_error(ret, -EBADMSG, "%s %s: the reply is not JSON", method, path);
	return 0;
}

/* Call req's handler, then free req. It is on no list: the handler cannot free it. */
static void request_complete(HttpRequest *req)
{
	HttpReply reply = {};
	int r = request_reply(req, &reply);

	req->handler(req, r, &reply, req->userdata);
	http_reply_done(&reply);
	request_free(req);
}

/*
 * After curl made progress: first take every finished transfer out of curl (handlers must
 * not run while curl_multi_info_read() walks its list), then call their handlers one by
 * one. A handler may start or cancel requests, or free the loop; nothing of l is touched
 * once it has.
 */
static void loop_dispatch(HttpLoop *l)
{
	HttpRequest *req;
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(l->multi, &left))) {
		char *p = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		(void)curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &p);
		req = (HttpRequest *)p;
		req->result = m->data.result; /* m is gone once the handle is removed */
		(void)curl_multi_remove_handle(l->multi, req->curl);
		list_remove(&l->running, &req->node);
		req->list = &l->finished;
		list_append(&l->finished, &req->node);
	}

	l->dispatching++;
	while (!l->dead && l->finished.first) {
		req = list_entry(list_pop_first(&l->finished), HttpRequest, node);
		req->list = NULL;
		request_complete(req);
	}
	if (--l->dispatching == 0 && l->dead)
		free(l);
}

static int on_timer(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	HttpLoop *l = userdata;
	int running;

	(void)curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	loop_dispatch(l);
	return 0;
}

static int on_io(sd_event_source *s _unused_, int fd, uint32_t revents, void *userdata)
{
	HttpLoop *l = ((HttpSocket *)userdata)->loop; /* curl may free the socket in the call */
	int mask = 0, running;

	if (revents & EPOLLIN)
		mask |= CURL_CSELECT_IN;
	if (revents & EPOLLOUT)
		mask |= CURL_CSELECT_OUT;
	if (revents & (EPOLLERR | EPOLLHUP))
		mask |= CURL_CSELECT_ERR;
	(void)curl_multi_socket_action(l->multi, fd, mask, &running);
	loop_dispatch(l);
	return 0;
}

static void socket_free(HttpSocket *sock)
{
	if (!sock)
		return;
	list_remove(&sock->loop->sockets, &sock->node);
	sd_event_source_disable_unref(sock->io);
	free(sock);
}

static int socket_new(HttpLoop *l, curl_socket_t fd, uint32_t events)
{
	HttpSocket *sock = calloc(1, sizeof(HttpSocket));
	int r;

	if (!sock)
		return -ENOMEM;
	sock->loop = l;
	list_append(&l->sockets, &sock->node);
	r = sd_event_add_io(l->event, &sock->io, fd, events, on_io, sock);
	if (r >= 0 && curl_multi_assign(l->multi, fd, sock) != CURLM_OK)
		r = -EINVAL;
	if (r < 0)
		socket_free(sock);
	return r;
}

/*
 * The two callbacks curl calls from inside its own functions. They never call curl back
 * (it is not re-entrant), and they never return -1: that would mark the whole multi handle
 * dead, every other transfer with it, and in curl_multi_add_handle() leave the new easy
 * handle half added (curl 7.88). A socket that cannot be watched leaves its transfer to
 * run into its timeout instead.
 */

/* CURLMOPT_SOCKETFUNCTION: watch fd for what curl waits for, or forget it. */
static int on_curl_socket(CURL *easy _unused_, curl_socket_t fd, int what, void *userdata,
			  void *socketp)
{
	HttpSocket *sock = socketp;
	uint32_t events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);

	if (what == CURL_POLL_REMOVE)
		socket_free(sock); /* before curl closes fd: its number is no other source's yet */
	else if (sock)
		(void)sd_event_source_set_io_events(sock->io, events);
	else
		(void)socket_new(userdata, fd, events);
	return 0;
}

/*
 * CURLMOPT_TIMERFUNCTION: arm the one time source; even a timeout of 0 runs from the loop.
 * curl rounds its deadline down to the millisecond: round up, so that the timer does not
 * fire early for nothing. This cannot fail: sd-event made its timerfd when it was added.
 */
static int on_curl_timer(CURLM *multi _unused_, long timeout_ms, void *userdata)
{
	HttpLoop *l = userdata;

	if (timeout_ms < 0) {
		(void)sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
		return 0;
	}
	(void)sd_event_source_set_time_relative(
		l->timer, timeout_ms == 0 ? 0 : (uint64_t)timeout_ms * 1000 + 999);
	(void)sd_event_source_set_enabled(l->timer, SD_EVENT_ONESHOT);
	return 0;
}

static int loop_headers(HttpLoop *l)
{
	/* "Expect:" off: neither server speaks 100-continue. */
	static const char *const header_lines[] = { "Content-Type: application/json",
						    "Accept: application/json", "Expect:" };

	for (size_t i = 0; i < ELEMENTSOF(header_lines); i++) {
		struct curl_slist *h = curl_slist_append(l->headers, header_lines[i]);

		if (!h)
			return -ENOMEM;
		l->headers = h;
	}
	return 0;
}

int http_loop_new(sd_event *e, HttpLoop **ret)
{
	_cleanup_(http_loop_freep) HttpLoop *l = calloc(1, sizeof(HttpLoop));
	int r;

	if (!l)
		return -ENOMEM;
	l->event = sd_event_ref(e);
	r = loop_headers(l);
	if (r < 0)
		return r;
	r = sd_event_add_time(e, &l->timer, CLOCK_MONOTONIC, 0, TIMER_ACCURACY_USEC, on_timer, l);
	if (r < 0)
		return r;
	r = sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
	if (r < 0)
		return r;
	l->multi = curl_multi_init();
	if (!l->multi)
		return -ENOMEM;
	if (curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
	    curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l) != CURLM_OK ||
	    curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
	    curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l) != CURLM_OK)
		return -EINVAL;
	*ret = TAKE_PTR(l);
	return 0;
}

HttpLoop *http_loop_free(HttpLoop *l)
{
	if (!l)
		return NULL;
	/* Removing a transfer tells us about its sockets (CURL_POLL_REMOVE); curl_multi_cleanup()
	 * would close them without a word. */
	while (l->running.first)
		http_request_cancel(list_entry(l->running.first, HttpRequest, node));
	while (l->finished.first)
		http_request_cancel(list_entry(l->finished.first, HttpRequest, node));
	while (l->sockets.first) /* none should be left; if one is, before curl closes its fd */
		socket_free(list_entry(l->sockets.first, HttpSocket, node));
	if (l->multi)
		curl_multi_cleanup(l->multi);
	l->multi = NULL;
	l->timer = sd_event_source_disable_unref(l->timer);
	l->event = sd_event_unref(l->event);
	curl_slist_free_all(TAKE_PTR(l->headers));
	if (l->dispatching > 0)
		l->dead = true; /* loop_dispatch() frees it once the handler at hand returns */
	else
		free(l);
	return NULL;
}

/* The blocking client: a private loop, run until the one request is done. */

int http_new(const char *socket_path, Http **ret)
{
	_cleanup_(http_freep) Http *h = calloc(1, sizeof(Http));
	int r;

	if (!h)
		return -ENOMEM;
	h->socket_path = strdup(socket_path);
	if (!h->socket_path)
		return -ENOMEM;
	r = sd_event_new(&h->event);
	if (r < 0)
		return r;
	r = http_loop_new(h->event, &h->loop);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(h);
	return 0;
}

Http *http_free(Http *h)
{
	if (!h)
		return NULL;
	http_loop_free(h->loop);
	sd_event_unref(h->event);
	free(h->socket_path);
	return mfree(h);
}

typedef struct Call {
	bool done;
	int error;
	HttpReply *reply;
} Call;

static void on_call_done(HttpRequest *req _unused_, int error, const HttpReply *reply, void *userdata)
{
	Call *c = userdata;

	c->done = true;
	c->error = error;
	c->reply->status = reply->status;
	c->reply->json = json_incref(reply->json);
	c->reply->error = reply->error ? strdup(reply->error) : NULL;
}

int http_call(Http *h, const char *method, const char *path, json_t *body, uint64_t timeout_usec,
	      HttpReply *ret)
{
	Call c = { .reply = ret };
	HttpRequest *req = NULL;
	int r;

	*ret = (HttpReply){};
	r = http_request(h->loop, h->socket_path, method, path, body, timeout_usec, on_call_done,
			 &c, &req);
	if (r < 0)
		return r;
	/* curl's timeouts bound this: the request always completes. */
	while (!c.done) {
		r = sd_event_run(h->event, UINT64_MAX);
		if (r < 0) {
			http_request_cancel(req);
			return r;
		}
	}
	return c.error;
}
