/* SPDX-License-Identifier: MIT */
/*
 * The QMP client against a scripted fake QMP server (a thread on a Unix socket): the
 * greeting, replies matched by id, events before replies, errors, garbage, oversized and
 * duplicate-key messages, a server that never greets or that hangs up.
 */
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "helpers.h"
#include "qmp.h"
#include "util.h"

#define GREETING                                                                                   \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}}, "         \
	"\"capabilities\": [\"oob\"]}}\r\n"
#define CAPS_OK "{\"return\": {}, \"id\": %ID%}\r\n"
/* The greeting and capabilities negotiation every script starts with. */
// clang-format off
#define HANDSHAKE { SEND, GREETING }, { EXPECT, "qmp_capabilities" }, { SEND, CAPS_OK }
// clang-format on

typedef enum StepOp {
	SEND,	  /* text, with %ID% for the id of the command last read */
	EXPECT,	  /* read one command; text is its "execute" */
	SEND_BIG, /* a line of QMP_MESSAGE_MAX + 10 bytes */
	WAIT_MS,  /* atoi(text) */
	END,	  /* close the connection */
} StepOp;

typedef struct Step {
	StepOp op;
	const char *text;
} Step;

typedef struct Server {
	char *dir;
	char path[108];
	int listen_fd;
	const Step *script;
	pthread_t thread;
	char failure[256]; /* what the server did not get as scripted */
	char last_args[512];
} Server;

/* One line from fd, without its newline; NULL on EOF. */
static char *read_line(int fd)
{
	char *buf = calloc(1, 65536);
	size_t n = 0;

	while (n < 65535) {
		ssize_t k = read(fd, buf + n, 1);

		if (k <= 0) {
			free(buf);
			return NULL;
		}
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = '\0';
	return buf;
}

static void *serve(void *arg)
{
	Server *s = arg;
	long long id = -1;
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return NULL;
	for (const Step *st = s->script; st->op != END; st++) {
		if (st->op == SEND) {
			char out[4096], num[32];
			const char *p = st->text, *m;
			size_t o = 0;

			snprintf(num, sizeof(num), "%lld", id);
			while ((m = strstr(p, "%ID%"))) {
				memcpy(out + o, p, (size_t)(m - p));
				o += (size_t)(m - p);
				memcpy(out + o, num, strlen(num));
				o += strlen(num);
				p = m + 4;
			}
			strcpy(out + o, p);
			test_send_all(fd, out, strlen(out));
		} else if (st->op == SEND_BIG) {
			size_t n = QMP_MESSAGE_MAX + 10;
			char *big = malloc(n);

			memset(big, ' ', n);
			big[0] = '{';
			test_send_all(fd, big, n);
			free(big);
		} else if (st->op == WAIT_MS) {
			usleep((useconds_t)atoi(st->text) * 1000);
		} else if (st->op == EXPECT) {
			char *line = read_line(fd);
			json_t *j = line ? json_loads(line, 0, NULL) : NULL;
			const char *cmd = json_string_value(json_object_get(j, "execute"));

			if (!cmd || !streq(cmd, st->text))
				snprintf(s->failure, sizeof(s->failure), "expected %s, got %s",
					 st->text, line ?: "EOF");
			id = json_integer_value(json_object_get(j, "id"));
			if (json_object_get(j, "arguments")) {
				char *a = json_dumps(json_object_get(j, "arguments"),
						     JSON_SORT_KEYS | JSON_COMPACT);

				snprintf(s->last_args, sizeof(s->last_args), "%s", a);
				free(a);
			}
			json_decref(j);
			free(line);
			if (s->failure[0]) {
				fprintf(stderr, "fake QMP server: %s\n", s->failure);
				break;
			}
		}
	}
	close(fd);
	return NULL;
}

static Server *server_start(const Step *script)
{
	Server *s = calloc(1, sizeof(*s));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	s->dir = test_tmpdir();
	snprintf(s->path, sizeof(s->path), "%s/qmp.sock", s->dir);
	strcpy(sa.sun_path, s->path);
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s->listen_fd >= 0);
	assert_int_equal(bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s->listen_fd, 4), 0);
	s->script = script;
	assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
	return s;
}

