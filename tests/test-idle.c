/* SPDX-License-Identifier: MIT */
/*
 * suspendAfterIdle (docs/sandbox-file.md, "Idle suspend"): the field's bounds, and the real
 * daemon on the noop backend, whose activity count a test writes (noop-activity, as a
 * VMM's console bytes and tap packets would count): idle, it is suspended, its file
 * untouched; it stays so across a kill of vmd; `vmd wake`, an edit of its file and a
 * connect to its forwarded port wake it; activity keeps it awake. On QEMU (TCG): the
 * console's bytes keep it awake, and a connect to its forwarded port wakes it from its
 * snapshot. Only the order of events is asserted, never a duration; waits are bounded (a
 * failure, not a speed claim).
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "net-fixture.h"
#include "qemu-fixture.h"
#include "spec-yaml.h"
#include "status.h"
#include "util.h"
#include "vmm-vm.h"

#define NOOP_SPEC FIXTURE_NOOP_SPEC "  disks: [{id: root, path: /d/root.raw}]\n"

/* The bounds: 1s at least (leave it out for never), 24h at most. */
static void test_validate(void **state _unused_)
{
	static const struct {
		const char *value;
		uint64_t ms; /* 0: refused */
	} rows[] = {
		{ "10m", 600000 }, { "1s", 1000 }, { "1000ms", 1000 }, { "24h", 86400000 },
		{ "999ms", 0 },	   { "0s", 0 },	   { "25h", 0 },       { "soon", 0 },
	};

	for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
		_cleanup_(diag_list_done) DiagList diags = {};
		_cleanup_(sandbox_spec_freep) SandboxSpec *s = NULL;
		_cleanup_free_ char *text = NULL;
		const SpecLoadOptions opts = { .default_backend = BACKEND_NOOP };
		int r;

		assert_true(asprintf(&text, NOOP_SPEC "  suspendAfterIdle: %s\n", rows[i].value) > 0);
		r = spec_load_buffer("web.yaml", text, strlen(text), &opts, &s, &diags);
		if (rows[i].ms == 0) {
			if (r >= 0)
				fail_msg("suspendAfterIdle: %s taken", rows[i].value);
			continue;
		}
		if (r < 0)
			fail_msg("suspendAfterIdle: %s refused: %s", rows[i].value,
				 diags.n ? diags.items[0].message : "?");
		assert_int_equal(s->suspend_after_idle_ms, rows[i].ms);
	}
}

/*
 * The taps' packets count (vmm-idle.c), in a child in a network namespace of its own: a tap
 * it holds open, as a VMM would, into which it writes a frame as a guest would send one; a
 * user network counts nothing. Exit 0 if the frame moved the count, 1 if not, 2 if the
 * namespace or the tap could not be made.
 */
static int packets_child(void)
{
	NetSpec nets[2] = { { .type = NET_TAP, .tap = "vmdidle0" }, { .type = NET_USER } };
	SandboxSpec spec = { .networks = nets, .n_networks = 2 };
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	uint8_t frame[60] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5 };
	uint64_t before, after = 0;
	int fd;

	if (net_namespace("test-idle") < 0)
		return 2;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "vmdidle0");
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0)
		return 2;
	net_ip("link", "set", "vmdidle0", "up", NULL);
	before = vmm_net_packets(&spec);
	if (write(fd, frame, sizeof(frame)) != (ssize_t)sizeof(frame))
		return 2;
	for (unsigned i = 0; i < 100 && (after = vmm_net_packets(&spec)) == before; i++)
		usleep(10 * 1000);
	close(fd);
	return after > before ? 0 : 1;
}

static void test_tap_packets(void **state _unused_)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(packets_child());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* Suspended by the daemon for idling, the message saying so. */
static bool idle_suspended(json_t *s, const void *arg _unused_)
{
	const char *msg = s ? status_condition(s, "Running", "message") : NULL;

	return phase_is(s, "Suspended") && json_is_object(json_object_get(s, "snapshot")) && msg &&
	       strstr(msg, "idle for ") && strstr(msg, ": suspended");
}

static bool running(json_t *s, const void *arg _unused_)
{
	return phase_is(s, "Running") && json_is_null(json_object_get(s, "snapshot")) &&
	       streq(status_condition(s, "Ready", "status"), "True");
}

static bool exists(const char *dir, const char *file)
{
	_cleanup_free_ char *p = path_in(dir, "%s", file);

	return access(p, F_OK) == 0;
}

