/* SPDX-License-Identifier: MIT */
/*
 * vmd wake NAME: wake a sandbox that suspendAfterIdle put to sleep. As vmd approve-deletions
 * does: a file in the run dir (<run-dir>/wake/NAME), a SIGHUP to the daemon that holds
 * vmd.lock, and a wait until the daemon took the request (it removes the file). What the
 * daemon then does shows in `vmd status NAME` (Suspended, then Running).
 */
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "idle.h"
#include "util.h"
#include "vmm.h"

#define WAKE_WAIT_USEC (10ull * 1000 * 1000)

static void wake_help(FILE *f)
{
	fprintf(f, "Usage: vmd wake [--run-dir DIR] NAME...\n"
		   "\n"
		   "Wake the sandboxes NAME that the daemon suspended for being idle\n"
		   "(suspendAfterIdle): it restores them from their snapshot. A sandbox whose\n"
		   "file says state: suspended stays so: edit its file for that.\n"
		   "\n"
		   "  --run-dir DIR  the daemon's run dir (default /run/vmd)\n"
		   "  -h, --help     show this help\n");
}

/* A pidfd of the daemon that holds run_dir's vmd.lock, and its pid; -ESRCH if none does. */
static int daemon_pidfd(const char *run_dir, pid_t *ret_pid)
{
	_cleanup_free_ char *lock = NULL, *text = NULL;
	_cleanup_close_ int lock_fd = -EBADF, fd = -EBADF;
	pid_t pid;

	if (asprintf(&lock, "%s/vmd.lock", run_dir) < 0)
		return -ENOMEM;
	if (read_file(lock, 31, &text, NULL) < 0 || (pid = (pid_t)atoi(text)) <= 0)
		return -ESRCH;
	fd = vmm_pidfd_open(pid);
	if (fd < 0)
		return fd;
	/* Checked once the pidfd holds the process: a lock nobody holds is no daemon's. */
	lock_fd = open(lock, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (lock_fd < 0 || flock(lock_fd, LOCK_SH | LOCK_NB) == 0)
		return -ESRCH;
	*ret_pid = pid;
	return TAKE_FD(fd);
}

static int wake(const char *run_dir, char **names, size_t n)
{
	_cleanup_free_ char *dir = NULL, **paths = NULL;
	_cleanup_close_ int pidfd = -EBADF;
	pid_t pid = 0;
	int r = 0;

	pidfd = daemon_pidfd(run_dir, &pid);
	if (pidfd < 0) {
		fprintf(stderr, "vmd wake: no vmd runs with run dir %s\n", run_dir);
		return pidfd;
	}
	if (asprintf(&dir, "%s/" IDLE_WAKE_DIR, run_dir) < 0 || !(paths = calloc(n, sizeof(char *))))
		return -ENOMEM;
	r = mkdir_p(dir, 0700);
	for (size_t i = 0; r >= 0 && i < n; i++) {
		if (asprintf(&paths[i], "%s/%s", dir, names[i]) < 0)
			r = -ENOMEM;
		else
			r = write_file_atomic(paths[i], "", 0, 0600, false);
	}
	if (r >= 0)
		r = vmm_kill(pidfd, SIGHUP);
	for (size_t i = 0; r >= 0 && i < n; i++)
		if (!cli_wait_taken(paths[i], WAKE_WAIT_USEC)) {
			fprintf(stderr,
				"vmd wake: vmd (pid %d) did not take %s within %llu s; it is left for its next SIGHUP\n",
				(int)pid, paths[i], WAKE_WAIT_USEC / 1000000);
			r = -ETIMEDOUT;
		}
	if (r < 0 && r != -ETIMEDOUT)
		fprintf(stderr, "vmd wake: cannot ask vmd (pid %d) in %s: %s\n", (int)pid, dir,
			strerror(-r));
	for (size_t i = 0; r >= 0 && i < n; i++)
		printf("vmd (pid %d) wakes %s if it sleeps for idling (vmd status %s)\n", (int)pid,
		       names[i], names[i]);
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	return r;
}

int verb_wake(int argc, char **argv)
{
	const char *run_dir;
	int r = cli_run_dir_options(argc, argv, wake_help, &run_dir);

	if (r >= 0)
		return r;
	if (optind >= argc) {
		wake_help(stderr);
		return EXIT_USAGE;
	}
	for (int i = optind; i < argc; i++)
		if (!spec_name_is_valid(argv[i])) {
			fprintf(stderr, "vmd wake: '%s' is not a sandbox name\n", argv[i]);
			return EXIT_USAGE;
		}
	return wake(run_dir, argv + optind, (size_t)(argc - optind)) < 0 ? EXIT_INVALID : EXIT_OK;
}
