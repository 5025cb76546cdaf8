/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "console.h"
#include "daemon-fixture.h"
#include "helpers.h"
#include "spec-yaml.h"
#include "status.h"
#include "util.h"
#include "vmm.h"

char *path_in(const char *dir, const char *fmt, ...)
{
	char *name = NULL, *p = NULL;
	va_list ap;

	va_start(ap, fmt);
	assert_true(vasprintf(&name, fmt, ap) > 0);
	va_end(ap);
	assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
	free(name);
	return p;
}

uint64_t ms_now(void)
{
	return now_usec(CLOCK_MONOTONIC) / 1000;
}

/*
 * Whether pid's command line names run dir, or it works beneath the test's directory (a
 * jailed Firecracker names only its jail, which is there): a VMM of this test, not a
 * reused pid.
 */
static bool runs_in(pid_t pid, const char *run)
{
	_cleanup_free_ char *cmdline = NULL, *top = strdup(run);
	char path[64], needle[4200], cwd[4200];
	size_t len = 0;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/cwd", (int)pid);
	n = readlink(path, cwd, sizeof(cwd) - 1);
	if (top && strrchr(top, '/') && n > 0) {
		*strrchr(top, '/') = 0;
		cwd[n] = 0;
		snprintf(needle, sizeof(needle), "%s/", top);
		if (strncmp(cwd, needle, strlen(needle)) == 0)
			return true;
	}
	/* A QEMU of vmd's names no path of the run dir (its sockets are fds): its stderr does. */
	snprintf(path, sizeof(path), "/proc/%d/fd/2", (int)pid);
	snprintf(needle, sizeof(needle), "%s/", run);
	n = readlink(path, cwd, sizeof(cwd) - 1);
	if (n > 0) {
		cwd[n] = 0;
		if (strncmp(cwd, needle, strlen(needle)) == 0)
			return true;
	}
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if (read_file(path, 1 << 20, &cmdline, &len) < 0)
		return false;
	for (size_t i = 0; i + 1 < len; i++)
		if (cmdline[i] == '\0')
			cmdline[i] = ' ';
	return strstr(cmdline, needle) != NULL;
}

/* Kill every VMM of this run dir, by the pid vmd recorded, if it is still that VMM. */
void fixture_kill_vmms(const char *run)
{
	DIR *d = opendir(run);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char rec[4400];
		json_t *j;
		pid_t pid;
		int pidfd;

		if (e->d_name[0] == '.')
			continue;
		snprintf(rec, sizeof(rec), "%s/%s/vm.json", run, e->d_name);
		j = json_load_file(rec, 0, NULL);
		pid = (pid_t)json_integer_value(json_object_get(j, "pid"));
		json_decref(j);
		if (pid <= 0 || (pidfd = vmm_pidfd_open(pid)) < 0)
			continue;
		if (runs_in(pid, run) && vmm_kill(pidfd, SIGKILL) == 0) {
			struct pollfd p = { .fd = pidfd, .events = POLLIN };
			int status;

			/* Gone, and reaped here if this binary is their subreaper. */
			(void)poll(&p, 1, 10000);
			(void)vmm_reap(pidfd, &status);
		}
		close(pidfd);
	}
	closedir(d);
}

int fixture_setup(void **state)
{
	Fixture *f = calloc(1, sizeof(*f));
	int p[2];

	f->dir = test_tmpdir();
	f->sb = path_in(f->dir, "sandboxes");
	f->run = path_in(f->dir, "run");
	f->state = path_in(f->dir, "state");
	f->log = path_in(f->dir, "vmd.log");
	assert_int_equal(mkdir(f->sb, 0755), 0);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	f->guard = fork();
	assert_true(f->guard >= 0);
	if (f->guard == 0) {
		char c;

		close(p[1]);
		/* EOF: the test binary is done with this run dir, or dead. */
		while (read(p[0], &c, 1) > 0)
			;
		fixture_kill_vmms(f->run);
		_exit(0);
	}
	close(p[0]);
	f->guard_fd = p[1];
	f->violations = path_in(f->dir, "violations");
	setenv("VMD_SIM_VIOLATIONS", f->violations, 1);
	f->requests = path_in(f->dir, "requests");
	setenv("VMD_SIM_REQUESTS", f->requests, 1);
	*state = f;
	return 0;
}

int fixture_setup_notify(void **state)
{
	fixture_setup(state);
	fixture_listen_notify(*state);
	return 0;
}