static int run_wake(Fixture *f, const char *name)
{
	char *argv[] = { (char *)test_vmd(), "wake", "--run-dir", f->run, (char *)name, NULL };
	TestRun r;
	int status;

	test_run(&r, argv);
	status = r.status;
	if (status != 0)
		print_message("vmd wake: %s%s", r.out, r.err);
	test_run_done(&r);
	return status;
}

static void test_idle_wake(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *file = path_in(f->sb, "web.yaml"), *text = NULL, *after = NULL,
			    *vm = NULL, *log = NULL;

	assert_true(asprintf(&text, NOOP_SPEC "  suspendAfterIdle: 1s\n") > 0);
	fixture_put(f, "web", text);
	fixture_start_daemon(f);
	fixture_expect_notify(f, "READY=1");
	json_decref(fixture_wait_status(f, "web", running, NULL));

	/* Nothing happens on it: suspended, the file as it was. */
	json_decref(fixture_wait_status(f, "web", idle_suspended, NULL));
	assert_true(exists(f->state, "snapshots/web/current/manifest.json"));
	assert_true(exists(f->state, "idle/web.json"));
	assert_int_equal(read_file(file, 4096, &after, NULL), 0);
	assert_string_equal(after, text);
	/* The journal says why: when it fell asleep, and as the suspend's reason. */
	assert_int_equal(read_file(f->log, 1 << 22, &log, NULL), 0);
	if (count_in(log, "idle for 1s: suspended") < 2 || strstr(log, "spec.state is suspended"))
		fail_msg("the journal does not say why it was suspended:\n%s", log);

	/* Across a kill of vmd it sleeps on: no restore at the new daemon's first pass. */
	fixture_stop_daemon(f, SIGKILL);
	fixture_start_daemon(f);
	fixture_expect_notify(f, "READY=1");
	json_decref(fixture_wait_status(f, "web", idle_suspended, NULL));
	vm = fixture_noop_state(f, "web");
	assert_string_equal(vm, "exited");
	assert_int_equal(fixture_noop_field(f, "web", "restores"), 0);

	/* vmd wake: restored from its snapshot; idle again, it goes back to sleep. */
	assert_int_equal(run_wake(f, "web"), 0);
	json_decref(fixture_wait_status(f, "web", running, NULL));
	assert_int_equal(fixture_noop_field(f, "web", "restores"), 1);
	assert_false(exists(f->state, "idle/web.json"));
	json_decref(fixture_wait_status(f, "web", idle_suspended, NULL));

	/* A new generation of its file wakes it: with an hour to idle, it stays up. */
	fixture_put(f, "web", NOOP_SPEC "  suspendAfterIdle: 1h\n");
	json_decref(fixture_wait_status(f, "web", running, NULL));
	assert_int_equal(fixture_noop_field(f, "web", "restores"), 2);
	assert_false(exists(f->state, "idle/web.json"));
}

/* Activity (the count moving) keeps it awake; once it stops, it goes to sleep. */
/*
 * Busy for three times its idle time (2s): a line written to its run dir's file (appended,
 * or the file replaced) every 100 ms, and the daemon sees it all along; once that stops,
 * it sleeps, and vmd wake wakes it.
 */
static void stay_busy(Fixture *f, const char *name, const char *file, bool append)
{
	_cleanup_free_ char *path = path_in(f->run, "%s/%s", name, file);

	json_decref(fixture_wait_status(f, name, running, NULL));
	for (unsigned i = 1; i <= 60; i++) {
		FILE *o = fopen(path, append ? "a" : "w");
		json_t *s;

		assert_non_null(o);
		fprintf(o, "%u\n", i);
		assert_int_equal(fclose(o), 0);
		fixture_pass_time(f, 100);
		s = fixture_status(f, name);
		if (!running(s, NULL))
			fail_msg("suspended while active, after %u lines", i);
		json_decref(s);
	}
	json_decref(fixture_wait_status(f, name, idle_suspended, NULL));
	assert_int_equal(run_wake(f, name), 0);
	json_decref(fixture_wait_status(f, name, running, NULL));
}

/* noop: its activity count moving. */
static void test_activity_postpones(void **state)
{
	Fixture *f = *state;

	fixture_put(f, "web", NOOP_SPEC "  suspendAfterIdle: 2s\n");
	fixture_start_daemon(f);
	stay_busy(f, "web", "noop-activity", false);
}

/*
 * Firecracker (its simulator), which writes its console to console.log itself: that
 * file growing is activity; idle, it is saved (PUT /snapshot/create) and woken.
 */
