/* SPDX-License-Identifier: MIT */
/*
 * The HTTP-over-Unix-socket transport against a scripted server (a thread): replies with
 * and without bodies, both VMMs' error bodies, invalid JSON, a server that never answers,
 * one that hangs up mid-body, a 100 MB reply, no socket, nobody listening. The server
 * also checks what the client sends: a Content-Length, never chunked.
 */
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "helpers.h"
#include "http-unix.h"
#include "util.h"

typedef enum Reply {
	REPLY_TEXT,	/* send text as is */
	REPLY_NOTHING,	/* read the request, then never answer */
	REPLY_HANG_UP,	/* read the request, then close */
	REPLY_MID_BODY, /* promise 100 bytes, send 10, close */
	REPLY_HUGE,	/* a 100 MB body */
} Reply;

typedef struct Server {
	char *dir;
	char path[108];
	int listen_fd;
	pthread_t thread;
	Reply reply;
	const char *text;
	unsigned requests; /* how many to serve, one per connection or on one */
	/* What came, for the test to check. */
	char request_line[256];
	char body[4096];
	long content_length;
	bool chunked;
	bool done;
} Server;

/* One request: its head, then Content-Length bytes of body. false on EOF. */
static bool read_request(Server *s, int fd)
{
	char head[8192];
	size_t n = 0;
	char *p;

	while (n < sizeof(head) - 1) {
		if (read(fd, head + n, 1) != 1)
			return false;
		n++;
		head[n] = '\0';
		if (n >= 4 && streq(head + n - 4, "\r\n\r\n"))
			break;
	}
	snprintf(s->request_line, sizeof(s->request_line), "%.*s", (int)strcspn(head, "\r\n"), head);
	s->chunked = strcasestr(head, "transfer-encoding: chunked") != NULL;
	p = strcasestr(head, "content-length:");
	s->content_length = p ? atol(p + 15) : -1;
	s->body[0] = '\0';
	if (s->content_length > 0 && s->content_length < (long)sizeof(s->body)) {
		size_t got = 0;

		while (got < (size_t)s->content_length) {
			ssize_t k = read(fd, s->body + got, (size_t)s->content_length - got);

			if (k <= 0)
				return false;
			got += (size_t)k;
		}
		s->body[got] = '\0';
	}
	return true;
}

static void *serve(void *arg)
{
	Server *s = arg;
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return NULL;
	for (unsigned i = 0; i < s->requests && read_request(s, fd); i++) {
		if (s->reply == REPLY_TEXT) {
			test_send_all(fd, s->text, strlen(s->text));
		} else if (s->reply == REPLY_NOTHING) {
			char c;

			(void)read(fd, &c, 1); /* until the client gives up */
		} else if (s->reply == REPLY_MID_BODY) {
			static const char t[] =
				"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"pid\": 1";
			test_send_all(fd, t, strlen(t));
		} else if (s->reply == REPLY_HUGE) {
			static const char t[] =
				"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n";
			char *chunk = malloc(1 << 20);

			memset(chunk, ' ', 1 << 20);
			test_send_all(fd, t, strlen(t));
			for (int k = 0; k < 100; k++)
				test_send_all(fd, chunk,
					      1 << 20); /* fails once the client hangs up */
			free(chunk);
		}
		if (s->reply != REPLY_TEXT)
			break;
	}
	s->done = true;
	close(fd);
	return NULL;
}

static Server *server_start(Reply reply, const char *text, unsigned requests)
{
	static Server server; /* one test at a time; what it saw stays readable after stop */
	Server *s = &server;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	*s = (Server){};
	s->dir = test_tmpdir();
	snprintf(s->path, sizeof(s->path), "%s/api.sock", s->dir);
	strcpy(sa.sun_path, s->path);
	s->reply = reply;
	s->text = text;
	s->requests = requests;
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s->listen_fd >= 0);
	assert_int_equal(bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s->listen_fd, 4), 0);
	assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
	return s;
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

static void test_cloud_hypervisor_error_body(void **state _unused_)
{
	Server *s = server_start(
		REPLY_TEXT,
		response("500 Internal Server Error",
			 "[\"Error from API\",\"The VM could not be paused\",\"Invalid state: Paused\"]"),
		1);
	HttpReply r;

	assert_int_equal(call(s, "PUT", "/api/v1/vm.pause", NULL, SEC, &r), -EREMOTEIO);
	assert_int_equal(r.status, 500);
	assert_string_equal(
		r.error,
		"Error from API: The VM could not be paused: Invalid state: Paused (HTTP 500)");
	http_reply_done(&r);
	server_stop(s);
}

static void test_firecracker_error_body(void **state _unused_)
{
	Server *s = server_start(
		REPLY_TEXT,
		response("400 Bad Request",
			 "{\"fault_message\": \"The requested operation is not supported\"}"),
		1);
	HttpReply r;

	assert_int_equal(call(s, "PATCH", "/vm", "{\"state\": \"Paused\"}", SEC, &r), -EINVAL);
	assert_string_equal(r.error, "The requested operation is not supported (HTTP 400)");
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

static void test_nobody_listens(void **state _unused_)
{
	_cleanup_(http_freep) Http *h = NULL;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char *dir = test_tmpdir();
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	HttpReply r;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/stale.sock", dir);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd); /* bound, never listened: what a dead VMM leaves */
	assert_int_equal(http_new(sa.sun_path, &h), 0);
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
