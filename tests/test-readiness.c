/* SPDX-License-Identifier: MIT */
/*
 * Readiness and liveness probes (reconciler/probe.c) on the real `vmd daemon` with noop
 * sandboxes: a NIC whose lease (--dhcp-leases) gives 127.0.0.1, so that a tcp or http
 * probe reaches a listener this test opens on the loopback, and a console probe reading
 * the console.log the test writes in the sandbox's run dir (noop has no console). Pass,
 * fail, timeout, and a liveness restart when the listener goes; and vmd wait for each
 * condition it takes.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "qemu-fixture.h"
#include "status.h"

#define MAC "52:54:00:00:0b:01"

static void put_probed(Fixture *f, const char *name, const char *probes)
{
	char text[2048];

	snprintf(text, sizeof(text),
		 "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n"
		 "  networks:\n    - {id: n0, tap: tap-probe, mac: \"" MAC "\"}\n%s",
		 probes);
	fixture_put(f, name, text);
}

/*
 * Sandbox web with the probes of probes_fmt (its %u: port), its NIC given the loopback as
 * a DHCP server would give it an address, and the daemon started.
 */
static void start_probed(Fixture *f, const char *probes_fmt, unsigned port)
{
	static char leases[4096];
	static const char *args[] = { "--dhcp-leases", leases, NULL };
	char probes[256];

	snprintf(leases, sizeof(leases), "%s/dnsmasq.leases", f->dir);
	snprintf(probes, sizeof(probes), probes_fmt, port);
	put_probed(f, "web", probes);
	test_write_str(f->dir, "dnsmasq.leases", "0 " MAC " 127.0.0.1 probe *\n");
	f->daemon_args = args;
	fixture_start_daemon(f);
}

/* Generation arg, acted on. */
static bool settled(json_t *s, const void *arg)
{
	json_int_t g = (json_int_t)(uintptr_t)arg;

	return s && json_integer_value(json_object_get(s, "generation")) == g &&
	       json_integer_value(json_object_get(s, "observedGeneration")) == g;
}

/* tcp: refused while nothing listens (Running, not Ready), Ready once something does. */
static void test_tcp_fail_then_pass(void **state)
{
	Fixture *f = *state;
	char refused[64], probes[256];
	_cleanup_free_ char *since = NULL;
	uint16_t port;
	int fd = fixture_listen_loopback(&port);
	json_t *s;

	close(fd); /* the port is free now: a connect is refused */
	start_probed(f, "  readiness: {tcp: {port: %u}, period: 100ms}\n", port);
	snprintf(refused, sizeof(refused), "tcp 127.0.0.1:%u: Connection refused", port);
	s = fixture_wait_cond(f, "web", "Ready", "False", "ProbeFailed", refused);
	assert_string_equal(status_condition(s, "Running", "status"), "True");
	assert_string_equal(json_string_value(json_object_get(s, "phase")), "Running");
	json_decref(s);

	{
		struct sockaddr_in a = { .sin_family = AF_INET,
					 .sin_port = htons(port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 }, sizeof(int)),
				 0);
		assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
		assert_int_equal(listen(fd, 64), 0);
	}
	s = fixture_wait_cond(f, "web", "Ready", "True", "AsDesired", NULL);
	since = strdup(status_condition(s, "Ready", "lastTransitionTime"));
	json_decref(s);

	/* A new generation that keeps the probes (a label) keeps Ready: not probed anew. */
	snprintf(probes, sizeof(probes),
		 "  readiness: {tcp: {port: %u}, period: 100ms}\nmetadata: {labels: {a: b}}\n", port);
	put_probed(f, "web", probes);
	s = fixture_wait_status(f, "web", settled, (void *)(uintptr_t)2);
	assert_string_equal(status_condition(s, "Ready", "status"), "True");
	assert_string_equal(status_condition(s, "Ready", "lastTransitionTime"), since);
	json_decref(s);
	close(fd);
}

/* A restarted vmd keeps nothing of a probe: the VM it adopts is probed again, and Ready. */
static void test_readopted(void **state)
{
	Fixture *f = *state;
	uint16_t port;
	int fd = fixture_listen_loopback(&port);
	pid_t pid;
	json_t *s;

	start_probed(f, "  readiness: {tcp: {port: %u}, period: 100ms}\n", port);
	s = fixture_wait_cond(f, "web", "Ready", "True", "AsDesired", NULL);
	pid = pid_of(s);
	json_decref(s);
	fixture_stop_daemon(f, SIGTERM); /* its VMs keep running */
	close(fd);			 /* nothing listens any more */
	fixture_start_daemon(f);
	s = fixture_wait_cond(f, "web", "Ready", "False", "ProbeFailed", "Connection refused");
	assert_int_equal(pid_of(s), pid); /* adopted, not restarted */
	assert_string_equal(status_condition(s, "Running", "status"), "True");
	json_decref(s);
}

