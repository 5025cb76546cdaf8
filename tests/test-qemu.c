/* SPDX-License-Identifier: MIT */
/*
 * The real `vmd daemon` with real QEMU under TCG, booting the test guest of tests/guest/
 * (its init reports on the serial console: VMD-GUEST-READY, VMD-GUEST-DEVICES ...,
 * VMD-GUEST-TICK n, VMD-GUEST-POWEROFF). Each test runs in its own directories; every
 * QEMU its daemon started is killed by pid in teardown, and by a guard process should the
 * test binary itself die. Waits are bounded (a failure, not a speed claim). Networks are
 * test-qemu-net.c's; what the tests share is qemu-fixture.c.
 */
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>

#include "qemu-fixture.h"
#include "helpers.h"
#include "status.h"
#include "qmp.h"
#include "spec.h"
#include "util.h"
#include "vmm.h"

static bool unplug_in_flight(json_t *s, const void *arg)
{
	return phase_is(s, "Paused") && streq(status_condition(s, "Ready", "status"), "False") &&
	       streq(status_condition(s, "Ready", "reason"), "Progressing") &&
	       strstr(status_condition(s, "Ready", "message"), arg);
}

/* The lifecycle test's spec: which of disks a, b and NICs n0, n1 it has, and its state. */
static char *lifecycle_spec(const char *disk_a, const char *disk_b, const char *devices,
			    const char *state)
{
	char *spec = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&spec, &len);

	assert_non_null(m);
	fprintf(m, "  state: %s\n  cmdline: console=ttyS0 quiet\n  stopTimeout: 60s\n", state);
	fprintf(m, "  disks:%s\n", strpbrk(devices, "ab") ? "" : " []");
	if (strchr(devices, 'a'))
		fprintf(m, "    - {id: a, path: \"%s\"}\n", disk_a);
	if (strchr(devices, 'b'))
		fprintf(m, "    - {id: b, path: \"%s\", readOnly: true}\n", disk_b);
	fprintf(m, "  networks:\n");
	for (char c = '0'; c <= '1'; c++)
		if (strchr(devices, c))
			fprintf(m, "    - {id: n%c, type: user, mac: \"52:54:00:00:00:0%c\"}\n", c,
				c + 1);
	assert_int_equal(fclose(m), 0);
	return spec;
}

static void put_lifecycle(Fixture *f, const char *disk_a, const char *disk_b, const char *devices,
			  const char *state)
{
	_cleanup_free_ char *spec = lifecycle_spec(disk_a, disk_b, devices, state);

	qemu_put(f, "vm", spec);
}

static const char *disk_id(json_t *s, size_t i)
{
	return json_string_value(
		json_object_get(json_array_get(json_object_get(s, "disks"), i), "id"));
}

