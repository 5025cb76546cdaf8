/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>

#include "cli.h"
#include "status.h"
#include "telemetry.h"

/* A daemon that has not ended a pass within this of its resync interval (twice) hangs. */
#define PASS_LATE_USEC (5ull * 1000000)

/*
 * Whether a vmd runs with this run dir and ends its passes, said on standard error: what
 * the status files say is what the last vmd saw, and no vmd may be there to see more.
 * Returns whether none runs.
 */
static bool warn_daemon(const char *run_dir)
{
	DaemonLiveness d;
	uint64_t now = now_usec(CLOCK_REALTIME);
	char last[32] = "";

	if (daemon_liveness(run_dir, &d) < 0 || d.unknown)
		return false;
	if (d.last_pass)
		format_timestamp(d.last_pass, last);
	if (!d.ran) {
		fprintf(stderr, "vmd status: warning: no vmd has run with run dir %s (no vmd.lock)\n",
			run_dir);
		return true;
	}
	if (!d.running) {
		fprintf(stderr,
			"vmd status: warning: vmd is not running (nothing holds %s/vmd.lock; pid %d held it last)%s%s%s\n",
			run_dir, (int)d.pid,
			*last ? "; what follows is as of its last pass, at " : "", last,
			*last ? "" : "; what follows may be out of date");
		return true;
	}
	if (d.last_pass && d.resync_usec && now > d.last_pass + 2 * d.resync_usec + PASS_LATE_USEC)
		fprintf(stderr,
			"vmd status: warning: vmd (pid %d) has not ended a pass since %s (%llu s ago; it passes every %llu s at the least): it may hang, and what follows may be out of date\n",
			(int)d.pid, last, (unsigned long long)((now - d.last_pass) / 1000000),
			(unsigned long long)(d.resync_usec / 1000000));
	return false;
}

