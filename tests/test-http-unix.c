/* SPDX-License-Identifier: MIT */
/*
 * The HTTP-over-Unix-socket transport against a scripted server (threads): replies with
 * and without bodies, both VMMs' error bodies, invalid JSON, a server that never answers,
 * one that hangs up mid-body, a 100 MB reply, no socket, nobody listening. The server
 * also checks what the client sends: a Content-Length, never chunked.
 *
 * The blocking client (http_call) first, then the same transport on a test-owned sd-event
 * loop: the loop keeps running while a request hangs, several requests are in flight at
 * once, cancelling, freeing the loop under requests, and handlers that act on the loop.
 */
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "helpers.h"
#include "http-unix.h"
#include "util.h"

typedef enum Reply {
	REPLY_TEXT,	/* send text as is */
	REPLY_NOTHING,	/* read the request, then never answer */
	REPLY_HANG_UP,	/* read the request, then close */
	REPLY_MID_BODY, /* promise 100 bytes, send 10, close */
	REPLY_HUGE,	/* a 100 MB body */
	REPLY_SLEEP,	/* GET /sleep/N: wait for the others (together), N ms, then {"ms": N} */
} Reply;

#define SERVER_CONNECTIONS_MAX 8

typedef struct Server Server;

typedef struct Connection {
	Server *server;
	int fd;
	pthread_t thread;
} Connection;

struct Server {
	char *dir;
	char path[108];
	int listen_fd;
	pthread_t thread;
	Reply reply;
	const char *text;
	unsigned requests;    /* how many to serve on a connection */
	unsigned connections; /* how many to accept, each served by a thread of its own */
	unsigned together;    /* REPLY_SLEEP: hold every reply until this many requests came */
	Connection conns[SERVER_CONNECTIONS_MAX];
	pthread_mutex_t lock;
	pthread_cond_t arrival;
	/* What came, for the test to check (under lock). */
	unsigned accepted, arrived, answered;
	char request_line[256];
	char body[4096];
	long content_length;
	bool chunked;
};

/* One request: its head, then Content-Length bytes of body. false on EOF. */
static bool read_request(Server *s, int fd, char *line, size_t size)
{
	char head[8192], body[4096] = "";
	size_t n = 0;
	long length;
	char *p;

	while (n < sizeof(head) - 1) {
		if (read(fd, head + n, 1) != 1)
			return false;
		n++;
		head[n] = '\0';
		if (n >= 4 && streq(head + n - 4, "\r\n\r\n"))
			break;
	}
	p = strcasestr(head, "content-length:");
	length = p ? atol(p + 15) : -1;
	if (length > 0 && length < (long)sizeof(body)) {
		size_t got = 0;

		while (got < (size_t)length) {
			ssize_t k = read(fd, body + got, (size_t)length - got);

			if (k <= 0)
				return false;
			got += (size_t)k;
		}
		body[got] = '\0';
	}
	snprintf(line, size, "%.*s", (int)strcspn(head, "\r\n"), head);
	pthread_mutex_lock(&s->lock);
	snprintf(s->request_line, sizeof(s->request_line), "%s", line);
	snprintf(s->body, sizeof(s->body), "%s", body);
	s->chunked = strcasestr(head, "transfer-encoding: chunked") != NULL;
	s->content_length = length;
	s->arrived++;
	pthread_cond_broadcast(&s->arrival);
	pthread_mutex_unlock(&s->lock);
	return true;
}

/* REPLY_SLEEP: all of them in flight at once, then each after its own delay. */
static void reply_after_sleep(Server *s, int fd, const char *line)
{
	struct timespec deadline;
	unsigned ms = 0;
	char buf[256], body[64];

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 5; /* a client that sends one at a time fails, it does not hang */
	pthread_mutex_lock(&s->lock);
	while (s->arrived < s->together &&
	       pthread_cond_timedwait(&s->arrival, &s->lock, &deadline) == 0)
		;
	pthread_mutex_unlock(&s->lock);
	(void)sscanf(line, "GET /sleep/%u", &ms);
	usleep(ms * 1000);
	snprintf(body, sizeof(body), "{\"ms\": %u}", ms);
	snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(body),
		 body);
	test_send_all(fd, buf, strlen(buf));
	pthread_mutex_lock(&s->lock);
	s->answered++;
	pthread_mutex_unlock(&s->lock);
}

