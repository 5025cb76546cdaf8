/* SPDX-License-Identifier: MIT */
/*
 * The HTTP-over-Unix-socket transport on a loop the test owns (http_loop_new,
 * http_request), against the scripted server of tests/http-fixture.c: the loop keeps
 * running while a request hangs, several requests are in flight at once, transport
 * failures and error bodies reach the handler from the loop, cancelling, freeing the loop
 * under requests, and handlers that act on the loop.
 *
 * The blocking client (http_call) and the reply parsing are tests/test-http-unix.c.
 */
#include <stdio.h>

#include "helpers.h"
#include "http-fixture.h"
#include "http-unix.h"
#include "util.h"

static void on_done(HttpRequest *req _unused_, int error, const HttpReply *reply, void *userdata)
{
	done_record(userdata, error, reply);
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