static void test_lifecycle(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *disk_a = path_in(f->dir, "a,1.img"), *disk_b = path_in(f->dir, "b.img"),
			    *dir = path_in(f->run, "vm"), *file = path_in(f->sb, "vm.yaml");
	size_t off;
	json_t *s;
	struct stat st;

	test_write(f->dir, "a,1.img", "", 0);
	assert_int_equal(truncate(disk_a, 4 << 20), 0);
	test_write(f->dir, "b.img", "", 0);
	assert_int_equal(truncate(disk_b, 8 << 20), 0);

	/* Dropped in: boots with one disk (its path has a comma) and one NIC. */
	put_lifecycle(f, disk_a, disk_b, "a0", "running");
	fixture_start_daemon(f);
	fixture_wait_console(f, "vm", "VMD-GUEST-READY", 0);
	s = fixture_wait_status(f, "vm", ready, "Running");
	assert_int_equal(qemu_n_devices(s, "disks"), 1);
	assert_int_equal(qemu_n_devices(s, "networks"), 1);
	json_decref(s);
	qemu_wait_devices(f, "vm", "vda", "eth0@52:54:00:00:00:01");

	/* A disk and a NIC added to the file: the guest sees them. */
	put_lifecycle(f, disk_a, disk_b, "ab01", "running");
	qemu_wait_devices(f, "vm", "vda,vdb", "eth0@52:54:00:00:00:01,eth1@52:54:00:00:00:02");
	s = fixture_wait_status(f, "vm", ready, "Running");
	assert_int_equal(qemu_n_devices(s, "disks"), 2);
	assert_int_equal(qemu_n_devices(s, "networks"), 2);
	json_decref(s);

	/* The first two removed again: the guest lets go of them, and the status agrees. */
	put_lifecycle(f, disk_a, disk_b, "b1", "running");
	qemu_wait_devices(f, "vm", "vdb", "eth1@52:54:00:00:00:02");
	s = fixture_wait_status(f, "vm", ready, "Running");
	assert_int_equal(qemu_n_devices(s, "disks"), 1);
	assert_string_equal(disk_id(s, 0), "b");
	assert_int_equal(qemu_n_devices(s, "networks"), 1);
	json_decref(s);

	/* Paused: the guest's ticks stop; running again: they go on. */
	put_lifecycle(f, disk_a, disk_b, "b1", "paused");
	json_decref(fixture_wait_status(f, "vm", ready, "Paused"));
	{
		_cleanup_free_ char *before = fixture_console(f, "vm"), *after = NULL;

		/* Ticks come every second: three seconds of silence is a pause. */
		usleep(3000000);
		after = fixture_console(f, "vm");
		assert_string_equal(before, after);
		off = strlen(after);
	}
	/*
	 * Disk b removed while the guest is paused: it cannot let go, so the removal is in
	 * flight, said in the status, and the disk still listed, not assumed gone.
	 */
	put_lifecycle(f, disk_a, disk_b, "1", "paused");
	s = fixture_wait_status(f, "vm", unplug_in_flight,
				"waiting for the guest to release disk 'b'");
	assert_int_equal(qemu_n_devices(s, "disks"), 1);
	json_decref(s);
	/* Running again: the ticks go on, and the guest completes the unplug. */
	put_lifecycle(f, disk_a, disk_b, "1", "running");
	fixture_wait_console(f, "vm", "VMD-GUEST-TICK", off);
	qemu_wait_devices(f, "vm", "", "eth1@52:54:00:00:00:02");
	s = fixture_wait_status(f, "vm", ready, "Running");
	assert_int_equal(qemu_n_devices(s, "disks"), 0);
	json_decref(s);

	/* The file removed: the guest powers off on the power button; its dir is cleaned. */
	assert_int_equal(unlink(file), 0);
	fixture_wait_console(f, "vm", "VMD-GUEST-POWEROFF", 0);
	json_decref(fixture_wait_status(f, "vm", gone_with, dir));
	/* The disk images are the user's: untouched. */
	assert_int_equal(stat(disk_a, &st), 0);
	assert_int_equal(st.st_size, 4 << 20);
	{
		_cleanup_free_ char *log = test_read_file(f->log, NULL);

		assert_null(strstr(log, "forcing it off"));
		assert_non_null(strstr(log, "vm: VM exited with status 0"));
	}
}

/*
 * A guest that ignores the power button is forced off after stopTimeout, also when vmd
 * was killed and restarted in the middle of the stop.
 */
static void test_forced_stop(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *file = path_in(f->sb, "deaf.yaml"),
			    *file2 = path_in(f->sb, "deaf2.yaml");

	qemu_put(f, "deaf",
		 "  cmdline: console=ttyS0 quiet vmd.ignore-power-button=1\n"
		 "  stopTimeout: 2s\n");
	qemu_put(f, "deaf2",
		 "  cmdline: console=ttyS0 quiet vmd.ignore-power-button=1\n"
		 "  stopTimeout: 3s\n");
	fixture_start_daemon(f);
	fixture_wait_console(f, "deaf", "VMD-GUEST-READY", 0);
	fixture_wait_console(f, "deaf2", "VMD-GUEST-READY", 0);
	json_decref(fixture_wait_status(f, "deaf", ready, "Running"));
	json_decref(fixture_wait_status(f, "deaf2", ready, "Running"));
	assert_int_equal(unlink(file), 0);
	fixture_wait_console(f, "deaf", "VMD-GUEST-POWER-BUTTON", 0);
	json_decref(fixture_wait_status(f, "deaf", absent, NULL));
	{
		_cleanup_free_ char *log = test_read_file(f->log, NULL);

		assert_non_null(
			strstr(log, "deaf: did not stop within its stopTimeout; forcing it off"));
	}

	/* deaf2: the power button pressed, then vmd killed before the stopTimeout ran out. */
	assert_int_equal(unlink(file2), 0);
	fixture_wait_console(f, "deaf2", "VMD-GUEST-POWER-BUTTON", 0);
	json_decref(fixture_wait_status(f, "deaf2", phase_is, "Stopping"));
	fixture_stop_daemon(f, SIGKILL);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "deaf2", absent, NULL));
	{
		_cleanup_free_ char *log = test_read_file(f->log, NULL);

		assert_non_null(strstr(log, "deaf2: re-adopted its stopping VM"));
		assert_non_null(
			strstr(log, "deaf2: did not stop within its stopTimeout; forcing it off"));
	}
}