static void reply_huge(int fd)
{
	static const char t[] = "HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n";
	char *chunk = malloc(1 << 20);

	memset(chunk, ' ', 1 << 20);
	test_send_all(fd, t, strlen(t));
	for (int k = 0; k < 100; k++)
		test_send_all(fd, chunk, 1 << 20); /* fails once the client hangs up */
	free(chunk);
}

static void *serve_connection(void *arg)
{
	Connection *c = arg;
	Server *s = c->server;
	char line[256];

	for (unsigned i = 0; i < s->requests && read_request(s, c->fd, line, sizeof(line)); i++) {
		if (s->reply == REPLY_TEXT) {
			test_send_all(c->fd, s->text, strlen(s->text));
		} else if (s->reply == REPLY_SLEEP) {
			reply_after_sleep(s, c->fd, line);
		} else if (s->reply == REPLY_NOTHING) {
			char b;

			(void)read(c->fd, &b, 1); /* until the client gives up */
		} else if (s->reply == REPLY_MID_BODY) {
			static const char t[] =
				"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"pid\": 1";
			test_send_all(c->fd, t, strlen(t));
		} else if (s->reply == REPLY_HUGE) {
			reply_huge(c->fd);
		}
		if (!IN_SET(s->reply, REPLY_TEXT, REPLY_SLEEP))
			break;
	}
	close(c->fd);
	return NULL;
}

static void *serve(void *arg)
{
	Server *s = arg;
	unsigned n = 0;

	while (n < s->connections) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0)
			break;
		pthread_mutex_lock(&s->lock);
		s->accepted++;
		pthread_mutex_unlock(&s->lock);
		s->conns[n] = (Connection){ .server = s, .fd = fd };
		if (pthread_create(&s->conns[n].thread, NULL, serve_connection, &s->conns[n]) != 0) {
			close(fd);
			break;
		}
		n++;
	}
	for (unsigned i = 0; i < n; i++)
		pthread_join(s->conns[i].thread, NULL);
	return NULL;
}

/* A server of connections connections (each a thread), requests requests on each. */
static Server *server_start_many(Reply reply, const char *text, unsigned requests,
				 unsigned connections)
{
	static Server server; /* one test at a time; what it saw stays readable after stop */
	Server *s = &server;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	assert_true(connections <= SERVER_CONNECTIONS_MAX);
	*s = (Server){ .lock = PTHREAD_MUTEX_INITIALIZER, .arrival = PTHREAD_COND_INITIALIZER };
	s->dir = test_tmpdir();
	snprintf(s->path, sizeof(s->path), "%s/api.sock", s->dir);
	strcpy(sa.sun_path, s->path);
	s->reply = reply;
	s->text = text;
	s->requests = requests;
	s->connections = connections;
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s->listen_fd >= 0);
	assert_int_equal(bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s->listen_fd, SERVER_CONNECTIONS_MAX), 0);
	assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
	return s;
}

/* A server that accepts one connection and serves requests requests on it. */
static Server *server_start(Reply reply, const char *text, unsigned requests)
{
	return server_start_many(reply, text, requests, 1);
}

/* A count the server threads keep, read while they run. */
static unsigned server_count(Server *s, const unsigned *count)
{
	unsigned n;

	pthread_mutex_lock(&s->lock);
	n = *count;
	pthread_mutex_unlock(&s->lock);
	return n;
}

static void server_stop(Server *s)
{
	shutdown(s->listen_fd, SHUT_RDWR);
	pthread_join(s->thread, NULL);
	close(s->listen_fd);
	test_tmpdir_remove(s->dir);
}

/* One call against a server that answers with text; the reply for the test to check. */
static int call(Server *s, const char *method, const char *path, const char *body,
		uint64_t timeout_usec, HttpReply *ret)
{
	_cleanup_(http_freep) Http *h = NULL;
	json_auto_t *j = body ? json_loads(body, 0, NULL) : NULL;

	assert_int_equal(http_new(s->path, &h), 0);
	return http_call(h, method, path, j, timeout_usec, ret);
}