void fixture_stop_daemon(Fixture *f, int sig)
{
	test_kill_wait(&f->pid, sig);
}

int fixture_teardown(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *log = test_read_file(f->log, NULL),
			    *violations = test_read_file(f->violations, NULL);

	fixture_stop_daemon(f, SIGKILL);
	fixture_kill_vmms(f->run);
	close(f->guard_fd);
	(void)waitpid(f->guard, NULL, 0);
	/*
	 * VMMs that came to this binary (their vmd killed with -9) and were then stopped by
	 * the next vmd, which cannot reap what is not its child: reap them here.
	 */
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	if (getenv("VMD_TEST_VERBOSE") && log)
		fprintf(stderr, "--- vmd log\n%s---\n", log);
	if (f->notify_path)
		test_notify_close(&f->notify);
	free(f->notify_path);
	(void)umount2(f->state, MNT_DETACH); /* a test's small state dir, if it made one */
	test_tmpdir_remove(f->dir);
	free(f->sb);
	free(f->run);
	free(f->state);
	free(f->log);
	free(f->violations);
	free(f->requests);
	free(f);
	if (violations && *violations)
		fail_msg("vmd sent requests the real VMM would refuse:\n%s", violations);
	return 0;
}

void fixture_start_daemon(Fixture *f)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		const char *argv[64] = { test_vmd(),	 "daemon",  "--sandboxes", f->sb,
					 "--run-dir",	 f->run,    "--state-dir", f->state,
					 "--log-target", "console", "--grace",	   "0.3",
					 "--resync",	 "3600",    "--vmm-user",  "root" };
		size_t n = 0;
		int log = open(f->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);

		while (argv[n])
			n++;
		for (size_t i = 0; f->daemon_args && f->daemon_args[i] && n < 63; i++)
			argv[n++] = f->daemon_args[i];
		argv[n] = NULL;
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(null, 0);
		dup2(null, 1);
		dup2(log, 2);
		unsetenv("NOTIFY_SOCKET");
		if (f->notify_socket) {
			char v[32];

			setenv("NOTIFY_SOCKET", f->notify_socket, 1);
			if (f->watchdog_usec) {
				snprintf(v, sizeof(v), "%llu", (unsigned long long)f->watchdog_usec);
				setenv("WATCHDOG_USEC", v, 1);
				snprintf(v, sizeof(v), "%d",
					 (int)getpid()); /* the daemon's, after exec */
				setenv("WATCHDOG_PID", v, 1);
			}
		}
		if (f->before_exec)
			f->before_exec();
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	f->pid = pid;
}

void fixture_listen_notify(Fixture *f)
{
	f->notify_path = path_in(f->dir, "notify");
	test_notify_open(&f->notify, f->notify_path);
	f->notify_socket = f->notify_path;
}

void fixture_expect_notify(Fixture *f, const char *what)
{
	test_notify_expect(&f->notify, what, FIXTURE_WAIT_MS, f->log);
}

void fixture_pass_time(Fixture *f, unsigned ms)
{
	uint64_t end = ms_now() + ms;

	while (ms_now() < end) {
		if (f->notify_path)
			test_notify_drain(&f->notify, 50);
		else
			usleep(50000);
	}
}

void fixture_put(Fixture *f, const char *name, const char *text)
{
	_cleanup_free_ char *tmp = path_in(f->sb, ".%s.tmp", name),
			    *dst = path_in(f->sb, "%s.yaml", name),
			    *src = path_in(f->dir, "tmp.yaml");

	test_write_str(f->dir, "tmp.yaml", text);
	assert_int_equal(rename(src, tmp), 0);
	assert_int_equal(rename(tmp, dst), 0);
}

void fixture_put_sim(Fixture *f, const char *name, const char *backend, const char *extra)
{
	_cleanup_free_ char *text = NULL, *kernel = path_in(f->dir, "vmlinux");

	if (access(kernel, F_OK) < 0)
		test_write_str(f->dir, "vmlinux", "not really a kernel\n");
	assert_true(asprintf(&text,
			     "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n"
			     "  backend: %s\n  kernel: %s\n%s",
			     backend, kernel, extra) > 0);
	fixture_put(f, name, text);
}

void fixture_jailed(Fixture *f, const char *firecracker, const char *jailer, const char *base)
{
	static char fc[4096], jail[4096], at[4096];
	static const char *args[] = { "--firecracker-binary",
				      fc,
				      "--jailer",
				      jail,
				      "--jailer-uid",
				      FIXTURE_JAIL_UID,
				      "--jailer-gid",
				      FIXTURE_JAIL_UID,
				      "--jailer-chroot-base",
				      at,
				      NULL };

	snprintf(fc, sizeof(fc), "%s", firecracker);
	snprintf(jail, sizeof(jail), "%s", jailer);
	snprintf(at, sizeof(at), "%s", base);
	f->daemon_args = args;
}