/*
 * kill -9 of vmd while three VMs run: the next vmd adopts all three, restarts none. While
 * no vmd runs, one is paused out of band: the next vmd puts it back to running.
 */
static void test_readopt(void **state)
{
	Fixture *f = *state;
	static const char *const names[] = { "r1", "r2", "r3" };
	pid_t pids[3];
	_cleanup_free_ char *sock = path_in(f->run, "r2/qmp.sock");
	Qmp *q = NULL;
	json_t *s;

	for (size_t i = 0; i < 3; i++)
		qemu_put(f, names[i], "  cmdline: console=ttyS0 quiet\n");
	fixture_start_daemon(f);
	for (size_t i = 0; i < 3; i++) {
		fixture_wait_console(f, names[i], "VMD-GUEST-READY", 0);
		s = fixture_wait_status(f, names[i], ready, "Running");
		pids[i] = pid_of(s);
		json_decref(s);
	}
	fixture_stop_daemon(f, SIGKILL);

	/* Out of band, while vmd is away: pause r2 through its QMP socket. */
	assert_int_equal(qmp_open(sock, 10000000, &q), 0);
	assert_int_equal(qmp_call(q, "stop", NULL, 10000000, NULL, NULL), 0);
	qmp_free(q);

	fixture_start_daemon(f);
	for (size_t i = 0; i < 3; i++) {
		char line[64];

		/* Its status.json is the killed daemon's until this one has taken the VM in. */
		snprintf(line, sizeof(line), "%s: re-adopted its", names[i]);
		fixture_wait_log(f, line);
		s = fixture_wait_status(f, names[i], ready, "Running");
		assert_int_equal(pid_of(s), pids[i]);
		assert_int_equal(json_integer_value(json_object_get(s, "restarts")), 0);
		json_decref(s);
	}
	/* r2 runs again: its ticks go on. */
	{
		_cleanup_free_ char *c = fixture_console(f, "r2");

		fixture_wait_console(f, "r2", "VMD-GUEST-TICK", strlen(c));
	}
	{
		_cleanup_free_ char *log = test_read_file(f->log, NULL);

		assert_non_null(strstr(log, "r2: resume: spec.state is running"));
		/* One boot each: no start after the first daemon's. */
		assert_null(strstr(strstr(log, "re-adopted") ?: "", ": start:"));
	}

	/* A live QEMU whose QMP vmd cannot reach (another client holds it): quarantined. */
	fixture_stop_daemon(f, SIGKILL);
	assert_int_equal(qmp_open(sock, 10000000, &q), 0);
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "r2", phase_is, "Unknown");
	assert_int_equal(pid_of(s), pids[1]);
	json_decref(s);
	/* Never a second one: r2's QEMU is still the only QEMU of r2. */
	s = fixture_wait_status(f, "r1", ready, "Running");
	json_decref(s);
	{
		_cleanup_free_ char *rec = path_in(f->run, "r2/vm.json");
		json_t *j = json_load_file(rec, 0, NULL);

		assert_int_equal(json_integer_value(json_object_get(j, "pid")), pids[1]);
		json_decref(j);
	}
	qmp_free(q);
}

