/* SPDX-License-Identifier: MIT */
/*
 * make bench: figures, not tests. The machine is shared and noisy, so each figure is
 * printed with a baseline measured in the same run on the same machine:
 *
 *   reaction latency   rename of a new file -> the noop backend's start call (its
 *                      recorded start time), p50/p99 over 1000 files back to back, with 0
 *                      and with 100,000 sandboxes present; baseline: the same rename seen
 *                      by a bare inotify watch in this process.
 *   cold start         100,000 sandbox files to READY=1 with all of them Running;
 *                      baseline: `vmd validate` reading the same files.
 *   state dir          the CPU time (utime + stime) the daemon spends after READY=1 until
 *                      the last valid spec of every sandbox is in the state dir.
 *   peak RSS           VmHWM of the daemon after the latency runs.
 *   during a pass      the same reaction latency while a pass over every sandbox is under
 *                      way: SIGHUP starts one (RELOADING=1) and READY=1 ends it; a rename
 *                      counts when READY=1 had not come yet. The pass is the resync
 *                      timer's: read the directory again, reconcile every sandbox.
 *   restart            the daemon again on the same directories, every VM adopted, to
 *                      READY=1 (with --resync 5, for what follows).
 *   idle               wakeups (voluntary context switches) of all its threads, the
 *                      preemptions beside them, and its CPU time, over 15 s of nothing to
 *                      do but the resync timer's passes (every 5 s here, every 60 s by
 *                      default): the cost of keeping 100,000 sandboxes resynced.
 *
 * As on a real host, the run dir is on a tmpfs (/dev/shm here, /run there) and the state
 * dir on disk ($TMPDIR).
 *
 * Usage: bench-daemon VMD
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N_LATENCY 1000
#define N_PRESENT 100000
#define IDLE_SECONDS 15
#define IDLE_RESYNC "5"

static const char *vmd;
static char dir[256], shm[256], sb[512], run[512], state[512], sock_path[512];
static int notify_fd = -1;
static pid_t daemon_pid;
static bool ready_seen; /* a READY=1 came while draining the notify socket */

