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

/*
 * Enter a new user namespace as its root (the same ids outside) and set its
 * /proc/sys/user/<sysctl> to value: the inotify limits are counted per user namespace, so
 * a test can run short of inotify without touching the host's. 0, or -1 (no cmocka: this
 * runs in children).
 */
int test_user_ns_limit(const char *sysctl, const char *value);

/* Read a whole file into a NUL-terminated buffer; *ret_len may be NULL. */
char *test_read_file(const char *path, size_t *ret_len);