#define SEC 1000000ull

/* A whole response: status line, Content-Length, body. Static: one per test. */
static const char *response(const char *status, const char *body)
{
	static char buf[4096];

	snprintf(buf, sizeof(buf), "HTTP/1.1 %s\r\nContent-Length: %zu\r\n\r\n%s", status,
		 strlen(body), body);
	return buf;
}

static void test_put_with_body_and_204(void **state _unused_)
{
	Server *s = server_start(REPLY_TEXT, "HTTP/1.1 204 No Content\r\n\r\n", 1);
	HttpReply r;

	assert_int_equal(call(s, "PUT", "/api/v1/vm.resize", "{\"desired_vcpus\": 2}", SEC, &r), 0);
	assert_int_equal(r.status, 204);
	assert_null(r.json);
	assert_null(r.error);
	http_reply_done(&r);
	server_stop(s);
	assert_string_equal(s->request_line, "PUT /api/v1/vm.resize HTTP/1.1");
	assert_false(s->chunked);
	assert_int_equal(s->content_length, (long)strlen("{\"desired_vcpus\":2}"));
	assert_string_equal(s->body, "{\"desired_vcpus\":2}");
}

static void test_put_without_body_has_length_zero(void **state _unused_)
{
	Server *s = server_start(REPLY_TEXT, "HTTP/1.1 204 No Content\r\n\r\n", 1);
	HttpReply r;

	assert_int_equal(call(s, "PUT", "/api/v1/vm.boot", NULL, SEC, &r), 0);
	http_reply_done(&r);
	server_stop(s);
	assert_string_equal(s->request_line, "PUT /api/v1/vm.boot HTTP/1.1");
	assert_int_equal(s->content_length, 0);
	assert_false(s->chunked);
}

static void test_get_json(void **state _unused_)
{
	Server *s = server_start(REPLY_TEXT,
				 response("200 OK", "{\"version\": \"v48\", \"pid\": 42}"), 1);
	HttpReply r;

	assert_int_equal(call(s, "GET", "/api/v1/vmm.ping", NULL, SEC, &r), 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_integer_value(json_object_get(r.json, "pid")), 42);
	http_reply_done(&r);
	server_stop(s);
	assert_string_equal(s->request_line, "GET /api/v1/vmm.ping HTTP/1.1");
	assert_int_equal(s->content_length, -1);
}

/* Both VMMs' error bodies and the words they come to. */
#define CH_ERROR_BODY                                                                              \
	"[\"Error from API\",\"The VM could not be paused\",\"Invalid state: Paused\"]"
#define CH_ERROR_TEXT "Error from API: The VM could not be paused: Invalid state: Paused (HTTP 500)"
#define FC_ERROR_BODY "{\"fault_message\": \"The requested operation is not supported\"}"
#define FC_ERROR_TEXT "The requested operation is not supported (HTTP 400)"

static void test_cloud_hypervisor_error_body(void **state _unused_)
{
	Server *s = server_start(REPLY_TEXT, response("500 Internal Server Error", CH_ERROR_BODY), 1);
	HttpReply r;

	assert_int_equal(call(s, "PUT", "/api/v1/vm.pause", NULL, SEC, &r), -EREMOTEIO);
	assert_int_equal(r.status, 500);
	assert_string_equal(r.error, CH_ERROR_TEXT);
	http_reply_done(&r);
	server_stop(s);
}

static void test_firecracker_error_body(void **state _unused_)
{
	Server *s = server_start(REPLY_TEXT, response("400 Bad Request", FC_ERROR_BODY), 1);
	HttpReply r;

	assert_int_equal(call(s, "PATCH", "/vm", "{\"state\": \"Paused\"}", SEC, &r), -EINVAL);
	assert_string_equal(r.error, FC_ERROR_TEXT);
	http_reply_done(&r);
	server_stop(s);
}

static void test_error_without_body(void **state _unused_)
{
	Server *s = server_start(REPLY_TEXT, response("404 Not Found", ""), 1);
	HttpReply r;

	assert_int_equal(call(s, "GET", "/api/v1/vm.info", NULL, SEC, &r), -ENOENT);
	assert_string_equal(r.error, "no reason given (HTTP 404)");
	http_reply_done(&r);
	server_stop(s);
}