static void test_fc_console_log(void **state)
{
	static const char *args[3] = { "--firecracker-binary" };
	Fixture *f = *state;
	char sim[4096];

	snprintf(sim, sizeof(sim), "%s", test_src("tests/sim/firecracker"));
	args[1] = sim;
	f->daemon_args = args;
	fixture_put_sim(f, "vm", "firecracker", "  memory: 64Mi\n  suspendAfterIdle: 2s\n");
	fixture_start_daemon(f);
	stay_busy(f, "vm", "console.log", true);
	assert_true(fixture_count_requests(f, "PUT /snapshot/create") >= 1);
	assert_true(fixture_count_requests(f, "PUT /snapshot/load") >= 1);
}

static bool save_failed(json_t *s, const void *arg _unused_)
{
	const char *e = s ? json_string_value(json_object_get(s, "lastError")) : NULL;

	return phase_is(s, "Running") && e && strstr(e, "suspend failed");
}

/* An idle save that fails: the VM runs on, saying so, and the retry (backoff) saves it. */
static void test_save_fails(void **state)
{
	Fixture *f = *state;

	fixture_put(f, "web",
		    "apiVersion: vmd/v1\nkind: Sandbox\nmetadata:\n  labels: {noop.vmd/fail-ops: \"1\"}\n"
		    "spec:\n  backend: noop\n  memory: 64Mi\n  suspendAfterIdle: 1s\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "web", save_failed, NULL));
	assert_false(exists(f->state, "snapshots/web/current"));
	json_decref(fixture_wait_status(f, "web", idle_suspended, NULL));
}

/*
 * That it sleeps cannot be kept (<state-dir>/idle is a file): it does not sleep, the
 * journal says why, and it is watched again: once the state dir takes it, it sleeps.
 */
static void test_state_unwritable(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *idle = path_in(f->state, "idle");
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;
	char *log = NULL;
	json_t *s;

	test_write_str(f->state, "idle", "not a dir\n");
	fixture_put(f, "web", NOOP_SPEC "  suspendAfterIdle: 1s\n");
	fixture_start_daemon(f);
	while (!log || !strstr(log, "a restarted vmd would not know whether it sleeps")) {
		free(log);
		assert_true(ms_now() < end);
		fixture_pass_time(f, 50);
		log = test_read_file(f->log, NULL);
	}
	free(log);
	s = fixture_status(f, "web");
	assert_true(running(s, NULL));
	json_decref(s);
	assert_int_equal(unlink(idle), 0);
	json_decref(fixture_wait_status(f, "web", idle_suspended, NULL));
}

/* suspendAfterIdle changes on a running VM with no restart: the same boot goes to sleep. */
static void test_change_live(void **state)
{
	Fixture *f = *state;
	long long started;

	fixture_put(f, "web", NOOP_SPEC "  suspendAfterIdle: 1h\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "web", running, NULL));
	started = fixture_noop_field(f, "web", "startedAtUsec");
	assert_true(started > 0);
	fixture_put(f, "web", NOOP_SPEC "  suspendAfterIdle: 1s\n");
	json_decref(fixture_wait_status(f, "web", idle_suspended, NULL));
	assert_int_equal(fixture_noop_field(f, "web", "startedAtUsec"), started);
}

/* A connection to 127.0.0.1:port: its fd (connected, or the connect failed: -errno). */
static int connect_to(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

/* A connection to port once the daemon holds it (the pass after the save does): its fd. */
static int connect_held(Fixture *f, uint16_t port)
{
	int fd = -1;

	for (unsigned i = 0; i < 100 && fd < 0; i++) {
		fd = connect_to(port);
		if (fd < 0)
			fixture_pass_time(f, 50);
	}
	assert_true(fd >= 0);
	return fd;
}

/*
 * Asleep, vmd holds its forwarded TCP port (the VMM that bound it is gone): a connect
 * wakes it. That connection was never accepted: vmd's close of the port resets it.
 */
static void test_port_wakes(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *text = NULL;
	uint16_t port;
	int fd, l;
	char c;

	/* A free port: the kernel's pick, let go again. */
	l = fixture_listen_loopback(&port);
	close(l);
	assert_true(asprintf(&text,
			     NOOP_SPEC "  suspendAfterIdle: 1s\n  networks:\n"
				       "    - {id: nat, type: user, ports: [{host: %u, guest: 22}]}\n",
			     port) > 0);
	fixture_put(f, "web", text);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "web", running, NULL));
	/* Awake, the VMM holds it (noop binds none): nothing listens there. */
	assert_int_equal(connect_to(port), -ECONNREFUSED);
	json_decref(fixture_wait_status(f, "web", idle_suspended, NULL));
	fd = connect_held(f, port);
	json_decref(fixture_wait_status(f, "web", running, NULL));
	assert_int_equal(fixture_noop_field(f, "web", "restores"), 1);
	/* What the client sees: its connection reset, never served by vmd. */
	assert_true(read(fd, &c, 1) < 0 && errno == ECONNRESET);
	close(fd);
	/* And the port is free for the restored VMM again. */
	assert_int_equal(connect_to(port), -ECONNREFUSED);

	/* Asleep again, across a kill of vmd: the next one holds the port again. */
	json_decref(fixture_wait_status(f, "web", idle_suspended, NULL));
	fixture_stop_daemon(f, SIGKILL);
	assert_int_equal(connect_to(port), -ECONNREFUSED);
	fixture_start_daemon(f);
	fd = connect_held(f, port);
	close(fd);
	json_decref(fixture_wait_status(f, "web", running, NULL));
	assert_int_equal(fixture_noop_field(f, "web", "restores"), 2);
}

/* Send line to the guest's echo service over port; what comes back, NULL if nothing did. */
static char *echo(uint16_t port, const char *line)
{
	struct timeval tv = { .tv_sec = 2 };
	char buf[256];
	ssize_t n = -1;
	int fd = connect_to(port);

	if (fd < 0)
		return NULL;
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (write(fd, line, strlen(line)) == (ssize_t)strlen(line))
		n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	return strdup(buf);
}

/*
 * QEMU (TCG), the test guest with its console on tty0 (its serial port silent but for a
 * prompt) and its echo service forwarded from a host port: idle, it is suspended, QEMU
 * gone; a connect to the port wakes it, a new QEMU restores it, and a retry reaches the
 * guest's echo service through the port QEMU binds again.
 */
static void test_qemu_port_wakes(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *extra = NULL;
	char *got = NULL;
	pid_t pid;
	json_t *s;
	uint16_t port;
	int fd, l = fixture_listen_loopback(&port);

	close(l); /* a free port: the kernel's pick, let go again */
	assert_true(asprintf(&extra,
			     "  cmdline: console=tty0 quiet vmd.ip=10.0.2.15/24 vmd.echo=7\n"
			     "  suspendAfterIdle: 2s\n  networks:\n"
			     "    - {id: n0, type: user, ports: [{host: %u, guest: 7}]}\n",
			     port) > 0);
	qemu_put(f, "web", extra);
	fixture_start_daemon(f);
	pid = fixture_running(f, "web");
	s = fixture_wait_status(f, "web", idle_suspended, NULL);
	json_decref(s);
	assert_int_equal(kill(pid, 0), -1); /* its QEMU is gone (reaped: no zombie) */
	fd = connect_held(f, port);
	close(fd);
	s = fixture_wait_status(f, "web", running, NULL);
	assert_true(pid_of(s) != pid);
	json_decref(s);
	/* Retried as a client would: the restored guest answers (or sleeps again, and wakes). */
	for (unsigned i = 0; i < 240 && !got; i++) {
		got = echo(port, "hello-18\n");
		if (!got)
			fixture_pass_time(f, 500);
	}
	assert_non_null(got);
	assert_string_equal(got, "hello-18\n");
	free(got);
}

/*
 * QEMU (TCG), the test guest printing a tick a second on its serial console: the console's
 * bytes are activity, and it runs on through 2.5 times its idle time, the same QEMU.
 */
static void test_qemu_console_active(void **state)
{
	Fixture *f = *state;
	pid_t pid;
	json_t *s;

	qemu_put(f, "web", "  cmdline: console=ttyS0\n  suspendAfterIdle: 10s\n");
	fixture_start_daemon(f);
	pid = fixture_running(f, "web");
	fixture_wait_console(f, "web", "VMD-GUEST-TICK 25", 0);
	s = fixture_status(f, "web");
	assert_true(running(s, NULL));
	assert_int_equal(pid_of(s), pid);
	json_decref(s);
	assert_false(exists(f->state, "idle/web.json"));
}

/* Without a daemon, vmd wake says so and fails. */
static void test_wake_no_daemon(void **state)
{
	Fixture *f = *state;

	assert_int_equal(run_wake(f, "web"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_tap_packets),
		cmocka_unit_test_setup_teardown(test_idle_wake, fixture_setup_notify,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_activity_postpones, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_fc_console_log, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_save_fails, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_state_unwritable, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_change_live, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_port_wakes, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_qemu_port_wakes, qemu_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_qemu_console_active, qemu_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_wake_no_daemon, fixture_setup, fixture_teardown),
	};

	if (getenv("VMD_TEST_FILTER")) /* one test, for a run by hand */
		cmocka_set_test_filter(getenv("VMD_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
