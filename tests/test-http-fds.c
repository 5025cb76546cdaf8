/* SPDX-License-Identifier: MIT */
/*
 * backends/http-fds.c: an HTTP request with descriptors attached (SCM_RIGHTS), against a
 * scripted server on a Unix socket that reads as micro_http does (recvmsg, keeping the
 * descriptors that come with the bytes) and answers one connection with a canned reply.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "helpers.h"
#include "http-unix.h"
#include "util.h"

typedef struct Server {
	char dir[64], path[128];
	int listen_fd;
	pthread_t thread;
	const char *reply; /* sent once the request is in; NULL: none (hang) */
	bool close_after;  /* hang up once the reply is sent */
	char request[4096];
	int fds[8];
	size_t n_fds;
	bool fds_with_first_bytes;
} Server;

/* One connection: the request read to its end, then the reply. */
static void *serve(void *arg)
{
	Server *s = arg;
	int c = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	size_t len = 0;

	if (c < 0)
		return NULL;
	for (;;) {
		union {
			char buf[CMSG_SPACE(sizeof(int) * 8)];
			struct cmsghdr align;
		} control;
		struct iovec iov = { s->request + len, sizeof(s->request) - 1 - len };
		struct msghdr mh = { .msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = control.buf,
				     .msg_controllen = sizeof(control.buf) };
		ssize_t n = recvmsg(c, &mh, MSG_CMSG_CLOEXEC);
		const char *end;

		if (n <= 0)
			break;
		for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
			size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			memcpy(s->fds + s->n_fds, CMSG_DATA(h), k * sizeof(int));
			s->n_fds += k;
			s->fds_with_first_bytes = len == 0;
		}
		len += (size_t)n;
		s->request[len] = '\0';
		end = strstr(s->request, "\r\n\r\n");
		if (end && strlen(end + 4) >=
				   strtoul(strstr(s->request, "Content-Length: ") + 16, NULL, 10))
			break;
	}
	if (s->reply) {
		/* A client that went (cancelled) gets nothing; that is no failure here. */
		(void)send(c, s->reply, strlen(s->reply), MSG_NOSIGNAL);
		if (!s->close_after)
			usleep(1500 * 1000); /* the client ends on the reply, not on the close */
	} else
		usleep(1500 * 1000);
	close(c);
	return NULL;
}

static void server_start(Server *s, const char *reply, bool close_after)
{
	*s = (Server){ .reply = reply, .close_after = close_after };
	snprintf(s->dir, sizeof(s->dir), "/tmp/vmd-http-fds-XXXXXX");
	assert_non_null(mkdtemp(s->dir));
	snprintf(s->path, sizeof(s->path), "%s/api.sock", s->dir);
	s->listen_fd = unix_listen(s->path, 0600);
	assert_true(s->listen_fd >= 0);
	/* unix_listen() makes it non-blocking: the thread waits in accept(). */
	assert_int_equal(fcntl(s->listen_fd, F_SETFL, 0), 0);
	assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

/* A reply of status with body, its length given. */
static char *reply(const char *status, const char *body)
{
	char *r = NULL;

	assert_true(asprintf(&r,
			     "HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
			     "Content-Length: %zu\r\n\r\n%s",
			     status, strlen(body), body) > 0);
	return r;
}

/* The connection served: what came is in s. */
static void server_join(Server *s)
{
	assert_int_equal(pthread_join(s->thread, NULL), 0);
}

static void server_stop(Server *s)
{
	close(s->listen_fd);
	for (size_t i = 0; i < s->n_fds; i++)
		close(s->fds[i]);
	(void)unlink(s->path);
	(void)rmdir(s->dir);
}

typedef struct Done {
	unsigned calls;
	int error;
	long status;
	char *json, *message;
} Done;

static void on_done(int error, const HttpReply *reply, void *userdata)
{
	Done *d = userdata;

	d->calls++;
	d->error = error;
	d->status = reply->status;
	d->json = reply->json ? json_dumps(reply->json, JSON_COMPACT) : NULL;
	d->message = reply->error ? strdup(reply->error) : NULL;
}

/* PUT path with body and fds at the server at path, run to its end. */
static void run(const char *path, const char *body, const int *fds, size_t n, uint64_t timeout,
		Done *d)
{
	_cleanup_(json_decrefp) json_t *j = body ? json_loads(body, 0, NULL) : NULL;
	sd_event *e = NULL;

	assert_int_equal(sd_event_new(&e), 0);
	assert_int_equal(http_request_fds(e, path, "PUT", "/api/v1/vm.add-net", j, fds, n, timeout,
					  on_done, d, NULL),
			 0);
	assert_int_equal(d->calls, 0); /* never from inside the call */
	while (d->calls == 0)
		assert_true(sd_event_run(e, UINT64_MAX) >= 0);
	sd_event_unref(e);
}

static void done_free(Done *d)
{
	free(d->json);
	free(d->message);
}

/*
 * Both descriptors go with the first bytes of the request, and the server's copies are
 * the client's files (the same inodes); a 200's JSON comes back.
 */
static void test_fds_with_the_request(void **state _unused_)
{
	_cleanup_free_ char *text = reply("200 OK", "{\"id\":\"n0\",\"bdf\":\"0000:00:04.0\"}");
	struct stat mine, theirs;
	Server s;
	Done d = {};
	int p[2];

	server_start(&s, text, false);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	run(s.path, "{\"id\":\"n0\"}", p, 2, 2000000, &d);
	assert_int_equal(d.error, 0);
	assert_int_equal(d.status, 200);
	assert_string_equal(d.json, "{\"id\":\"n0\",\"bdf\":\"0000:00:04.0\"}");
	server_join(&s);
	assert_non_null(strstr(s.request, "PUT /api/v1/vm.add-net HTTP/1.1\r\n"));
	assert_non_null(strstr(s.request, "Content-Length: 11\r\n\r\n{\"id\":\"n0\"}"));
	assert_int_equal(s.n_fds, 2);
	assert_true(s.fds_with_first_bytes);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(fstat(p[i], &mine), 0);
		assert_int_equal(fstat(s.fds[i], &theirs), 0);
		assert_int_equal(mine.st_ino, theirs.st_ino);
	}
	server_stop(&s);
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
	Server s;
	Done d = {};

	server_start(&s, "HTTP/1.1 204 No Content\r\n\r\n", false);
	run(s.path, NULL, NULL, 0, 1000000, &d);
	assert_int_equal(d.error, 0);
	assert_int_equal(d.status, 204);
	assert_null(d.json);
	server_join(&s);
	assert_non_null(strstr(s.request, "Content-Length: 0\r\n\r\n"));
	assert_int_equal(s.n_fds, 0);
	server_stop(&s);
	done_free(&d);
}