static void test_invalid_json(void **state _unused_)
{
	Server *s = server_start(REPLY_TEXT, response("200 OK", "{\"pid\": 42,,"), 1);
	HttpReply r;

	assert_int_equal(call(s, "GET", "/", NULL, SEC, &r), -EBADMSG);
	assert_string_equal(r.error, "GET /: the reply is not JSON");
	assert_null(r.json);
	http_reply_done(&r);
	server_stop(s);
}

static void test_timeout(void **state _unused_)
{
	Server *s = server_start(REPLY_NOTHING, NULL, 1);
	HttpReply r;

	assert_int_equal(call(s, "GET", "/", NULL, SEC / 5, &r), -ETIMEDOUT);
	assert_non_null(r.error);
	http_reply_done(&r);
	server_stop(s);
}

static void test_hang_up_before_reply(void **state _unused_)
{
	Server *s = server_start(REPLY_HANG_UP, NULL, 1);
	HttpReply r;

	assert_int_equal(call(s, "PUT", "/vm", "{\"state\": \"Paused\"}", SEC, &r), -ECONNRESET);
	http_reply_done(&r);
	server_stop(s);
}

static void test_hang_up_mid_body(void **state _unused_)
{
	Server *s = server_start(REPLY_MID_BODY, NULL, 1);
	HttpReply r;

	assert_int_equal(call(s, "GET", "/api/v1/vmm.ping", NULL, SEC, &r), -ECONNRESET);
	assert_null(r.json);
	http_reply_done(&r);
	server_stop(s);
}

static void test_huge_reply_refused(void **state _unused_)
{
	Server *s = server_start(REPLY_HUGE, NULL, 1);
	HttpReply r;

	assert_int_equal(call(s, "GET", "/api/v1/vm.info", NULL, 30 * SEC, &r), -EMSGSIZE);
	assert_string_equal(r.error, "GET /api/v1/vm.info: the reply is over 4194304 bytes");
	http_reply_done(&r);
	server_stop(s);
}

static void test_no_socket(void **state _unused_)
{
	_cleanup_(http_freep) Http *h = NULL;
	char *dir = test_tmpdir(), path[256];
	HttpReply r;

	snprintf(path, sizeof(path), "%s/none.sock", dir);
	assert_int_equal(http_new(path, &h), 0);
	assert_int_equal(http_call(h, "GET", "/", NULL, SEC, &r), -ENOENT);
	http_reply_done(&r);
	test_tmpdir_remove(dir);
}

/* A socket bound, never listened on: what a dead VMM leaves. */
static void stale_socket(const char *dir, char *path, size_t size)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/stale.sock", dir);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	snprintf(path, size, "%s", sa.sun_path);
}

static void test_nobody_listens(void **state _unused_)
{
	_cleanup_(http_freep) Http *h = NULL;
	char *dir = test_tmpdir(), path[256];
	HttpReply r;

	stale_socket(dir, path, sizeof(path));
	assert_int_equal(http_new(path, &h), 0);
	assert_int_equal(http_call(h, "GET", "/", NULL, SEC, &r), -ECONNREFUSED);
	http_reply_done(&r);
	test_tmpdir_remove(dir);
}

static void test_keeps_the_connection(void **state _unused_)
{
	static const char reply[] = "HTTP/1.1 204 No Content\r\n\r\n";
	Server *s = server_start(REPLY_TEXT, reply, 3);
	_cleanup_(http_freep) Http *h = NULL;
	json_auto_t *j = json_pack("{s:s}", "state", "Paused");
	HttpReply r;

	/* The server accepts once: three calls must share one connection. */
	assert_int_equal(http_new(s->path, &h), 0);
	assert_int_equal(http_call(h, "PATCH", "/vm", j, SEC, &r), 0);
	http_reply_done(&r);
	assert_int_equal(http_call(h, "GET", "/", NULL, SEC, &r), 0);
	http_reply_done(&r);
	assert_int_equal(http_call(h, "PUT", "/actions", j, SEC, &r), 0);
	http_reply_done(&r);
	server_stop(s);
	assert_string_equal(s->request_line, "PUT /actions HTTP/1.1");
}

