/* SPDX-License-Identifier: MIT */
#pragma once

/* What the cmocka test binaries share. Include after cmocka.h's prerequisites. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <sys/types.h>
#include <cmocka.h>

#include "macro.h"

/* $VMD_SRCDIR/rel (the checkout; tests/run sets it). Returns a static buffer. */
const char *test_src(const char *rel);

/* The vmd binary under test ($VMD_BIN). */
const char *test_vmd(void);

/* A new empty directory under $TMPDIR; test_tmpdir_remove() deletes it and all below. */
char *test_tmpdir(void);
void test_tmpdir_remove(char *dir);

/* Write data to dir/name, creating parent directories. */
void test_write(const char *dir, const char *name, const char *data, size_t len);
void test_write_str(const char *dir, const char *name, const char *data);

/* Run argv (never through a shell) with stdin from /dev/null; capture stdout and stderr. */
typedef struct TestRun {
	int status; /* exit status, or 128 + signal */
	char *out;
	char *err;
} TestRun;

void test_run(TestRun *ret, char *const argv[]);
void test_run_done(TestRun *r);

/* Send sig to a child the test started, if *pid is one, reap it, and set *pid to 0. */
void test_kill_wait(pid_t *pid, int sig);

/* Send all of s on a socket (a scripted server's reply); stops quietly if the peer left. */
void test_send_all(int fd, const char *s, size_t n);

/* A TCP listener on 127.0.0.1:port (0: a port the kernel picks); its port in *ret_port. */
int test_listen_loopback(uint16_t port, uint16_t *ret_port);

/*
 * Enter a new user namespace as its root (the same ids outside) and set its
 * /proc/sys/user/<sysctl> to value: the inotify limits are counted per user namespace, so
 * a test can run short of inotify without touching the host's. 0, or -1 (no cmocka: this
 * runs in children).
 */
int test_user_ns_limit(const char *sysctl, const char *value);

/* Read a whole file into a NUL-terminated buffer; *ret_len may be NULL. */
char *test_read_file(const char *path, size_t *ret_len);
/* The value of a "Key:\t..." line of a /proc/PID/status text, up to the newline; NULL if none. */
char *test_status_field(const char *status, const char *key);
/*
 * What a VMM dropped to uid:gid shows in its /proc/PID/status (those ids, no capabilities,
 * no_new_privs) and /proc/PID/environ (PATH and VMD_SIM_* only).
 */
void test_expect_unprivileged(pid_t pid, unsigned uid, unsigned gid);

/*
 * From now on, in this process and what it execs, openat2 fails with errnum (ENOSYS as
 * on Linux before 5.6 or under Docker's seccomp profile, EPERM as under others): a
 * seccomp filter. Returns 0 or -errno.
 */
int test_deny_openat2(int errnum);

/*
 * A NOTIFY_SOCKET of the test's own: what a daemon tells systemd, each datagram checked as
 * systemd takes it (UTF-8, under 4 KiB), and kept, one a line.
 */
typedef struct TestNotify {
	int fd;
	char *messages; /* every datagram so far, one a line */
	size_t cursor;	/* test_notify_expect() looks from here on */
} TestNotify;

/* Bind the socket at path. */
void test_notify_open(TestNotify *n, const char *path);
void test_notify_close(TestNotify *n);
/* Take what came, waiting at most timeout_ms for the first datagram. */
void test_notify_drain(TestNotify *n, int timeout_ms);
/*
 * Wait, at most wait_ms, for a datagram containing what after the last one expected; a
 * failure shows what came, and what log_path holds (NULL: nothing).
 */
void test_notify_expect(TestNotify *n, const char *what, int wait_ms, const char *log_path);

/*
 * A spec from the lines under spec: of a sandbox file sb.yaml (noop by default); the test
 * fails if the loader refuses them.
 */
struct SandboxSpec;
struct SandboxSpec *test_spec_of(const char *lines);
/* The spec of a whole sandbox file's text (noop by default); a bad one fails, naming what. */
struct SandboxSpec *test_spec_load(const char *text, const char *what);
