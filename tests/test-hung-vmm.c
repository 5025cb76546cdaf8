/* SPDX-License-Identifier: MIT */
/*
 * The real `vmd daemon` with VMMs that stop answering: simulated QEMUs (tests/sim/qemu),
 * Cloud Hypervisors and Firecrackers, hung with SIGSTOP once they run (their sockets still
 * take connections, nothing answers), or whose QMP never answers, answers with wrong ids
 * or with garbage from the start. Whatever they do, the daemon serves every other
 * sandbox, keeps pinging the watchdog, answers SIGHUP, reports the silent ones as
 * VmmNotResponding, ends a hung VM whose file is removed (forced, then SIGKILL through its
 * pidfd), and takes in charge a VM found hung after a restart once it answers, never a
 * second one beside it. The test binds its own NOTIFY_SOCKET, with a watchdog, and a
 * thread of it stamps every message as it arrives.
 *
 * Waits are bounded (a failure, not a speed claim). Two bounds are about time on purpose,
 * each far from what a working daemon needs and at what a blocking one would reach: no
 * watchdog gap over WATCHDOG_USEC/2 (the loop wakes every second: --resync 1), and READY=1
 * after SIGHUP before one VMM request deadline (5 s) has passed.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "status.h"
#include "util.h"

#define WATCHDOG_USEC (8ull * 1000000)
#define REQUEST_DEADLINE_MS 5000 /* VMM_REQUEST_TIMEOUT_USEC */

static char sim_qemu[4096], sim_ch[4096], sim_fc[4096];

/* What the daemon told "systemd", each message with when it came (CLOCK_MONOTONIC ms). */
typedef struct Notify {
	int fd;
	pthread_t thread;
	pthread_mutex_t lock;
	struct {
		uint64_t ms;
		char *text;
	} * msgs;
	size_t n;
	bool stop;
} Notify;

static Notify notify;

static void *notify_thread(void *arg _unused_)
{
	while (!notify.stop) {
		char buf[4096];
		ssize_t n = recv(notify.fd, buf, sizeof(buf) - 1, 0);

		if (n <= 0) {
			usleep(1000);
			continue;
		}
		buf[n] = '\0';
		pthread_mutex_lock(&notify.lock);
		notify.msgs = realloc(notify.msgs, (notify.n + 1) * sizeof(*notify.msgs));
		notify.msgs[notify.n].ms = ms_now();
		notify.msgs[notify.n].text = strdup(buf);
		notify.n++;
		pthread_mutex_unlock(&notify.lock);
	}
	return NULL;
}

