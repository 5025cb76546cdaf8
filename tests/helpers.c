/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "helpers.h"

static int write_string(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? write(fd, s, strlen(s)) : -1;

	if (fd >= 0)
		close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -1;
}

int test_user_ns_limit(const char *sysctl, const char *value)
{
	char uid_map[64], gid_map[64], path[128];

	/* Before: inside, until the maps are written, the ids are the overflow ones. */
	snprintf(uid_map, sizeof(uid_map), "0 %u 1", (unsigned)geteuid());
	snprintf(gid_map, sizeof(gid_map), "0 %u 1", (unsigned)getegid());
	snprintf(path, sizeof(path), "/proc/sys/user/%s", sysctl);
	if (unshare(CLONE_NEWUSER) < 0 || write_string("/proc/self/uid_map", uid_map) < 0 ||
	    write_string("/proc/self/setgroups", "deny") < 0 ||
	    write_string("/proc/self/gid_map", gid_map) < 0 || write_string(path, value) < 0)
		return -1;
	return 0;
}

const char *test_src(const char *rel)
{
	static char buf[4096];
	const char *top = getenv("VMD_SRCDIR");

	snprintf(buf, sizeof(buf), "%s/%s", top ? top : ".", rel);
	return buf;
}

const char *test_vmd(void)
{
	const char *bin = getenv("VMD_BIN");

	return bin ? bin : "build/san/vmd";
}

char *test_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *dir = NULL;

	assert_true(asprintf(&dir, "%s/vmd-test-XXXXXX", base ? base : "/tmp") > 0);
	assert_non_null(mkdtemp(dir));
	return dir;
}

static int remove_one(const char *path, const struct stat *st _unused_, int flag _unused_,
		      struct FTW *ftw _unused_)
{
	(void)remove(path);
	return 0;
}

void test_tmpdir_remove(char *dir)
{
	if (!dir)
		return;
	(void)nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
}

static void make_parents(char *path)
{
	for (char *p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
		*p = '\0';
		(void)mkdir(path, 0755);
		*p = '/';
	}
}

void test_write(const char *dir, const char *name, const char *data, size_t len)
{
	_cleanup_free_ char *path = NULL;
	FILE *f;

	assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
	make_parents(path);
	f = fopen(path, "we");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

void test_write_str(const char *dir, const char *name, const char *data)
{
	test_write(dir, name, data, strlen(data));
}

char *test_read_file(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0;

	if (!f)
		return NULL;
	FILE *m = open_memstream(&buf, &len);
	assert_non_null(m);
	for (int c; (c = fgetc(f)) != EOF;)
		fputc(c, m);
	fclose(f);
	fclose(m);
	if (ret_len)
		*ret_len = len;
	return buf;
}

/* Append what is readable on fd to *buf; false at end of file. */
static bool drain(int fd, char **buf, size_t *len)
{
	char chunk[4096];
	ssize_t n = read(fd, chunk, sizeof(chunk));

	if (n <= 0)
		return false;
	*buf = realloc(*buf, *len + (size_t)n + 1);
	assert_non_null(*buf);
	memcpy(*buf + *len, chunk, (size_t)n);
	*len += (size_t)n;
	(*buf)[*len] = '\0';
	return true;
}

void test_run(TestRun *ret, char *const argv[])
{
	int out[2], err[2], status;
	size_t out_len = 0, err_len = 0;
	pid_t pid;

	*ret = (TestRun){ .out = strdup(""), .err = strdup("") };
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	assert_int_equal(pipe2(err, O_CLOEXEC), 0);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(null, 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		execv(argv[0], argv);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);

	struct pollfd fds[2] = { { .fd = out[0], .events = POLLIN },
				 { .fd = err[0], .events = POLLIN } };
	while (fds[0].fd >= 0 || fds[1].fd >= 0) {
		assert_true(poll(fds, 2, -1) >= 0);
		if (fds[0].revents && !drain(out[0], &ret->out, &out_len))
			fds[0].fd = -1;
		if (fds[1].revents && !drain(err[0], &ret->err, &err_len))
			fds[1].fd = -1;
	}
	close(out[0]);
	close(err[0]);

	assert_int_equal(waitpid(pid, &status, 0), pid);
	ret->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void test_run_done(TestRun *r)
{
	free(r->out);
	free(r->err);
	*r = (TestRun){};
}

void test_kill_wait(pid_t *pid, int sig)
{
	if (*pid <= 0)
		return;
	(void)kill(*pid, sig);
	(void)waitpid(*pid, NULL, 0);
	*pid = 0;
}

void test_send_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t k = send(fd, s, n, MSG_NOSIGNAL);

		if (k <= 0)
			return;
		s += k;
		n -= (size_t)k;
	}
}