static uint64_t now(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int remove_one(const char *p, const struct stat *s, int f, struct FTW *w)
{
	(void)s, (void)f, (void)w;
	remove(p);
	return 0;
}

static void die(const char *what)
{
	fprintf(stderr, "bench: %s: %s (the daemon's log is in %s/vmd.log)\n", what,
		strerror(errno), dir);
	if (daemon_pid > 0)
		kill(daemon_pid, SIGKILL);
	if (shm[0])
		nftw(shm, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	exit(1);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	if (!f || fputs(text, f) < 0 || fclose(f) < 0)
		die(path);
}

static const char *SPEC =
	"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n  disks: [{id: root, path: /d/root.raw}]\n";

/* Wait for a notify message containing what; its time of arrival (CLOCK_MONOTONIC). */
static uint64_t wait_notify(const char *what, char *last, size_t size)
{
	for (;;) {
		struct pollfd p = { .fd = notify_fd, .events = POLLIN };
		char buf[4096];
		ssize_t n;

		if (poll(&p, 1, 60000) <= 0)
			die("no message from the daemon within 60 s");
		n = recv(notify_fd, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		if (strstr(buf, "READY=1"))
			ready_seen = true;
		if (strstr(buf, what)) {
			if (last)
				snprintf(last, size, "%s", buf);
			return now(CLOCK_MONOTONIC);
		}
	}
}

/* Start vmd daemon on the bench's directories; resync: its --resync, or NULL. */
static void start_daemon(const char *resync)
{
	daemon_pid = fork();
	if (daemon_pid < 0)
		die("fork");
	if (daemon_pid == 0) {
		char log[600];
		int null = open("/dev/null", O_RDWR), out;

		snprintf(log, sizeof(log), "%s/vmd.log", dir);
		out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		dup2(null, 0);
		dup2(null, 1);
		dup2(out, 2);
		setenv("NOTIFY_SOCKET", sock_path, 1);
		execl(vmd, vmd, "daemon", "--sandboxes", sb, "--run-dir", run, "--state-dir", state,
		      "--log-target", "console", "--vmm-user", "root",
		      resync ? "--resync" : (char *)NULL, resync, (char *)NULL);
		_exit(127);
	}
}

/* Read what the daemon tells "systemd", as systemd does: a full socket would block it. */
static void drain_notify(void)
{
	char buf[4096];
	ssize_t n;

	while ((n = recv(notify_fd, buf, sizeof(buf) - 1, MSG_DONTWAIT)) > 0) {
		buf[n] = '\0';
		if (strstr(buf, "READY=1"))
			ready_seen = true;
	}
}

/* SIGTERM, and read its messages until it is gone: it may be waiting to send one. */
static void stop_daemon(void)
{
	kill(daemon_pid, SIGTERM);
	while (waitpid(daemon_pid, NULL, WNOHANG) == 0) {
		drain_notify();
		usleep(1000);
	}
	daemon_pid = 0;
}

static uint64_t started_at(const char *name)
{
	char path[1024];
	json_t *j;
	uint64_t v;

	snprintf(path, sizeof(path), "%s/%s/noop.json", run, name);
	for (int i = 0; i < 100000; i++) {
		j = json_load_file(path, 0, NULL);
		if (j) {
			v = (uint64_t)json_integer_value(json_object_get(j, "startedAtUsec"));
			json_decref(j);
			return v;
		}
		drain_notify();
		usleep(100);
	}
	die("a sandbox never started");
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void percentiles(uint64_t *v, size_t n, double *p50, double *p99)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	*p50 = (double)v[n / 2] / 1000.0;
	*p99 = (double)v[n * 99 / 100] / 1000.0;
}

/* rename -> start of one new file, prefix-i, in microseconds. */
static uint64_t react(const char *prefix, int i)
{
	char tmp[1024], dst[1024], name[64];
	uint64_t t0;

	snprintf(name, sizeof(name), "%s-%d", prefix, i);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", sb, name);
	snprintf(dst, sizeof(dst), "%s/%s.yaml", sb, name);
	write_file(tmp, SPEC);
	drain_notify(); /* not while it is measured, and never full */
	t0 = now(CLOCK_REALTIME);
	if (rename(tmp, dst) < 0)
		die("rename");
	return started_at(name) - t0;
}

/* rename -> start, for N_LATENCY new files named prefix-N, back to back. */
static void latency(const char *prefix, double *p50, double *p99)
{
	static uint64_t v[N_LATENCY];

	for (int i = 0; i < N_LATENCY; i++)
		v[i] = react(prefix, i);
	percentiles(v, N_LATENCY, p50, p99);
}

/*
 * The same while a pass over every sandbox is under way: SIGHUP starts one, READY=1 says
 * it is over. A rename counts if READY=1 had not come when it was made; when a pass ends
 * before N_LATENCY renames, SIGHUP starts another. At most max_seconds. Returns how many
 * renames counted, over how many passes.
 */
static size_t latency_during_pass(const char *prefix, unsigned max_seconds, uint64_t *v,
				  unsigned *ret_passes, double *ret_max)
{
	uint64_t end = now(CLOCK_MONOTONIC) + max_seconds * 1000000ull, worst = 0;
	size_t n = 0;

	*ret_passes = 0;
	for (int i = 0; n < N_LATENCY && now(CLOCK_MONOTONIC) < end; i++) {
		uint64_t t;
		bool during;

		if (i == 0 || ready_seen) {
			ready_seen = false;
			kill(daemon_pid, SIGHUP);
			wait_notify("RELOADING=1", NULL, 0);
			(*ret_passes)++;
		}
		drain_notify();
		during = !ready_seen;
		t = react(prefix, i);
		if (during) {
			v[n++] = t;
			worst = t > worst ? t : worst;
		}
	}
	if (!ready_seen)
		wait_notify("READY=1", NULL, 0);
	*ret_max = (double)worst / 1000.0;
	return n;
}

/* The same renames, seen by a bare inotify watch: what no daemon can beat. */
static void baseline_latency(double *p50, double *p99)
{
	static uint64_t v[N_LATENCY];
	char bdir[512];
	int fd = inotify_init1(IN_CLOEXEC);

	snprintf(bdir, sizeof(bdir), "%s/baseline", dir);
	mkdir(bdir, 0755);
	if (fd < 0 || inotify_add_watch(fd, bdir, IN_MOVED_TO) < 0)
		die("inotify");
	for (int i = 0; i < N_LATENCY; i++) {
		char tmp[1024], dst[1024], buf[4096];
		uint64_t t0;

		snprintf(tmp, sizeof(tmp), "%s/.f%d.tmp", bdir, i);
		snprintf(dst, sizeof(dst), "%s/f%d.yaml", bdir, i);
		write_file(tmp, SPEC);
		t0 = now(CLOCK_REALTIME);
		if (rename(tmp, dst) < 0 || read(fd, buf, sizeof(buf)) <= 0)
			die("baseline");
		v[i] = now(CLOCK_REALTIME) - t0;
	}
	close(fd);
	percentiles(v, N_LATENCY, p50, p99);
}

static long field_of(const char *path, const char *key)
{
	FILE *f = fopen(path, "re");
	char line[256];
	long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, strlen(key)) == 0)
			v = atol(line + strlen(key));
	fclose(f);
	return v;
}

/* utime + stime of pid, in seconds. */
static double cpu_seconds(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long utime, stime;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		die(path);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* After "(comm) ": state is field 3, utime and stime are fields 14 and 15. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
			 &stime) != 2)
		die("cannot parse /proc/PID/stat");
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static int count_files(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

/*
 * Context switches of every thread of pid: voluntary ones (it slept and was woken: the
 * wakeups) and the others (it was busy and preempted).
 */
static void switches(pid_t pid, long *ret_voluntary, long *ret_preempted)
{
	char path[256];

	*ret_voluntary = *ret_preempted = 0;
	for (int tid = 0; tid < 1 << 22; tid++) {
		long a, b;

		if (tid == 0)
			snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
		else {
			snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid, tid);
			if (access(path, F_OK) < 0)
				continue;
		}
		a = field_of(path, "voluntary_ctxt_switches:");
		b = field_of(path, "nonvoluntary_ctxt_switches:");
		if (tid > 0) {
			*ret_voluntary += a > 0 ? a : 0;
			*ret_preempted += b > 0 ? b : 0;
		}
		if (tid > (int)pid + 64)
			break;
	}
}

