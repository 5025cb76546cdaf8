/* SPDX-License-Identifier: MIT */
/* VMM process handling: spawn, identity, pidfd, reaping, stale sockets, binary lookup. */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "helpers.h"
#include "util.h"
#include "vmm.h"

static void wait_exit(int pidfd)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	assert_int_equal(poll(&p, 1, 10000), 1);
}

/* vmm_foreach_process(): 1 once *userdata's process is seen with the argv it was given. */
static int find_sleeper(pid_t pid, char **argv, void *userdata)
{
	return pid == *(pid_t *)userdata && argv[0] && streq(argv[0], "/bin/sleep") && argv[1] &&
	       streq(argv[1], "30") && !argv[2];
}

/* The fds of a live process, as "0,1,2,4" (links in /proc/PID/fd, in order). */
static void fds_of(pid_t pid, char *buf, size_t size)
{
	char dir[64];
	int seen[64] = {}, n = 0;
	struct dirent *e;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.') {
			assert_in_range(atoi(e->d_name), 0, 63);
			seen[atoi(e->d_name)] = 1;
		}
	closedir(d);
	buf[0] = '\0';
	for (int i = 0; i < 64; i++)
		if (seen[i])
			snprintf(buf + strlen(buf), size - strlen(buf), "%s%d", n++ ? "," : "", i);
}

static void test_spawn_and_reap(void **state _unused_)
{
	char *dir = test_tmpdir();
	char log[4096], fddir[64];
	char *const argv[] = { (char *)"/bin/sleep", (char *)"30", NULL };
	int leak = open("/dev/null", O_RDONLY); /* without CLOEXEC: must not reach the VMM */
	VmmIdentity id, again;
	pid_t pid;
	int pidfd, status = -1;

	snprintf(log, sizeof(log), "%s/vmm.log", dir);
	assert_true(leak > 2);
	assert_int_equal(vmm_spawn(argv, log, NULL, 0, &pid, &pidfd), 0);
	assert_int_equal(vmm_identity(pid, &id), 0);
	assert_string_equal(id.exe, "/usr/bin/sleep");
	/* Its start time: field 22 of /proc/PID/stat, as proc(5) numbers them. */
	{
		char path[64], *st, *f;
		unsigned long long start = 0;

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
		st = test_read_file(path, NULL);
		f = strrchr(st, ')') + 2; /* field 3 */
		for (int field = 3; field < 22; field++)
			f = strchr(f, ' ') + 1;
		start = strtoull(f, NULL, 10);
		free(st);
		assert_true(start > 0);
		assert_int_equal(id.start_time, start);
	}
	assert_true(vmm_identity_matches(&id));
	assert_false(vmm_has_exited(pidfd));
	assert_int_equal(vmm_reap(pidfd, &status), 0);
	/* Only stdin, stdout and stderr: every other fd was closed. */
	fds_of(pid, fddir, sizeof(fddir));
	assert_string_equal(fddir, "0,1,2");
	/* A pid whose start time differs is not the same process; 0 (old records) is no wildcard. */
	again = id;
	again.start_time++;
	assert_false(vmm_identity_matches(&again));
	again.start_time = 0;
	assert_false(vmm_identity_matches(&again));
	/* Every process is seen, with its argv. */
	assert_int_equal(vmm_foreach_process(find_sleeper, &pid), 1);

	assert_int_equal(vmm_kill(pidfd, SIGKILL), 0);
	wait_exit(pidfd);
	assert_int_equal(vmm_reap(pidfd, &status), 1);
	assert_int_equal(status, 128 + SIGKILL);
	assert_false(vmm_identity_matches(&id));
	assert_int_equal(vmm_identity(pid, &again), -ESRCH);
	close(pidfd);
	close(leak);
	test_tmpdir_remove(dir);
}

