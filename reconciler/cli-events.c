/* SPDX-License-Identifier: MIT */
/*
 * vmd events: the daemon's event stream (<run-dir>/events.sock, docs/events.md), as it
 * comes: one line of JSON an event with --json, else one line of words with its time.
 * events_follow() is also what vmd status --watch redraws on.
 */
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>

#include "cli.h"
#include "events.h"
#include "util.h"

#define EVENT_LINE_MAX (4u * 1024u * 1024u) /* a snapshot line is some kilobytes at most */

/* SIGINT, SIGTERM: blocked, and a signalfd to poll beside the socket; -errno. */
static int signals_fd(void)
{
	sigset_t mask;
	int fd;

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		return -errno;
	fd = signalfd(-1, &mask, SFD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Hand each whole line of buf[0..*len) to fn; what is left of a line stays. */
static int take_lines(char *buf, size_t *len, EventsFn fn, void *userdata)
{
	size_t start = 0;

	for (char *nl; (nl = memchr(buf + start, '\n', *len - start));) {
		json_t *j = json_loadb(buf + start, (size_t)(nl - (buf + start)), 0, NULL);
		int r;

		start = (size_t)(nl - buf) + 1;
		if (!json_is_object(j)) {
			json_decref(j);
			continue; /* a newer daemon's line this one cannot read: skipped */
		}
		r = fn(j, userdata);
		json_decref(j);
		if (r < 0)
			return r;
	}
	memmove(buf, buf + start, *len - start);
	*len -= start;
	return 0;
}

int events_follow(const char *verb, const char *run_dir, EventsFn fn, void *userdata)
{
	_cleanup_free_ char *path = NULL, *buf = NULL;
	_cleanup_close_ int fd = -EBADF, sfd = -EBADF;
	size_t len = 0, size = 64 * 1024;

	if (asprintf(&path, "%s/" EVENTS_SOCKET, run_dir) < 0 || !(buf = malloc(size)))
		return EXIT_INVALID;
	fd = unix_connect(path);
	if (fd < 0) {
		fprintf(stderr,
			"%s: cannot connect to %s: %s (is vmd daemon running with --run-dir %s?)\n",
			verb, path, strerror(-fd), run_dir);
		return EXIT_INVALID;
	}
	sfd = signals_fd();
	if (sfd < 0) {
		fprintf(stderr, "%s: cannot watch signals: %s\n", verb, strerror(-sfd));
		return EXIT_INVALID;
	}
	for (;;) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
				       { .fd = sfd, .events = POLLIN } };
		ssize_t n;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "%s: %m\n", verb);
			return EXIT_INVALID;
		}
		if (p[1].revents)
			return EXIT_OK; /* SIGINT, SIGTERM: the end the user asked for */
		if (!p[0].revents)
			continue;
		if (len == size) {
			char *b = size < EVENT_LINE_MAX ? realloc(buf, size * 2) : NULL;

			if (!b) {
				fprintf(stderr, "%s: an event longer than %u bytes\n", verb,
					EVENT_LINE_MAX);
				return EXIT_INVALID;
			}
			buf = b;
			size *= 2;
		}
		n = read(fd, buf + len, size - len);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0) {
			fprintf(stderr, "%s: the daemon closed %s%s%s\n", verb, path,
				n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
			return EXIT_INVALID;
		}
		len += (size_t)n;
		if (take_lines(buf, &len, fn, userdata) < 0 || fn(NULL, userdata) < 0)
			return EXIT_INVALID;
		fflush(stdout);
	}
}

static const char *str(json_t *j, const char *key)
{
	return json_string_value(json_object_get(j, key)) ?: "";
}

/* One line of words for an event: "TIME NAME phase Starting -> Running". */
static void print_event(json_t *e)
{
	const char *type = str(e, "type"), *msg = str(e, "message");
	const char *sep = *msg ? ": " : "";

	if (streq(type, "synced"))
		return;
	printf("%s %s ", str(e, "time"), str(e, "sandbox"));
	if (streq(type, "snapshot")) {
		json_t *ready = json_object_get(json_object_get(e, "conditions"), "Ready");

		printf("is %s, Ready %s (%s), generation %lld\n", str(e, "phase"),
		       str(ready, "status"), str(ready, "reason"),
		       (long long)json_integer_value(json_object_get(e, "generation")));
	} else if (streq(type, "phase"))
		printf("phase %s -> %s\n", str(e, "previous"), str(e, "phase"));
	else if (streq(type, "condition"))
		printf("%s %s -> %s (%s)%s%s\n", str(e, "condition"), str(e, "previous"),
		       str(e, "status"), str(e, "reason"), sep, msg);
	else if (streq(type, "action"))
		printf("%s%s%s %s%s%s\n", str(e, "action"), *str(e, "device") ? " " : "",
		       str(e, "device"), str(e, "result"), sep, msg);
	else if (streq(type, "file"))
		printf("file %s %s, generation %lld%s%s\n", str(e, "file"), str(e, "result"),
		       (long long)json_integer_value(json_object_get(e, "generation")), sep, msg);
	else if (streq(type, "deleted"))
		printf("deleted: its file is gone and its VM is cleaned up\n");
	else
		printf("%s\n", type);
}

static int on_event(json_t *e, void *userdata)
{
	const bool *json = userdata;

	if (!e)
		return 0;
	if (*json) {
		json_dumpf(e, stdout, JSON_COMPACT);
		fputc('\n', stdout);
	} else
		print_event(e);
	return 0;
}

static void events_help(FILE *f)
{
	fprintf(f, "Usage: vmd events [--json] [--run-dir DIR]\n"
		   "\n"
		   "Print the daemon's events as they happen: first what each sandbox is now, then\n"
		   "each change of a phase or a condition, each action and its result, each file\n"
		   "loaded, refused or removed. Ends on SIGINT (Ctrl-C), exit 0.\n"
		   "\n"
		   "  --json          one JSON object a line, as the daemon sends them\n"
		   "  --run-dir DIR   the daemon's run dir (default /run/vmd)\n"
		   "  -h, --help      show this help\n");
}

int verb_events(int argc, char **argv)
{
	static const struct option options[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	const char *run_dir = "/run/vmd";
	bool json = false;
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'r':
			run_dir = optarg;
			break;
		case 'h':
			events_help(stdout);
			return EXIT_OK;
		default:
			events_help(stderr);
			return EXIT_USAGE;
		}
	if (optind < argc) {
		fprintf(stderr, "vmd events: takes no arguments\n");
		return EXIT_USAGE;
	}
	return events_follow("vmd events", run_dir, on_event, &json);
}
