/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "console.h"
#include "log.h"
#include "util.h"

/* The capped log */

int console_log_open(const char *dir, uint64_t size, ConsoleLog *ret)
{
	ConsoleLog l = { .fd = -EBADF };
	struct stat st;

	if (size == 0)
		size = CONSOLE_LOG_SIZE_DEFAULT;
	l.cap_each = MAX(size / 2, CONSOLE_LOG_SIZE_MIN / 2);
	if (asprintf(&l.path, "%s/" CONSOLE_LOG, dir) < 0 ||
	    asprintf(&l.old, "%s/" CONSOLE_LOG_OLD, dir) < 0) {
		console_log_close(&l);
		return -ENOMEM;
	}
	l.fd = open(l.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0600);
	if (l.fd < 0 || fstat(l.fd, &st) < 0) {
		int r = -errno;

		console_log_close(&l);
		return r;
	}
	l.size = (uint64_t)st.st_size;
	*ret = l;
	return 0;
}

void console_log_close(ConsoleLog *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -EBADF;
	l->path = mfree(l->path);
	l->old = mfree(l->old);
}

/* console.log becomes console.log.1; a new, empty console.log begins. */
static int log_rotate(ConsoleLog *l)
{
	int fd;

	if (rename(l->path, l->old) < 0)
		return -errno;
	fd = open(l->path, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0)
		return -errno;
	close(l->fd);
	l->fd = fd;
	l->size = 0;
	return 0;
}

