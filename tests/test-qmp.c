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
	long long ids[16]; /* of the commands read, in order (qmp_capabilities first) */
	size_t n_ids;
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

/*
 * text with %ID% replaced by the id of the command last read, and %IDk% by the id of the
 * k-th command read (0 is qmp_capabilities).
 */
static char *substitute(const Server *s, const char *text, long long last)
{
	char *out = calloc(1, strlen(text) * 4 + 64);
	const char *p = text, *m;
	size_t o = 0;

	while ((m = strstr(p, "%ID"))) {
		const char *end = strchr(m + 3, '%');
		long long v = last;

		memcpy(out + o, p, (size_t)(m - p));
		o += (size_t)(m - p);
		if (end && end > m + 3) {
			size_t k = (size_t)atoi(m + 3);

			v = k < s->n_ids ? s->ids[k] : -1;
		}
		o += (size_t)sprintf(out + o, "%lld", v);
		p = end ? end + 1 : m + 3;
	}
	strcpy(out + o, p);
	return out;
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
			char *out = substitute(s, st->text, id);

			test_send_all(fd, out, strlen(out));
			free(out);
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
			if (s->n_ids < ELEMENTSOF(s->ids))
				s->ids[s->n_ids++] = id;
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

/* Turn e's loop until *flag is set (bounded: a failure, not a speed claim); returns turns. */
static unsigned run_until(sd_event *e, const bool *flag)
{
	unsigned turns = 0;

	while (!*flag) {
		assert_true(turns < 100000);
		assert_true(sd_event_run(e, 10000) >= 0);
		turns++;
	}
	return turns;
}

/* The same until *count reaches want. */
static unsigned run_until_n(sd_event *e, const unsigned *count, unsigned want)
{
	unsigned turns = 0;

	while (*count < want) {
		assert_true(turns < 100000);
		assert_true(sd_event_run(e, 10000) >= 0);
		turns++;
	}
	return turns;
}

/* What the handlers of one test saw, in order. */
typedef struct Seen {
	char log[1024];
	bool ready, closed;
	int ready_error, close_error;
	unsigned replies;
	Qmp *free_me; /* a handler frees it */
} Seen;

static void seen_add(Seen *s, const char *fmt, ...) _printf_(2, 3);
static void seen_add(Seen *s, const char *fmt, ...)
{
	size_t l = strlen(s->log);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->log + l, sizeof(s->log) - l, fmt, ap);
	va_end(ap);
}

static void on_ready(Qmp *q _unused_, int error, void *userdata)
{
	Seen *s = userdata;

	s->ready = true;
	s->ready_error = error;
	seen_add(s, "ready(%d);", error);
}

static void on_event(Qmp *q _unused_, const char *event, json_t *data, uint64_t ts, void *userdata)
{
	Seen *s = userdata;
	const char *dev = json_string_value(json_object_get(data, "device"));

	seen_add(s, "%s%s%s@%llu;", event, dev ? ":" : "", dev ?: "", (unsigned long long)ts);
}

static void on_close(Qmp *q _unused_, int error, void *userdata)
{
	Seen *s = userdata;

	s->closed = true;
	s->close_error = error;
	seen_add(s, "close(%d);", error);
}

/* A reply: its error, or the "status" or "name" it returns. */
static void on_reply(Qmp *q, int error, json_t *ret, const char *desc, void *userdata)
{
	Seen *s = userdata;
	const char *v = json_string_value(json_object_get(ret, "status"))
				?: json_string_value(json_object_get(ret, "name"));

	s->replies++;
	if (error == -EREMOTEIO)
		seen_add(s, "error(%s);", desc);
	else if (error < 0)
		seen_add(s, "fail(%d);", error);
	else
		seen_add(s, "reply(%s);", v ?: "");
	if (s->free_me == q)
		s->free_me = qmp_free(q);
}