/* The fds handed over (the serial console's socket, taps), as VMM_FD_FIRST..., and no other. */
static void test_spawn_passes_fd(void **state _unused_)
{
	char *dir = test_tmpdir();
	char log[4096], fds[64];
	char *const argv[] = { (char *)"/bin/sleep", (char *)"30", NULL };
	int leak = open("/dev/null", O_RDONLY), pass[2] = { open("/dev/null", O_RDONLY | O_CLOEXEC),
							    open("/dev/zero", O_RDONLY | O_CLOEXEC) };
	pid_t pid;
	int pidfd, status;

	snprintf(log, sizeof(log), "%s/vmm.log", dir);
	assert_true(leak > 2 && pass[0] > 2 && pass[1] > 2);
	assert_int_equal(vmm_spawn(argv, log, pass, 2, &pid, &pidfd), 0);
	fds_of(pid, fds, sizeof(fds));
	assert_string_equal(fds, "0,1,2,4,5");
	assert_int_equal(vmm_kill(pidfd, SIGKILL), 0);
	wait_exit(pidfd);
	assert_int_equal(vmm_reap(pidfd, &status), 1);
	close(pidfd);
	close(pass[0]);
	close(pass[1]);
	close(leak);
	test_tmpdir_remove(dir);
}

static void test_exit_status_and_exec_error(void **state _unused_)
{
	char *dir = test_tmpdir();
	char log[4096];
	char *const fail[] = { (char *)"/bin/false", NULL };
	char *const missing[] = { (char *)"/nonexistent/qemu", NULL };
	pid_t pid;
	int pidfd, status = -1;

	snprintf(log, sizeof(log), "%s/vmm.log", dir);
	assert_int_equal(vmm_spawn(fail, log, NULL, 0, &pid, &pidfd), 0);
	wait_exit(pidfd);
	assert_int_equal(vmm_reap(pidfd, &status), 1);
	assert_int_equal(status, 1);
	close(pidfd);
	/* The exec's own error, not a child that exits 127. */
	assert_int_equal(vmm_spawn(missing, log, NULL, 0, &pid, &pidfd), -ENOENT);
	test_tmpdir_remove(dir);
}

/* A line of /proc/PID/status as the child printed it, or NULL. */
static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
			return true;
	return false;
}

/*
 * As the VMM user: nobody's uid and gid, no supplementary groups, no capabilities,
 * no_new_privs, and an environment with none of vmd's but PATH and VMD_SIM_*.
 */
static void test_spawn_as_user(void **state _unused_)
{
	char *dir = test_tmpdir(), *text;
	char log[4096], out[4096];
	char *const argv[] = { (char *)"/bin/sh", (char *)"-c",
			       (char *)"cat /proc/self/status; /usr/bin/env", NULL };
	VmmUser nobody = { .uid = 65534, .gid = 65534 };
	pid_t pid;
	int pidfd, status = -1;

	snprintf(log, sizeof(log), "%s/vmm.log", dir);
	snprintf(out, sizeof(out), "%s/vmm.out", dir);
	assert_int_equal(setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1), 0);
	assert_int_equal(setenv("WATCHDOG_USEC", "1000000", 1), 0);
	assert_int_equal(setenv("VMD_SIM_TEST", "kept", 1), 0);
	assert_int_equal(vmm_spawn_logging(argv, log, out, &nobody, NULL, 0, &pid, &pidfd), 0);
	wait_exit(pidfd);
	assert_int_equal(vmm_reap(pidfd, &status), 1);
	assert_int_equal(status, 0);
	close(pidfd);
	text = test_read_file(out, NULL);
	assert_true(has_line(text, "Uid:\t65534\t65534\t65534\t65534"));
	assert_true(has_line(text, "Gid:\t65534\t65534\t65534\t65534"));
	/* none: the kernel prints the tab and a space, or the tab alone */
	assert_true(has_line(text, "Groups:\t ") || has_line(text, "Groups:\t"));
	assert_true(has_line(text, "CapEff:\t0000000000000000"));
	assert_true(has_line(text, "CapPrm:\t0000000000000000"));
	assert_true(has_line(text, "NoNewPrivs:\t1"));
	assert_null(strstr(text, "\nLANG="));
	assert_true(has_line(text, "VMD_SIM_TEST=kept"));
	assert_null(strstr(text, "NOTIFY_SOCKET"));
	assert_null(strstr(text, "WATCHDOG_USEC"));
	assert_non_null(strstr(text, "\nPATH="));
	free(text);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("VMD_SIM_TEST");
	test_tmpdir_remove(dir);
}

