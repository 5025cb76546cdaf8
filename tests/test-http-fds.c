/* SPDX-License-Identifier: MIT */
/*
 * backends/http-fds.c: an HTTP request with descriptors attached (SCM_RIGHTS), against the
 * scripted server of tests/http-fixture.c, which reads as micro_http does (recvmsg,
 * keeping the descriptors that come with the bytes). A server of two requests keeps the
 * connection open after its one reply, until the client ends it, as micro_http does.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "helpers.h"
#include "http-fixture.h"
#include "http-unix.h"
#include "util.h"

static void on_done(int error, const HttpReply *reply, void *userdata)
{
	done_record(userdata, error, reply);
}

/* PUT path with body and fds at the server at path, run to its end. */
static void run(const char *path, const char *body, const int *fds, size_t n, uint64_t timeout,
		Done *d)
{
	_cleanup_(json_decrefp) json_t *j = body ? json_loads(body, 0, NULL) : NULL;
	_cleanup_(sd_event_unrefp) sd_event *e = NULL;

	assert_int_equal(sd_event_new(&e), 0);
	assert_int_equal(http_request_fds(e, path, "PUT", "/api/v1/vm.add-net", j, fds, n, timeout,
					  on_done, d, NULL),
			 0);
	assert_int_equal(d->calls, 0); /* never from inside the call */
	run_until(e, &d->calls, 1);
}

/* The reply's JSON, compact, for the test to compare; freed by the caller. */
static char *dumped(const Done *d)
{
	return d->json ? json_dumps(d->json, JSON_COMPACT) : NULL;
}

/*
 * Both descriptors go with the first bytes of the request, and the server's copies are
 * the client's files (the same inodes); a 200's JSON comes back.
 */
static void test_fds_with_the_request(void **state _unused_)
{
	/* Two requests: after its reply the server waits for the client to hang up. */
	Server *s = server_start(REPLY_TEXT,
				 response("200 OK", "{\"id\":\"n0\",\"bdf\":\"0000:00:04.0\"}"), 2);
	_cleanup_free_ char *json = NULL;
	struct stat mine, theirs;
	Done d = {};
	int p[2];

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	run(s->path, "{\"id\":\"n0\"}", p, 2, 2000000, &d);
	assert_int_equal(d.error, 0);
	assert_int_equal(d.status, 200);
	json = dumped(&d);
	assert_string_equal(json, "{\"id\":\"n0\",\"bdf\":\"0000:00:04.0\"}");
	server_join(s);
	assert_non_null(strstr(s->request, "PUT /api/v1/vm.add-net HTTP/1.1\r\n"));
	assert_non_null(strstr(s->request, "Content-Length: 11\r\n\r\n{\"id\":\"n0\"}"));
	assert_int_equal(s->n_fds, 2);
	assert_true(s->fds_with_first_bytes);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(fstat(p[i], &mine), 0);
		assert_int_equal(fstat(s->fds[i], &theirs), 0);
		assert_int_equal(mine.st_ino, theirs.st_ino);
	}
	server_stop(s);
	done_free(&d);
	close(p[0]);
	close(p[1]);
}

/*
 * No body: Content-Length 0. A 204 has no body and, from micro_http, no length either,
 * on a connection it keeps open: that is the whole reply, before the timeout.
 */
static void test_no_body(void **state _unused_)
{
	Server *s = server_start(REPLY_TEXT, "HTTP/1.1 204 No Content\r\n\r\n", 2);
	Done d = {};

	run(s->path, NULL, NULL, 0, 1000000, &d);
	assert_int_equal(d.error, 0);
	assert_int_equal(d.status, 204);
	assert_null(d.json);
	server_join(s);
	assert_non_null(strstr(s->request, "Content-Length: 0\r\n\r\n"));
	assert_int_equal(s->n_fds, 0);
	server_stop(s);
	done_free(&d);
}

/* Cloud Hypervisor's error body: its causes, the status as errno. */
static void test_error_status(void **state _unused_)
{
	Server *s = server_start(REPLY_TEXT,
				 response("500 Internal Server Error",
					  "[\"The network device could not be added\"]"),
				 2);
	Done d = {};

	run(s->path, "{}", NULL, 0, 2000000, &d);
	assert_int_equal(d.error, -EREMOTEIO);
	assert_int_equal(d.status, 500);
	assert_non_null(d.message);
	assert_non_null(strstr(d.message, "The network device could not be added"));
	server_join(s);
	server_stop(s);
	done_free(&d);
}

/* A reply without a length ends with the close; one cut short is a reset. */
static void test_reply_ends(void **state _unused_)
{
	Server *s = server_start(REPLY_TEXT, "HTTP/1.1 200 OK\r\n\r\n{\"a\":1}", 1);
	_cleanup_free_ char *json = NULL;
	Done d = {};

	run(s->path, NULL, NULL, 0, 2000000, &d);
	assert_int_equal(d.error, 0);
	json = dumped(&d);
	assert_string_equal(json, "{\"a\":1}");
	server_join(s);
	server_stop(s);
	done_free(&d);

	d = (Done){};
	s = server_start(REPLY_TEXT, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"a\":", 1);
	run(s->path, NULL, NULL, 0, 2000000, &d);
	assert_int_equal(d.error, -ECONNRESET);
	server_join(s);
	server_stop(s);
	done_free(&d);

	/* Nothing at all before the close: the server hung up. */
	d = (Done){};
	s = server_start(REPLY_HANG_UP, NULL, 1);
	run(s->path, NULL, NULL, 0, 2000000, &d);
	assert_int_equal(d.error, -ECONNRESET);
	server_join(s);
	server_stop(s);
	done_free(&d);
}

/* Nobody there, or no answer in time: the handler hears so, from the loop. */
static void test_no_socket_and_timeout(void **state _unused_)
{
	Server *s;
	Done d = {};

	run("/nonexistent/api.sock", NULL, NULL, 0, 2000000, &d);
	assert_int_equal(d.error, -ENOENT);
	assert_non_null(d.message);
	done_free(&d);

	d = (Done){};
	s = server_start(REPLY_NOTHING, NULL, 1);
	run(s->path, NULL, NULL, 0, 200000, &d);
	assert_int_equal(d.error, -ETIMEDOUT);
	server_join(s);
	server_stop(s);
	done_free(&d);
}

/* Cancelled: its handler is never called. */
static void test_cancel(void **state _unused_)
{
	Server *s =
		server_start(REPLY_TEXT, "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", 1);
	_cleanup_(sd_event_unrefp) sd_event *e = NULL;
	HttpFdsRequest *req = NULL;
	Done d = {};

	assert_int_equal(sd_event_new(&e), 0);
	assert_int_equal(http_request_fds(e, s->path, "PUT", "/api/v1/vm.boot", NULL, NULL, 0,
					  2000000, on_done, &d, &req),
			 0);
	http_request_fds_cancel(req);
	run_idle(e);
	assert_int_equal(d.calls, 0);
	server_join(s);
	server_stop(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fds_with_the_request),  cmocka_unit_test(test_no_body),
		cmocka_unit_test(test_error_status),	      cmocka_unit_test(test_reply_ends),
		cmocka_unit_test(test_no_socket_and_timeout), cmocka_unit_test(test_cancel),
	};

	return cmocka_run_group_tests_name("http-fds", tests, NULL, NULL);
}
