/* SPDX-License-Identifier: MIT */
#include <curl/curl.h>
#include <stdio.h>

#include "http-unix.h"
#include "util.h"

struct Http {
	CURL *curl;
	char *socket_path;
};

typedef struct Buffer {
	char *data;
	size_t len, cap;
	bool overflow;
} Buffer;

int http_new(const char *socket_path, Http **ret)
{
	_cleanup_(http_freep) Http *h = calloc(1, sizeof(Http));

	if (!h)
		return -ENOMEM;
	h->socket_path = strdup(socket_path);
	h->curl = curl_easy_init();
	if (!h->socket_path || !h->curl)
		return -ENOMEM;
	*ret = TAKE_PTR(h);
	return 0;
}

Http *http_free(Http *h)
{
	if (!h)
		return NULL;
	if (h->curl)
		curl_easy_cleanup(h->curl);
	free(h->socket_path);
	return mfree(h);
}

void http_reply_done(HttpReply *r)
{
	json_decref(r->json);
	free(r->error);
	*r = (HttpReply){};
}

int http_status_to_errno(long status)
{
	switch (status) {
	case 400:
	case 422:
		return -EINVAL;
	case 401:
	case 403:
		return -EACCES;
	case 404:
		return -ENOENT;
	case 405:
		return -EPERM; /* not in this state (Cloud Hypervisor) */
	case 408:
	case 504:
		return -ETIMEDOUT;
	case 409:
		return -EEXIST;
	case 413:
		return -E2BIG;
	case 429:
		return -EBUSY; /* a resize still in progress */
	case 501:
		return -EOPNOTSUPP;
	default:
		return -EREMOTEIO;
	}
}

/* The one place a CURLcode becomes an errno. */
static int curl_to_errno(CURLcode c, long os_errno, bool overflow)
{
	switch (c) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return IN_SET(os_errno, ENOENT, ECONNREFUSED, EACCES, ENOTSOCK) ? -(int)os_errno
										: -ECONNREFUSED;
	case CURLE_WRITE_ERROR:
		return overflow ? -EMSGSIZE : -EIO;
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		return -ECONNRESET;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EPROTO;
	}
}

static size_t on_data(char *p, size_t size, size_t n, void *userdata)
{
	Buffer *b = userdata;
	size_t len = size * n;

	if (len > HTTP_REPLY_MAX - b->len) {
		b->overflow = true;
		return 0; /* aborts the transfer: a reply this large is not read */
	}
	if (b->len + len + 1 > b->cap) {
		size_t cap = MAX(b->cap * 2, b->len + len + 1);
		char *d = realloc(b->data, cap);

		if (!d)
			return 0;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, len);
	b->len += len;
	b->data[b->len] = '\0';
	return len;
}

static char *join_strings(const json_t *a)
{
	char *m = NULL;
	size_t i;
	json_t *s;

	json_array_foreach(a, i, s)
	{
		char *n = NULL;

		if (!json_is_string(s))
			continue;
		if (asprintf(&n, "%s%s%s", m ?: "", m ? ": " : "", json_string_value(s)) < 0) {
			free(m);
			return NULL;
		}
		free(m);
		m = n;
	}
	return m;
}

char *http_error_message(const char *body, size_t len)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	const char *fault;

	if (!body || len == 0)
		return NULL;
	j = json_loadb(body, len, JSON_DECODE_ANY, NULL);
	if (json_is_array(j))
		return join_strings(j); /* Cloud Hypervisor: the chain of causes */
	fault = json_string_value(json_object_get(j, "fault_message")); /* Firecracker */
	if (fault)
		return strdup(fault);
	if (j)
		return json_dumps(j, JSON_COMPACT);
	/* Not JSON: the text itself, up to its first line, within reason. */
	return strndup(body, MIN(strcspn(body, "\r\n"), (size_t)512));
}

static int reply_error(HttpReply *ret, int r, const char *fmt, ...) _printf_(3, 4);
static int reply_error(HttpReply *ret, int r, const char *fmt, ...)
{
	va_list ap;

	free(ret->error);
	va_start(ap, fmt);
	if (vasprintf(&ret->error, fmt, ap) < 0)
		ret->error = NULL;
	va_end(ap);
	return r;
}

