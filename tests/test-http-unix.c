/* SPDX-License-Identifier: MIT */
/*
 * The blocking HTTP-over-Unix-socket client (http_call) against a scripted server
 * (tests/http-fixture.c): replies with and without bodies, both VMMs' error bodies, invalid
 * JSON, a server that never answers, one that hangs up mid-body, a 100 MB reply, no
 * socket, nobody listening, one connection kept for several calls. The server also checks
 * what the client sends: a Content-Length, never chunked.
 *
 * The same transport on an sd-event loop is tests/test-http-unix-loop.c.
 */
#include <stdio.h>

#include "helpers.h"
#include "http-fixture.h"
#include "http-unix.h"
#include "util.h"

/* One call against a server that answers with text; the reply for the test to check. */
static int call(Server *s, const char *method, const char *path, const char *body,
		uint64_t timeout_usec, HttpReply *ret)
{
	_cleanup_(http_freep) Http *h = NULL;
	json_auto_t *j = body ? json_loads(body, 0, NULL) : NULL;

	assert_int_equal(http_new(s->path, &h), 0);
	return http_call(h, method, path, j, timeout_usec, ret);
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
