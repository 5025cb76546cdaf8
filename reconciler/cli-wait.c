/* SPDX-License-Identifier: MIT */
/*
 * vmd wait NAME... --for CONDITION: like kubectl wait, on the status files of the run dir
 * (docs/status.md). It reads them again whenever inotify says one changed (the daemon
 * renames each into place, in <run-dir>/<name>/), until each NAME is as asked or the
 * timeout ends; it needs no daemon to talk to, only its files. Where inotify cannot watch
 * (its limits, a run dir whose parent is not there either), it reads them every
 * WAIT_PERIOD_MS instead; never busy.
 *
 * --for applied compares contents: generation is a counter the daemon keeps, not
 * something a file's content gives, so the daemon writes in status.json the fingerprint
 * of the bytes it last read from the file (fileHash); the command takes the file's
 * fingerprint when it starts, and the sandbox is applied once the daemon read those very
 * bytes, found them valid, acted on all of it (observedGeneration == generation) and the
 * sandbox is Ready.
 *
 * --for suspended waits for a committed snapshot (phase Suspended, its "snapshot" given).
 * Until the daemon read the file as it is when the command starts (the same fileHash), the
 * rest of the status is of a content before: a file just edited to state: suspended is
 * waited for. Once it did, a desired state other than suspended, or a suspend that failed,
 * ends the wait at once: nothing would suspend it (as a rollback ends --for applied).
 */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <sys/inotify.h>
#include <time.h>

#include "cli.h"
#include "status.h"
#include "util.h"

#define WAIT_PERIOD_MS 200
#define WAIT_TIMEOUT_DEFAULT_MS (5ull * 60 * 1000)
#define WAIT_TIMEOUT_MAX_MS (7ull * 24 * 3600 * 1000)

typedef enum WaitFor {
	WAIT_READY,
	WAIT_RUNNING,
	WAIT_STOPPED,
	WAIT_DELETED,
	WAIT_APPLIED,
	WAIT_SUSPENDED,
	_WAIT_FOR_MAX,
} WaitFor;

static const char *const wait_for_table[_WAIT_FOR_MAX] = {
	[WAIT_READY] = "ready",	    [WAIT_RUNNING] = "running", [WAIT_STOPPED] = "stopped",
	[WAIT_DELETED] = "deleted", [WAIT_APPLIED] = "applied", [WAIT_SUSPENDED] = "suspended",
};

typedef struct Waited {
	const char *name;
	char hash[32]; /* applied, suspended: the file's fingerprint when the command started */
	char why[512]; /* why it is not there yet */
	/* Nor will it be: its generation was rolled back (rollout.c), its suspend failed... */
	bool never;
} Waited;

static void wait_help(FILE *f)
{
	fprintf(f, "Usage: vmd wait NAME... --for ready|running|stopped|deleted|applied|suspended\n"
		   "                [--timeout DURATION] [--run-dir DIR] [--sandboxes DIR]\n"
		   "\n"
		   "Wait until each sandbox NAME is as asked, as its status in the run dir says:\n"
		   "  ready    Ready is True          running  Running is True (its VMM runs it)\n"
		   "  stopped  phase Stopped          deleted  it has no status any more\n"
		   "  applied  the daemon acted on the file's content as it is now, and it is Ready\n"
		   "  suspended  its snapshot is committed (fails at once if the file, as it is\n"
		   "           now, does not ask for state: suspended, or its suspend failed)\n"
		   "Exit 0 when all are, 1 with the reason for each that is not at the timeout.\n"
		   "\n"
		   "  --for CONDITION    what to wait for (required)\n"
		   "  --timeout DURATION how long, such as 30s, 5m or 1h (default 5m)\n"
		   "  --run-dir DIR      the daemon's run dir (default /run/vmd)\n"
		   "  --sandboxes DIR    where a sandbox's file is, if its status names none\n"
		   "                     (default /etc/vmd/sandboxes)\n"
		   "  -h, --help         show this help\n");
}