/* An empty file path, uid's, mode 0600. */
static void make_for(const char *path, unsigned uid)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(fchown(fd, uid, uid), 0);
	close(fd);
}

void fixture_vmm_user(Fixture *f, unsigned uid)
{
	assert_int_equal(chmod(f->dir, 0711), 0);
	make_for(f->violations, uid);
	make_for(f->requests, uid);
}

void fixture_forced_stop(Fixture *f, const char *backend, const char *marker)
{
	_cleanup_free_ char *file = path_in(f->sb, "deaf.yaml"), *log = NULL;

	fixture_put_sim(f, "deaf", backend,
			"  memory: 64Mi\n  stopTimeout: 1s\n  cmdline: sim.deaf=1\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "deaf", ready, "Running"));
	assert_int_equal(unlink(file), 0);
	fixture_wait_console(f, "deaf", marker, 0);
	json_decref(fixture_wait_status(f, "deaf", absent, NULL));
	log = test_read_file(f->log, NULL);
	assert_non_null(strstr(log, "deaf: did not stop within its stopTimeout; forcing it off"));
}

void fixture_console_type(Fixture *f, const char *name, const char *text)
{
	_cleanup_free_ char *sock = path_in(f->run, "%s/" CONSOLE_SOCKET, name);
	_cleanup_close_ int fd = -EBADF;
	char hello[sizeof(CONSOLE_HELLO_OK)] = "";
	struct pollfd p;

	/* The daemon serves it once it adopted or started the VM. */
	for (uint64_t end = ms_now() + FIXTURE_WAIT_MS; fd < 0 && ms_now() < end;) {
		fd = unix_connect(sock);
		if (fd < 0)
			usleep(100 * 1000);
	}
	assert_true(fd >= 0);
	p = (struct pollfd){ .fd = fd, .events = POLLIN };
	assert_int_equal(poll(&p, 1, FIXTURE_WAIT_MS), 1);
	assert_int_equal(read(fd, hello, strlen(CONSOLE_HELLO_OK)), strlen(CONSOLE_HELLO_OK));
	assert_string_equal(hello, CONSOLE_HELLO_OK);
	test_send_all(fd, text, strlen(text));
}

char *fixture_console(Fixture *f, const char *name)
{
	_cleanup_free_ char *p = path_in(f->run, "%s/console.log", name);
	char *c = test_read_file(p, NULL);

	return c ?: strdup("");
}

size_t fixture_wait_console(Fixture *f, const char *name, const char *needle, size_t offset)
{
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	for (;;) {
		_cleanup_free_ char *c = fixture_console(f, name);
		char *hit = strlen(c) > offset ? strstr(c + offset, needle) : NULL;

		if (hit)
			return (size_t)(hit - c) + strlen(needle);
		if (ms_now() > end || strstr(c, "Kernel panic")) {
			_cleanup_free_ char *log = test_read_file(f->log, NULL);

			fail_msg("%s: no '%s' on the console; it says:\n%s\nvmd said:\n%s", name,
				 needle, c + (offset < strlen(c) ? offset : strlen(c)), log ?: "");
		}
		usleep(50000);
	}
}

unsigned fixture_count_requests(Fixture *f, const char *prefix)
{
	_cleanup_free_ char *all = test_read_file(f->requests, NULL);
	unsigned n = 0;

	for (char *line = all; line && *line;) {
		char *nl = strchr(line, '\n');

		n += strncmp(line, prefix, strlen(prefix)) == 0;
		line = nl ? nl + 1 : line + strlen(line);
	}
	return n;
}

char *fixture_last_line(Fixture *f, const char *name, const char *prefix)
{
	_cleanup_free_ char *c = fixture_console(f, name);
	char *last = NULL, *p = c, *nl;

	while ((p = strstr(p, prefix)))
		last = p += strlen(prefix);
	if (!last)
		return strdup("");
	nl = strpbrk(last, "\r\n");
	return strndup(last, nl ? (size_t)(nl - last) : strlen(last));
}

void fixture_wait_line(Fixture *f, const char *name, const char *prefix, const char *want)
{
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	for (;;) {
		_cleanup_free_ char *d = fixture_last_line(f, name, prefix);

		if (streq(d, want))
			return;
		if (ms_now() > end) {
			_cleanup_free_ char *log = test_read_file(f->log, NULL);

			fail_msg("%s: the guest says '%s%s', not '%s%s'\nvmd said:\n%s", name,
				 prefix, d, prefix, want, log ?: "");
		}
		usleep(20000);
	}
}

json_t *fixture_status(Fixture *f, const char *name)
{
	_cleanup_free_ char *p = path_in(f->run, "%s/status.json", name);

	return json_load_file(p, 0, NULL);
}

void fixture_wait_log(Fixture *f, const char *needle)
{
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	for (;;) {
		_cleanup_free_ char *log = test_read_file(f->log, NULL);

		if (log && strstr(log, needle))
			return;
		if (ms_now() > end)
			fail_msg("no '%s' in vmd's log:\n%s", needle, log ?: "");
		usleep(50000);
	}
}

json_t *fixture_wait_status(Fixture *f, const char *name, StatusPred pred, const void *arg)
{
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	for (;;) {
		json_t *s = fixture_status(f, name);

		if (pred(s, arg))
			return s;
		if (ms_now() > end) {
			_cleanup_free_ char *text = s ? json_dumps(s, JSON_INDENT(1)) : NULL;
			_cleanup_free_ char *log = test_read_file(f->log, NULL);

			fail_msg("status of %s never got there; it is:\n%s\nvmd said:\n%s", name,
				 text ?: "(none)", log ?: "");
		}
		json_decref(s);
		fixture_pass_time(f, 50);
	}
}

bool phase_is(json_t *s, const void *arg)
{
	return s && streq_ptr(json_string_value(json_object_get(s, "phase")), arg);
}

bool ready(json_t *s, const void *arg)
{
	return phase_is(s, arg) && streq(status_condition(s, "Ready", "status"), "True");
}

bool absent(json_t *s, const void *arg _unused_)
{
	return s == NULL;
}

bool gone_with(json_t *s, const void *path)
{
	return s == NULL && access(path, F_OK) < 0;
}

bool restarted(json_t *s, const void *arg)
{
	return phase_is(s, "Running") &&
	       json_integer_value(json_object_get(s, "restarts")) >= (json_int_t)(uintptr_t)arg;
}

bool failing(json_t *s, const void *arg)
{
	const char *e = json_string_value(json_object_get(s, "lastError"));

	return phase_is(s, "Failed") && e && strstr(e, arg) &&
	       !json_is_null(json_object_get(s, "nextRetryAt"));
}

pid_t pid_of(json_t *s)
{
	return (pid_t)json_integer_value(json_object_get(s, "pid"));
}

static char stalled_bin[4096];

static void stalled_path(void)
{
	_cleanup_free_ char *p = NULL;

	assert_true(asprintf(&p, "%s:%s", stalled_bin, getenv("PATH") ?: "/usr/bin:/bin") > 0);
	setenv("PATH", p, 1);
}

void fixture_stall_qemu_img(Fixture *f)
{
	_cleanup_free_ char *bin = path_in(f->dir, "bin"),
			    *pidfile = path_in(f->dir, "qemu-img.pid"),
			    *wrapper = path_in(f->dir, "bin/qemu-img"), *text = NULL;

	assert_int_equal(mkdir(bin, 0700), 0);
	assert_true(asprintf(&text,
			     "#!/bin/sh\n"
			     "for a; do last=$a; done\n"
			     "echo torn > \"$last\"\n"
			     "echo $$ > %s.tmp && mv %s.tmp %s\n"
			     "kill -STOP $$\n"
			     "exec /usr/bin/qemu-img \"$@\"\n",
			     pidfile, pidfile, pidfile) > 0);
	test_write_str(bin, "qemu-img", text);
	assert_int_equal(chmod(wrapper, 0700), 0);
	snprintf(stalled_bin, sizeof(stalled_bin), "%s", bin);
	f->before_exec = stalled_path;
}

pid_t fixture_wait_stalled(Fixture *f)
{
	_cleanup_free_ char *pidfile = path_in(f->dir, "qemu-img.pid"), *text = NULL;
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	while (!(text = test_read_file(pidfile, NULL))) {
		assert_true(ms_now() < end);
		usleep(20000);
	}
	assert_int_equal(unlink(pidfile), 0);
	assert_true(atoi(text) > 0);
	return (pid_t)atoi(text);
}

void fixture_wait_gone(pid_t pid)
{
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	while (kill(pid, 0) == 0 && ms_now() < end) {
		(void)waitpid(-1, NULL, WNOHANG); /* it may have come to this binary */
		usleep(20000);
	}
	if (kill(pid, 0) == 0) {
		(void)kill(pid, SIGKILL);
		fail_msg("pid %d outlived what ended its work", (int)pid);
	}
}

const char *status_disk(json_t *s, size_t i, const char *key)
{
	return json_string_value(json_object_get(json_array_get(json_object_get(s, "disks"), i), key));
}

pid_t fixture_running(Fixture *f, const char *name)
{
	json_t *s = fixture_wait_status(f, name, ready, "Running");
	pid_t pid = pid_of(s);

	json_decref(s);
	assert_true(pid > 0);
	return pid;
}

bool config_invalid(json_t *s, const void *arg _unused_)
{
	return s && streq(status_condition(s, "ConfigValid", "status"), "False");
}

bool config_valid(json_t *s, const void *arg _unused_)
{
	return s && streq(status_condition(s, "ConfigValid", "status"), "True");
}

bool disks_are(json_t *s, const void *arg)
{
	return s && json_array_size(json_object_get(s, "disks")) == (size_t)(uintptr_t)arg &&
	       json_integer_value(json_object_get(s, "observedGeneration")) ==
		       json_integer_value(json_object_get(s, "generation"));
}

bool generation_settled(json_t *s, const void *arg)
{
	json_int_t g = (json_int_t)(uintptr_t)arg;

	return s && json_integer_value(json_object_get(s, "generation")) == g &&
	       json_integer_value(json_object_get(s, "observedGeneration")) == g;
}

unsigned count_in(const char *haystack, const char *needle)
{
	unsigned n = 0;

	for (const char *p = haystack; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

const char FIXTURE_FC_3_VCPUS[] =
	"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: firecracker\n  memory: 64Mi\n"
	"  kernel: /k\n  vcpus: 3\n";
const char FIXTURE_FC_3_VCPUS_ERROR[] =
	"/web.yaml:7:10: spec.vcpus: 3 vCPUs do not fit backend 'firecracker': it takes 1 or an "
	"even number up to 32";

char *fixture_start_noop(Fixture *f, const char *name)
{
	json_t *s;
	char *started;

	fixture_put(f, name, FIXTURE_NOOP_SPEC);
	fixture_start_daemon(f);
	s = fixture_wait_status(f, name, phase_is, "Running");
	started = strdup(json_string_value(json_object_get(s, "startedAt")));
	json_decref(s);
	if (f->notify_path)
		fixture_expect_notify(f, "READY=1");
	return started;
}

char *fixture_noop_state(Fixture *f, const char *name)
{
	_cleanup_free_ char *p = path_in(f->run, "%s/noop.json", name);
	json_t *j = json_load_file(p, 0, NULL);
	char *state = j ? strdup(json_string_value(json_object_get(j, "state"))) : NULL;

	json_decref(j);
	return state;
}

long long fixture_noop_field(Fixture *f, const char *name, const char *key)
{
	_cleanup_free_ char *path = path_in(f->run, "%s/noop.json", name);
	_cleanup_(json_decrefp) json_t *j = json_load_file(path, 0, NULL);
	json_t *v = j ? json_object_get(j, key) : NULL;

	return v ? json_integer_value(v) : -1;
}

typedef struct CondWant {
	const char *type, *status, *reason, *message; /* message: a part of it, or NULL */
} CondWant;

static bool cond_is(json_t *s, const void *arg)
{
	const CondWant *w = arg;

	return s && streq(status_condition(s, w->type, "status"), w->status) &&
	       (!w->reason || streq(status_condition(s, w->type, "reason"), w->reason)) &&
	       (!w->message || strstr(status_condition(s, w->type, "message"), w->message));
}

json_t *fixture_wait_cond(Fixture *f, const char *name, const char *type, const char *status,
			  const char *reason, const char *message)
{
	const CondWant w = { type, status, reason, message };

	return fixture_wait_status(f, name, cond_is, &w);
}

int fixture_listen_loopback(uint16_t *port)
{
	return test_listen_loopback(0, port);
}

int fixture_listen_loopback_on(uint16_t port)
{
	return test_listen_loopback(port, NULL);
}

SandboxSpec *fixture_spec_of(const char *lines)
{
	_cleanup_free_ char *text = NULL;

	assert_true(asprintf(&text, "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  memory: 64Mi\n%s",
			     lines) > 0);
	return test_spec_load(text, lines);
}
