/* SPDX-License-Identifier: MIT */
/*
 * The daemon's end of a serial console (backends/console.c): the capped, rotated log, and
 * the multiplexer between a VMM's serial socket (a fake VMM here: the listening socket
 * QEMU would get, accepted by the test) and the one client of console.sock.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "console.h"
#include "helpers.h"
#include "util.h"

static off_t size_of(const char *dir, const char *file)
{
	char p[4096];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, file);
	return stat(p, &st) < 0 ? -1 : st.st_size;
}

/* console.log.1 then console.log, as vmd console --log prints them. */
static char *both(const char *dir, size_t *ret_len)
{
	char p[4096];
	char *old, *now, *all;
	size_t n_old = 0, n_now = 0;

	snprintf(p, sizeof(p), "%s/" CONSOLE_LOG_OLD, dir);
	old = test_read_file(p, &n_old);
	snprintf(p, sizeof(p), "%s/" CONSOLE_LOG, dir);
	now = test_read_file(p, &n_now);
	all = malloc(n_old + n_now + 1);
	assert_non_null(all);
	if (old)
		memcpy(all, old, n_old);
	if (now)
		memcpy(all + n_old, now, n_now);
	all[n_old + n_now] = '\0';
	free(old);
	free(now);
	*ret_len = n_old + n_now;
	return all;
}

/* Written in chunks: never more than the cap on disk, and what is kept is the latest. */
static void test_log_cap(void **state _unused_)
{
	char *dir = test_tmpdir(), *stream = malloc(100 * 1000), *kept;
	ConsoleLog l;
	size_t n;

	assert_non_null(stream);
	for (size_t i = 0; i < 100 * 1000; i++)
		stream[i] = (char)('a' + (i * 7 + i / 1000) % 26);
	assert_int_equal(console_log_open(dir, 16 * 1024, &l), 0);
	for (size_t i = 0; i < 100; i++) {
		assert_int_equal(console_log_write(&l, stream + i * 1000, 1000), 0);
		assert_true(size_of(dir, CONSOLE_LOG) <= 8 * 1024);
		assert_true(size_of(dir, CONSOLE_LOG_OLD) <= 8 * 1024);
	}
	assert_true(size_of(dir, CONSOLE_LOG_OLD) > 0);
	kept = both(dir, &n);
	assert_true(n <= 16 * 1024);
	assert_true(n >= 8 * 1024); /* the old half is full, or nearly */
	assert_memory_equal(kept, stream + 100 * 1000 - n, n);
	free(kept);

	/* More than a file takes at once: its end only. */
	assert_int_equal(console_log_write(&l, stream, 20000), 0);
	assert_int_equal(size_of(dir, CONSOLE_LOG), 8 * 1024);
	kept = both(dir, &n);
	assert_memory_equal(kept + n - 8 * 1024, stream + 20000 - 8 * 1024, 8 * 1024);
	free(kept);
	console_log_close(&l);

	/* Opened again (a restarted vmd): it appends, and rotates at the same size. */
	assert_int_equal(console_log_open(dir, 16 * 1024, &l), 0);
	assert_int_equal(l.size, 8 * 1024);
	assert_int_equal(console_log_write(&l, "x", 1), 0);
	assert_int_equal(size_of(dir, CONSOLE_LOG), 1);
	assert_int_equal(size_of(dir, CONSOLE_LOG_OLD), 8 * 1024);
	console_log_close(&l);
	console_log_close(&l); /* twice: harmless */

	/* The default size, and a size below the minimum taken as the minimum. */
	assert_int_equal(console_log_open(dir, 0, &l), 0);
	assert_int_equal(l.cap_each, CONSOLE_LOG_SIZE_DEFAULT / 2);
	console_log_close(&l);
	assert_int_equal(console_log_open(dir, 1, &l), 0);
	assert_int_equal(l.cap_each, CONSOLE_LOG_SIZE_MIN / 2);
	console_log_close(&l);
	free(stream);
	test_tmpdir_remove(dir);
}

/* Run the loop until fd has something to read (or ends): false if nothing in 10 s. */
static bool pump_until_readable(sd_event *e, int fd)
{
	for (int i = 0; i < 1000; i++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		(void)sd_event_run(e, 10000);
		if (poll(&p, 1, 0) > 0)
			return true;
	}
	return false;
}

/* What fd has now, after running the loop until it has something: a string. */
static void expect_read(sd_event *e, int fd, const char *want)
{
	char buf[256] = {};
	size_t n = 0;

	while (n < strlen(want)) {
		ssize_t k;

		assert_true(pump_until_readable(e, fd));
		k = read(fd, buf + n, sizeof(buf) - 1 - n);
		assert_true(k > 0);
		n += (size_t)k;
	}
	assert_string_equal(buf, want);
}

static void expect_eof(sd_event *e, int fd)
{
	char c;

	assert_true(pump_until_readable(e, fd));
	assert_int_equal(read(fd, &c, 1), 0);
}