/* "500ms", "30s", "5m", "1h", or whole seconds. */
static int parse_timeout(const char *s, uint64_t *ret)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = { { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "", 1000 } };
	size_t digits = strspn(s, "0123456789");
	uint64_t v;

	if (digits == 0 || parse_decimal_u64(s, digits, &v) < 0)
		return -EINVAL;
	for (size_t i = 0; i < ELEMENTSOF(units); i++)
		if (streq(s + digits, units[i].unit)) {
			if (mul_u64(v, units[i].ms, ret) < 0 || *ret > WAIT_TIMEOUT_MAX_MS)
				return -ERANGE;
			return 0;
		}
	return -EINVAL;
}

/* The fingerprint of the file at path as status.json gives it; -errno if it cannot be read. */
static int file_hash(const char *path, char buf[static 32])
{
	_cleanup_free_ char *raw = NULL;
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	size_t len = 0;
	int r;

	if (fd < 0)
		return -errno;
	r = read_fd(fd, SIZE_MAX / 2, &raw, &len);
	if (r < 0)
		return r;
	status_file_hash_format(fnv1a64(FNV1A64_INIT, raw, len), buf);
	return 0;
}

/* The file of a sandbox: the one its status names, or NAME.yaml (.yml) in sandboxes. */
static int take_hash(const char *run_dir, const char *sandboxes, Waited *w)
{
	_cleanup_(json_decrefp) json_t *s = NULL;
	_cleanup_free_ char *yaml = NULL, *yml = NULL;
	const char *file;
	int r;

	(void)status_read_one(run_dir, w->name, &s);
	file = json_string_value(json_object_get(s, "file"));
	if (file)
		return file_hash(file, w->hash);
	if (asprintf(&yaml, "%s/%s.yaml", sandboxes, w->name) < 0 ||
	    asprintf(&yml, "%s/%s.yml", sandboxes, w->name) < 0)
		return -ENOMEM;
	r = file_hash(yaml, w->hash);
	return r == -ENOENT ? file_hash(yml, w->hash) : r;
}

/* "Ready is False (ProbeFailed: ...)" */
static void cond_why(json_t *s, const char *type, char *buf, size_t size)
{
	const char *msg = status_condition(s, type, "message");

	snprintf(buf, size, "%s is %s (%s%s%s)", type,
		 *status_condition(s, type, "status") ? status_condition(s, type, "status")
						      : "not reported",
		 status_condition(s, type, "reason"), *msg ? ": " : "", msg);
}

/* --for suspended: whether s has its snapshot; if not, why, and whether it never will. */
static bool check_suspended(json_t *s, Waited *w)
{
	const char *phase = json_string_value(json_object_get(s, "phase")),
		   *hash = json_string_value(json_object_get(s, "fileHash")),
		   *desired = json_string_value(json_object_get(s, "desiredState")),
		   *job = json_string_value(json_object_get(json_object_get(s, "job"), "type"));

	if (streq_ptr(phase, "Suspended") && json_is_object(json_object_get(s, "snapshot")))
		return true;
	if (!streq_ptr(hash, w->hash))
		snprintf(w->why, sizeof(w->why),
			 "vmd has not read its file as it was when the wait began yet (fileHash %s, not %s)",
			 hash ?: "null", w->hash);
	else if (!streq_ptr(desired, "suspended")) {
		w->never = true;
		snprintf(w->why, sizeof(w->why), "its desired state is %s, not suspended",
			 desired ?: "not reported");
	} else if (streq(status_condition(s, "Degraded", "status"), "True") &&
		   strncmp(status_condition(s, "Degraded", "message"), "suspend failed", 14) == 0) {
		w->never = true;
		cond_why(s, "Degraded", w->why, sizeof(w->why));
	} else
		snprintf(w->why, sizeof(w->why), "its phase is %s%s%s", phase ?: "not reported",
			 job ? ", its job " : "", job ?: "");
	return false;
}