/* QEMU killed: restarted (restartPolicy always). A bad kernel fails alone, with a reason. */
static void test_crash_and_bad_kernel(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *bad = NULL;
	json_t *s;
	pid_t pid;
	int pidfd;

	qemu_put(f, "crash", "  cmdline: console=ttyS0 quiet\n  restartPolicy: always\n");
	assert_true(asprintf(&bad,
			     "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: qemu\n"
			     "  memory: 64Mi\n  kernel: %s/no-such-kernel\n",
			     f->dir) > 0);
	test_write_str(f->sb, "bad.yaml", bad);
	fixture_start_daemon(f);
	fixture_wait_console(f, "crash", "VMD-GUEST-READY", 0);
	s = fixture_wait_status(f, "crash", ready, "Running");
	pid = pid_of(s);
	json_decref(s);

	s = fixture_wait_status(f, "bad", failing, "no-such-kernel");
	fprintf(stderr, "bad kernel: %s\n", json_string_value(json_object_get(s, "lastError")));
	json_decref(s);

	pidfd = vmm_pidfd_open(pid);
	assert_true(pidfd >= 0);
	assert_int_equal(vmm_kill(pidfd, SIGKILL), 0);
	close(pidfd);
	s = fixture_wait_status(f, "crash", restarted, (void *)1);
	assert_true(pid_of(s) != pid);
	json_decref(s);
	fixture_wait_console(f, "crash", "VMD-GUEST-READY", 0);
	/* The boot before is kept for whoever looks into the crash. */
	{
		_cleanup_free_ char *prev = path_in(f->run, "crash/console.log.1");
		_cleanup_free_ char *c = test_read_file(prev, NULL);

		assert_non_null(c);
		assert_non_null(strstr(c, "VMD-GUEST-READY"));
	}
	/* Still failing, still backing off, and nothing else disturbed. */
	s = fixture_wait_status(f, "bad", failing, "no-such-kernel");
	json_decref(s);
}

/* vmd console on a pseudo-terminal, as a user runs it. */
typedef struct Term {
	pid_t pid;
	int fd;	   /* the pty's master side */
	char *out; /* all it printed */
	size_t n;
} Term;

static void term_open(Fixture *f, Term *t, const char *name)
{
	*t = (Term){ .out = calloc(1, 1) };
	t->pid = forkpty(&t->fd, NULL, NULL, NULL);
	assert_true(t->pid >= 0);
	if (t->pid == 0) {
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(test_vmd(), "vmd", "console", "--run-dir", f->run, name, (char *)NULL);
		_exit(127);
	}
}

/* Read what it prints; true once needle is in it, false if it ended first (or in time). */
static bool term_wait(Term *t, const char *needle)
{
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	while (!strstr(t->out, needle) && ms_now() < end) {
		struct pollfd p = { .fd = t->fd, .events = POLLIN };
		char buf[4096];
		ssize_t k;

		if (poll(&p, 1, 200) <= 0)
			continue;
		k = read(t->fd, buf, sizeof(buf));
		if (k <= 0)
			return false; /* EIO: the last one with the pty open has gone */
		t->out = realloc(t->out, t->n + (size_t)k + 1);
		assert_non_null(t->out);
		memcpy(t->out + t->n, buf, (size_t)k);
		t->n += (size_t)k;
		t->out[t->n] = '\0';
	}
	return strstr(t->out, needle) != NULL;
}