/* Wait for the script to end, check it went as written, and free it. */
static void server_stop(Server *s, char *ret_args)
{
	/* Unblock an accept() that never got its client. */
	shutdown(s->listen_fd, SHUT_RDWR);
	pthread_join(s->thread, NULL);
	close(s->listen_fd);
	test_tmpdir_remove(s->dir);
	if (ret_args)
		strcpy(ret_args, s->last_args);
	assert_string_equal(s->failure, "");
	free(s);
}

#define SEC 1000000ull

static void test_connect_and_call(void **state _unused_)
{
	static const Step script[] = {
		HANDSHAKE,
		{ EXPECT, "query-status" },
		{ SEND,
		  "{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": %ID%}\r\n" },
		{ EXPECT, "blockdev-del" },
		{ SEND, "{\"return\": {}, \"id\": %ID%}\r\n" },
		{ END },
	};
	Server *s = server_start(script);
	Qmp *q = NULL;
	json_t *ret = NULL;
	char args[512];

	assert_int_equal(qmp_connect(s->path, 5 * SEC, &q), 0);
	assert_true(qmp_is_connected(q));
	assert_int_equal(qmp_call(q, "query-status", NULL, 5 * SEC, &ret, NULL), 0);
	assert_string_equal(json_string_value(json_object_get(ret, "status")), "running");
	json_decref(ret);
	assert_int_equal(qmp_call(q, "blockdev-del", json_pack("{s:s}", "node-name", "a,b\"c"),
				  5 * SEC, NULL, NULL),
			 0);
	qmp_free(q);
	server_stop(s, args);
	/* Arguments go as JSON: a comma or quote in a value is only data. */
	assert_string_equal(args, "{\"node-name\":\"a,b\\\"c\"}");
}

static char events_seen[512];

static void record_event(Qmp *q _unused_, const char *event, json_t *data, uint64_t ts,
			 void *userdata _unused_)
{
	char buf[128];
	const char *dev = json_string_value(json_object_get(data, "device"));

	snprintf(buf, sizeof(buf), "%s%s%s@%llu;", event, dev ? ":" : "", dev ?: "",
		 (unsigned long long)ts);
	strncat(events_seen, buf, sizeof(events_seen) - strlen(events_seen) - 1);
}

static void test_events_before_reply(void **state _unused_)
{
	static const Step script[] = {
		HANDSHAKE,
		{ EXPECT, "device_del" },
		/* An event, a reply to some other id, another event, then the reply. */
		{ SEND, "{\"timestamp\": {\"seconds\": 12, \"microseconds\": 5}, \"event\": "
			"\"DEVICE_DELETED\", \"data\": {\"path\": \"/machine/peripheral/disk-a/"
			"virtio-backend\"}}\r\n" },
		{ SEND, "{\"return\": {\"wrong\": true}, \"id\": 999}\r\n" },
		{ SEND, "{\"timestamp\": {\"seconds\": 13, \"microseconds\": 0}, \"event\": "
			"\"DEVICE_DELETED\", \"data\": {\"device\": \"disk-a\", \"path\": "
			"\"/machine/peripheral/disk-a\"}}\r\n" },
		{ SEND, "{\"return\": {}, \"id\": %ID%}\r\n" },
		{ END },
	};
	Server *s = server_start(script);
	Qmp *q = NULL;
	json_t *ret = NULL;

	assert_int_equal(qmp_connect(s->path, 5 * SEC, &q), 0);
	events_seen[0] = '\0';
	assert_int_equal(
		qmp_call(q, "device_del", json_pack("{s:s}", "id", "disk-a"), 5 * SEC, &ret, NULL),
		0);
	assert_true(json_is_object(ret) && json_object_size(ret) == 0);
	json_decref(ret);
	/* Not inside the call: only when dispatched, in the order they came. */
	assert_string_equal(events_seen, "");
	assert_int_equal(qmp_attach(q, NULL, record_event, NULL, NULL), 0);
	qmp_dispatch_events(q);
	assert_string_equal(events_seen, "DEVICE_DELETED@12000005;DEVICE_DELETED:disk-a@13000000;");
	qmp_free(q);
	server_stop(s, NULL);
}

