/* SPDX-License-Identifier: MIT */
/*
 * The QEMU guest agent (backends/guest-agent.c): what vmd keeps of a
 * guest-network-get-interfaces reply, and, on real QEMU with TCG and the test guest's
 * initramfs-agent.cpio (qemu-ga in it), a guest's own address in status.json where the host
 * never sees it (user-mode networking), again after a kill -9 of vmd, and Ready by the
 * agent: {} readiness probe (a guest-ping). The guest-ping exchange itself against an
 * agent this test plays on the socket. Cloud Hypervisor and Firecracker refuse guestAgent.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "guest-agent.h"
#include "qemu-fixture.h"
#include "spec.h"
#include "util.h"

static AgentIface *parse(const char *json, size_t *n)
{
	AgentIface *v = NULL;

	assert_int_equal(guest_agent_parse_interfaces(json, strlen(json), &v, n), 0);
	return v;
}

static void test_parse(void **state _unused_)
{
	/* What the test guest's qemu-ga answered, and what a guest could make up. */
	const char *reply =
		"{\"return\": [{\"name\": \"lo\", \"hardware-address\": \"00:00:00:00:00:00\", "
		"\"ip-addresses\": [{\"ip-address-type\": \"ipv4\", \"ip-address\": \"127.0.0.1\"}]},"
		"{\"name\": \"eth0\", \"hardware-address\": \"52:54:00:12:34:56\", \"ip-addresses\": ["
		"{\"ip-address-type\": \"ipv6\", \"ip-address\": \"fe80::5054:ff:fe12:3456\", \"prefix\": 64},"
		"{\"ip-address-type\": \"ipv4\", \"ip-address\": \"10.9.0.5\", \"prefix\": 24},"
		"{\"ip-address-type\": \"ipv4\", \"ip-address\": \"10.9.0.5\", \"prefix\": 24},"
		"{\"ip-address-type\": \"ipv4\", \"ip-address\": \"<script>\"},"
		"{\"ip-address-type\": \"ipv4\", \"ip-address\": 7}]},"
		"{\"name\": \"eth1\", \"hardware-address\": \"not-a-mac\"},"
		"{\"name\": \"eth2\", \"hardware-address\": \"52:54:00:00:00:02\"}]}";
	uint8_t mac[6];
	AgentIface *v;
	size_t n;

	v = parse(reply, &n);
	/* lo is nobody's NIC; nor is what has no MAC that parses. */
	assert_int_equal(n, 2);
	assert_int_equal(spec_mac_parse("52:54:00:12:34:56", mac), 0);
	assert_memory_equal(v[0].mac, mac, 6);
	/* Sorted, once each, only what parses as an address. */
	assert_string_equal(v[0].addresses, "10.9.0.5,fe80::5054:ff:fe12:3456");
	assert_null(v[1].addresses);
	agent_ifaces_free(v, n);

	assert_int_equal(guest_agent_parse_interfaces("{\"error\": {\"class\": \"x\"}}", 26, &v, &n),
			 -EINVAL);
	assert_int_equal(guest_agent_parse_interfaces("{\"return\": 42}", 14, &v, &n), -EINVAL);
	assert_int_equal(guest_agent_parse_interfaces("nonsense", 8, &v, &n), -EINVAL);
}

static void put_agent_guest(Fixture *f, const char *name)
{
	_cleanup_free_ char *text = NULL, *kernel = qemu_guest_file("vmlinux"),
			    *initrd = qemu_guest_file("initramfs-agent.cpio");

	assert_true(asprintf(&text,
			     "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: qemu\n"
			     "  memory: 192Mi\n  kernel: %s\n  initrd: %s\n"
			     "  cmdline: console=ttyS0 quiet vmd.ip=10.0.2.15/24\n"
			     "  guestAgent: true\n"
			     "  readiness: {agent: {}, period: 1s}\n"
			     "  networks:\n    - {id: n0, type: user}\n",
			     kernel, initrd) > 0);
	fixture_put(f, name, text);
}

static bool has_address(json_t *s, const void *arg)
{
	json_t *a = json_object_get(json_array_get(json_object_get(s, "networks"), 0), "addresses"),
	       *v;
	size_t i;

	json_array_foreach(a, i, v) if (streq_ptr(json_string_value(v), arg)) return true;
	return false;
}

/*
 * The guest's address on a user network, which no neighbour table of the host has: the
 * agent says it. A vmd killed with -9 leaves the VM; the next one asks the agent again: an
 * address put on the guest after that shows too.
 */
static void test_agent_addresses(void **state)
{
	Fixture *f = *state;

	_cleanup_free_ char *log = NULL;

	put_agent_guest(f, "ga");
	fixture_start_daemon(f);
	(void)fixture_running(f, "ga"); /* Ready: its agent answered a guest-ping */
	log = test_read_file(f->log, NULL);
	assert_non_null(strstr(log, "vmd: ga: readiness probe passed"));
	(void)fixture_wait_console(f, "ga", "VMD-GUEST-AGENT", 0);
	json_decref(fixture_wait_status(f, "ga", has_address, "10.0.2.15"));

	fixture_stop_daemon(f, SIGKILL);
	fixture_start_daemon(f);
	(void)fixture_running(f, "ga");
	fixture_console_type(f, "ga", "ip addr add 10.0.2.16/24 dev eth0\n");
	json_decref(fixture_wait_status(f, "ga", has_address, "10.0.2.16"));
}