/* With no vmd to notice, a VMM that is gone: what the status says of it is no longer true. */
static bool vmm_gone(json_t *s, bool no_daemon)
{
	json_int_t pid = json_integer_value(json_object_get(s, "pid"));

	return no_daemon && pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

/* The one line that says most about what is wrong, or "". */
static const char *headline(json_t *s)
{
	static const char *const order[] = { "ConfigValid", "Degraded",	       "RolledBack",
					     "WakeFailed",  "RestartRequired", "Ready" };

	for (size_t i = 0; i < ELEMENTSOF(order); i++) {
		const char *st = status_condition(s, order[i], "status");
		bool bad = streq(order[i], "ConfigValid") || streq(order[i], "Ready")
				   ? !streq(st, "True")
				   : streq(st, "True");

		if (bad && *status_condition(s, order[i], "message"))
			return status_condition(s, order[i], "message");
	}
	return "";
}

/* Ready's (or Running's) status as the table says it: yes, no, or ? while vmd cannot tell. */
static const char *ready_word(const char *status)
{
	return streq(status, "True") ? "yes" : streq(status, "Unknown") ? "?" : "no";
}

static void print_table(json_t *all, bool no_daemon)
{
	char gone[64];
	size_t i;
	json_t *s;

	printf("%-24s %-17s %-9s %-7s %-6s %-8s %s\n", "NAME", "BACKEND", "PHASE", "RUNNING",
	       "READY", "RESTARTS", "MESSAGE");
	json_array_foreach(all, i, s)
	{
		bool g = vmm_gone(s, no_daemon);

		snprintf(gone, sizeof(gone), "its VMM (pid %lld) is gone; no vmd runs to notice",
			 (long long)json_integer_value(json_object_get(s, "pid")));
		printf("%-24s %-17s %-9s %-7s %-6s %-8lld %s\n",
		       json_string_value(json_object_get(s, "name")) ?: "?",
		       json_string_value(json_object_get(s, "backend")) ?: "?",
		       json_string_value(json_object_get(s, "phase")) ?: "?",
		       g ? "?" : ready_word(status_condition(s, "Running", "status")),
		       g ? "?" : ready_word(status_condition(s, "Ready", "status")),
		       (long long)json_integer_value(json_object_get(s, "restarts")),
		       g ? gone : headline(s));
	}
}

static void print_one(json_t *s, bool no_daemon)
{
	size_t i;
	json_t *c, *d;

	printf("Name:        %s\n", json_string_value(json_object_get(s, "name")) ?: "?");
	printf("File:        %s\n", json_string_value(json_object_get(s, "file")) ?: "(none)");
	printf("Backend:     %s\n", json_string_value(json_object_get(s, "backend")) ?: "?");
	if (json_string_value(json_object_get(s, "vmmVersion")))
		printf("VMM:         %s\n", json_string_value(json_object_get(s, "vmmVersion")));
	printf("Phase:       %s (wanted: %s)\n",
	       json_string_value(json_object_get(s, "phase")) ?: "?",
	       json_string_value(json_object_get(s, "desiredState")) ?: "?");
	printf("Generation:  %lld (observed %lld)\n",
	       (long long)json_integer_value(json_object_get(s, "generation")),
	       (long long)json_integer_value(json_object_get(s, "observedGeneration")));
	if (json_is_object(json_object_get(s, "sourceRevision")))
		printf("Revision:    %s (%s)\n",
		       json_string_value(
			       json_object_get(json_object_get(s, "sourceRevision"), "revision"))
			       ?: "?",
		       json_string_value(json_object_get(json_object_get(s, "sourceRevision"), "kind"))
			       ?: "?");
	if (json_string_value(json_object_get(s, "startedAt")))
		printf("Started:     %s\n", json_string_value(json_object_get(s, "startedAt")));
	printf("Restarts:    %lld\n", (long long)json_integer_value(json_object_get(s, "restarts")));
	if (vmm_gone(s, no_daemon))
		printf("VMM:         pid %lld is gone; no vmd runs to notice\n",
		       (long long)json_integer_value(json_object_get(s, "pid")));
	if (json_is_object(json_object_get(s, "job")))
		printf("Job:         %s, phase %s since %s\n",
		       json_string_value(json_object_get(json_object_get(s, "job"), "type")) ?: "?",
		       json_string_value(json_object_get(json_object_get(s, "job"), "phase")) ?: "?",
		       json_string_value(json_object_get(json_object_get(s, "job"), "since")) ?: "?");
	if (json_is_object(json_object_get(s, "snapshot"))) {
		json_t *snap = json_object_get(s, "snapshot");
		char size[32];

		format_size((uint64_t)json_integer_value(json_object_get(snap, "size")), size);
		printf("Snapshot:    %s, taken at %s\n", size,
		       json_string_value(json_object_get(snap, "takenAt")) ?: "?");
	}
	if (json_string_value(json_object_get(s, "lastError")))
		printf("Last error:  %s\n", json_string_value(json_object_get(s, "lastError")));
	if (json_string_value(json_object_get(s, "nextRetryAt")))
		printf("Next retry:  %s\n", json_string_value(json_object_get(s, "nextRetryAt")));
	printf("Conditions:\n");
	json_array_foreach(json_object_get(s, "conditions"), i, c)
	{
		const char *msg = json_string_value(json_object_get(c, "message"));

		printf("  %-16s %-7s %-22s %s\n", json_string_value(json_object_get(c, "type")),
		       json_string_value(json_object_get(c, "status")),
		       json_string_value(json_object_get(c, "reason")), msg ?: "");
	}
	json_array_foreach(json_object_get(s, "disks"), i, d)
	{
		const char *image = json_string_value(json_object_get(d, "image"));

		printf("Disk:        %s %s%s%s%s%s\n", json_string_value(json_object_get(d, "id")),
		       json_string_value(json_object_get(d, "path")) ?: "-",
		       image ? " (copy of " : "", image ?: "", image ? ")" : "",
		       json_is_true(json_object_get(d, "readOnly")) ? " (read-only)" : "");
	}
	json_array_foreach(json_object_get(s, "networks"), i, d)
	{
		size_t k;
		json_t *a;

		printf("Network:     %s %s %s %s", json_string_value(json_object_get(d, "id")),
		       json_string_value(json_object_get(d, "type")) ?: "?",
		       json_string_value(json_object_get(d, "tap")),
		       json_string_value(json_object_get(d, "mac")));
		json_array_foreach(json_object_get(d, "addresses"), k, a)
			printf("%s%s", k ? ", " : " address ", json_string_value(a));
		json_array_foreach(json_object_get(d, "ports"), k, a)
			printf("%s%s", k ? ", " : " ports ", json_string_value(a));
		printf("\n");
	}
}

/* What vmd status shows, once: every sandbox or one, as a table, in detail or as JSON. */
static int show(const char *run_dir, const char *name, bool json)
{
	bool no_daemon = warn_daemon(run_dir);
	json_t *out = NULL;
	int r;

	if (name) {
		r = status_read_one(run_dir, name, &out);
		if (r < 0) {
			fprintf(stderr, "vmd status: no status for sandbox '%s' in %s%s\n", name,
				run_dir, r == -ENOENT ? "" : ": unreadable");
			return EXIT_INVALID;
		}
	} else {
		r = status_read_all(run_dir, &out);
		if (r < 0) {
			fprintf(stderr,
				"vmd status: cannot read %s: %s (is the daemon running with this --run-dir?)\n",
				run_dir, strerror(-r));
			return EXIT_INVALID;
		}
	}
	if (json) {
		json_dumpf(out, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	} else if (json_is_array(out))
		print_table(out, no_daemon);
	else
		print_one(out, no_daemon);
	json_decref(out);
	return EXIT_OK;
}

typedef struct Watch {
	const char *run_dir, *name;
	bool json, tty;
	bool synced;  /* the snapshot is in: what follows are changes */
	bool changed; /* since the last redraw */
} Watch;

/* Redraw once the events of a read are in, if any changed something. */
static int watch_event(json_t *e, void *userdata)
{
	Watch *w = userdata;
	char now[32];

	if (e) {
		const char *type = json_string_value(json_object_get(e, "type")),
			   *name = json_string_value(json_object_get(e, "sandbox"));

		w->synced |= streq_ptr(type, "synced");
		w->changed |= streq_ptr(type, "synced") || !w->name || streq_ptr(name, w->name);
		return 0;
	}
	if (!w->synced || !w->changed)
		return 0;
	w->changed = false;
	format_timestamp(now_usec(CLOCK_REALTIME), now);
	if (w->tty)
		printf("\033[H\033[2J");
	printf("--- %s (vmd status --watch; Ctrl-C ends)\n", now);
	(void)show(w->run_dir, w->name, w->json);
	return 0;
}

int verb_status(int argc, char **argv)
{
	static const struct option options[] = {
		{ "run-dir", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "watch", no_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	const char *run_dir = "/run/vmd";
	bool json = false, watch = false;
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		switch (c) {
		case 'r':
			run_dir = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'w':
			watch = true;
			break;
		case 'h':
			printf("Usage: vmd status [--run-dir DIR] [--json] [--watch] [NAME]\n"
			       "\n"
			       "Show what the daemon reports about every sandbox, or one.\n"
			       "\n"
			       "  --run-dir DIR  the daemon's run dir (default /run/vmd)\n"
			       "  --json         the status files as they are\n"
			       "  --watch        show it again at each event of the daemon's, until\n"
			       "                 Ctrl-C (its events.sock: vmd events)\n"
			       "  -h, --help     show this help\n");
			return EXIT_OK;
		default:
			return EXIT_USAGE;
		}
	}
	if (argc - optind > 1) {
		fprintf(stderr, "vmd status: at most one NAME\n");
		return EXIT_USAGE;
	}
	if (watch) {
		Watch w = { .run_dir = run_dir,
			    .name = optind < argc ? argv[optind] : NULL,
			    .json = json,
			    .tty = isatty(STDOUT_FILENO) };

		return events_follow("vmd status --watch", run_dir, watch_event, &w);
	}
	return show(run_dir, optind < argc ? argv[optind] : NULL, json);
}