static void test_error_message_shapes(void **state _unused_)
{
	char *m;

	m = http_error_message("[\"a\", \"b\"]", 10);
	assert_string_equal(m, "a: b");
	free(m);
	m = http_error_message("{\"fault_message\": \"x\"}", 22);
	assert_string_equal(m, "x");
	free(m);
	m = http_error_message("plain text\nmore", 15);
	assert_string_equal(m, "plain text");
	free(m);
	assert_null(http_error_message("", 0));
	assert_int_equal(http_status_to_errno(405), -EPERM);
	assert_int_equal(http_status_to_errno(429), -EBUSY);
	assert_int_equal(http_status_to_errno(503), -EREMOTEIO);
}

/* The same transport on a loop the test owns. */

#define MSEC 1000ull

typedef struct Done {
	unsigned calls;	 /* how often the handler came */
	unsigned *total; /* may be NULL: a count shared by several requests */
	int error;
	long status;
	char *message;
	json_t *json;
} Done;

static void done_free(Done *d)
{
	free(d->message);
	json_decref(d->json);
}

static void on_done(HttpRequest *req _unused_, int error, const HttpReply *reply, void *userdata)
{
	Done *d = userdata;

	d->calls++;
	if (d->total)
		(*d->total)++;
	d->error = error;
	d->status = reply->status;
	free(d->message);
	d->message = reply->error ? strdup(reply->error) : NULL;
	json_decref(d->json);
	d->json = json_incref(reply->json);
}

/* Run e until *count reaches n; a loop idle for 10 s fails the test instead of hanging it. */
static void run_until(sd_event *e, const unsigned *count, unsigned n)
{
	while (*count < n)
		assert_true(sd_event_run(e, 10 * SEC) > 0);
}

/* Run e until it has been idle for 100 ms: whatever was still to come has come. */
static void run_idle(sd_event *e)
{
	int r;

	while ((r = sd_event_run(e, 100 * MSEC)) > 0)
		;
	assert_int_equal(r, 0);
}

typedef struct Async {
	sd_event *event;
	HttpLoop *loop;
} Async;

static void async_open(Async *a)
{
	assert_int_equal(sd_event_new(&a->event), 0);
	assert_int_equal(http_loop_new(a->event, &a->loop), 0);
}

static void async_close(Async *a)
{
	a->loop = http_loop_free(a->loop);
	a->event = sd_event_unref(a->event);
}

/* One request on a loop of its own, run to its end; the handler's view in d. */
static int async_call(const char *socket_path, const char *method, const char *path,
		      const char *body, uint64_t timeout_usec, Done *d)
{
	json_auto_t *j = body ? json_loads(body, 0, NULL) : NULL;
	Async a = {};

	async_open(&a);
	assert_int_equal(
		http_request(a.loop, socket_path, method, path, j, timeout_usec, on_done, d, NULL),
		0);
	assert_int_equal(d->calls, 0); /* never from inside http_request() */
	run_until(a.event, &d->calls, 1);
	async_close(&a);
	assert_int_equal(d->calls, 1);
	return d->error;
}

typedef struct Tick {
	bool fired;
	bool before_reply;
	const Done *request;
} Tick;

static int on_tick(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	Tick *t = userdata;

	t->fired = true;
	t->before_reply = t->request->calls == 0;
	return 0;
}

static void test_async_timeout_leaves_the_loop_running(void **state _unused_)
{
	Server *s = server_start(REPLY_NOTHING, NULL, 1);
	_cleanup_(sd_event_source_unrefp) sd_event_source *timer = NULL;
	Async a = {};
	Done d = {};
	Tick t = { .request = &d };

	async_open(&a);
	assert_int_equal(http_request(a.loop, s->path, "GET", "/", NULL, SEC / 2, on_done, &d, NULL),
			 0);
	assert_int_equal(sd_event_add_time_relative(a.event, &timer, CLOCK_MONOTONIC, 10 * MSEC, 1,
						    on_tick, &t),
			 0);
	run_until(a.event, &d.calls, 1);
	assert_int_equal(d.error, -ETIMEDOUT);
	assert_non_null(d.message);
	assert_true(t.fired);
	assert_true(t.before_reply); /* the loop ran while the request hung */
	timer = sd_event_source_disable_unref(timer);
	async_close(&a);
	server_stop(s);
	done_free(&d);
}