/* The agent's end of the socket, played by the test. */
typedef struct Played {
	sd_event *event;
	int fd;
	int calls, error;
	char message[128];
} Played;

static void pinged(void *userdata, int error, const char *message)
{
	Played *p = userdata;

	p->calls++;
	p->error = error;
	snprintf(p->message, sizeof(p->message), "%s", message ?: "");
}

/* The next line the daemon's side sends, the loop run meanwhile. */
static void next_line(Played *p, char *buf, size_t size)
{
	size_t n = 0;

	for (unsigned i = 0; i < 1000; i++) {
		struct pollfd pf = { .fd = p->fd, .events = POLLIN };

		(void)sd_event_run(p->event, 10 * 1000);
		if (poll(&pf, 1, 0) != 1)
			continue;
		while (n < size - 1 && read(p->fd, buf + n, 1) == 1)
			if (buf[n++] == '\n') {
				buf[n] = 0;
				return;
			}
	}
	fail_msg("no line from the agent's client");
}

static void say(Played *p, const char *text)
{
	test_send_all(p->fd, text, strlen(text));
}

static void run_until_answered(Played *p, int calls)
{
	for (unsigned i = 0; i < 1000 && p->calls < calls; i++)
		(void)sd_event_run(p->event, 10 * 1000);
	assert_int_equal(p->calls, calls);
}

/* guest-ping, answered, refused, and cut off, as a probe asks it (reconciler/probe.c). */
static void test_ping(void **state _unused_)
{
	char *dir = test_tmpdir(), line[512];
	_cleanup_free_ char *path = path_in(dir, "agent.sock");
	_cleanup_(guest_agent_freep) GuestAgent *a = NULL;
	Played p = { .fd = -EBADF };
	unsigned long long id;
	int l;

	assert_int_equal(sd_event_new(&p.event), 0);
	l = unix_listen(path, 0600);
	assert_true(l >= 0);
	assert_int_equal(guest_agent_new(p.event, path, NULL, NULL, &a), 0);
	p.fd = accept4(l, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	assert_true(p.fd >= 0);

	/* Synced first (its reply after a 0xff), then the first question. */
	next_line(&p, line, sizeof(line));
	assert_int_equal(sscanf(line,
				"{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":%llu}}",
				&id),
			 1);
	snprintf(line, sizeof(line), "\xff{\"return\": %llu}\n", id);
	say(&p, line);
	next_line(&p, line, sizeof(line));
	assert_string_equal(line, "{\"execute\":\"guest-network-get-interfaces\"}\n");
	say(&p, "{\"return\": []}\n");
	(void)sd_event_run(p.event, 10 * 1000);

	assert_int_equal(guest_agent_ping(a, pinged, &p), 0);
	next_line(&p, line, sizeof(line));
	assert_string_equal(line, "{\"execute\":\"guest-ping\"}\n");
	assert_int_equal(p.calls, 0); /* never from within the call */
	say(&p, "{\"return\": {}}\n");
	run_until_answered(&p, 1);
	assert_int_equal(p.error, 0);

	assert_int_equal(guest_agent_ping(a, pinged, &p), 0);
	next_line(&p, line, sizeof(line));
	say(&p, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"frozen\"}}\n");
	run_until_answered(&p, 2);
	assert_int_equal(p.error, -EPROTO);
	assert_string_equal(p.message, "guest-ping: frozen");

	/* Taken back: no answer for it, whatever comes. */
	assert_int_equal(guest_agent_ping(a, pinged, &p), 0);
	next_line(&p, line, sizeof(line));
	assert_int_equal(guest_agent_ping(a, NULL, NULL), 0);
	say(&p, "{\"return\": {}}\n");
	for (unsigned i = 0; i < 20; i++)
		(void)sd_event_run(p.event, 10 * 1000);
	assert_int_equal(p.calls, 2);

	/* Cut off while asked: said, and no ping until it is connected again. */
	assert_int_equal(guest_agent_ping(a, pinged, &p), 0);
	next_line(&p, line, sizeof(line));
	close(p.fd);
	run_until_answered(&p, 3);
	assert_int_equal(p.error, -ECONNRESET);
	assert_int_equal(guest_agent_ping(a, pinged, &p), -ENOTCONN);

	a = guest_agent_free(a);
	close(l);
	sd_event_unref(p.event);
	test_tmpdir_remove(dir);
}

/* Only QEMU has a virtio-serial port for it. */
static void test_refused_elsewhere(void **state _unused_)
{
	char *dir = test_tmpdir();
	_cleanup_free_ char *path = path_in(dir, "ch.yaml");
	TestRun r;

	test_write_str(dir, "ch.yaml",
		       "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: cloud-hypervisor\n"
		       "  memory: 256Mi\n  kernel: /boot/vmlinuz\n  guestAgent: true\n");
	test_run(&r, (char *const[]){ (char *)test_vmd(), "validate", path, NULL });
	assert_int_not_equal(r.status, 0);
	assert_non_null(strstr(r.err, "spec.guestAgent"));
	assert_non_null(strstr(r.err, "needs the qemu backend"));
	test_run_done(&r);
	test_tmpdir_remove(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_refused_elsewhere),
		cmocka_unit_test(test_ping),
		cmocka_unit_test_setup_teardown(test_agent_addresses, qemu_setup, fixture_teardown),
	};

	/* QEMUs outlive a daemon killed with -9: they come to this binary, which reaps them. */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