/* Whether w is as asked; if not, why in w->why. */
static bool check(const char *run_dir, WaitFor what, Waited *w)
{
	_cleanup_(json_decrefp) json_t *s = NULL;
	const char *hash;
	json_int_t gen, observed;
	int r;

	r = status_read_one(run_dir, w->name, &s);
	if (r == -ENOENT) {
		snprintf(w->why, sizeof(w->why), "it has no status in %s", run_dir);
		return what == WAIT_DELETED;
	}
	if (r < 0) {
		snprintf(w->why, sizeof(w->why), "cannot read its status: %s", strerror(-r));
		return false;
	}
	switch (what) {
	case WAIT_READY:
	case WAIT_RUNNING:
		if (streq(status_condition(s, what == WAIT_READY ? "Ready" : "Running", "status"),
			  "True"))
			return true;
		cond_why(s, what == WAIT_READY ? "Ready" : "Running", w->why, sizeof(w->why));
		return false;
	case WAIT_STOPPED:
		if (streq_ptr(json_string_value(json_object_get(s, "phase")), "Stopped"))
			return true;
		snprintf(w->why, sizeof(w->why), "its phase is %s",
			 json_string_value(json_object_get(s, "phase")) ?: "not reported");
		return false;
	case WAIT_DELETED:
		snprintf(w->why, sizeof(w->why), "it still has a status (phase %s)",
			 json_string_value(json_object_get(s, "phase")) ?: "not reported");
		return false;
	case WAIT_SUSPENDED:
		return check_suspended(s, w);
	default:
		break;
	}
	hash = json_string_value(json_object_get(s, "fileHash"));
	gen = json_integer_value(json_object_get(s, "generation"));
	observed = json_integer_value(json_object_get(s, "observedGeneration"));
	if (!streq_ptr(hash, w->hash))
		snprintf(w->why, sizeof(w->why),
			 "vmd has not read its file as it was when the wait began yet (fileHash %s, not %s)",
			 hash ?: "null", w->hash);
	else if (!streq(status_condition(s, "ConfigValid", "status"), "True"))
		cond_why(s, "ConfigValid", w->why, sizeof(w->why));
	else if (observed != gen && streq(status_condition(s, "RolledBack", "status"), "True")) {
		/* This very content was tried and rolled back: only a newer edit is tried. */
		w->never = true;
		cond_why(s, "RolledBack", w->why, sizeof(w->why));
	} else if (observed != gen)
		snprintf(w->why, sizeof(w->why),
			 "observedGeneration is %lld, generation %lld: vmd is still acting on it",
			 (long long)observed, (long long)gen);
	else if (!streq(status_condition(s, "Ready", "status"), "True"))
		cond_why(s, "Ready", w->why, sizeof(w->why));
	else
		return true;
	return false;
}

/*
 * Watch what the statuses of w[] are in: each <run-dir>/<name>/ (status.json renamed into
 * it or removed), the run dir (those folders made or removed), and while the run dir is
 * not there, its parent. Watched again before each look, so that what appears between two
 * looks is watched from then on. Whether every folder that is there or may come is.
 */
static bool watch_dirs(int ifd, const char *run_dir, const Waited *w, int n)
{
	const uint32_t dir_mask = IN_ONLYDIR | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
				  IN_DELETE_SELF | IN_MOVE_SELF;
	_cleanup_free_ char *parent = NULL;
	char *slash;

	if (inotify_add_watch(ifd, run_dir, dir_mask | IN_CREATE) < 0) {
		if (errno != ENOENT)
			return false;
		parent = strdup(run_dir);
		slash = parent ? strrchr(parent, '/') : NULL;
		if (!parent)
			return false;
		if (slash)
			*slash = '\0';
		return inotify_add_watch(ifd,
					 !slash	   ? "."
					 : *parent ? parent
						   : "/",
					 IN_ONLYDIR | IN_CREATE | IN_MOVED_TO) >= 0;
	}
	for (int i = 0; i < n; i++) {
		_cleanup_free_ char *dir = NULL;

		if (asprintf(&dir, "%s/%s", run_dir, w[i].name) < 0)
			return false;
		if (inotify_add_watch(ifd, dir, dir_mask) < 0 && errno != ENOENT)
			return false;
	}
	return true;
}