static int client(const char *dir)
{
	char p[4096];
	int fd;

	snprintf(p, sizeof(p), "%s/" CONSOLE_SOCKET, dir);
	fd = unix_connect(p);
	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_SETFL, 0), 0); /* blocking, as vmd console reads it */
	return fd;
}

static void test_multiplex(void **state _unused_)
{
	char *dir = test_tmpdir(), serial[4096], busy[64];
	sd_event *e = NULL;
	Console *c = NULL;
	int vmm_listen, vmm, a, b;
	struct stat st;
	char *log;

	assert_int_equal(sd_event_new(&e), 0);
	snprintf(serial, sizeof(serial), "%s/" CONSOLE_SERIAL, dir);
	vmm_listen = unix_listen(serial, 0600);
	assert_true(vmm_listen >= 0);
	assert_int_equal(stat(serial, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(fcntl(vmm_listen, F_SETFL, 0), 0);

	assert_int_equal(console_new(e, "vm-1", dir, 16 * 1024, &c), 0);
	vmm = accept4(vmm_listen, NULL, NULL, SOCK_CLOEXEC); /* vmd connected at once */
	assert_true(vmm >= 0);
	assert_int_equal(size_of(dir, CONSOLE_SOCKET), 0);

	/* The first client is attached: it sees the guest, and types to it. */
	a = client(dir);
	expect_read(e, a, CONSOLE_HELLO_OK);
	assert_int_equal(console_client(c), getpid());
	test_send_all(vmm, "login: ", 7);
	expect_read(e, a, "login: ");
	test_send_all(a, "root\r", 5);
	expect_read(e, vmm, "root\r");
	/* Both ways counted (suspendAfterIdle's activity), the handshake not. */
	assert_int_equal(console_bytes(c), 12);

	/* A second is told who holds it, and closed. */
	b = client(dir);
	snprintf(busy, sizeof(busy), CONSOLE_HELLO_BUSY "%d\n", (int)getpid());
	expect_read(e, b, busy);
	expect_eof(e, b);
	close(b);
	/* The first is still attached. */
	test_send_all(vmm, "# ", 2);
	expect_read(e, a, "# ");

	/* The first leaves: the next one gets it. */
	close(a);
	for (int i = 0; i < 100 && console_client(c); i++)
		(void)sd_event_run(e, 10000);
	assert_int_equal(console_client(c), 0);
	b = client(dir);
	expect_read(e, b, CONSOLE_HELLO_OK);

	/* The VMM's end breaks (QEMU takes the next client then): vmd connects again. */
	close(vmm);
	assert_true(pump_until_readable(e, vmm_listen));
	vmm = accept4(vmm_listen, NULL, NULL, SOCK_CLOEXEC);
	assert_true(vmm >= 0);
	test_send_all(vmm, "again\n", 6);
	expect_read(e, b, "again\n");
	assert_int_equal(console_bytes(c), 20);

	/* All of it in the log, typing not. */
	log = both(dir, &(size_t){ 0 });
	assert_string_equal(log, "login: # again\n");
	free(log);

	/* Freed: the client is let go, console.sock removed; the log stays. */
	c = console_free(c);
	expect_eof(e, b);
	assert_int_equal(size_of(dir, CONSOLE_SOCKET), -1);
	assert_int_equal(size_of(dir, CONSOLE_LOG), 15);
	close(b);
	close(vmm);
	close(vmm_listen);
	sd_event_unref(e);
	test_tmpdir_remove(dir);
}

static void run_console(TestRun *r, const char *dir, bool log, const char *name)
{
	char *argv[8] = { (char *)test_vmd(), (char *)"console", (char *)"--run-dir", (char *)dir };
	size_t n = 4;

	if (log)
		argv[n++] = (char *)"--log";
	argv[n] = (char *)name;
	test_run(r, argv);
}

/* vmd console's own errors, and --log: the old file first. */
static void test_cli(void **state _unused_)
{
	char *dir = test_tmpdir(), sub[4096];
	TestRun r;

	run_console(&r, dir, false, "web-1");
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "cannot reach the console of 'web-1'"));
	assert_non_null(strstr(r.err, "No such file or directory"));
	test_run_done(&r);
	run_console(&r, dir, false, "../etc");
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "'../etc' is no sandbox name"));
	test_run_done(&r);
	run_console(&r, dir, true, "web-1");
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "no console log of 'web-1'"));
	test_run_done(&r);

	snprintf(sub, sizeof(sub), "%s/web-1", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	test_write_str(sub, CONSOLE_LOG, "new\n");
	run_console(&r, dir, true, "web-1");
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "new\n");
	test_run_done(&r);
	test_write_str(sub, CONSOLE_LOG_OLD, "old\n");
	run_console(&r, dir, true, "web-1");
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "old\nnew\n");
	test_run_done(&r);
	test_tmpdir_remove(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_log_cap),
		cmocka_unit_test(test_multiplex),
		cmocka_unit_test(test_cli),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