static Qmp *connect_async(Server *srv, sd_event *e, Seen *s)
{
	Qmp *q = NULL;

	assert_int_equal(qmp_connect(srv->path, e,
				     &(QmpHandlers){ .ready = on_ready,
						     .event = on_event,
						     .close = on_close,
						     .userdata = s },
				     &q),
			 0);
	return q;
}

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

	assert_int_equal(qmp_open(s->path, 5 * SEC, &q), 0);
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

/* Events and replies reach their handlers in the order QEMU sent them. */
static void test_events_in_order(void **state _unused_)
{
	static const Step script[] = {
		HANDSHAKE,
		{ EXPECT, "device_del" },
		/* An event, a reply to some other id, another event, then the reply. */
		{ SEND, "{\"timestamp\": {\"seconds\": 12, \"microseconds\": 5}, \"event\": "
			"\"DEVICE_DELETED\", \"data\": {\"path\": \"/machine/peripheral/disk-a/"
			"virtio-backend\"}}\r\n" },
		{ SEND, "{\"return\": {\"status\": \"wrong\"}, \"id\": 999}\r\n" },
		{ SEND, "{\"timestamp\": {\"seconds\": 13, \"microseconds\": 0}, \"event\": "
			"\"DEVICE_DELETED\", \"data\": {\"device\": \"disk-a\", \"path\": "
			"\"/machine/peripheral/disk-a\"}}\r\n" },
		{ SEND, "{\"return\": {}, \"id\": %ID%}\r\n" },
		{ WAIT_MS, "50" },
		{ SEND, "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 14, \"microseconds\": "
			"0}}\r\n" },
		{ WAIT_MS, "100" },
		{ END },
	};
	Server *srv = server_start(script);
	sd_event *e = NULL;
	Seen s = {};
	Qmp *q;

	assert_int_equal(sd_event_new(&e), 0);
	q = connect_async(srv, e, &s);
	assert_int_equal(qmp_send(q, "device_del", json_pack("{s:s}", "id", "disk-a"), 5 * SEC,
				  on_reply, &s, NULL),
			 0);
	/* Nothing from inside the call: handlers run from the loop only. */
	assert_string_equal(s.log, "");
	run_until(e, &s.closed);
	assert_string_equal(s.log, "ready(0);DEVICE_DELETED@12000005;DEVICE_DELETED:disk-a@13000000;"
				   "reply();STOP@14000000;close(-104);");
	qmp_free(q);
	sd_event_unref(e);
	server_stop(srv, NULL);
}

/* Several commands in flight: replies in another order each reach their own handler. */
static void test_out_of_order(void **state _unused_)
{
	static const Step script[] = {
		HANDSHAKE,
		{ EXPECT, "query-name" },
		{ EXPECT, "query-status" },
		{ EXPECT, "query-name" },
		{ SEND, "{\"return\": {\"name\": \"third\"}, \"id\": %ID3%}\r\n" },
		{ SEND, "{\"return\": {\"status\": \"second\"}, \"id\": %ID2%}\r\n" },
		{ SEND, "{\"return\": {\"name\": \"first\"}, \"id\": %ID1%}\r\n" },
		{ WAIT_MS, "100" },
		{ END },
	};
	Server *srv = server_start(script);
	sd_event *e = NULL;
	Seen a = {}, b = {}, c = {}, s = {};
	Qmp *q;

	assert_int_equal(sd_event_new(&e), 0);
	q = connect_async(srv, e, &s);
	/* Sent before negotiation is done: they wait for it, then go in order. */
	assert_int_equal(qmp_send(q, "query-name", NULL, 5 * SEC, on_reply, &a, NULL), 0);
	assert_int_equal(qmp_send(q, "query-status", NULL, 5 * SEC, on_reply, &b, NULL), 0);
	assert_int_equal(qmp_send(q, "query-name", NULL, 5 * SEC, on_reply, &c, NULL), 0);
	run_until(e, &s.closed);
	assert_string_equal(a.log, "reply(first);");
	assert_string_equal(b.log, "reply(second);");
	assert_string_equal(c.log, "reply(third);");
	assert_string_equal(s.log, "ready(0);close(-104);");
	qmp_free(q);
	sd_event_unref(e);
	server_stop(srv, NULL);
}