/* No address for the NIC: a failure that says so, not an error of the file. */
static void test_no_address_yet(void **state)
{
	Fixture *f = *state;

	put_probed(f, "web", "  readiness: {tcp: {port: 22}, period: 100ms}\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_cond(f, "web", "Ready", "False", "ProbeFailed",
				      "tcp port 22: no address yet"));
	json_decref(fixture_wait_cond(f, "web", "ConfigValid", "True", NULL, NULL));
}

/* A readiness timeout: ProbeTimeout, and the VM keeps running, not restarted. */
static void test_timeout(void **state)
{
	Fixture *f = *state;
	uint16_t port;
	json_t *s;

	close(fixture_listen_loopback(&port));
	start_probed(f, "  readiness: {tcp: {port: %u}, period: 100ms, timeout: 600ms}\n", port);
	s = fixture_wait_cond(f, "web", "Ready", "False", "ProbeTimeout", "Connection refused");
	assert_string_equal(status_condition(s, "Running", "status"), "True");
	assert_int_equal(json_integer_value(json_object_get(s, "restarts")), 0);
	json_decref(s);
}

/* A tiny HTTP server: answers every request with code, until told to stop. */
typedef struct Http {
	int fd;
	int code;
	pthread_t thread;
} Http;

static void *http_serve(void *arg)
{
	Http *h = arg;

	for (;;) {
		char buf[1024], reply[128];
		int c = accept4(h->fd, NULL, NULL, SOCK_CLOEXEC);

		if (c < 0)
			return NULL; /* shut down */
		(void)!read(c, buf, sizeof(buf));
		snprintf(reply, sizeof(reply), "HTTP/1.0 %d X\r\nContent-Length: 0\r\n\r\n", h->code);
		(void)!write(c, reply, strlen(reply));
		close(c);
	}
}

/* http: a 503 is a failure with its status; a 200 passes. */
static void test_http(void **state)
{
	Fixture *f = *state;
	char want[64];
	uint16_t port;
	Http h = { .code = 503 };

	h.fd = fixture_listen_loopback(&port);
	assert_int_equal(pthread_create(&h.thread, NULL, http_serve, &h), 0);
	start_probed(f, "  readiness: {http: {port: %u, path: /ready}, period: 100ms}\n", port);
	snprintf(want, sizeof(want), "http 127.0.0.1:%u/ready: status 503", port);
	json_decref(fixture_wait_cond(f, "web", "Ready", "False", "ProbeFailed", want));
	__atomic_store_n(&h.code, 200, __ATOMIC_SEQ_CST);
	json_decref(fixture_wait_cond(f, "web", "Ready", "True", NULL, NULL));
	shutdown(h.fd, SHUT_RDWR);
	pthread_join(h.thread, NULL);
	close(h.fd);
}