static void test_async_requests_in_flight_together(void **state _unused_)
{
	/* The server holds each reply until all three requests came: one at a time would
	 * time out. Then they complete after their own delays, in whichever order. */
	static const unsigned delays[] = { 150, 0, 75 };
	Server *s = server_start_many(REPLY_SLEEP, NULL, 1, ELEMENTSOF(delays));
	Done d[ELEMENTSOF(delays)] = {};
	unsigned total = 0;
	Async a = {};

	pthread_mutex_lock(&s->lock);
	s->together = ELEMENTSOF(delays);
	pthread_mutex_unlock(&s->lock);
	async_open(&a);
	for (size_t i = 0; i < ELEMENTSOF(delays); i++) {
		char path[64];

		snprintf(path, sizeof(path), "/sleep/%u", delays[i]);
		d[i].total = &total;
		assert_int_equal(http_request(a.loop, s->path, "GET", path, NULL, 3 * SEC, on_done,
					      &d[i], NULL),
				 0);
	}
	run_until(a.event, &total, ELEMENTSOF(delays));
	run_idle(a.event);
	for (size_t i = 0; i < ELEMENTSOF(delays); i++) {
		assert_int_equal(d[i].calls, 1);
		assert_int_equal(d[i].error, 0);
		assert_int_equal(json_integer_value(json_object_get(d[i].json, "ms")), delays[i]);
		done_free(&d[i]);
	}
	async_close(&a);
	server_stop(s);
	assert_int_equal(s->accepted, ELEMENTSOF(delays));
}

static void test_async_hang_up_mid_body(void **state _unused_)
{
	Server *s = server_start(REPLY_MID_BODY, NULL, 1);
	Done d = {};

	assert_int_equal(async_call(s->path, "GET", "/api/v1/vmm.ping", NULL, SEC, &d), -ECONNRESET);
	assert_null(d.json);
	server_stop(s);
	done_free(&d);
}

static void test_async_nobody_listens(void **state _unused_)
{
	char *dir = test_tmpdir(), path[256];
	Done d = {};

	stale_socket(dir, path, sizeof(path));
	assert_int_equal(async_call(path, "GET", "/", NULL, SEC, &d), -ECONNREFUSED);
	assert_non_null(d.message);
	test_tmpdir_remove(dir);
	done_free(&d);
}

static void test_async_no_socket(void **state _unused_)
{
	char *dir = test_tmpdir(), path[256];
	Done d = {};

	snprintf(path, sizeof(path), "%s/none.sock", dir);
	assert_int_equal(async_call(path, "GET", "/", NULL, SEC, &d), -ENOENT);
	test_tmpdir_remove(dir);
	done_free(&d);
}

static void test_async_error_bodies(void **state _unused_)
{
	Server *s = server_start(REPLY_TEXT, response("500 Internal Server Error", CH_ERROR_BODY), 1);
	Done d = {};

	assert_int_equal(async_call(s->path, "PUT", "/api/v1/vm.pause", NULL, SEC, &d), -EREMOTEIO);
	assert_int_equal(d.status, 500);
	assert_string_equal(d.message, CH_ERROR_TEXT);
	server_stop(s);
	done_free(&d);

	s = server_start(REPLY_TEXT, response("400 Bad Request", FC_ERROR_BODY), 1);
	d = (Done){};
	assert_int_equal(async_call(s->path, "PATCH", "/vm", "{\"state\": \"Paused\"}", SEC, &d),
			 -EINVAL);
	assert_int_equal(d.status, 400);
	assert_string_equal(d.message, FC_ERROR_TEXT);
	server_stop(s);
	assert_string_equal(s->body, "{\"state\":\"Paused\"}");
	done_free(&d);
}

/* Cancel one request once it hangs on the server, then start the next. */
typedef struct Canceller {
	HttpLoop *loop;
	const char *socket_path;
	HttpRequest *victim;
	Done *next;
} Canceller;