static void term_type(Term *t, const char *s)
{
	assert_int_equal(write(t->fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* Its exit status; the pty closed. */
static int term_close(Term *t)
{
	int status = -1;

	(void)term_wait(t, "\x01never"); /* what it says until it ends */
	assert_int_equal(waitpid(t->pid, &status, 0), t->pid);
	close(t->fd);
	free(t->out);
	*t = (Term){};
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Attached: vmd console said so (tried again while the daemon has no console.sock yet). */
static void term_attach(Fixture *f, Term *t, const char *name)
{
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	for (;;) {
		term_open(f, t, name);
		if (term_wait(t, "Ctrl-] detaches"))
			return;
		assert_true(ms_now() < end);
		assert_int_equal(term_close(t), 1);
		usleep(200000);
	}
}

/* Raw mode while attached: no echo, no line editing, no signals from keys. */
static bool term_is_raw(const Term *t)
{
	struct termios tio;

	assert_int_equal(tcgetattr(t->fd, &tio), 0);
	return !(tio.c_lflag & (ECHO | ICANON | ISIG));
}

static off_t file_size(Fixture *f, const char *name, const char *file)
{
	_cleanup_free_ char *p = path_in(f->run, "%s/%s", name, file);
	struct stat st;

	return stat(p, &st) < 0 ? -1 : st.st_size;
}

/*
 * vmd console: typed into the guest's shell, its answer seen; one writer at a time;
 * Ctrl-] detaches and restores the terminal; it works again after a kill -9 of vmd; a
 * guest that floods its console leaves a log within --console-log-size, rotated.
 */
static void test_console(void **state)
{
	static const char *const args[] = { "--qemu-accel", "tcg", "--console-log-size", "16Ki",
					    NULL };
	Fixture *f = *state;
	_cleanup_free_ char *pid_text = NULL;
	Term t;

	f->daemon_args = args;
	qemu_put(f, "con", "  cmdline: console=ttyS0 quiet\n");
	fixture_start_daemon(f);
	fixture_wait_console(f, "con", "VMD-GUEST-READY", 0);
	json_decref(fixture_wait_status(f, "con", ready, "Running"));
	assert_int_equal(file_size(f, "con", "serial.sock"), 0);

	term_attach(f, &t, "con");
	assert_true(term_is_raw(&t));
	term_type(&t, "echo hello-$((6*7))\r");
	assert_true(term_wait(&t, "hello-42"));
	/* The log goes on while someone is attached. */
	fixture_wait_console(f, "con", "hello-42", 0);

	/* A second one is turned away, told by whom. */
	{
		char *const argv[] = {
			(char *)test_vmd(), "console", "--run-dir", f->run, "con", NULL
		};
		TestRun r;

		assert_true(asprintf(&pid_text, "in use by pid %d", (int)t.pid) > 0);
		test_run(&r, argv);
		assert_int_equal(r.status, 1);
		assert_non_null(strstr(r.err, pid_text));
		test_run_done(&r);
	}
	/* Still attached: it types on. Then Ctrl-] detaches, the terminal as it was. */
	term_type(&t, "echo still-$((6*7))\r");
	assert_true(term_wait(&t, "still-42"));
	term_type(&t, "\x1d");
	assert_true(term_wait(&t, "Detached"));
	assert_false(term_is_raw(&t));
	assert_int_equal(term_close(&t), 0);

	/* kill -9 of vmd: the next one adopts the VM and its console. */
	fixture_stop_daemon(f, SIGKILL);
	fixture_start_daemon(f);
	term_attach(f, &t, "con");
	term_type(&t, "echo again-$((6*7))\r");
	assert_true(term_wait(&t, "again-42"));

	/* A flood: the log stays within 16Ki, rotated into console.log.1. */
	term_type(&t, "i=0; while [ $i -lt 1500 ]; do echo flood-$i-................................; "
		      "i=$((i+1)); done; echo flood-$((6*7))-done\r");
	assert_true(term_wait(&t, "flood-42-done"));
	assert_true(file_size(f, "con", "console.log") <= 8 * 1024);
	assert_true(file_size(f, "con", "console.log.1") > 0);
	assert_true(file_size(f, "con", "console.log.1") <= 8 * 1024);

	/* vmd killed under an attached terminal: it says so, and leaves the terminal sane. */
	fixture_stop_daemon(f, SIGKILL);
	assert_true(term_wait(&t, "closed"));
	assert_false(term_is_raw(&t));
	assert_int_equal(term_close(&t), 1);
	{
		char *const argv[] = {
			(char *)test_vmd(), "console", "--run-dir", f->run, "--log", "con", NULL
		};
		_cleanup_free_ char *old = path_in(f->run, "con/console.log.1");
		_cleanup_free_ char *before = test_read_file(old, NULL);
		TestRun r;

		test_run(&r, argv);
		assert_int_equal(r.status, 0);
		/* Oldest first: console.log.1, then console.log, within the cap. */
		assert_non_null(before);
		assert_int_equal(strncmp(r.out, before, strlen(before)), 0);
		assert_non_null(strstr(r.out, "flood-42-done"));
		assert_true(strlen(r.out) <= 16 * 1024);
		assert_null(strstr(r.out, "hello-42")); /* rotated away long ago */
		test_run_done(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_lifecycle, qemu_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_forced_stop, qemu_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_readopt, qemu_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_crash_and_bad_kernel, qemu_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_console, qemu_setup, fixture_teardown),
	};

	_cleanup_free_ char *kernel = qemu_guest_file("vmlinux");

	/* QEMUs outlive a daemon killed with -9: they come to this binary, which reaps them. */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	if (access(kernel, R_OK) < 0 || access("/usr/bin/qemu-system-x86_64", X_OK) < 0) {
		fprintf(stderr,
			"test-qemu: needs %s (tests/guest/build) and QEMU (scripts/install-deps)\n",
			kernel);
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
