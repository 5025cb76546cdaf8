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

/* Read a whole file into a NUL-terminated buffer; *ret_len may be NULL. */
char *test_read_file(const char *path, size_t *ret_len);

/*
 * A NOTIFY_SOCKET the test binds, and what the daemons it starts tell "systemd" on it:
 * every message, one per line (sd_notify's datagrams are checked: UTF-8, under 4 KiB).
 */
typedef struct TestNotify {
	int fd;
	char *path;
	char *log;
	size_t cursor; /* test_notify_expect() looks from here on */
} TestNotify;

void test_notify_listen(TestNotify *n, const char *path);
void test_notify_done(TestNotify *n);
/* Add what came to the log, waiting up to timeout_ms for something to come. */
void test_notify_read(TestNotify *n, int timeout_ms);
/* Wait up to timeout_ms for a message with what, after the last one expected; false if none. */
bool test_notify_expect(TestNotify *n, const char *what, uint64_t timeout_ms);