/* Until inotify says something changed, or ms pass; what it says is read and dropped. */
static void wait_change(int ifd, uint64_t ms)
{
	struct pollfd p = { .fd = ifd, .events = POLLIN };
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	if (poll(&p, ifd >= 0 ? 1 : 0, (int)MIN(ms, (uint64_t)INT32_MAX)) > 0)
		while (read(ifd, buf, sizeof(buf)) > 0)
			;
}

int verb_wait(int argc, char **argv)
{
	static const struct option options[] = {
		{ "for", required_argument, NULL, 'f' },
		{ "timeout", required_argument, NULL, 't' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "sandboxes", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	const char *run_dir = "/run/vmd", *sandboxes = "/etc/vmd/sandboxes", *timeout_arg = "5m";
	uint64_t timeout_ms = WAIT_TIMEOUT_DEFAULT_MS, deadline;
	_cleanup_free_ Waited *w = NULL;
	_cleanup_close_ int ifd = -EBADF;
	int c, what = -1, n;
	bool all;

	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
		switch (c) {
		case 'f':
			what = (int)string_table_lookup(wait_for_table, _WAIT_FOR_MAX, optarg);
			if (what < 0) {
				fprintf(stderr,
					"vmd wait: --for takes ready, running, stopped, deleted, applied or suspended, not '%s'\n",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 't':
			timeout_arg = optarg;
			if (parse_timeout(optarg, &timeout_ms) < 0) {
				fprintf(stderr,
					"vmd wait: --timeout takes a duration such as 30s, 5m or 1h (at most 168h), not '%s'\n",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'r':
			run_dir = optarg;
			break;
		case 's':
			sandboxes = optarg;
			break;
		case 'h':
			wait_help(stdout);
			return EXIT_OK;
		default:
			wait_help(stderr);
			return EXIT_USAGE;
		}
	n = argc - optind;
	if (what < 0 || n == 0) {
		fprintf(stderr, "vmd wait: %s\n",
			what < 0 ? "--for is required" : "name at least one sandbox");
		wait_help(stderr);
		return EXIT_USAGE;
	}
	w = calloc((size_t)n, sizeof(Waited));
	if (!w)
		return EXIT_INVALID;
	for (int i = 0; i < n; i++) {
		int r;

		w[i].name = argv[optind + i];
		if (!spec_name_is_valid(w[i].name)) {
			fprintf(stderr, "vmd wait: '%s' is not a sandbox name\n", w[i].name);
			return EXIT_USAGE;
		}
		if (!IN_SET(what, WAIT_APPLIED, WAIT_SUSPENDED))
			continue;
		/* The content now, before anything is read of the daemon's. */
		r = take_hash(run_dir, sandboxes, &w[i]);
		if (r < 0) {
			fprintf(stderr, "vmd wait: %s: cannot read its sandbox file: %s\n",
				w[i].name, strerror(-r));
			return EXIT_INVALID;
		}
	}

	deadline = now_usec(CLOCK_MONOTONIC) / 1000 + timeout_ms;
	ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	for (;;) {
		/* Watched first, looked at then: a change in between wakes the wait. */
		bool watched = ifd >= 0 && watch_dirs(ifd, run_dir, w, n);
		uint64_t now;

		all = true;
		for (int i = 0; i < n; i++)
			all &= check(run_dir, what, &w[i]);
		if (all)
			return EXIT_OK;
		for (int i = 0; i < n; i++)
			if (w[i].never) {
				fprintf(stderr, "vmd wait: %s: not %s: %s\n", w[i].name,
					wait_for_table[what], w[i].why);
				return EXIT_INVALID;
			}
		now = now_usec(CLOCK_MONOTONIC) / 1000;
		if (now >= deadline)
			break;
		wait_change(ifd, watched ? deadline - now
					 : MIN(deadline - now, (uint64_t)WAIT_PERIOD_MS));
	}
	for (int i = 0; i < n; i++)
		if (!check(run_dir, what, &w[i]))
			fprintf(stderr, "vmd wait: %s: timed out after %s: %s\n", w[i].name,
				timeout_arg, w[i].why);
	return EXIT_INVALID;
}