static int set_request(Http *h, const char *method, const char *url, const char *text,
		       struct curl_slist *headers, Buffer *buf, char *errbuf, uint64_t timeout_usec)
{
	CURL *c = h->curl;
	CURLcode e = CURLE_OK;

	curl_easy_reset(c); /* keeps the connection */
#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (e == CURLE_OK)                                                                 \
			e = curl_easy_setopt(c, opt, val);                                         \
	} while (0)
	SET(CURLOPT_UNIX_SOCKET_PATH, h->socket_path);
	SET(CURLOPT_URL, url);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)(HTTP_CONNECT_TIMEOUT_USEC / 1000));
	SET(CURLOPT_TIMEOUT_MS, (long)MAX(timeout_usec / 1000, 1ull));
	SET(CURLOPT_HTTPHEADER, headers);
	SET(CURLOPT_WRITEFUNCTION, on_data);
	SET(CURLOPT_WRITEDATA, buf);
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_PROTOCOLS_STR, "http");
	if (text) {
		/* A known length, never chunked: both VMMs refuse chunked bodies. */
		SET(CURLOPT_POSTFIELDSIZE, (long)strlen(text));
		SET(CURLOPT_POSTFIELDS, text);
		SET(CURLOPT_CUSTOMREQUEST, method);
	} else if (!streq(method, "GET")) {
		SET(CURLOPT_POSTFIELDSIZE, 0L);
		SET(CURLOPT_POSTFIELDS, "");
		SET(CURLOPT_CUSTOMREQUEST, method);
	} else
		SET(CURLOPT_HTTPGET, 1L);
#undef SET
	return e == CURLE_OK ? 0 : -EINVAL;
}

int http_call(Http *h, const char *method, const char *path, json_t *body, uint64_t timeout_usec,
	      HttpReply *ret)
{
	_cleanup_free_ char *url = NULL, *text = NULL;
	_cleanup_free_ char *words = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *headers = NULL, *l;
	Buffer buf = {};
	long os_errno = 0;
	CURLcode c;
	int r;

	*ret = (HttpReply){};
	if (asprintf(&url, "http://localhost%s", path) < 0)
		return -ENOMEM;
	if (body && !(text = json_dumps(body, JSON_COMPACT)))
		return -ENOMEM;
	/* "Expect:" off: neither server speaks 100-continue. */
	static const char *const header_lines[] = { "Content-Type: application/json",
						    "Accept: application/json", "Expect:" };
	for (size_t i = 0; i < ELEMENTSOF(header_lines); i++) {
		l = curl_slist_append(headers, header_lines[i]);
		if (!l) {
			curl_slist_free_all(headers);
			return -ENOMEM;
		}
		headers = l;
	}

	r = set_request(h, method, url, text, headers, &buf, errbuf, timeout_usec);
	c = r < 0 ? CURLE_FAILED_INIT : curl_easy_perform(h->curl);
	(void)curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &ret->status);
	(void)curl_easy_getinfo(h->curl, CURLINFO_OS_ERRNO, &os_errno);
	curl_slist_free_all(headers);
	_cleanup_free_ char *data = buf.data;

	if (c != CURLE_OK) {
		r = curl_to_errno(c, os_errno, buf.overflow);
		if (r == -EMSGSIZE)
			return reply_error(ret, r, "%s %s: the reply is over %u bytes", method,
					   path, HTTP_REPLY_MAX);
		return reply_error(ret, r, "%s %s: %s", method, path,
				   errbuf[0] ? errbuf : curl_easy_strerror(c));
	}
	if (ret->status < 200 || ret->status > 299) {
		words = http_error_message(data, buf.len);
		return reply_error(ret, http_status_to_errno(ret->status), "%s (HTTP %ld)",
				   words ?: "no reason given", ret->status);
	}
	if (buf.len == 0)
		return 0;
	ret->json = json_loadb(data, buf.len, 0, NULL);
	if (!ret->json)
		return reply_error(ret, -EBADMSG, "%s %s: the reply is not JSON", method, path);
	return 0;
}
