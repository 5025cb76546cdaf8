/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the tests of the HTTP transports share (test-http-unix, test-http-unix-loop,
 * test-http-fds; linked to those three only): a scripted server on a Unix socket, canned
 * replies, and a handler's view of a reply with the runs of a loop that wait for it.
 *
 * The server reads as Cloud Hypervisor's micro_http does (recvmsg, keeping the descriptors
 * that come with the bytes), serves each connection on a thread of its own, and records
 * what came for the test to check: a Content-Length, never chunked. One server at a time;
 * what it saw stays readable after server_stop().
 */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

#include "http-unix.h"

#define SEC 1000000ull
#define MSEC 1000ull

typedef enum Reply {
	REPLY_TEXT,	/* send text as is, then wait for the next request */
	REPLY_NOTHING,	/* read the request, then never answer */
	REPLY_HANG_UP,	/* read the request, then close */
	REPLY_MID_BODY, /* promise 100 bytes, send 10, close */
	REPLY_HUGE,	/* a 100 MB body */
	REPLY_SLEEP,	/* GET /sleep/N: wait for the others (together), N ms, then {"ms": N} */
} Reply;

#define SERVER_CONNECTIONS_MAX 8
#define SERVER_FDS_MAX 8

typedef struct Server Server;

typedef struct Connection {
	Server *server;
	int fd;
	pthread_t thread;
} Connection;

struct Server {
	char *dir;
	char path[108];
	int listen_fd;
	pthread_t thread;
	bool joined;
	Reply reply;
	const char *text;
	unsigned requests;    /* how many to serve on a connection */
	unsigned connections; /* how many to accept, each served by a thread of its own */
	unsigned together;    /* REPLY_SLEEP: hold every reply until this many requests came */
	Connection conns[SERVER_CONNECTIONS_MAX];
	pthread_mutex_t lock;
	pthread_cond_t arrival;
	/* What came, for the test to check (under lock while the server runs). */
	unsigned accepted, arrived, answered;
	char request_line[256];
	char request[8192 + 4096]; /* the last request, head and body, as it came */
	char body[4096];
	long content_length;
	bool chunked;
	int fds[SERVER_FDS_MAX]; /* every descriptor that came, closed by server_stop() */
	size_t n_fds;
	bool fds_with_first_bytes; /* the last ones came with the first bytes of a request */
};

/* A server of connections connections (each a thread), requests requests on each. */
Server *server_start_many(Reply reply, const char *text, unsigned requests, unsigned connections);
/* A server that accepts one connection and serves requests requests on it. */
Server *server_start(Reply reply, const char *text, unsigned requests);
/* A count the server threads keep, read while they run. */
unsigned server_count(Server *s, const unsigned *count);
/* Accept no more and wait until every connection has ended: what came may be read. */
void server_join(Server *s);
/* server_join(), then close and remove everything the server had. */
void server_stop(Server *s);

/* A whole response: status line, Content-Length, body. Static: one per test. */
const char *response(const char *status, const char *body);

/* A socket bound, never listened on, in dir: what a dead VMM leaves. */
void stale_socket(const char *dir, char *path, size_t size);

/* Both VMMs' error bodies and the words they come to. */
#define CH_ERROR_BODY                                                                              \
	"[\"Error from API\",\"The VM could not be paused\",\"Invalid state: Paused\"]"
#define CH_ERROR_TEXT "Error from API: The VM could not be paused: Invalid state: Paused (HTTP 500)"
#define FC_ERROR_BODY "{\"fault_message\": \"The requested operation is not supported\"}"
#define FC_ERROR_TEXT "The requested operation is not supported (HTTP 400)"

/* A handler's view of one reply (or of several: total). */
typedef struct Done {
	unsigned calls;	 /* how often the handler came */
	unsigned *total; /* may be NULL: a count shared by several requests */
	int error;
	long status;
	char *message;
	json_t *json;
} Done;

/* What a handler does with its reply: count it, keep a copy in d. */
void done_record(Done *d, int error, const HttpReply *reply);
void done_free(Done *d);

/* Run e until *count reaches n; a loop idle for 10 s fails the test instead of hanging it. */
void run_until(sd_event *e, const unsigned *count, unsigned n);
/* Run e until it has been idle for 100 ms: whatever was still to come has come. */
void run_idle(sd_event *e);