static int on_cancel_tick(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	Canceller *c = userdata;

	http_request_cancel(TAKE_PTR(c->victim));
	assert_int_equal(http_request(c->loop, c->socket_path, "GET", "/sleep/0", NULL, SEC,
				      on_done, c->next, NULL),
			 0);
	return 0;
}

static void test_async_cancel(void **state _unused_)
{
	Server *s = server_start_many(REPLY_SLEEP, NULL, 1, 2);
	_cleanup_(sd_event_source_unrefp) sd_event_source *timer = NULL;
	Done cancelled = {}, at_once = {}, next = {};
	Canceller c = { .socket_path = s->path, .next = &next };
	HttpRequest *req = NULL;
	Async a = {};

	async_open(&a);
	c.loop = a.loop;

	/* Cancelled before the loop ever ran. */
	assert_int_equal(
		http_request(a.loop, s->path, "GET", "/", NULL, SEC, on_done, &at_once, &req), 0);
	http_request_cancel(req);
	/* Cancelled while the server sits on it. */
	assert_int_equal(http_request(a.loop, s->path, "GET", "/sleep/300", NULL, SEC, on_done,
				      &cancelled, &c.victim),
			 0);
	assert_int_equal(sd_event_add_time_relative(a.event, &timer, CLOCK_MONOTONIC, 50 * MSEC, 1,
						    on_cancel_tick, &c),
			 0);
	run_until(a.event, &next.calls, 1);
	assert_int_equal(next.error, 0);
	/* The server answers the cancelled request after 300 ms, to nobody. */
	while (server_count(s, &s->answered) < 2)
		assert_true(sd_event_run(a.event, 10 * MSEC) >= 0);
	run_idle(a.event);
	assert_int_equal(cancelled.calls, 0);
	assert_int_equal(at_once.calls, 0);
	assert_int_equal(next.calls, 1);
	timer = sd_event_source_disable_unref(timer);
	async_close(&a);
	server_stop(s);
	done_free(&next);
}

static void test_async_free_loop_in_flight(void **state _unused_)
{
	Server *s = server_start_many(REPLY_NOTHING, NULL, 1, 3);
	unsigned total = 0;
	Done d[3] = {};
	Async a = {};

	async_open(&a);
	for (size_t i = 0; i < ELEMENTSOF(d); i++) {
		d[i].total = &total;
		assert_int_equal(
			http_request(a.loop, s->path, "GET", "/", NULL, SEC, on_done, &d[i], NULL),
			0);
	}
	/* Until the server has them all: each request is sent and waits for its reply. */
	while (server_count(s, &s->arrived) < ELEMENTSOF(d))
		assert_true(sd_event_run(a.event, 10 * MSEC) >= 0);
	async_close(&a);
	server_stop(s); /* its connections end as the loop closed them */
	assert_int_equal(total, 0);
	assert_int_equal(s->accepted, ELEMENTSOF(d));
}

/*
 * Three requests to no socket all fail in the same pass of curl: the first handler cancels
 * the others, or frees the loop under them, before their handlers come.
 */
typedef struct Batch {
	HttpLoop *loop;
	HttpRequest *reqs[3];
	bool free_loop;
	unsigned calls;
} Batch;

static void on_batch_done(HttpRequest *req, int error, const HttpReply *reply _unused_, void *userdata)
{
	Batch *b = userdata;

	b->calls++;
	assert_int_equal(error, -ENOENT);
	if (b->free_loop) {
		b->loop = http_loop_free(b->loop);
		return;
	}
	for (size_t i = 0; i < ELEMENTSOF(b->reqs); i++)
		if (b->reqs[i] != req)
			http_request_cancel(b->reqs[i]);
	http_request_cancel(req); /* its own: nothing, it is freed when this returns */
}