static const char *verdict(bool ok)
{
	return ok ? "meets the target" : "MISSES the target";
}

int main(int argc, char **argv)
{
	static uint64_t during[N_LATENCY];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	double b50, b99, l50, l99, m50, m99, d50, d99, dmax, cpu0, cpu1;
	uint64_t t0, t_ready, v0, v1;
	char status[4096], cmd_dir[1024], sdir[600], proc[128];
	long hwm, w0, w1, p0, p1;
	unsigned passes;
	size_t n;
	pid_t p;

	if (argc != 2) {
		fprintf(stderr, "usage: bench-daemon VMD\n");
		return 2;
	}
	vmd = argv[1];
	snprintf(dir, sizeof(dir), "%s/vmd-bench-XXXXXX", getenv("TMPDIR") ?: "/tmp");
	if (!mkdtemp(dir))
		die("mkdtemp");
	snprintf(sb, sizeof(sb), "%s/sandboxes", dir);
	snprintf(shm, sizeof(shm), "/dev/shm/vmd-bench-XXXXXX");
	if (!mkdtemp(shm))
		die("mkdtemp in /dev/shm");
	snprintf(run, sizeof(run), "%s/run", shm);
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(sdir, sizeof(sdir), "%s/sandboxes", state);
	snprintf(sock_path, sizeof(sock_path), "%s/notify", dir);
	mkdir(sb, 0755);
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (strlen(sock_path) >= sizeof(sa.sun_path))
		die("TMPDIR is too long for a socket path");
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	if (notify_fd < 0 || bind(notify_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("notify socket");
	/* 100,000 sandboxes say a lot to "systemd": room for a burst of it. */
	(void)setsockopt(notify_fd, SOL_SOCKET, SO_RCVBUF, &(int){ 4 << 20 }, sizeof(int));

	printf("vmd bench: %d files per latency run, %d sandboxes present for the large runs\n\n",
	       N_LATENCY, N_PRESENT);
	baseline_latency(&b50, &b99);
	printf("baseline: bare inotify sees a rename   p50 %7.3f ms  p99 %7.3f ms\n", b50, b99);

	/* Latency with nothing present. */
	start_daemon(NULL);
	wait_notify("READY=1", NULL, 0);
	latency("empty", &l50, &l99);
	stop_daemon();
	printf("reaction, 0 present:   rename->start   p50 %7.3f ms  p99 %7.3f ms  (%.1fx / %.1fx the baseline; p99 target <= 5 ms: %s)\n",
	       l50, l99, l50 / b50, l99 / b99, verdict(l99 <= 5.0));

	/* Cold start with N_PRESENT files: a fresh run dir and state dir. */
	nftw(run, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	nftw(state, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	nftw(sb, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	mkdir(sb, 0755);
	for (int i = 0; i < N_PRESENT; i++) {
		char path[1024];

		snprintf(path, sizeof(path), "%s/sb-%06d.yaml", sb, i);
		write_file(path, SPEC);
	}
	sync();

	v0 = now(CLOCK_MONOTONIC);
	p = fork();
	if (p == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 1);
		dup2(null, 2);
		snprintf(cmd_dir, sizeof(cmd_dir), "%s", sb);
		execl(vmd, vmd, "validate", cmd_dir, (char *)NULL);
		_exit(127);
	}
	waitpid(p, NULL, 0);
	v1 = now(CLOCK_MONOTONIC);
	printf("baseline: vmd validate, %d files    %7.3f s\n", N_PRESENT, (double)(v1 - v0) / 1e6);

	t0 = now(CLOCK_MONOTONIC);
	start_daemon(NULL);
	t_ready = wait_notify("READY=1", status, sizeof(status));
	cpu0 = cpu_seconds(daemon_pid);
	printf("cold start, %d files -> READY=1  %7.3f s  (%.1fx the baseline; target <= 10 s: %s)\n",
	       N_PRESENT, (double)(t_ready - t0) / 1e6, (double)(t_ready - t0) / (double)(v1 - v0),
	       verdict(t_ready - t0 <= 10000000));
	{
		char want[64];

		snprintf(want, sizeof(want), "%d Running", N_PRESENT);
		printf("  at READY=1: %s (%s)\n",
		       strchr(status, '\n') ? strchr(status, '\n') + 1 : status,
		       strstr(status, want) ? "all Running" : "NOT all Running");
	}

	/* The last valid specs are written to the state dir at idle priority: what it costs. */
	{
		uint64_t t = now(CLOCK_MONOTONIC);
		int files = 0;

		for (int i = 0; i < 1800 && files < N_PRESENT; i++) {
			drain_notify();
			usleep(100000);
			files = count_files(sdir);
		}
		cpu1 = cpu_seconds(daemon_pid);
		printf("state dir: %d last valid specs written %.1f s after READY=1, %.2f s of the daemon's CPU\n",
		       files, (double)(now(CLOCK_MONOTONIC) - t) / 1e6, cpu1 - cpu0);
	}

	latency("more", &m50, &m99);
	printf("reaction, %d present: rename->start p50 %7.3f ms  p99 %7.3f ms  (%.1fx / %.1fx the baseline; p99 target <= 5 ms: %s)\n",
	       N_PRESENT, m50, m99, m50 / b50, m99 / b99, verdict(m99 <= 5.0));

	snprintf(proc, sizeof(proc), "/proc/%d/status", (int)daemon_pid);
	hwm = field_of(proc, "VmHWM:");
	printf("peak RSS (VmHWM), %d sandboxes   %7.1f MiB  (%.2f KiB a sandbox)\n",
	       N_PRESENT + N_LATENCY, (double)hwm / 1024.0,
	       (double)hwm / (double)(N_PRESENT + N_LATENCY));

	n = latency_during_pass("pass", 60, during, &passes, &dmax);
	percentiles(during, n, &d50, &d99);
	printf("reaction during a pass over all:       p50 %7.3f ms  p99 %7.3f ms  max %.3f ms  (%zu renames in %u pass%s; p99 target <= 5 ms: %s)\n",
	       d50, d99, dmax, n, passes, passes == 1 ? "" : "es", verdict(d99 <= 5.0));
	stop_daemon();

	/* Again on the same directories: every VM is adopted. Then nothing but resyncs. */
	t0 = now(CLOCK_MONOTONIC);
	start_daemon(IDLE_RESYNC);
	t_ready = wait_notify("READY=1", NULL, 0);
	printf("restart, %d VMs adopted -> READY=1  %7.3f s\n", count_files(sb),
	       (double)(t_ready - t0) / 1e6);
	drain_notify();
	switches(daemon_pid, &w0, &p0);
	cpu0 = cpu_seconds(daemon_pid);
	for (int i = 0; i < IDLE_SECONDS * 10; i++) {
		usleep(100000);
		drain_notify();
	}
	switches(daemon_pid, &w1, &p1);
	cpu1 = cpu_seconds(daemon_pid);
	printf("idle, --resync %s                      %7.1f wakeups per second (%.1f preemptions), %.0f%% of a CPU (all threads, over %d s)\n",
	       IDLE_RESYNC, (double)(w1 - w0) / IDLE_SECONDS, (double)(p1 - p0) / IDLE_SECONDS,
	       100.0 * (cpu1 - cpu0) / IDLE_SECONDS, IDLE_SECONDS);

	stop_daemon();
	nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	nftw(shm, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
