/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

/*
 * VMM processes, whatever the VMM: spawning one, telling whether a pid is still the process
 * vmd started, and learning how it ended. Shared by the QEMU, Cloud Hypervisor and
 * Firecracker backends.
 */

/* What identifies a process beyond its pid, which the kernel reuses. */
typedef struct VmmIdentity {
	pid_t pid;
	uint64_t start_time; /* field 22 of /proc/PID/stat: clock ticks after boot */
	char exe[256];	     /* /proc/PID/exe, without a " (deleted)" suffix */
} VmmIdentity;

/* The first descriptor a VMM gets from vmd: pass_fds[i] of vmm_spawn() is VMM_FD_FIRST + i. */
#define VMM_FD_FIRST 4
#define VMM_PASS_FDS_MAX 192 /* QEMU's: sockets, taps, every disk and image, credentials */

/* Who a VMM runs as (the daemon's --vmm-user). uid (uid_t)-1: as vmd itself. */
typedef struct VmmUser {
	uid_t uid;
	gid_t gid;
} VmmUser;

#define VMM_USER_UNSET ((uid_t)-1)

/*
 * Start argv[0] (an absolute path) with argv, in a session of its own, with stdin and
 * stdout on /dev/null, stderr appended to log_path, pass_fds[i] as VMM_FD_FIRST + i (at
 * most VMM_PASS_FDS_MAX), every other fd closed, signals reset and a minimal environment
 * (vmm_environment()). Returns once the exec happened (or failed: its errno). *ret_pidfd
 * refers to it. pass_fds stay vmd's to close.
 */
int vmm_spawn(char *const argv[], const char *log_path, const int *pass_fds, size_t n_pass,
	      pid_t *ret_pid, int *ret_pidfd);
/*
 * The same, with stdout in out_path (made anew) unless NULL: for a VMM that logs there;
 * and, unless user is NULL or its uid VMM_USER_UNSET, as user: no supplementary groups,
 * its gid and uid (so no capabilities left, unless it is root) and no_new_privs, set
 * between fork and exec.
 */
int vmm_spawn_logging(char *const argv[], const char *log_path, const char *out_path,
		      const VmmUser *user, const int *pass_fds, size_t n_pass, pid_t *ret_pid,
		      int *ret_pidfd);

/*
 * The environment a VMM gets, a NULL-terminated strv: PATH (vmd's, or a default),
 * and the VMD_SIM_* knobs of the test simulators (tests/sim/). Nothing else
 * of vmd's: no NOTIFY_SOCKET, WATCHDOG_*, LISTEN_*, INVOCATION_ID, CREDENTIALS_DIRECTORY.
 */
int vmm_environment(char ***ret);

/*
 * The VmmUser of a --vmm-user argument: a user name (its uid and primary gid), or
 * UID:GID in numbers. -ENOENT: no such user; -EINVAL: neither form.
 */
int vmm_user_parse(const char *arg, VmmUser *ret);

/* Read a live process's identity; -ESRCH if it is gone (or a zombie). */
int vmm_identity(pid_t pid, VmmIdentity *ret);

/* Whether pid is still the process that id describes: its start time and its binary. */
bool vmm_identity_matches(const VmmIdentity *id);

/* What /proc/PID/<link> ("root", "cwd", "exe") points at. */
int vmm_process_link(pid_t pid, const char *link, char **ret);

/*
 * Call fn with the pid and argv of every process on the host but this one, until fn returns
 * something else than 0 (which is returned). Reads /proc and nothing else: a process that
 * hangs costs nothing more than one that does not.
 */
int vmm_foreach_process(int (*fn)(pid_t pid, char **argv, void *userdata), void *userdata);

/* Whether something listens on the Unix socket at path (following a symlink). Never waits. */
bool vmm_socket_is_listening(const char *path);

/*
 * How the process behind pidfd ended, if it did and it is our child: 1 and *ret_status
 * (the exit code, or 128 + signal); 0 if it still runs; -ECHILD if it is not our child
 * (adopted after a restart of vmd), so its status is not ours to learn.
 */
int vmm_reap(int pidfd, int *ret_status);

/* Whether the process behind pidfd has ended (its pidfd is readable). */
bool vmm_has_exited(int pidfd);

int vmm_pidfd_open(pid_t pid);
int vmm_kill(int pidfd, int sig);

/*
 * Remove a Unix socket nobody listens on (connect refused), but only below dir: a path
 * outside it is never touched. 1: removed; 0: nothing there; -EADDRINUSE: someone listens.
 */
int vmm_remove_stale_socket(const char *dir, const char *path);

/* The absolute path of an executable: name as is if it has a '/', else looked up in $PATH. */
int vmm_find_binary(const char *name, char **ret);
