/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "macro.h"

/*
 * HTTP over a Unix socket, for the VMMs with a REST API (Cloud Hypervisor, Firecracker):
 * libcurl with CURLOPT_UNIX_SOCKET_PATH, JSON bodies through jansson. Requests are
 * asynchronous: one libcurl multi handle per HttpLoop, driven by an sd-event loop, and the
 * reply comes to a handler from that loop. Every request is bounded: a connect timeout and a
 * total timeout. Connections to a socket are kept and reused between requests.
 *
 * For callers without a loop, Http is a blocking client on top of the same code: it owns a
 * private sd-event loop and HttpLoop and runs them until its one request completes.
 *
 * Every failure comes back as -errno and a message for humans. The two foreign error spaces
 * are turned into errnos in one place each (http-unix.c): CURLcode and HTTP status. An
 * error status carries the VMM's own words: Cloud Hypervisor answers a JSON array of
 * strings (the chain of causes), Firecracker {"fault_message": "..."}.
 */

#define HTTP_CONNECT_TIMEOUT_USEC (1ull * 1000000)
#define HTTP_REPLY_MAX (4u << 20) /* larger replies are refused, not read */

typedef struct HttpReply {
	long status;  /* the HTTP status, 0 if none came */
	json_t *json; /* a 2xx reply's JSON body, NULL for none (204) */
	char *error;  /* what went wrong, for humans; NULL on success */
} HttpReply;

void http_reply_done(HttpReply *r);

/*
 * One libcurl multi handle driven by the sd-event loop e: its sockets are io sources, its
 * timeout one time source. Connections are kept between requests, per socket path.
 */
typedef struct HttpLoop HttpLoop;

int http_loop_new(sd_event *e, HttpLoop **ret);
/* Cancels every request still in flight, without calling their handlers. */
HttpLoop *http_loop_free(HttpLoop *l);
DEFINE_POINTER_CLEANUP(HttpLoop, http_loop_free)

typedef struct HttpRequest HttpRequest;

/*
 * A request is done: error is 0 on a 2xx status, else -errno as http_call() documents.
 * reply (status, the JSON of a 2xx body, the error text) is valid only during the call.
 * The handler may start requests, cancel others, or free the loop; req is freed when it
 * returns.
 */
typedef void (*HttpHandler)(HttpRequest *req, int error, const HttpReply *reply, void *userdata);

/*
 * Start method on path at the API socket socket_path, with body (NULL for none; not
 * consumed), bounded by timeout_usec and HTTP_CONNECT_TIMEOUT_USEC. On success the handler
 * is called exactly once, from the event loop, never from inside this call; on failure
 * (-ENOMEM, or an option libcurl refuses) it is never called. *ret (ret may be NULL) is for
 * http_request_cancel(), until the handler is called.
 */
int http_request(HttpLoop *l, const char *socket_path, const char *method, const char *path,
		 json_t *body, uint64_t timeout_usec, HttpHandler handler, void *userdata,
		 HttpRequest **ret);

/*
 * Cancel a request in flight: its handler is not called and req is freed. From inside req's
 * own handler it does nothing (req is freed when the handler returns).
 */
void http_request_cancel(HttpRequest *req);

typedef struct Http Http;

/* A blocking client of the API socket at socket_path; keeps its connection between calls. */
int http_new(const char *socket_path, Http **ret);
Http *http_free(Http *h);
DEFINE_POINTER_CLEANUP(Http, http_free)

/*
 * method "GET", "PUT" or "PATCH" on path ("/api/v1/vm.boot"), with body (NULL for none;
 * always sent with its length, never chunked); returns when the request is done. 0 on a
 * 2xx status. On failure -errno and ret->error: -ENOENT (no socket) or -ECONNREFUSED
 * (nobody listens), -ETIMEDOUT, -ECONNRESET (the server hung up, even mid-body), -EMSGSIZE
 * (reply over HTTP_REPLY_MAX), -EBADMSG (a 2xx body that is not JSON), or the errno of an
 * error status (http_status_to_errno). ret is filled either way; http_reply_done() it.
 */
int http_call(Http *h, const char *method, const char *path, json_t *body, uint64_t timeout_usec,
	      HttpReply *ret);

/*
 * Descriptors sent with a request (SCM_RIGHTS), which libcurl cannot do: Cloud Hypervisor
 * takes a NIC's tap that way (vm.add-net). A request of its own, on a connection of its own,
 * driven by the same sd-event loop and never blocking: the descriptors go with the first
 * sendmsg() of the request, then the rest of it, then the reply is read until its
 * Content-Length (or the peer's close). fds stay the caller's and must stay open until the
 * handler is called (or the request is cancelled); the peer has its own copies once the
 * request is sent. The handler and the errors are http_request()'s; the connection is
 * closed once the reply came.
 */
#define HTTP_FDS_MAX 8

typedef struct HttpFdsRequest HttpFdsRequest;
typedef void (*HttpFdsHandler)(int error, const HttpReply *reply, void *userdata);

int http_request_fds(sd_event *e, const char *socket_path, const char *method, const char *path,
		     json_t *body, const int *fds, size_t n_fds, uint64_t timeout_usec,
		     HttpFdsHandler handler, void *userdata, HttpFdsRequest **ret);
/* Its handler is not called, and it is freed; NULL is fine. */
void http_request_fds_cancel(HttpFdsRequest *req);

/*
 * What a reply with status and body means for a request of method on path: 0 and ret->json
 * (NULL for no body), or -errno and ret->error, as http_call() documents.
 */
int http_reply_parse(long status, const char *body, size_t len, const char *method,
		     const char *path, HttpReply *ret);

/* An HTTP error status as -errno: 400 -EINVAL, 404 -ENOENT, 405 -EPERM, 409 -EEXIST... */
int http_status_to_errno(long status);

/* The message in an error body, in whichever VMM's shape; NULL if it has none. */
char *http_error_message(const char *body, size_t len);