static int timer_fired(sd_event_source *src _unused_, uint64_t usec _unused_, void *userdata)
{
	Seen *s = userdata;

	seen_add(s, "timer;");
	return 0;
}

/*
 * A monitor that never answers, or answers with a wrong id: the call times out from the
 * loop, which meanwhile runs everything else (a 10 ms timer fires first), and the
 * connection still serves the next command.
 */
static void test_hang_and_wrong_id(void **state _unused_)
{
	static const Step script[] = {
		HANDSHAKE,
		{ EXPECT, "query-status" },
		{ EXPECT, "query-name" },
		{ SEND, "{\"return\": {\"name\": \"not yours\"}, \"id\": 4242}\r\n" },
		{ EXPECT, "query-status" },
		{ SEND, "{\"return\": {\"status\": \"fine\"}, \"id\": %ID%}\r\n" },
		{ WAIT_MS, "200" },
		{ END },
	};
	Server *srv = server_start(script);
	sd_event *e = NULL;
	sd_event_source *timer = NULL;
	Seen s = {}, hang = {}, wrong = {}, after = {};
	Qmp *q;

	assert_int_equal(sd_event_new(&e), 0);
	q = connect_async(srv, e, &s);
	run_until(e, &s.ready);
	assert_int_equal(qmp_send(q, "query-status", NULL, 300000, on_reply, &hang, NULL), 0);
	assert_int_equal(sd_event_add_time_relative(e, &timer, CLOCK_MONOTONIC, 10000, 1000,
						    timer_fired, &hang),
			 0);
	run_until_n(e, &hang.replies, 1);
	assert_string_equal(hang.log, "timer;fail(-110);");

	assert_int_equal(qmp_send(q, "query-name", NULL, 300000, on_reply, &wrong, NULL), 0);
	run_until_n(e, &wrong.replies, 1);
	assert_string_equal(wrong.log, "fail(-110);");
	assert_true(qmp_is_connected(q));

	assert_int_equal(qmp_send(q, "query-status", NULL, 5 * SEC, on_reply, &after, NULL), 0);
	run_until_n(e, &after.replies, 1);
	assert_string_equal(after.log, "reply(fine);");
	sd_event_source_unref(timer);
	qmp_free(q);
	sd_event_unref(e);
	server_stop(srv, NULL);
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

	assert_int_equal(qmp_open(s->path, 5 * SEC, &q), 0);
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

	assert_int_equal(qmp_open(s->path, 5 * SEC, &q), 0);
	assert_int_equal(qmp_call(q, "query-status", NULL, 100000, &ret, NULL), -ETIMEDOUT);
	assert_null(ret);
	assert_int_equal(qmp_call(q, "query-status", NULL, 5 * SEC, &ret, NULL), 0);
	assert_string_equal(json_string_value(json_object_get(ret, "status")), "paused");
	json_decref(ret);
	qmp_free(q);
	server_stop(s, NULL);
}

/*
 * Replies that are not QMP, or a peer that leaves mid-reply: each breaks the connection
 * with its own error, every call in flight hears it, then the close handler; a later
 * command hears -ENOTCONN, from the loop too.
 */
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
			HANDSHAKE,	{ EXPECT, "query-status" }, { EXPECT, "query-name" },
			cases[i].reply, { WAIT_MS, "100" },	    { END },
		};
		Server *srv = server_start(script);
		sd_event *e = NULL;
		Seen s = {}, c1 = {}, c2 = {}, later = {};
		char want[64];
		Qmp *q;

		assert_int_equal(sd_event_new(&e), 0);
		q = connect_async(srv, e, &s);
		assert_int_equal(qmp_send(q, "query-status", NULL, 5 * SEC, on_reply, &c1, NULL), 0);
		assert_int_equal(qmp_send(q, "query-name", NULL, 5 * SEC, on_reply, &c2, NULL), 0);
		run_until(e, &s.closed);
		assert_int_equal(s.close_error, cases[i].error);
		snprintf(want, sizeof(want), "fail(%d);", cases[i].error);
		assert_string_equal(c1.log, want);
		assert_string_equal(c2.log, want);
		assert_false(qmp_is_connected(q));
		assert_int_equal(qmp_send(q, "query-status", NULL, 5 * SEC, on_reply, &later, NULL),
				 0);
		assert_int_equal(later.replies, 0);
		run_until_n(e, &later.replies, 1);
		assert_string_equal(later.log, "fail(-107);");
		qmp_free(q);
		sd_event_unref(e);
		server_stop(srv, NULL);
	}
}

