/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the QMP stream. The input is everything a QMP server sends to a real
 * Qmp client (qmp_connect_fd on one end of a socketpair, on a private loop); the other end
 * is written from the same loop, at a lower priority, so that the client reads each chunk
 * on its own, then shut down. Four commands are sent before the greeting, as the daemon
 * does: they take ids 1 to 4 and wait for qmp_capabilities, which is id 5; the ready and
 * reply handlers may send more (6, 7...). Whatever comes, the client must keep its
 * word: each reply handler exactly once (never for a cancelled call), ready at most once,
 * events only on a ready connection, nothing after close or after qmp_free(), no leak.
 *
 * The first byte is not sent; it says how:
 *   bits 0-3  the size of the chunks written (0: as much as the socket takes)
 *   bit 4     the reply to id 3 (or the first event) frees the client from its handler
 *   bit 5     id 4 is cancelled as soon as it is sent
 *   bit 6     a line over QMP_MESSAGE_MAX follows the input
 *   bit 7     the ready and reply handlers send more commands
 */
#include <stdio.h>
#include <sys/socket.h>

#include "fuzz-common.h"
#include "qmp.h"
#include "util.h"

#define CALLS_MAX 12
#define TIMEOUT_USEC (60ull * 1000000) /* never: the peer's shutdown ends every run */

typedef struct Fuzz Fuzz;

typedef struct Call {
	Fuzz *f;
	uint64_t id;
	unsigned replies;
	bool cancelled;
} Call;

struct Fuzz {
	uint8_t flags;
	Qmp *q;
	sd_event *event;

	int peer;
	sd_event_source *peer_io;
	const uint8_t *out; /* what the server sends */
	size_t out_len, out_done, n_input;
	char *in; /* what the client sent */
	size_t in_len;

	Call calls[CALLS_MAX];
	size_t n_calls;
	unsigned ready, events, closes;
	int ready_error;
	bool over; /* ready failed, or close: no handler may run again */
	bool freed;
};

static const size_t chunk_sizes[16] = { 0, 1, 2, 3, 5, 7, 11, 16, 31, 64, 100, 257, 1024, 4096 };

static void on_reply(Qmp *q, int error, json_t *ret, const char *desc, void *userdata);

static void send_command(Fuzz *f, const char *command, json_t *args)
{
	Call *c;

	if (f->n_calls >= CALLS_MAX) {
		json_decref(args);
		return;
	}
	c = &f->calls[f->n_calls];
	*c = (Call){ .f = f };
	fuzz_check(qmp_send(f->q, command, args, TIMEOUT_USEC, on_reply, c, &c->id) == 0);
	f->n_calls++;
	if ((f->flags & 0x20) && c->id == 4) {
		qmp_cancel(f->q, c->id);
		c->cancelled = true;
	}
}

static void free_client(Fuzz *f)
{
	f->q = qmp_free(f->q);
	f->freed = true;
}

static void on_reply(Qmp *q, int error, json_t *ret, const char *desc, void *userdata)
{
	Call *c = userdata;
	Fuzz *f = c->f;

	fuzz_check(q == f->q && !f->freed && !f->over);
	fuzz_check(!c->cancelled && c->replies == 0);
	c->replies++;
	if (error == 0)
		fuzz_check(ret && !desc);
	else if (error == -EREMOTEIO)
		fuzz_check(!ret && desc);
	else
		fuzz_check(error < 0 && !ret && !desc);
	/* QEMU's answers come on a negotiated connection only. */
	if (IN_SET(error, 0, -EREMOTEIO))
		fuzz_check(f->ready == 1 && f->ready_error == 0);
	(void)qmp_take_heard(q);
	if ((f->flags & 0x10) && c->id == 3) {
		free_client(f);
		return;
	}
	if ((f->flags & 0x80) && error == 0)
		send_command(f, "query-status", NULL);
}

static void on_ready(Qmp *q, int error, void *userdata)
{
	Fuzz *f = userdata;

	fuzz_check(q == f->q && !f->freed && !f->over && f->ready == 0);
	fuzz_check(error <= 0);
	f->ready++;
	f->ready_error = error;
	fuzz_check(qmp_is_connected(q) == (error == 0));
	if (error < 0) {
		f->over = true;
		return;
	}
	if (f->flags & 0x80)
		send_command(f, "stop", NULL);
}

static void on_event(Qmp *q, const char *event, json_t *data _unused_, uint64_t ts _unused_,
		     void *userdata)
{
	Fuzz *f = userdata;

	fuzz_check(q == f->q && !f->freed && !f->over);
	fuzz_check(event && f->ready == 1 && f->ready_error == 0);
	if ((f->flags & 0x10) && f->events++ == 0 && f->n_calls == 0)
		free_client(f);
}