int console_log_write(ConsoleLog *l, const void *buf, size_t n)
{
	const char *p = buf;
	int r;

	if (l->fd < 0)
		return -EBADF;
	if (l->size > 0 && l->size + n > l->cap_each) {
		r = log_rotate(l);
		if (r < 0)
			return r;
	}
	/* More than a file takes at once: its last part only. */
	if (n > l->cap_each) {
		p += n - l->cap_each;
		n = (size_t)l->cap_each;
	}
	while (n > 0) {
		ssize_t k = write(l->fd, p, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EIO;
		l->size += (uint64_t)k;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* The multiplexer */

#define CONSOLE_CHUNK 4096
#define CONSOLE_CLIENT_BUFFER (64 * 1024) /* a client that reads slower loses the rest */
#define CONSOLE_RETRY_MIN_USEC (100ull * 1000)
#define CONSOLE_RETRY_MAX_USEC (2ull * 1000000)

typedef struct Buffer {
	char *data;
	size_t n, size;
} Buffer;

struct Console {
	sd_event *event;
	char *name, *serial_path, *socket_path;
	ConsoleLog log;

	int serial_fd; /* connected to the VMM, or -EBADF */
	sd_event_source *serial_source, *retry;
	uint64_t retry_usec;
	Buffer to_serial; /* typed by the client, not yet taken by the VMM */

	int listen_fd;
	sd_event_source *listen_source;
	int client_fd; /* the one attached, or -EBADF */
	pid_t client_pid;
	sd_event_source *client_source;
	Buffer to_client;
	uint64_t bytes; /* passed either way: console_bytes() */
};

/* Write what b holds to fd, as far as fd takes it now: 0, or -errno (not -EAGAIN). */
static int buffer_flush(Buffer *b, int fd)
{
	while (b->n > 0) {
		ssize_t k = send(fd, b->data, b->n, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return errno == EAGAIN ? 0 : -errno;
		memmove(b->data, b->data + k, b->n - (size_t)k);
		b->n -= (size_t)k;
	}
	return 0;
}

/* Append what fits of n bytes. */
static void buffer_add(Buffer *b, const char *p, size_t n)
{
	n = MIN(n, b->size - b->n);
	memcpy(b->data + b->n, p, n);
	b->n += n;
}

static void update_events(Console *c)
{
	if (c->serial_source)
		(void)sd_event_source_set_io_events(c->serial_source,
						    EPOLLIN | (c->to_serial.n ? EPOLLOUT : 0));
	/* Typing waits while the VMM has not taken what came before. */
	if (c->client_source)
		(void)sd_event_source_set_io_events(c->client_source,
						    (c->to_serial.n ? 0 : EPOLLIN) |
							    (c->to_client.n ? EPOLLOUT : 0));
}

static void client_detach(Console *c)
{
	c->client_source = sd_event_source_disable_unref(c->client_source);
	if (c->client_fd >= 0)
		close(c->client_fd);
	c->client_fd = -EBADF;
	c->client_pid = 0;
	c->to_client.n = 0;
	c->to_serial.n = 0;
	update_events(c);
}

static int serial_connect(Console *c);

static int on_retry(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	Console *c = userdata;

	c->retry = sd_event_source_disable_unref(c->retry);
	(void)serial_connect(c);
	return 0;
}

void console_connect_now(Console *c)
{
	if (!c || c->serial_fd >= 0)
		return;
	c->retry = sd_event_source_disable_unref(c->retry);
	c->retry_usec = 0;
	(void)serial_connect(c);
}

/* The connection to the VMM broke, or was not made: try again, less and less often. */
static void serial_lost(Console *c)
{
	c->serial_source = sd_event_source_disable_unref(c->serial_source);
	if (c->serial_fd >= 0)
		close(c->serial_fd);
	c->serial_fd = -EBADF;
	c->to_serial.n = 0;
	update_events(c);
	c->retry_usec = c->retry_usec ? MIN(c->retry_usec * 2, CONSOLE_RETRY_MAX_USEC)
				      : CONSOLE_RETRY_MIN_USEC;
	if (!c->retry)
		(void)sd_event_add_time_relative(c->event, &c->retry, CLOCK_MONOTONIC,
						 c->retry_usec, 0, on_retry, c);
}

/* What the guest printed: to the log, and to the client attached. */
static void serial_read(Console *c)
{
	char buf[CONSOLE_CHUNK];
	ssize_t n = read(c->serial_fd, buf, sizeof(buf));
	int r;

	if (n < 0 && IN_SET(errno, EAGAIN, EINTR))
		return;
	if (n <= 0) {
		serial_lost(c);
		return;
	}
	c->retry_usec = 0;
	c->bytes += (uint64_t)n;
	r = console_log_write(&c->log, buf, (size_t)n);
	if (r < 0 && r != c->log.error)
		log_error_errno(r, "%s: cannot write the console log %s: %m", c->name,
				c->log.path ?: CONSOLE_LOG);
	c->log.error = r;
	if (c->client_fd >= 0) {
		buffer_add(&c->to_client, buf, (size_t)n);
		if (buffer_flush(&c->to_client, c->client_fd) < 0)
			client_detach(c);
	}
}

/* One end's events: what it can take now, then what it has; lost() if it broke. */
static void end_events(Console *c, uint32_t revents, Buffer *out, int fd,
		       void (*read_end)(Console *c), void (*lost)(Console *c))
{
	if (revents & EPOLLOUT && buffer_flush(out, fd) < 0) {
		lost(c);
		return;
	}
	if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
		read_end(c);
	update_events(c);
}

static int on_serial(sd_event_source *s _unused_, int fd, uint32_t revents, void *userdata)
{
	end_events(userdata, revents, &((Console *)userdata)->to_serial, fd, serial_read,
		   serial_lost);
	return 0;
}

static int serial_connect(Console *c)
{
	int fd = unix_connect_nofollow(c->serial_path), r;

	if (fd < 0) {
		serial_lost(c);
		return fd;
	}
	c->serial_fd = fd;
	r = sd_event_add_io(c->event, &c->serial_source, fd, EPOLLIN, on_serial, c);
	if (r < 0) {
		serial_lost(c);
		return r;
	}
	return 0;
}

/* What the client typed: to the VMM (dropped while vmd has no connection to it). */
static void client_read(Console *c)
{
	char buf[CONSOLE_CHUNK];
	ssize_t n = read(c->client_fd, buf, MIN(sizeof(buf), c->to_serial.size - c->to_serial.n));

	if (n < 0 && IN_SET(errno, EAGAIN, EINTR))
		return;
	if (n <= 0) {
		client_detach(c);
		return;
	}
	if (c->serial_fd < 0)
		return;
	c->bytes += (uint64_t)n;
	buffer_add(&c->to_serial, buf, (size_t)n);
	if (buffer_flush(&c->to_serial, c->serial_fd) < 0)
		serial_lost(c);
}

static int on_client(sd_event_source *s _unused_, int fd, uint32_t revents, void *userdata)
{
	end_events(userdata, revents, &((Console *)userdata)->to_client, fd, client_read,
		   client_detach);
	return 0;
}

static pid_t peer_pid(int fd)
{
	struct ucred cred = {};
	socklen_t len = sizeof(cred);

	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ? 0 : cred.pid;
}

/* A client: attached if nobody is, else told who is, and closed. */
static int on_accept(sd_event_source *s _unused_, int fd, uint32_t revents _unused_, void *userdata)
{
	Console *c = userdata;
	_cleanup_close_ int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	char hello[64];

	if (cfd < 0)
		return 0;
	if (c->client_fd >= 0) {
		snprintf(hello, sizeof(hello), CONSOLE_HELLO_BUSY "%d\n", (int)c->client_pid);
		(void)!send(cfd, hello, strlen(hello), MSG_NOSIGNAL | MSG_DONTWAIT);
		return 0;
	}
	if (send(cfd, CONSOLE_HELLO_OK, strlen(CONSOLE_HELLO_OK), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 ||
	    sd_event_add_io(c->event, &c->client_source, cfd, EPOLLIN, on_client, c) < 0)
		return 0;
	c->client_pid = peer_pid(cfd);
	c->client_fd = TAKE_FD(cfd);
	return 0;
}

uint64_t console_bytes(const Console *c)
{
	return c->bytes;
}

pid_t console_client(const Console *c)
{
	return c ? c->client_pid : 0;
}

static int buffer_alloc(Buffer *b, size_t size)
{
	b->data = malloc(size);
	b->size = size;
	return b->data ? 0 : -ENOMEM;
}

int console_new(sd_event *e, const char *name, const char *dir, uint64_t log_size, Console **ret)
{
	_cleanup_(console_freep) Console *c = calloc(1, sizeof(Console));
	int r;

	if (!c)
		return -ENOMEM;
	c->serial_fd = c->listen_fd = c->client_fd = -EBADF;
	c->log.fd = -EBADF;
	c->event = sd_event_ref(e);
	c->name = strdup(name);
	if (!c->name || asprintf(&c->serial_path, "%s/" CONSOLE_SERIAL, dir) < 0 ||
	    asprintf(&c->socket_path, "%s/" CONSOLE_SOCKET, dir) < 0 ||
	    buffer_alloc(&c->to_serial, CONSOLE_CHUNK) < 0 ||
	    buffer_alloc(&c->to_client, CONSOLE_CLIENT_BUFFER) < 0)
		return -ENOMEM;
	r = console_log_open(dir, log_size, &c->log);
	if (r < 0)
		return r;
	c->listen_fd = unix_listen(c->socket_path, 0600);
	if (c->listen_fd < 0)
		return c->listen_fd;
	r = sd_event_add_io(e, &c->listen_source, c->listen_fd, EPOLLIN, on_accept, c);
	if (r < 0)
		return r;
	(void)serial_connect(c); /* or later, retried */
	*ret = TAKE_PTR(c);
	return 0;
}

Console *console_free(Console *c)
{
	if (!c)
		return NULL;
	client_detach(c);
	sd_event_source_disable_unref(c->serial_source);
	sd_event_source_disable_unref(c->retry);
	sd_event_source_disable_unref(c->listen_source);
	if (c->serial_fd >= 0)
		close(c->serial_fd);
	if (c->listen_fd >= 0) {
		close(c->listen_fd);
		(void)unlink(c->socket_path);
	}
	console_log_close(&c->log);
	sd_event_unref(c->event);
	free(c->to_serial.data);
	free(c->to_client.data);
	free(c->name);
	free(c->serial_path);
	free(c->socket_path);
	return mfree(c);
}