static void test_events_dispatched(void **state _unused_)
{
	static const Step script[] = {
		{ SEND, GREETING },
		{ EXPECT, "qmp_capabilities" },
		{ SEND, "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": "
			"2}}\r\n" },
		{ SEND, CAPS_OK },
		{ WAIT_MS, "50" },
		{ SEND, "{\"event\": \"RESUME\", \"timestamp\": {\"seconds\": 3, \"microseconds\": "
			"0}}\r\n" },
		{ SEND, "{\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"net-n1\"}, "
			"\"timestamp\": {\"seconds\": 4, \"microseconds\": 0}}\r\n" },
		{ WAIT_MS, "50" },
		{ END },
	};
	Server *s = server_start(script);
	sd_event *e = NULL;
	Qmp *q = NULL;

	assert_int_equal(sd_event_new(&e), 0);
	assert_int_equal(qmp_connect(s->path, 5 * SEC, &q), 0);
	events_seen[0] = '\0';
	assert_int_equal(qmp_attach(q, e, record_event, NULL, NULL), 0);
	/* The STOP that came with the greeting, then the two sent on their own. */
	for (int i = 0; i < 200 && !strstr(events_seen, "net-n1"); i++)
		assert_true(sd_event_run(e, 100000) >= 0);
	assert_string_equal(events_seen,
			    "STOP@1000002;RESUME@3000000;DEVICE_DELETED:net-n1@4000000;");
	qmp_free(q);
	sd_event_unref(e);
	server_stop(s, NULL);
}

static bool closed;
static int closed_error;

static void on_close(Qmp *q _unused_, int error, void *userdata _unused_)
{
	closed = true;
	closed_error = error;
}

static void test_close_seen(void **state _unused_)
{
	static const Step script[] = {
		HANDSHAKE,
		{ SEND,
		  "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": "
		  "\"guest-shutdown\"}, \"timestamp\": {\"seconds\": 9, \"microseconds\": 0}}\r\n" },
		{ END },
	};
	Server *s = server_start(script);
	sd_event *e = NULL;
	Qmp *q = NULL;

	assert_int_equal(sd_event_new(&e), 0);
	assert_int_equal(qmp_connect(s->path, 5 * SEC, &q), 0);
	events_seen[0] = '\0';
	closed = false;
	assert_int_equal(qmp_attach(q, e, record_event, on_close, NULL), 0);
	for (int i = 0; i < 200 && !closed; i++)
		assert_true(sd_event_run(e, 100000) >= 0);
	assert_true(closed);
	assert_int_equal(closed_error, -ECONNRESET);
	/* The event sent just before the close is not lost. */
	assert_string_equal(events_seen, "SHUTDOWN@9000000;");
	assert_false(qmp_is_connected(q));
	assert_int_equal(qmp_call(q, "query-status", NULL, SEC, NULL, NULL), -ENOTCONN);
	qmp_free(q);
	sd_event_unref(e);
	server_stop(s, NULL);
}

static void test_error_reply(void **state _unused_)
{
	static const Step script[] = {
		HANDSHAKE,
		{ EXPECT, "blockdev-add" },
		{ SEND, "{\"id\": %ID%, \"error\": {\"class\": \"GenericError\", \"desc\": "
			"\"Could not open '/nope': No such file or directory\"}}\r\n" },
		{ EXPECT, "query-name" },
		{ SEND, "{\"return\": {\"name\": \"web-1\"}, \"id\": %ID%}\r\n" },
		{ END },
	};
	Server *s = server_start(script);
	Qmp *q = NULL;
	char *err = NULL;
	json_t *ret = NULL;

	assert_int_equal(qmp_connect(s->path, 5 * SEC, &q), 0);
	assert_int_equal(qmp_call(q, "blockdev-add", json_pack("{s:s}", "driver", "file"), 5 * SEC,
				  NULL, &err),
			 -EREMOTEIO);
	assert_string_equal(err, "Could not open '/nope': No such file or directory");
	free(err);
	/* An error is an answer, not a broken connection. */
	assert_int_equal(qmp_call(q, "query-name", NULL, 5 * SEC, &ret, NULL), 0);
	assert_string_equal(json_string_value(json_object_get(ret, "name")), "web-1");
	json_decref(ret);
	qmp_free(q);
	server_stop(s, NULL);
}