/* A handler may free the connection, with calls and messages still behind it. */
static void test_free_from_handler(void **state _unused_)
{
	static const Step script[] = {
		HANDSHAKE,
		{ EXPECT, "query-name" },
		{ EXPECT, "query-status" },
		/* Both replies in one segment: the second is parsed after the first freed q. */
		{ SEND, "{\"return\": {\"name\": \"x\"}, \"id\": %ID1%}\r\n{\"return\": {\"status\": "
			"\"y\"}, \"id\": %ID2%}\r\n{\"event\": \"STOP\"}\r\n" },
		{ WAIT_MS, "100" },
		{ END },
	};
	Server *srv = server_start(script);
	sd_event *e = NULL;
	Seen s = {}, first = {}, second = {};
	Qmp *q;

	assert_int_equal(sd_event_new(&e), 0);
	q = connect_async(srv, e, &s);
	first.free_me = q;
	assert_int_equal(qmp_send(q, "query-name", NULL, 5 * SEC, on_reply, &first, NULL), 0);
	assert_int_equal(qmp_send(q, "query-status", NULL, 5 * SEC, on_reply, &second, NULL), 0);
	run_until_n(e, &first.replies, 1);
	assert_null(first.free_me);
	/* Freed: nothing else is heard, and nothing leaks (ASan says). */
	for (int i = 0; i < 20; i++)
		assert_true(sd_event_run(e, 10000) >= 0);
	assert_string_equal(second.log, "");
	assert_string_equal(s.log, "ready(0);");
	sd_event_unref(e);
	server_stop(srv, NULL);
}

static void test_never_greets(void **state _unused_)
{
	static const Step script[] = {
		{ WAIT_MS, "1000" },
		{ END },
	};
	Server *s = server_start(script);
	Qmp *q = NULL;

	assert_int_equal(qmp_open(s->path, 200000, &q), -ETIMEDOUT);
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
	assert_int_equal(qmp_open(s->path, 200000, &q), -ETIMEDOUT);
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

	assert_int_equal(qmp_open(s->path, 5 * SEC, &q), -EPROTO);
	server_stop(s, NULL);
}

