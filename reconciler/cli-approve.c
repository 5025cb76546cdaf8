/* SPDX-License-Identifier: MIT */
/*
 * vmd approve-deletions: let the daemon stop what its mass deletion guard holds. The
 * daemon lists what it holds in <run-dir>/deletions-held.json, under the trip's id; this
 * copies that to <run-dir>/deletions-approved.json (pared down to the names given, if
 * any), sends SIGHUP to the daemon that wrote it, and waits for the daemon to take the
 * approval (it removes the file). No socket: a file and a signal, as a reload is.
 */
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>

#include "cli.h"
#include "deletion-guard.h"
#include "util.h"
#include "vmm.h"

#define APPROVE_WAIT_USEC (10ull * 1000 * 1000)

static void approve_help(FILE *f)
{
	fprintf(f, "Usage: vmd approve-deletions [--run-dir DIR] [NAME...]\n"
		   "\n"
		   "Let the daemon stop the sandboxes whose file is gone and whose stop it holds\n"
		   "because too many went at once, or the directory was replaced: all of them, or\n"
		   "the NAMEs. Only what it holds now is approved, not what goes later.\n"
		   "\n"
		   "  --run-dir DIR  the daemon's run dir (default /run/vmd)\n"
		   "  -h, --help     show this help\n");
}

/* The held names, or those of names (none: all); -EINVAL, said, for a name not held. */
static int pick(json_t *held, char **names, size_t n_names, json_t **ret)
{
	json_t *out = json_array();

	if (!out)
		return -ENOMEM;
	for (size_t k = 0; k < n_names; k++) {
		if (!deletions_file_names(held, names[k])) {
			fprintf(stderr, "vmd approve-deletions: vmd holds no stop of '%s'\n",
				names[k]);
			json_decref(out);
			return -EINVAL;
		}
		json_array_append_new(out, json_string(names[k]));
	}
	if (n_names == 0)
		json_array_extend(out, json_object_get(held, "sandboxes"));
	*ret = out;
	return 0;
}

/*
 * A pidfd of the daemon that wrote held, if it still runs: its pid is the one vmd.lock
 * names, and the process behind it started when that daemon did (not a reused pid).
 */
static int daemon_pidfd(const char *run_dir, json_t *held, pid_t *ret_pid)
{
	_cleanup_free_ char *lock = NULL, *text = NULL;
	_cleanup_close_ int fd = -EBADF;
	pid_t pid = (pid_t)json_integer_value(json_object_get(held, "pid"));
	VmmIdentity id;

	if (asprintf(&lock, "%s/vmd.lock", run_dir) < 0)
		return -ENOMEM;
	if (pid <= 0 || read_file(lock, 31, &text, NULL) < 0 || atoi(text) != pid)
		return -ESRCH;
	fd = vmm_pidfd_open(pid);
	if (fd < 0)
		return fd;
	/* Checked once the pidfd holds the process: it cannot be another one by the signal. */
	if (vmm_identity(pid, &id) < 0 ||
	    id.start_time != (uint64_t)json_integer_value(json_object_get(held, "startTime")))
		return -ESRCH;
	*ret_pid = pid;
	return TAKE_FD(fd);
}

static int write_approval(const char *path, json_t *held, json_t *names)
{
	_cleanup_free_ char *text = NULL;
	json_t *j = json_pack("{s:O, s:O}", "id", json_object_get(held, "id"), "sandboxes", names);

	text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	json_decref(j);
	if (!text)
		return -ENOMEM;
	return write_file_atomic(path, text, strlen(text), 0600, false);
}

bool cli_wait_taken(const char *path, uint64_t usec)
{
	uint64_t end = now_usec(CLOCK_MONOTONIC) + usec;

	while (access(path, F_OK) == 0) {
		if (now_usec(CLOCK_MONOTONIC) > end)
			return false;
		usleep(10 * 1000);
	}
	return true;
}

static int approve(const char *run_dir, char **names, size_t n_names)
{
	_cleanup_free_ char *held_path = NULL, *approved_path = NULL;
	_cleanup_(json_decrefp) json_t *held = NULL, *picked = NULL;
	_cleanup_close_ int pidfd = -EBADF;
	pid_t pid = 0;
	size_t i;
	json_t *v;
	int r;

	if (asprintf(&held_path, "%s/%s", run_dir, DELETIONS_HELD_FILE) < 0 ||
	    asprintf(&approved_path, "%s/%s", run_dir, DELETIONS_APPROVED_FILE) < 0)
		return -ENOMEM;
	held = json_load_file(held_path, 0, NULL);
	if (!json_is_string(json_object_get(held, "id"))) {
		fprintf(stderr, "vmd approve-deletions: vmd holds no stop in %s (no %s)\n", run_dir,
			held_path);
		return -ENOENT;
	}
	r = pick(held, names, n_names, &picked);
	if (r < 0)
		return r;
	pidfd = daemon_pidfd(run_dir, held, &pid);
	if (pidfd < 0) {
		fprintf(stderr,
			"vmd approve-deletions: the vmd that holds these stops (pid %lld) no longer runs with run dir %s\n",
			(long long)json_integer_value(json_object_get(held, "pid")), run_dir);
		return pidfd;
	}
	r = write_approval(approved_path, held, picked);
	if (r < 0) {
		fprintf(stderr, "vmd approve-deletions: cannot write %s: %s\n", approved_path,
			strerror(-r));
		return r;
	}
	r = vmm_kill(pidfd, SIGHUP);
	if (r < 0) {
		fprintf(stderr, "vmd approve-deletions: cannot signal vmd (pid %d): %s\n", (int)pid,
			strerror(-r));
		(void)unlink(approved_path);
		return r;
	}
	if (!cli_wait_taken(approved_path, APPROVE_WAIT_USEC)) {
		fprintf(stderr,
			"vmd approve-deletions: vmd (pid %d) did not take %s within %llu s; it is left for its next SIGHUP\n",
			(int)pid, approved_path, APPROVE_WAIT_USEC / 1000000);
		return -ETIMEDOUT;
	}
	printf("approved the stop of %zu sandboxes whose file is gone:\n", json_array_size(picked));
	json_array_foreach(picked, i, v)
	{
		printf("  %s\n", json_string_value(v));
	}
	printf("vmd (pid %d) took the approval: it stops them now (journalctl -u vmd)\n", (int)pid);
	return 0;
}

int cli_run_dir_options(int argc, char **argv, void (*help)(FILE *f), const char **run_dir)
{
	static const struct option options[] = {
		{ "run-dir", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	int c;

	*run_dir = "/run/vmd";
	optind = 0;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		switch (c) {
		case 'r':
			*run_dir = optarg;
			break;
		case 'h':
			help(stdout);
			return EXIT_OK;
		default:
			help(stderr);
			return EXIT_USAGE;
		}
	}
	return -1;
}

int verb_approve_deletions(int argc, char **argv)
{
	const char *run_dir;
	int r = cli_run_dir_options(argc, argv, approve_help, &run_dir);

	if (r >= 0)
		return r;
	return approve(run_dir, argv + optind, (size_t)(argc - optind)) < 0 ? EXIT_INVALID : EXIT_OK;
}