/* A reply that comes after its call gave up is not taken for the next call's. */
static void test_timeout_then_late_reply(void **state _unused_)
{
	static const Step script[] = {
		HANDSHAKE,
		{ EXPECT, "query-status" },
		{ WAIT_MS, "300" },
		{ SEND, "{\"return\": {\"status\": \"late\"}, \"id\": %ID%}\r\n" },
		{ EXPECT, "query-status" },
		{ SEND, "{\"return\": {\"status\": \"paused\"}, \"id\": %ID%}\r\n" },
		{ END },
	};
	Server *s = server_start(script);
	Qmp *q = NULL;
	json_t *ret = NULL;

	assert_int_equal(qmp_connect(s->path, 5 * SEC, &q), 0);
	assert_int_equal(qmp_call(q, "query-status", NULL, 100000, &ret, NULL), -ETIMEDOUT);
	assert_null(ret);
	assert_int_equal(qmp_call(q, "query-status", NULL, 5 * SEC, &ret, NULL), 0);
	assert_string_equal(json_string_value(json_object_get(ret, "status")), "paused");
	json_decref(ret);
	qmp_free(q);
	server_stop(s, NULL);
}

static void expect_broken(const Step *script, int error)
{
	Server *s = server_start(script);
	Qmp *q = NULL;

	assert_int_equal(qmp_connect(s->path, 5 * SEC, &q), 0);
	assert_int_equal(qmp_call(q, "query-status", NULL, 5 * SEC, NULL, NULL), error);
	assert_false(qmp_is_connected(q));
	assert_int_equal(qmp_call(q, "query-status", NULL, 5 * SEC, NULL, NULL), -ENOTCONN);
	qmp_free(q);
	server_stop(s, NULL);
}

/* Replies that are not QMP: each breaks the connection with its own error. */
static void test_broken_replies(void **state _unused_)
{
	static const struct {
		Step reply;
		int error;
	} cases[] = {
		{ { SEND, "Segmentation fault {\r\n" }, -EBADMSG },
		{ { SEND, "[1, 2]\r\n" }, -EBADMSG }, /* not an object */
		{ { SEND, "{\"return\": {}, \"id\": %ID%, \"id\": 7}\r\n" }, -EBADMSG },
		{ { SEND_BIG, NULL }, -EMSGSIZE },
		{ { SEND, "{\"return\": {\"sta" }, -ECONNRESET }, /* hangs up mid-reply */
	};

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		const Step script[] = {
			HANDSHAKE, { EXPECT, "query-status" }, cases[i].reply, { WAIT_MS, "100" },
			{ END },
		};

		expect_broken(script, cases[i].error);
	}
}

static void test_never_greets(void **state _unused_)
{
	static const Step script[] = {
		{ WAIT_MS, "1000" },
		{ END },
	};
	Server *s = server_start(script);
	Qmp *q = NULL;

	assert_int_equal(qmp_connect(s->path, 200000, &q), -ETIMEDOUT);
	assert_null(q);
	server_stop(s, NULL);
}

static void test_greeting_is_not_qmp(void **state _unused_)
{
	static const Step script[] = {
		{ SEND, "{\"hello\": 1}\r\n" },
		{ WAIT_MS, "500" },
		{ END },
	};
	Server *s = server_start(script);
	Qmp *q = NULL;

	/* Not a greeting: ignored, then nothing more comes. */
	assert_int_equal(qmp_connect(s->path, 200000, &q), -ETIMEDOUT);
	server_stop(s, NULL);
}

