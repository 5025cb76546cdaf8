/* SPDX-License-Identifier: MIT */
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "helpers.h"
#include "http-fixture.h"
#include "util.h"

/* The descriptors of a message, kept while there is room; the rest closed. Under lock. */
static void keep_fds(Server *s, struct msghdr *mh, bool first)
{
	for (struct cmsghdr *h = CMSG_FIRSTHDR(mh); h; h = CMSG_NXTHDR(mh, h)) {
		size_t n = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);

		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(fd));
			if (s->n_fds < ELEMENTSOF(s->fds))
				s->fds[s->n_fds++] = fd;
			else
				close(fd);
		}
		s->fds_with_first_bytes = first;
	}
}

/*
 * Up to size bytes into buf, keeping the descriptors that come with them, as micro_http's
 * Connection::recv_with_fds() does (src/connection.rs). first: the request's first bytes.
 */
static ssize_t receive(Server *s, int fd, char *buf, size_t size, bool first)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * SERVER_FDS_MAX)];
		struct cmsghdr align;
	} control;
	struct iovec iov = { buf, size };
	struct msghdr mh = { .msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = control.buf,
			     .msg_controllen = sizeof(control.buf) };
	ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);

	if (n > 0) {
		pthread_mutex_lock(&s->lock);
		keep_fds(s, &mh, first);
		pthread_mutex_unlock(&s->lock);
	}
	return n;
}

/* One request: its head, then Content-Length bytes of body. false on EOF. */
static bool read_request(Server *s, int fd, char *line, size_t size)
{
	char head[8192], body[4096] = "";
	size_t n = 0;
	long length;
	char *p;

	while (n < sizeof(head) - 1) {
		if (receive(s, fd, head + n, 1, n == 0) != 1)
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
			ssize_t k = receive(s, fd, body + got, (size_t)length - got, false);

			if (k <= 0)
				return false;
			got += (size_t)k;
		}
		body[got] = '\0';
	}
	snprintf(line, size, "%.*s", (int)strcspn(head, "\r\n"), head);
	pthread_mutex_lock(&s->lock);
	snprintf(s->request_line, sizeof(s->request_line), "%s", line);
	snprintf(s->request, sizeof(s->request), "%s%s", head, body);
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

Server *server_start_many(Reply reply, const char *text, unsigned requests, unsigned connections)
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

Server *server_start(Reply reply, const char *text, unsigned requests)
{
	return server_start_many(reply, text, requests, 1);
}

unsigned server_count(Server *s, const unsigned *count)
{
	unsigned n;

	pthread_mutex_lock(&s->lock);
	n = *count;
	pthread_mutex_unlock(&s->lock);
	return n;
}

void server_join(Server *s)
{
	if (s->joined)
		return;
	shutdown(s->listen_fd, SHUT_RDWR);
	pthread_join(s->thread, NULL);
	s->joined = true;
}

void server_stop(Server *s)
{
	server_join(s);
	close(s->listen_fd);
	for (size_t i = 0; i < s->n_fds; i++)
		close(s->fds[i]);
	test_tmpdir_remove(TAKE_PTR(s->dir));
}

const char *response(const char *status, const char *body)
{
	static char buf[4096];

	snprintf(buf, sizeof(buf), "HTTP/1.1 %s\r\nContent-Length: %zu\r\n\r\n%s", status,
		 strlen(body), body);
	return buf;
}

void stale_socket(const char *dir, char *path, size_t size)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/stale.sock", dir);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	snprintf(path, size, "%s", sa.sun_path);
}

void done_record(Done *d, int error, const HttpReply *reply)
{
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

void done_free(Done *d)
{
	free(d->message);
	json_decref(d->json);
}

void run_until(sd_event *e, const unsigned *count, unsigned n)
{
	while (*count < n)
		assert_true(sd_event_run(e, 10 * SEC) > 0);
}

void run_idle(sd_event *e)
{
	int r;

	while ((r = sd_event_run(e, 100 * MSEC)) > 0)
		;
	assert_int_equal(r, 0);
}