/* Cloud Hypervisor's error body: its causes, the status as errno. */
static void test_error_status(void **state _unused_)
{
	_cleanup_free_ char *text =
		reply("500 Internal Server Error", "[\"The network device could not be added\"]");
	Server s;
	Done d = {};

	server_start(&s, text, false);
	run(s.path, "{}", NULL, 0, 2000000, &d);
	assert_int_equal(d.error, -EREMOTEIO);
	assert_int_equal(d.status, 500);
	assert_non_null(d.message);
	assert_non_null(strstr(d.message, "The network device could not be added"));
	server_join(&s);
	server_stop(&s);
	done_free(&d);
}

/* A reply without a length ends with the close; one cut short is a reset. */
static void test_reply_ends(void **state _unused_)
{
	Server s;
	Done d = {};

	server_start(&s, "HTTP/1.1 200 OK\r\n\r\n{\"a\":1}", true);
	run(s.path, NULL, NULL, 0, 2000000, &d);
	assert_int_equal(d.error, 0);
	assert_string_equal(d.json, "{\"a\":1}");
	server_join(&s);
	server_stop(&s);
	done_free(&d);

	d = (Done){};
	server_start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"a\":", true);
	run(s.path, NULL, NULL, 0, 2000000, &d);
	assert_int_equal(d.error, -ECONNRESET);
	server_join(&s);
	server_stop(&s);
	done_free(&d);

	/* Nothing at all before the close: the server hung up. */
	d = (Done){};
	server_start(&s, "", true);
	run(s.path, NULL, NULL, 0, 2000000, &d);
	assert_int_equal(d.error, -ECONNRESET);
	server_join(&s);
	server_stop(&s);
	done_free(&d);
}

/* Nobody there, or no answer in time: the handler hears so, from the loop. */
static void test_no_socket_and_timeout(void **state _unused_)
{
	Server s;
	Done d = {};

	run("/nonexistent/api.sock", NULL, NULL, 0, 2000000, &d);
	assert_int_equal(d.error, -ENOENT);
	assert_non_null(d.message);
	done_free(&d);

	d = (Done){};
	server_start(&s, NULL, false);
	run(s.path, NULL, NULL, 0, 200000, &d);
	assert_int_equal(d.error, -ETIMEDOUT);
	server_join(&s);
	server_stop(&s);
	done_free(&d);
}

/* Cancelled: its handler is never called. */
static void test_cancel(void **state _unused_)
{
	Server s;
	Done d = {};
	HttpFdsRequest *req = NULL;
	sd_event *e = NULL;

	server_start(&s, "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", false);
	assert_int_equal(sd_event_new(&e), 0);
	assert_int_equal(http_request_fds(e, s.path, "PUT", "/api/v1/vm.boot", NULL, NULL, 0,
					  2000000, on_done, &d, &req),
			 0);
	http_request_fds_cancel(req);
	for (unsigned i = 0; i < 20; i++)
		assert_true(sd_event_run(e, 10000) >= 0);
	assert_int_equal(d.calls, 0);
	sd_event_unref(e);
	server_join(&s);
	server_stop(&s);
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