static void on_close(Qmp *q, int error, void *userdata)
{
	Fuzz *f = userdata;

	fuzz_check(q == f->q && !f->freed && !f->over && f->closes == 0);
	fuzz_check(f->ready == 1 && f->ready_error == 0 && error < 0);
	fuzz_check(!qmp_is_connected(q));
	f->closes++;
	f->over = true;
}

/* The server's end: take what the client sends, send it the next chunk, then hang up. */
static int on_peer(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	Fuzz *f = userdata;

	if (revents & EPOLLIN) {
		char buf[4096];
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n > 0)
			fuzz_append(&f->in, &f->in_len, buf, (size_t)n);
	}
	if (revents & EPOLLOUT) {
		size_t chunk = f->out_done < f->n_input ? chunk_sizes[f->flags & 0xf] : 0;
		size_t left = f->out_len - f->out_done;
		ssize_t n = left ? send(fd, f->out + f->out_done, chunk ? MIN(chunk, left) : left,
					MSG_DONTWAIT | MSG_NOSIGNAL)
				 : 0;

		if (n > 0)
			f->out_done += (size_t)n;
		else if (n < 0 && errno != EAGAIN)
			f->out_done = f->out_len; /* the client is gone */
		if (f->out_done == f->out_len) {
			(void)shutdown(fd, SHUT_WR);
			(void)sd_event_source_set_io_events(s, EPOLLIN);
		}
	}
	return 0;
}

static bool settled(void *userdata)
{
	Fuzz *f = userdata;

	if (f->freed)
		return true;
	if (!f->over)
		return false;
	for (size_t i = 0; i < f->n_calls; i++)
		if (!f->calls[i].cancelled && f->calls[i].replies == 0)
			return false;
	return true;
}

/* What the client sent: one command per line, qmp_capabilities first, each id once. */
static void check_sent(const Fuzz *f)
{
	uint64_t seen = 0; /* a bit per id: there are fewer than 64 */
	size_t n = 0;

	for (size_t off = 0; off < f->in_len; n++) {
		const char *nl = memchr(f->in + off, '\n', f->in_len - off);
		const char *command;
		json_int_t id;
		json_t *j;

		if (!nl)
			break; /* the rest did not get out before the end */
		j = json_loadb(f->in + off, (size_t)(nl - f->in - off), 0, NULL);
		command = json_string_value(json_object_get(j, "execute"));
		id = json_integer_value(json_object_get(j, "id"));
		fuzz_check(command && (n > 0 || streq(command, "qmp_capabilities")));
		fuzz_check(id > 0 && id < 64 && !(seen & (1ull << id)));
		seen |= 1ull << id;
		json_decref(j);
		off = (size_t)(nl - f->in) + 1;
	}
}

/* The input, and the oversized line that may follow it. */
static uint8_t *stream(const uint8_t *data, size_t size, bool oversized, size_t *ret_len)
{
	size_t big = oversized ? QMP_MESSAGE_MAX + 2 : 0;
	uint8_t *s = malloc(size + big + 1);

	fuzz_check(s);
	memcpy(s, data, size);
	memset(s + size, ' ', big);
	if (big)
		s[size] = '{';
	*ret_len = size + big;
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Fuzz f = { .peer = -EBADF };
	_cleanup_free_ uint8_t *out = NULL;
	const QmpHandlers h = {
		.ready = on_ready, .event = on_event, .close = on_close, .userdata = &f
	};
	int fds[2];

	if (size == 0)
		return 0;
	f.flags = data[0];
	out = stream(data + 1, size - 1, f.flags & 0x40, &f.out_len);
	f.out = out;
	f.n_input = size - 1;

	fuzz_check(sd_event_new(&f.event) >= 0);
	fuzz_check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
	f.peer = fds[1];
	fuzz_check(qmp_connect_fd(fds[0], f.event, &h, &f.q) == 0);
	fuzz_check(sd_event_add_io(f.event, &f.peer_io, f.peer, EPOLLIN | EPOLLOUT, on_peer, &f) >= 0);
	/* Below the client: it reads each chunk before the next is written. */
	fuzz_check(sd_event_source_set_priority(f.peer_io, SD_EVENT_PRIORITY_IDLE) >= 0);

	send_command(&f, "query-status", NULL);
	send_command(&f, "query-name", NULL);
	send_command(&f, "qom-list", json_pack("{s:s}", "path", "/machine/peripheral"));
	send_command(&f, "cont", NULL);

	fuzz_run_until(f.event, settled, &f, 30ull * 1000000);
	if (!f.freed) {
		for (size_t i = 0; i < f.n_calls; i++)
			fuzz_check(f.calls[i].replies == (f.calls[i].cancelled ? 0u : 1u));
		fuzz_check(f.ready == 1);
		fuzz_check(!qmp_is_connected(f.q));
	}
	check_sent(&f);

	qmp_free(f.q);
	sd_event_source_disable_unref(f.peer_io);
	close(f.peer);
	sd_event_unref(f.event);
	free(f.in);
	return 0;
}