/* A socket that is not at a path (one end of a socketpair) serves as well, and is closed. */
static void test_connect_fd(void **state _unused_)
{
	static const char peer_says[] =
		GREETING "{\"return\": {}, \"id\": 2}\r\n"
			 "{\"return\": {\"status\": \"running\"}, \"id\": 1}\r\n";
	sd_event *e = NULL;
	Seen s = {}, call = {};
	Qmp *q = NULL;
	char buf[256];
	int fds[2];

	assert_int_equal(sd_event_new(&e), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
	assert_int_equal(qmp_connect_fd(fds[0], e,
					&(QmpHandlers){ .ready = on_ready,
							.event = on_event,
							.close = on_close,
							.userdata = &s },
					&q),
			 0);
	/* Sent before the greeting: id 1, and qmp_capabilities id 2. */
	assert_int_equal(qmp_send(q, "query-status", NULL, 5 * SEC, on_reply, &call, NULL), 0);
	test_send_all(fds[1], peer_says, strlen(peer_says));
	run_until_n(e, &call.replies, 1);
	assert_string_equal(s.log, "ready(0);");
	assert_string_equal(call.log, "reply(running);");
	qmp_free(q);
	/* fds[0] went with it: the peer reads what was sent, then the end. */
	while (read(fds[1], buf, sizeof(buf)) > 0)
		;
	assert_int_equal(read(fds[1], buf, sizeof(buf)), 0);
	close(fds[1]);
	sd_event_unref(e);
}

/* The greeting comes late: the loop turns meanwhile; a refusal reaches ready. */
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
	Server *srv = server_start(script);
	sd_event *e = NULL;
	Seen s = {}, r = {}, call = {}, refusal = {};
	Qmp *q = NULL;

	assert_int_equal(sd_event_new(&e), 0);
	q = connect_async(srv, e, &s);
	assert_false(qmp_is_connected(q));
	/* The loop turned while the greeting was late: the connect did not block. */
	assert_true(run_until(e, &s.ready) > 1);
	assert_int_equal(s.ready_error, 0);
	assert_int_equal(qmp_send(q, "query-status", NULL, 5 * SEC, on_reply, &call, NULL), 0);
	run_until_n(e, &call.replies, 1);
	assert_string_equal(call.log, "reply(running);");
	qmp_free(q);
	server_stop(srv, NULL);

	srv = server_start(refused);
	q = connect_async(srv, e, &r);
	/* A command sent meanwhile hears the refusal too. */
	assert_int_equal(qmp_send(q, "query-status", NULL, 5 * SEC, on_reply, &refusal, NULL), 0);
	run_until(e, &r.ready);
	assert_int_equal(r.ready_error, -EPROTO);
	assert_false(qmp_is_connected(q));
	run_until_n(e, &refusal.replies, 1);
	assert_string_equal(refusal.log, "fail(-71);");
	qmp_free(q);
	server_stop(srv, NULL);

	q = NULL;
	assert_int_equal(qmp_connect("/nonexistent/qmp.sock", e, &(QmpHandlers){}, &q), -ENOENT);
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
	assert_int_equal(qmp_open(path, SEC, &q), -ENOENT);
	/* A socket file left behind by a QEMU that died. */
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(qmp_open(path, SEC, &q), -ECONNREFUSED);
	test_tmpdir_remove(dir);
}

/* The stream parser on its own: partial lines, CRLF, limits. */
static void test_parse(void **state _unused_)
{
	json_t *m = NULL;
	size_t used = 0;
	char *big;

	assert_int_equal(qmp_parse("{\"a\": 1}", 8, &used, &m), 0);
	assert_int_equal(qmp_parse("{\"a\": 1}\r\n{\"b\"", 14, &used, &m), 1);
	assert_int_equal(used, 10);
	assert_int_equal(json_integer_value(json_object_get(m, "a")), 1);
	json_decref(m);
	assert_int_equal(qmp_parse("\r\n", 2, &used, &m), -EBADMSG);
	assert_int_equal(qmp_parse("\"s\"\n", 4, &used, &m), -EBADMSG);
	big = malloc(QMP_MESSAGE_MAX + 2);
	memset(big, ' ', QMP_MESSAGE_MAX + 2);
	assert_int_equal(qmp_parse(big, QMP_MESSAGE_MAX, &used, &m), 0);
	assert_int_equal(qmp_parse(big, QMP_MESSAGE_MAX + 1, &used, &m), -EMSGSIZE);
	big[QMP_MESSAGE_MAX] = '\n'; /* a line of exactly QMP_MESSAGE_MAX + 1 bytes */
	assert_int_equal(qmp_parse(big, QMP_MESSAGE_MAX + 2, &used, &m), -EBADMSG);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connect_and_call),
		cmocka_unit_test(test_events_in_order),
		cmocka_unit_test(test_out_of_order),
		cmocka_unit_test(test_hang_and_wrong_id),
		cmocka_unit_test(test_error_reply),
		cmocka_unit_test(test_timeout_then_late_reply),
		cmocka_unit_test(test_broken_replies),
		cmocka_unit_test(test_free_from_handler),
		cmocka_unit_test(test_never_greets),
		cmocka_unit_test(test_greeting_is_not_qmp),
		cmocka_unit_test(test_capabilities_refused),
		cmocka_unit_test(test_connect_async),
		cmocka_unit_test(test_connect_fd),
		cmocka_unit_test(test_nobody_listens),
		cmocka_unit_test(test_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
