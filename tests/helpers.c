/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "helpers.h"
#include "spec-yaml.h"
#include "util.h"

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

int test_deny_openat2(int errnum)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)errnum & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = ELEMENTSOF(filter), .filter = filter };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return -errno;
	return 0;
}

void test_notify_open(TestNotify *n, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	*n = (TestNotify){ .messages = strdup("") };
	n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	assert_true(n->fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(bind(n->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

void test_notify_close(TestNotify *n)
{
	if (n->fd >= 0)
		close(n->fd);
	free(n->messages);
	*n = (TestNotify){ .fd = -1 };
}

void test_notify_drain(TestNotify *n, int timeout_ms)
{
	struct pollfd p = { .fd = n->fd, .events = POLLIN };
	char buf[4096 + 1];
	ssize_t k;

	if (poll(&p, 1, timeout_ms) <= 0)
		return;
	while ((k = recv(n->fd, buf, sizeof(buf) - 1, 0)) > 0) {
		size_t l = strlen(n->messages);

		buf[k] = '\0';
		/* sd_notify's STATUS must fit a datagram, as UTF-8, under 4 KiB. */
		assert_true(k < 4096);
		if (utf8_first_invalid(buf, (size_t)k) != (size_t)k)
			fail_msg("a notify datagram that is not UTF-8: '%s'", buf);
		n->messages = realloc(n->messages, l + (size_t)k + 2);
		assert_non_null(n->messages);
		memcpy(n->messages + l, buf, (size_t)k);
		strcpy(n->messages + l + k, "\n");
	}
}

void test_notify_expect(TestNotify *n, const char *what, int wait_ms, const char *log_path)
{
	uint64_t end = now_usec(CLOCK_MONOTONIC) + (uint64_t)wait_ms * 1000;

	for (;;) {
		char *hit = strstr(n->messages + n->cursor, what);

		if (hit) {
			n->cursor = (size_t)(hit - n->messages) + strlen(what);
			return;
		}
		if (now_usec(CLOCK_MONOTONIC) > end) {
			_cleanup_free_ char *log = log_path ? test_read_file(log_path, NULL) : NULL;

			fail_msg("no '%s' from the daemon; it sent:\n%s%s%s", what, n->messages,
				 log ? "\nvmd said:\n" : "", log ?: "");
		}
		test_notify_drain(n, 50);
	}
}

SandboxSpec *test_spec_load(const char *text, const char *what)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	const SpecLoadOptions opts = { .default_backend = BACKEND_NOOP };
	SandboxSpec *s = NULL;

	if (spec_load_buffer("sb.yaml", text, strlen(text), &opts, &s, &diags) < 0)
		fail_msg("bad row spec: %s: %s", what, diags.n ? diags.items[0].message : "?");
	return s;
}

SandboxSpec *test_spec_of(const char *lines)
{
	_cleanup_free_ char *text = NULL;
	FILE *m;
	size_t len;

	m = open_memstream(&text, &len);
	fputs("apiVersion: vmd/v1\nkind: Sandbox\nspec:\n", m);
	for (const char *l = lines; *l;) {
		size_t n = strcspn(l, "\n");

		fprintf(m, "  %.*s\n", (int)n, l);
		l += n + (l[n] == '\n');
	}
	fclose(m);
	return test_spec_load(text, lines);
}

char *test_status_field(const char *status, const char *key)
{
	size_t n = strlen(key);

	for (const char *p = status; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, key, n) == 0 && p[n] == ':')
			return strndup(p + n + 2, strcspn(p + n + 2, "\n"));
	return NULL;
}

static void expect_field(const char *status, const char *key, const char *want)
{
	char *v = test_status_field(status, key);

	if (!v || strcmp(v, want) != 0)
		print_error("%s: '%s', not '%s'\n", key, v ? v : "(none)", want);
	assert_non_null(v);
	assert_string_equal(v, want);
	free(v);
}

void test_expect_unprivileged(pid_t pid, unsigned uid, unsigned gid)
{
	char path[64], ids[64], *status, *env, *groups;
	size_t len = 0;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	status = test_read_file(path, NULL);
	assert_non_null(status);
	snprintf(ids, sizeof(ids), "%u\t%u\t%u\t%u", uid, uid, uid, uid);
	expect_field(status, "Uid", ids);
	snprintf(ids, sizeof(ids), "%u\t%u\t%u\t%u", gid, gid, gid, gid);
	expect_field(status, "Gid", ids);
	groups = test_status_field(status, "Groups");
	assert_non_null(groups);
	assert_int_equal(strspn(groups, " "), strlen(groups)); /* none: the kernel says " " */
	free(groups);
	expect_field(status, "CapEff", "0000000000000000");
	expect_field(status, "CapPrm", "0000000000000000");
	expect_field(status, "NoNewPrivs", "1");
	free(status);
	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	env = test_read_file(path, &len);
	assert_non_null(env);
	for (size_t i = 0; i < len; i += strlen(env + i) + 1)
		if (strncmp(env + i, "PATH=", 5) != 0 && strncmp(env + i, "VMD_SIM_", 8) != 0) {
			print_error("the VMM's environment has '%s'\n", env + i);
			fail();
		}
	free(env);
}

int test_listen_loopback(uint16_t port, uint16_t *ret_port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 }, sizeof(int)), 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 64), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	if (ret_port)
		*ret_port = ntohs(a.sin_port);
	return fd;
}