static void test_user_parse(void **state _unused_)
{
	VmmUser u;

	assert_int_equal(vmm_user_parse("nobody", &u), 0);
	assert_int_equal(u.uid, 65534);
	assert_int_equal(vmm_user_parse("root", &u), 0);
	assert_int_equal(u.uid, 0);
	assert_int_equal(u.gid, 0);
	assert_int_equal(vmm_user_parse("4242:4343", &u), 0);
	assert_int_equal(u.uid, 4242);
	assert_int_equal(u.gid, 4343);
	assert_int_equal(vmm_user_parse("vmd-no-such-user", &u), -ENOENT);
	assert_int_equal(vmm_user_parse("4242", &u), -EINVAL);
	assert_int_equal(vmm_user_parse("4242:", &u), -EINVAL);
	assert_int_equal(vmm_user_parse("4242:x", &u), -EINVAL);
	assert_int_equal(vmm_user_parse("", &u), -EINVAL);
}

static void test_stale_socket(void **state _unused_)
{
	char *dir = test_tmpdir();
	char path[4096], outside[4096];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, live;

	snprintf(path, sizeof(path), "%s/vm/qmp.sock", dir);
	test_write_str(dir, "vm/placeholder", "");
	assert_int_equal(vmm_remove_stale_socket(dir, path), 0); /* nothing there */

	strcpy(sa.sun_path, path);
	live = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(live, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(live, 1), 0);
	/* Someone listens: never removed. */
	assert_int_equal(vmm_remove_stale_socket(dir, path), -EADDRINUSE);
	assert_true(vmm_socket_is_listening(path));
	close(live);
	assert_false(vmm_socket_is_listening(path));
	/* Nobody listens any more: removed. */
	assert_int_equal(vmm_remove_stale_socket(dir, path), 1);
	assert_int_equal(access(path, F_OK), -1);

	/* Outside the run dir, or reaching out of it: never touched. */
	snprintf(outside, sizeof(outside), "%s/../elsewhere.sock", dir);
	assert_int_equal(vmm_remove_stale_socket(dir, outside), -EPERM);
	assert_int_equal(vmm_remove_stale_socket(dir, "/tmp/x.sock"), -EPERM);
	/* Not a socket: left alone. */
	snprintf(path, sizeof(path), "%s/vm/placeholder", dir);
	assert_int_equal(vmm_remove_stale_socket(dir, path), -ENOTSOCK);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	close(fd);
	test_tmpdir_remove(dir);
}

static void test_find_binary(void **state _unused_)
{
	char *p = NULL;

	assert_int_equal(vmm_find_binary("sleep", &p), 0);
	assert_true(p[0] == '/');
	assert_int_equal(access(p, X_OK), 0);
	free(p);
	assert_int_equal(vmm_find_binary("/bin/../bin/sleep", &p), 0);
	assert_null(strstr(p, ".."));
	free(p);
	assert_int_equal(vmm_find_binary("no-such-vmm-binary", &p), -ENOENT);
	assert_int_equal(vmm_find_binary("/nonexistent/qemu", &p), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spawn_and_reap),
		cmocka_unit_test(test_spawn_passes_fd),
		cmocka_unit_test(test_exit_status_and_exec_error),
		cmocka_unit_test(test_spawn_as_user),
		cmocka_unit_test(test_user_parse),
		cmocka_unit_test(test_stale_socket),
		cmocka_unit_test(test_find_binary),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