static void batch_run(bool free_loop)
{
	_cleanup_(sd_event_unrefp) sd_event *e = NULL;
	char *dir = test_tmpdir(), path[256];
	Batch b = { .free_loop = free_loop };
	Done after = {};

	snprintf(path, sizeof(path), "%s/none.sock", dir);
	assert_int_equal(sd_event_new(&e), 0);
	assert_int_equal(http_loop_new(e, &b.loop), 0);
	for (size_t i = 0; i < ELEMENTSOF(b.reqs); i++)
		assert_int_equal(http_request(b.loop, path, "GET", "/", NULL, SEC, on_batch_done,
					      &b, &b.reqs[i]),
				 0);
	run_until(e, &b.calls, 1);
	run_idle(e);
	assert_int_equal(b.calls, 1);
	if (b.loop) {
		/* Still healthy after the cancels. */
		assert_int_equal(
			http_request(b.loop, path, "GET", "/", NULL, SEC, on_done, &after, NULL), 0);
		run_until(e, &after.calls, 1);
		assert_int_equal(after.error, -ENOENT);
		done_free(&after);
	}
	http_loop_free(b.loop);
	test_tmpdir_remove(dir);
}

static void test_async_handler_cancels_the_batch(void **state _unused_)
{
	batch_run(false);
}

static void test_async_handler_frees_the_loop(void **state _unused_)
{
	batch_run(true);
}

/* A handler that asks again, from inside itself, on the same connection. */
typedef struct FollowUp {
	HttpLoop *loop;
	const char *socket_path;
	Done first, second;
} FollowUp;

static void on_first(HttpRequest *req, int error, const HttpReply *reply, void *userdata)
{
	FollowUp *f = userdata;

	on_done(req, error, reply, &f->first);
	assert_int_equal(http_request(f->loop, f->socket_path, "GET", "/api/v1/vm.info", NULL, SEC,
				      on_done, &f->second, NULL),
			 0);
	assert_int_equal(f->second.calls, 0);
}

static void test_async_follow_up_from_a_handler(void **state _unused_)
{
	Server *s = server_start(REPLY_TEXT, response("200 OK", "{\"state\": \"Running\"}"), 2);
	FollowUp f = { .socket_path = s->path };
	Async a = {};

	async_open(&a);
	f.loop = a.loop;

	assert_int_equal(http_request(a.loop, s->path, "PUT", "/api/v1/vm.boot", NULL, SEC,
				      on_first, &f, NULL),
			 0);
	run_until(a.event, &f.second.calls, 1);
	assert_int_equal(f.first.calls, 1);
	assert_int_equal(f.first.error, 0);
	assert_int_equal(f.second.error, 0);
	assert_string_equal(json_string_value(json_object_get(f.second.json, "state")), "Running");
	async_close(&a);
	server_stop(s);
	/* One connection, accepted once: the follow-up reused it. */
	assert_int_equal(s->accepted, 1);
	assert_string_equal(s->request_line, "GET /api/v1/vm.info HTTP/1.1");
	done_free(&f.first);
	done_free(&f.second);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_with_body_and_204),
		cmocka_unit_test(test_put_without_body_has_length_zero),
		cmocka_unit_test(test_get_json),
		cmocka_unit_test(test_cloud_hypervisor_error_body),
		cmocka_unit_test(test_firecracker_error_body),
		cmocka_unit_test(test_error_without_body),
		cmocka_unit_test(test_invalid_json),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_hang_up_before_reply),
		cmocka_unit_test(test_hang_up_mid_body),
		cmocka_unit_test(test_huge_reply_refused),
		cmocka_unit_test(test_no_socket),
		cmocka_unit_test(test_nobody_listens),
		cmocka_unit_test(test_keeps_the_connection),
		cmocka_unit_test(test_error_message_shapes),
		cmocka_unit_test(test_async_timeout_leaves_the_loop_running),
		cmocka_unit_test(test_async_requests_in_flight_together),
		cmocka_unit_test(test_async_hang_up_mid_body),
		cmocka_unit_test(test_async_nobody_listens),
		cmocka_unit_test(test_async_no_socket),
		cmocka_unit_test(test_async_error_bodies),
		cmocka_unit_test(test_async_cancel),
		cmocka_unit_test(test_async_free_loop_in_flight),
		cmocka_unit_test(test_async_handler_cancels_the_batch),
		cmocka_unit_test(test_async_handler_frees_the_loop),
		cmocka_unit_test(test_async_follow_up_from_a_handler),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