static int setup(void **state)
{
	static const char *const args[] = { "--qemu-binary",
					    sim_qemu,
					    "--cloud-hypervisor-binary",
					    sim_ch,
					    "--firecracker-binary",
					    sim_fc,
					    "--resync",
					    "1",
					    NULL };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_usec = 100000 };
	Fixture *f;

	fixture_setup(state);
	f = *state;
	f->daemon_args = args;
	f->notify_socket = path_in(f->dir, "notify");
	f->watchdog_usec = WATCHDOG_USEC;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->notify_socket);
	notify = (Notify){ .fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0) };
	assert_true(notify.fd >= 0);
	assert_int_equal(bind(notify.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(setsockopt(notify.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	pthread_mutex_init(&notify.lock, NULL);
	assert_int_equal(pthread_create(&notify.thread, NULL, notify_thread, NULL), 0);
	return 0;
}

static int teardown(void **state)
{
	Fixture *f = *state;

	notify.stop = true;
	pthread_join(notify.thread, NULL);
	close(notify.fd);
	for (size_t i = 0; i < notify.n; i++)
		free(notify.msgs[i].text);
	free(notify.msgs);
	free((char *)f->notify_socket);
	return fixture_teardown(state);
}

static size_t notify_count(void)
{
	size_t n;

	pthread_mutex_lock(&notify.lock);
	n = notify.n;
	pthread_mutex_unlock(&notify.lock);
	return n;
}

/* When the first message with what after message number from came (bounded wait). */
static uint64_t notify_wait(const char *what, size_t from)
{
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	for (;;) {
		uint64_t at = 0;

		pthread_mutex_lock(&notify.lock);
		for (size_t i = from; i < notify.n && !at; i++)
			if (strstr(notify.msgs[i].text, what))
				at = notify.msgs[i].ms;
		pthread_mutex_unlock(&notify.lock);
		if (at)
			return at;
		if (ms_now() > end)
			fail_msg("no '%s' from the daemon", what);
		usleep(10000);
	}
}

/* The longest time between two watchdog pings since since_ms, up to now. */
static uint64_t watchdog_gap(uint64_t since_ms)
{
	uint64_t last = since_ms, gap = 0, now = ms_now();
	unsigned pings = 0;

	pthread_mutex_lock(&notify.lock);
	for (size_t i = 0; i < notify.n; i++) {
		if (notify.msgs[i].ms < since_ms || !strstr(notify.msgs[i].text, "WATCHDOG=1"))
			continue;
		gap = MAX(gap, notify.msgs[i].ms - last);
		last = notify.msgs[i].ms;
		pings++;
	}
	pthread_mutex_unlock(&notify.lock);
	assert_true(pings > 0);
	return MAX(gap, now - last);
}

static void put(Fixture *f, const char *name, const char *backend, const char *extra)
{
	_cleanup_free_ char *spec = NULL;

	assert_true(asprintf(&spec, "  memory: 64Mi\n  stopTimeout: 1s\n%s", extra) > 0);
	fixture_put_sim(f, name, backend, spec);
}

static void put_noop(Fixture *f, const char *name, const char *state)
{
	_cleanup_free_ char *text = NULL;

	assert_true(asprintf(&text,
			     "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n"
			     "  memory: 64Mi\n  state: %s\n",
			     state) > 0);
	fixture_put(f, name, text);
}

static bool not_responding(json_t *s, const void *arg _unused_)
{
	return s && streq(status_condition(s, "Ready", "status"), "Unknown") &&
	       streq(status_condition(s, "Ready", "reason"), "VmmNotResponding") &&
	       streq(status_condition(s, "Degraded", "reason"), "VmmNotResponding");
}

/* Starting, its start job in phase arg. */
static bool job_phase_is(json_t *s, const void *arg)
{
	json_t *job = json_object_get(s, "job");

	return phase_is(s, "Starting") &&
	       streq_ptr(json_string_value(json_object_get(job, "type")), "start") &&
	       streq_ptr(json_string_value(json_object_get(job, "phase")), arg);
}

static bool quarantined(json_t *s, const void *arg _unused_)
{
	return phase_is(s, "Unknown") && not_responding(s, NULL);
}

static bool n_disks(json_t *s, const void *arg)
{
	return ready(s, "Running") &&
	       json_array_size(json_object_get(s, "disks")) == (size_t)(uintptr_t)arg;
}

static bool log_has(Fixture *f, const char *what)
{
	_cleanup_free_ char *log = test_read_file(f->log, NULL);

	return log && strstr(log, what);
}

static void remove_file(Fixture *f, const char *name)
{
	_cleanup_free_ char *file = path_in(f->sb, "%s.yaml", name);

	assert_int_equal(unlink(file), 0);
}

/*
 * Five VMMs hang once they run (three QEMUs, a Cloud Hypervisor, a Firecracker): the
 * rest of the daemon goes on as if nothing were wrong.
 */
static void test_hung_vmms(void **state)
{
	static const char *const hung[] = { "q1", "q2", "q3", "c1", "f1" };
	Fixture *f = *state;
	_cleanup_free_ char *a = path_in(f->dir, "a.img"), *b = path_in(f->dir, "b.img"),
			    *h1 = NULL, *h1_more = NULL;
	pid_t pids[ELEMENTSOF(hung)];
	uint64_t t_hang, t_hup, ready_at;
	size_t from;

	test_write_str(f->dir, "a.img", "");
	test_write_str(f->dir, "b.img", "");
	assert_true(asprintf(&h1, "  disks:\n    - {id: a, path: \"%s\"}\n", a) > 0);
	assert_true(asprintf(&h1_more, "%s    - {id: b, path: \"%s\"}\n", h1, b) > 0);
	for (size_t i = 0; i < 3; i++)
		put(f, hung[i], "qemu", "");
	put(f, "c1", "cloud-hypervisor", "");
	put(f, "f1", "firecracker", "");
	put(f, "h1", "cloud-hypervisor", h1);
	put_noop(f, "n1", "running");
	fixture_start_daemon(f);
	for (size_t i = 0; i < ELEMENTSOF(hung); i++)
		pids[i] = fixture_running(f, hung[i]);
	fixture_running(f, "h1");
	json_decref(fixture_wait_status(f, "n1", ready, "Running"));

	/* They hang: their sockets take connections, nothing answers. */
	t_hang = ms_now();
	for (size_t i = 0; i < ELEMENTSOF(hung); i++)
		assert_int_equal(kill(pids[i], SIGSTOP), 0);

	/* Everything else is served meanwhile: a new sandbox, a hot-plug, a stop. */
	put_noop(f, "n2", "running");
	json_decref(fixture_wait_status(f, "n2", ready, "Running"));
	put(f, "h1", "cloud-hypervisor", h1_more);
	json_decref(fixture_wait_status(f, "h1", n_disks, (void *)2));
	put_noop(f, "n1", "stopped");
	json_decref(fixture_wait_status(f, "n1", ready, "Stopped"));

	/* The silent ones are said to be so, and keep the phase vmd last knew. */
	for (size_t i = 0; i < ELEMENTSOF(hung); i++) {
		json_t *s = fixture_wait_status(f, hung[i], not_responding, NULL);

		assert_true(phase_is(s, "Running"));
		assert_int_equal(pid_of(s), pids[i]);
		json_decref(s);
	}

	/* A reload answers at once: it waits for no VMM. */
	from = notify_count();
	t_hup = ms_now();
	assert_int_equal(kill(f->pid, SIGHUP), 0);
	ready_at = notify_wait("READY=1", from);
	fprintf(stderr, "SIGHUP -> READY=1: %llu ms\n", (unsigned long long)(ready_at - t_hup));
	assert_true(ready_at - t_hup < REQUEST_DEADLINE_MS);

	/* Removed files end even the hung ones: forced after stopTimeout, then SIGKILL. */
	remove_file(f, "q1");
	remove_file(f, "c1");
	remove_file(f, "f1");
	json_decref(fixture_wait_status(f, "q1", absent, NULL));
	json_decref(fixture_wait_status(f, "c1", absent, NULL));
	json_decref(fixture_wait_status(f, "f1", absent, NULL));
	assert_true(log_has(f, "q1: QEMU did not quit; sending SIGKILL"));
	assert_true(log_has(f, "c1: Cloud Hypervisor did not quit; sending SIGKILL"));
	assert_true(log_has(f, "f1: did not stop within its stopTimeout; forcing it off"));
	assert_true(kill(pids[0], 0) < 0 && kill(pids[3], 0) < 0 && kill(pids[4], 0) < 0);

	/* The others answer again: so they are said to. */
	assert_int_equal(kill(pids[1], SIGCONT), 0);
	assert_int_equal(kill(pids[2], SIGCONT), 0);
	assert_int_equal(fixture_running(f, "q2"), pids[1]);
	assert_int_equal(fixture_running(f, "q3"), pids[2]);
	assert_true(log_has(f, "q2: QEMU answers again"));

	fprintf(stderr, "longest watchdog gap: %llu ms\n", (unsigned long long)watchdog_gap(t_hang));
	assert_true(watchdog_gap(t_hang) <= WATCHDOG_USEC / 1000 / 2);
}

/*
 * Monitors broken from the start: never a greeting, replies with wrong ids, garbage. A
 * sandbox beside them starts at once; a removed file cuts a start short; the others run
 * out of time (and are killed); the garbage one is not connected to again and again.
 */
static void test_broken_monitors(void **state)
{
	static const char *const broken[] = { "silent", "wrong-id", "garbage" };
	Fixture *f = *state;
	uint64_t t0 = ms_now();

	for (size_t i = 0; i < ELEMENTSOF(broken); i++) {
		_cleanup_free_ char *extra = NULL, *name = strdup(broken[i]);

		assert_true(asprintf(&extra, "  cmdline: sim.qmp=%s\n", broken[i]) > 0);
		put(f, name, "qemu", extra);
	}
	fixture_start_daemon(f);
	put_noop(f, "beside", "running");
	json_decref(fixture_wait_status(f, "beside", ready, "Running"));
	for (size_t i = 0; i < ELEMENTSOF(broken); i++)
		json_decref(fixture_wait_status(f, broken[i], job_phase_is, "api-up"));
	/* A stop cuts a start short: QEMU is asked to quit (it cannot hear), then killed. */
	remove_file(f, "silent");
	json_decref(fixture_wait_status(f, "silent", absent, NULL));
	assert_true(log_has(f, "silent: QEMU did not quit; sending SIGKILL"));
	assert_false(log_has(f, "silent: QEMU did not start the VM"));
	/*
	 * Failed, for want of an answer: said in the log, which stays. The status says it only
	 * until the retry a second later, which the wait for the first could miss for the
	 * second (and then wait for its next failure, 30 s and a dozen connections on).
	 */
	for (size_t i = 1; i < ELEMENTSOF(broken); i++) {
		char line[96];

		snprintf(line, sizeof(line), "%s: start failed: QEMU did not answer within 30 s",
			 broken[i]);
		fixture_wait_log(f, line);
	}
	assert_true(log_has(f, "garbage: QEMU did not start the VM"));
	/* Reconnects back off: a few dozen at most, where a busy loop makes hundreds a second. */
	fprintf(stderr, "qmp_capabilities sent: %u\n", fixture_count_requests(f, "qmp_capabilities"));
	assert_true(fixture_count_requests(f, "qmp_capabilities") < 60);
	assert_true(watchdog_gap(t0) <= WATCHDOG_USEC / 1000 / 2);
}

/*
 * A restart of vmd finds two VMs whose VMMs hang: both are left alone (Unknown, never
 * killed, never started twice) and taken in charge once they answer, one at once on
 * SIGHUP, the other at its next try.
 */
static void test_adoption_retried(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *rec = path_in(f->run, "q1/vm.json");
	pid_t p1, p2;
	json_t *s;

	put(f, "q1", "qemu", "");
	put(f, "q2", "qemu", "");
	fixture_start_daemon(f);
	p1 = fixture_running(f, "q1");
	p2 = fixture_running(f, "q2");
	fixture_stop_daemon(f, SIGKILL);
	assert_int_equal(kill(p1, SIGSTOP), 0);
	assert_int_equal(kill(p2, SIGSTOP), 0);

	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "q1", quarantined, NULL));
	json_decref(fixture_wait_status(f, "q2", quarantined, NULL));
	usleep(2000000); /* a while: still left alone, still the one QEMU of q1 */
	s = fixture_status(f, "q1");
	assert_true(quarantined(s, NULL));
	assert_int_equal(pid_of(s), p1);
	json_decref(s);
	assert_int_equal(kill(p1, 0), 0);
	s = json_load_file(rec, 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(s, "pid")), p1);
	json_decref(s);
	assert_true(log_has(f, "q1: cannot take in charge the VM it found running"));

	/* q1 answers again and a SIGHUP says to try now; q2 answers at its next try. */
	assert_int_equal(kill(p1, SIGCONT), 0);
	assert_int_equal(kill(f->pid, SIGHUP), 0);
	assert_int_equal(kill(p2, SIGCONT), 0);
	s = fixture_wait_status(f, "q1", ready, "Running");
	assert_int_equal(pid_of(s), p1);
	assert_int_equal(json_integer_value(json_object_get(s, "restarts")), 0);
	json_decref(s);
	assert_int_equal(fixture_running(f, "q2"), p2);
	assert_true(log_has(f, "q1: re-adopted its running VM"));
	assert_true(log_has(f, "q2: re-adopted its running VM"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_hung_vmms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_broken_monitors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_adoption_retried, setup, teardown),
	};

	snprintf(sim_qemu, sizeof(sim_qemu), "%s", test_src("tests/sim/qemu"));
	snprintf(sim_ch, sizeof(sim_ch), "%s", test_src("tests/sim/cloud-hypervisor"));
	snprintf(sim_fc, sizeof(sim_fc), "%s", test_src("tests/sim/firecracker"));
	/* VMMs outlive a daemon killed with -9: they come to this binary, which reaps them. */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
