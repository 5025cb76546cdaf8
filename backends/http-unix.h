/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "macro.h"

/*
 * HTTP over a Unix socket, for the VMMs with a REST API (Cloud Hypervisor, Firecracker):
 * libcurl with CURLOPT_UNIX_SOCKET_PATH, JSON bodies through jansson. Calls are synchronous
 * and bounded: a connect timeout and a total timeout on every request.
 *
 * Every failure comes back as -errno and a message for humans. The two foreign error spaces
 * are turned into errnos in one place each (http-unix.c): CURLcode and HTTP status. An
 * error status carries the VMM's own words: Cloud Hypervisor answers a JSON array of
 * strings (the chain of causes), Firecracker {"fault_message": "..."}.
 */

#define HTTP_CONNECT_TIMEOUT_USEC (1ull * 1000000)
#define HTTP_REPLY_MAX (4u << 20) /* larger replies are refused, not read */

typedef struct Http Http;

/* A client of the API socket at socket_path; keeps its connection between calls. */
int http_new(const char *socket_path, Http **ret);
Http *http_free(Http *h);
DEFINE_POINTER_CLEANUP(Http, http_free)

typedef struct HttpReply {
	long status;  /* the HTTP status, 0 if none came */
	json_t *json; /* a 2xx reply's JSON body, NULL for none (204) */
	char *error;  /* what went wrong, for humans; NULL on success */
} HttpReply;

void http_reply_done(HttpReply *r);

/*
 * method "GET", "PUT" or "PATCH" on path ("/api/v1/vm.boot"), with body (NULL for none;
 * always sent with its length, never chunked). 0 on a 2xx status. On failure -errno and
 * ret->error: -ENOENT (no socket) or -ECONNREFUSED (nobody listens), -ETIMEDOUT,
 * -ECONNRESET (the server hung up, even mid-body), -EMSGSIZE (reply over HTTP_REPLY_MAX),
 * -EBADMSG (a 2xx body that is not JSON), or the errno of an error status
 * (http_status_to_errno). ret is filled either way; http_reply_done() it.
 */
int http_call(Http *h, const char *method, const char *path, json_t *body, uint64_t timeout_usec,
	      HttpReply *ret);

/* An HTTP error status as -errno: 400 -EINVAL, 404 -ENOENT, 405 -EPERM, 409 -EEXIST... */
int http_status_to_errno(long status);

/* The message in an error body, in whichever VMM's shape; NULL if it has none. */
char *http_error_message(const char *body, size_t len);