/* console: a line matching, printed after the start, makes it Ready. */
static void test_console(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *dir = NULL;

	fixture_put(f, "web",
		    "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n"
		    "  readiness: {console: {match: \"^VMD-GUEST-READY$\"}, period: 100ms}\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_cond(f, "web", "Running", "True", NULL, NULL));
	json_decref(fixture_wait_cond(f, "web", "Ready", "False", "ProbeFailed", "console"));
	dir = path_in(f->run, "web");
	test_write_str(dir, "console.log", "booting\nVMD-GUEST-READY now\n");
	fixture_pass_time(f, 400);
	json_decref(fixture_wait_cond(f, "web", "Ready", "False", NULL, NULL)); /* not a whole line */
	test_write_str(dir, "console.log", "booting\nVMD-GUEST-READY now\nVMD-GUEST-READY\r\n");
	json_decref(fixture_wait_cond(f, "web", "Ready", "True", NULL, NULL));
}

/* Liveness: the listener goes, failureThreshold failures later the VM is restarted. */
static void test_liveness_restart(void **state)
{
	Fixture *f = *state;
	uint16_t port;
	int fd = fixture_listen_loopback(&port);
	_cleanup_free_ char *log = NULL;
	json_t *s;

	start_probed(f, "  liveness: {tcp: {port: %u}, period: 100ms, failureThreshold: 2}\n", port);
	json_decref(fixture_wait_status(f, "web", ready, "Running"));
	fixture_pass_time(f, 500); /* passing all along: no restart */
	s = fixture_status(f, "web");
	assert_int_equal(json_integer_value(json_object_get(s, "restarts")), 0);
	json_decref(s);

	close(fd);
	s = fixture_wait_status(f, "web", restarted, (void *)(uintptr_t)1);
	json_decref(s);
	log = test_read_file(f->log, NULL);
	assert_non_null(strstr(log, "liveness probe failed 2 times in a row: tcp 127.0.0.1:"));
}

/* vmd wait ARGS... with --run-dir f->run and --sandboxes f->sb; its exit status, *err kept. */
static int vmd_wait(Fixture *f, char **err, const char *const *args)
{
	char *argv[16] = { (char *)test_vmd(),	  (char *)"wait", (char *)"--run-dir", f->run,
			   (char *)"--sandboxes", f->sb };
	size_t n = 6;
	TestRun r;
	int status;

	while (*args && n < ELEMENTSOF(argv) - 1)
		argv[n++] = (char *)*args++;
	test_run(&r, argv);
	status = r.status;
	if (err)
		*err = TAKE_PTR(r.err);
	test_run_done(&r);
	return status;
}
#define WAIT(f, err, ...) vmd_wait(f, err, (const char *const[]){ __VA_ARGS__, NULL })

static const char *const PLAIN =
	"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n";

/* vmd wait for each condition, on the daemon's status files; and a timeout's reason. */
static void test_wait(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *err = NULL, *text = NULL, *path = NULL;
	json_t *s;

	put_probed(f, "web", "  readiness: {tcp: {port: 22}, period: 100ms}\n");
	fixture_put(f, "db", PLAIN);
	fixture_start_daemon(f);
	assert_int_equal(WAIT(f, NULL, "db", "web", "--for", "running", "--timeout", "60s"), 0);
	assert_int_equal(WAIT(f, NULL, "db", "--for", "ready"), 0);
	/* web has no address: not Ready, with the probe's words. */
	assert_int_equal(WAIT(f, &err, "db", "web", "--for", "ready", "--timeout", "500ms"), 1);
	assert_non_null(strstr(err, "vmd wait: web: timed out after 500ms: Ready is False "
				    "(ProbeFailed: tcp port 22: no address yet)\n"));
	assert_null(strstr(err, "db:"));
	err = mfree(err);

	/* applied: the content of the file now, not the generation vmd had. */
	assert_int_equal(WAIT(f, NULL, "db", "--for", "applied"), 0);
	assert_true(asprintf(&text, "%s  cmdline: console=ttyS0\n", PLAIN) > 0);
	fixture_put(f, "db", text);
	assert_int_equal(WAIT(f, NULL, "db", "--for", "applied", "--timeout", "60s"), 0);
	s = fixture_status(f, "db");
	assert_int_equal(json_integer_value(json_object_get(s, "generation")), 2);
	assert_int_equal(json_integer_value(json_object_get(s, "observedGeneration")), 2);
	json_decref(s);
	/* An invalid file is never applied: the wait says why. */
	fixture_put(f, "db", "apiVersion: vmd/v1\nkind: Sandbox\nspec: {vpcus: 2}\n");
	assert_int_equal(WAIT(f, &err, "db", "--for", "applied", "--timeout", "1s"), 1);
	assert_non_null(strstr(err, "db: timed out after 1s: ConfigValid is False (InvalidConfig: "));
	err = mfree(err);

	/* stopped, then deleted; a stopped sandbox with a probe is Ready as asked. */
	assert_true(
		asprintf(&path,
			 "%s  state: stopped\n  readiness: {tcp: {port: 1}}\n  networks: [{id: n0, tap: tap-db}]\n",
			 PLAIN) > 0);
	fixture_put(f, "db", path);
	assert_int_equal(WAIT(f, NULL, "db", "--for", "stopped", "--timeout", "60s"), 0);
	assert_int_equal(WAIT(f, NULL, "db", "--for", "applied", "--timeout", "60s"), 0);
	assert_int_equal(WAIT(f, &err, "db", "--for", "deleted", "--timeout", "200ms"), 1);
	assert_non_null(
		strstr(err, "db: timed out after 200ms: it still has a status (phase Stopped)"));
	err = mfree(err);
	free(path);
	path = path_in(f->sb, "db.yaml");
	assert_int_equal(unlink(path), 0);
	assert_int_equal(WAIT(f, NULL, "db", "--for", "deleted", "--timeout", "60s"), 0);
	assert_int_equal(WAIT(f, NULL, "gone", "--for", "deleted"), 0);

	/* Usage errors: 2. */
	assert_int_equal(WAIT(f, NULL, "web"), 2);
	assert_int_equal(WAIT(f, NULL, "--for", "ready"), 2);
	assert_int_equal(WAIT(f, NULL, "web", "--for", "happy"), 2);
	assert_int_equal(WAIT(f, NULL, "web", "--for", "ready", "--timeout", "soon"), 2);
}

/*
 * --for suspended: a file just edited to state: suspended is waited for until its snapshot
 * is committed; a desired state that is not suspended, or a suspend that failed (the noop
 * backend's fail-ops, for every try), fails the wait at once, not at its timeout.
 */
static void test_wait_suspended(void **state)
{
	static const char *const FAILING =
		"apiVersion: vmd/v1\nkind: Sandbox\nmetadata:\n  labels: {noop.vmd/fail-ops: \"99\"}\n"
		"spec:\n  backend: noop\n  memory: 64Mi\n";
	Fixture *f = *state;
	_cleanup_free_ char *err = NULL, *text = NULL;
	json_t *s;

	fixture_put(f, "db", PLAIN);
	fixture_put(f, "web", FAILING);
	fixture_start_daemon(f);
	assert_int_equal(WAIT(f, NULL, "db", "web", "--for", "running", "--timeout", "60s"), 0);
	assert_int_equal(WAIT(f, &err, "db", "--for", "suspended", "--timeout", "60s"), 1);
	assert_non_null(strstr(err, "vmd wait: db: not suspended: its desired state is running, "
				    "not suspended\n"));
	err = mfree(err);

	assert_true(asprintf(&text, "%s  state: suspended\n", PLAIN) > 0);
	fixture_put(f, "db", text);
	assert_int_equal(WAIT(f, NULL, "db", "--for", "suspended", "--timeout", "60s"), 0);
	s = fixture_status(f, "db");
	assert_string_equal(json_string_value(json_object_get(s, "phase")), "Suspended");
	assert_true(json_is_object(json_object_get(s, "snapshot")));
	json_decref(s);

	free(text);
	assert_true(asprintf(&text, "%s  state: suspended\n", FAILING) > 0);
	fixture_put(f, "web", text);
	assert_int_equal(WAIT(f, &err, "web", "--for", "suspended", "--timeout", "60s"), 1);
	assert_non_null(strstr(err, "vmd wait: web: not suspended: Degraded is True (ActionFailed: "
				    "suspend failed: "));
	s = fixture_status(f, "web");
	assert_string_equal(json_string_value(json_object_get(s, "phase")), "Running");
	json_decref(s);
}

/*
 * On QEMU (TCG), the test guest: its console marker VMD-GUEST-READY as readiness; then,
 * as the file changes, a tcp probe through a user network's forwarded port, which QEMU
 * accepts itself: to a guest port nothing listens on it fails (QEMU hangs up), to the
 * guest's echo service (vmd.echo=7) it passes. One boot: a probe's change is no restart.
 */
static void test_qemu(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *console = NULL, *closed = NULL;
	char spec[1024];
	uint16_t echo_port, none_port;
	const char *net;
	pid_t pid;
	json_t *s;

	close(fixture_listen_loopback(&echo_port));
	close(fixture_listen_loopback(&none_port));
	net = "  cmdline: console=ttyS0 quiet vmd.ip=10.0.2.15/24 vmd.echo=7\n  networks:\n"
	      "    - {id: n0, type: user, ports: [{host: %u, guest: 7}, {host: %u, guest: 8}]}\n";
	snprintf(spec, sizeof(spec), net, echo_port, none_port);
	strcat(spec, "  readiness: {console: {match: \"^VMD-GUEST-READY$\"}, period: 200ms}\n");
	qemu_put(f, "guest", spec);
	fixture_start_daemon(f);
	s = fixture_wait_cond(f, "guest", "Ready", "True", "AsDesired", NULL);
	pid = pid_of(s);
	json_decref(s);
	console = fixture_console(f, "guest");
	assert_non_null(strstr(console, "VMD-GUEST-READY\r\n")); /* before Ready, not after */

	snprintf(spec, sizeof(spec), net, echo_port, none_port);
	strcat(spec, "  readiness: {tcp: {port: 8}, period: 200ms}\n");
	qemu_put(f, "guest", spec);
	assert_true(asprintf(&closed,
			     "tcp 127.0.0.1:%u: closed at once: nothing listens on guest port 8",
			     none_port) > 0);
	json_decref(fixture_wait_cond(f, "guest", "Ready", "False", "ProbeFailed", closed));

	snprintf(spec, sizeof(spec), net, echo_port, none_port);
	strcat(spec, "  readiness: {tcp: {port: 7}, period: 200ms}\n");
	qemu_put(f, "guest", spec);
	s = fixture_wait_cond(f, "guest", "Ready", "True", "AsDesired", NULL);
	assert_int_equal(pid_of(s), pid); /* the same VM all along */
	json_decref(s);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tcp_fail_then_pass, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_no_address_yet, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_readopted, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_timeout, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_http, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_console, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_liveness_restart, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_wait, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_wait_suspended, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_qemu, qemu_setup, fixture_teardown),
	};

	if (getenv("VMD_TEST_FILTER")) /* one test, for a run by hand */
		cmocka_set_test_filter(getenv("VMD_TEST_FILTER"));
	return cmocka_run_group_tests_name("readiness", tests, NULL, NULL);
}