static void test_capabilities_refused(void **state _unused_)
{
	static const Step script[] = {
		{ SEND, GREETING },
		{ EXPECT, "qmp_capabilities" },
		{ SEND, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no\"}, \"id\": "
			"%ID%}\r\n" },
		{ END },
	};
	Server *s = server_start(script);
	Qmp *q = NULL;

	assert_int_equal(qmp_connect(s->path, 5 * SEC, &q), -EPROTO);
	server_stop(s, NULL);
}

static int ready_result;
static bool ready_called;

static void on_ready(Qmp *q _unused_, int error, void *userdata _unused_)
{
	ready_called = true;
	ready_result = error;
}

/* Without blocking: the greeting comes late, and the loop runs meanwhile. */
static void test_connect_async(void **state _unused_)
{
	static const Step script[] = {
		{ WAIT_MS, "200" },
		HANDSHAKE,
		{ EXPECT, "query-status" },
		{ SEND, "{\"return\": {\"status\": \"running\"}, \"id\": %ID%}\r\n" },
		{ END },
	};
	static const Step refused[] = {
		{ SEND, GREETING },
		{ EXPECT, "qmp_capabilities" },
		{ SEND, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}, \"id\": "
			"%ID%}\r\n" },
		{ END },
	};
	Server *s = server_start(script);
	sd_event *e = NULL;
	Qmp *q = NULL;
	json_t *ret = NULL;
	unsigned turns = 0;

	assert_int_equal(sd_event_new(&e), 0);
	ready_called = false;
	assert_int_equal(qmp_connect_async(s->path, e, on_ready, NULL, &q), 0);
	while (!ready_called && turns < 1000) {
		assert_true(sd_event_run(e, 10000) >= 0);
		turns++;
	}
	assert_true(ready_called);
	assert_int_equal(ready_result, 0);
	/* The loop turned while the greeting was late: the connect did not block. */
	assert_true(turns > 1);
	assert_int_equal(qmp_call(q, "query-status", NULL, 5 * SEC, &ret, NULL), 0);
	assert_string_equal(json_string_value(json_object_get(ret, "status")), "running");
	json_decref(ret);
	qmp_free(q);
	server_stop(s, NULL);

	s = server_start(refused);
	ready_called = false;
	assert_int_equal(qmp_connect_async(s->path, e, on_ready, NULL, &q), 0);
	for (int i = 0; i < 1000 && !ready_called; i++)
		assert_true(sd_event_run(e, 10000) >= 0);
	assert_int_equal(ready_result, -EPROTO);
	assert_false(qmp_is_connected(q));
	qmp_free(q);
	server_stop(s, NULL);

	q = NULL;
	assert_int_equal(qmp_connect_async("/nonexistent/qmp.sock", e, on_ready, NULL, &q), -ENOENT);
	assert_null(q);
	sd_event_unref(e);
}

static void test_nobody_listens(void **state _unused_)
{
	char *dir = test_tmpdir();
	char path[256];
	Qmp *q = NULL;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	snprintf(path, sizeof(path), "%s/none.sock", dir);
	assert_int_equal(qmp_connect(path, SEC, &q), -ENOENT);
	/* A socket file left behind by a QEMU that died. */
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(qmp_connect(path, SEC, &q), -ECONNREFUSED);
	test_tmpdir_remove(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connect_and_call),
		cmocka_unit_test(test_events_before_reply),
		cmocka_unit_test(test_events_dispatched),
		cmocka_unit_test(test_close_seen),
		cmocka_unit_test(test_error_reply),
		cmocka_unit_test(test_timeout_then_late_reply),
		cmocka_unit_test(test_broken_replies),
		cmocka_unit_test(test_never_greets),
		cmocka_unit_test(test_greeting_is_not_qmp),
		cmocka_unit_test(test_capabilities_refused),
		cmocka_unit_test(test_connect_async),
		cmocka_unit_test(test_nobody_listens),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
