/* SPDX-License-Identifier: MIT */
/*
 * The networks of a QEMU guest on the real `vmd daemon` (backends/netdev.c, host-ports.c,
 * neigh.c): taps that exist, taps vmd makes on a bridge, macvtaps, QEMU's user-mode
 * network with forwarded ports, and the guest's address in status. Everything runs in a
 * network namespace of this binary's own, with a sysfs of it; the host's interfaces are
 * not touched. The guest's init sets an address from vmd.ip= and serves an echo from
 * vmd.echo= (tests/guest/init). Waits are bounded (a failure, not a speed claim).
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include "net-fixture.h"
#include "qemu-fixture.h"
#include "spec.h"
#include "status.h"
#include "util.h"

/*
 * tap NICs, at boot and hot-added, on tap devices of this test's own network namespace
 * (main): the host's interfaces are not touched.
 */
static void test_tap(void **state)
{
	Fixture *f = *state;
	json_t *s;

	net_ip("tuntap", "add", "dev", "vmdtap0", "mode", "tap", NULL);
	net_ip("tuntap", "add", "dev", "vmdtap1", "mode", "tap", NULL);
	qemu_put(f, "tapped",
		 "  cmdline: console=ttyS0 quiet\n  networks:\n"
		 "    - {id: n0, tap: vmdtap0, mac: \"52:54:00:00:01:00\"}\n");
	fixture_start_daemon(f);
	qemu_wait_devices(f, "tapped", "", "eth0@52:54:00:00:01:00");
	qemu_put(f, "tapped",
		 "  cmdline: console=ttyS0 quiet\n  networks:\n"
		 "    - {id: n0, tap: vmdtap0, mac: \"52:54:00:00:01:00\"}\n"
		 "    - {id: n1, type: tap, tap: vmdtap1, mac: \"52:54:00:00:01:01\"}\n");
	qemu_wait_devices(f, "tapped", "", "eth0@52:54:00:00:01:00,eth1@52:54:00:00:01:01");
	s = fixture_wait_status(f, "tapped", ready, "Running");
	assert_int_equal(qemu_n_devices(s, "networks"), 2);
	json_decref(s);
	qemu_put(f, "tapped",
		 "  cmdline: console=ttyS0 quiet\n  networks:\n"
		 "    - {id: n1, type: tap, tap: vmdtap1, mac: \"52:54:00:00:01:01\"}\n");
	qemu_wait_devices(f, "tapped", "", "eth1@52:54:00:00:01:01");
	s = fixture_wait_status(f, "tapped", ready, "Running");
	assert_int_equal(qemu_n_devices(s, "networks"), 1);
	json_decref(s);
	test_kill_wait(&f->pid, SIGKILL);
	fixture_kill_vmms(f->run);
	net_ip("link", "del", "vmdtap0", NULL, NULL, NULL);
	net_ip("link", "del", "vmdtap1", NULL, NULL, NULL);
}

/* status.json's first network lists addr among its addresses. */
static bool first_address_is(json_t *s, const void *addr)
{
	json_t *a = json_object_get(json_array_get(json_object_get(s, "networks"), 0), "addresses");
	size_t i;
	json_t *v;

	json_array_foreach(a, i, v)
	{
		if (streq_ptr(json_string_value(v), addr))
			return true;
	}
	return false;
}

/* The guest answers a ping at addr (busybox's, as the host may have no other). */
static void wait_ping(const char *addr)
{
	for (unsigned i = 0; i < 120; i++) {
		_cleanup_(test_run_done) TestRun r = {};
		char *argv[] = { (char *)"/bin/busybox", (char *)"ping", (char *)"-c", (char *)"1",
				 (char *)"-W",		 (char *)"1",	 (char *)addr, NULL };

		test_run(&r, argv);
		if (r.status == 0)
			return;
	}
	fail_msg("the guest at %s never answered a ping", addr);
}

/* Its command line, spaces between the arguments. */
static char *cmdline_of(pid_t pid)
{
	_cleanup_free_ char *p = NULL;
	char *text = NULL;
	size_t len = 0;

	assert_true(asprintf(&p, "/proc/%d/cmdline", (int)pid) > 0);
	assert_int_equal(read_file(p, 1 << 20, &text, &len), 0);
	for (size_t i = 0; i + 1 < len; i++)
		if (!text[i])
			text[i] = ' ';
	return text;
}

static void remove_file(Fixture *f, const char *name)
{
	_cleanup_free_ char *p = path_in(f->sb, "%s.yaml", name);

	assert_int_equal(unlink(p), 0);
}

/*
 * type bridge: vmd makes the tap, puts it on the bridge, up, and hands QEMU its
 * descriptor (fd=, never ifname=); the guest answers on the bridge; the tap goes with the
 * VM.
 */
static void test_bridge(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *cmd = NULL, *master = NULL;
	char tap[SPEC_IFNAME_MAX + 1], tap1[SPEC_IFNAME_MAX + 1];
	pid_t pid;

	net_ip("link", "add", "vmdbr0", "type", "bridge", NULL);
	net_ip("addr", "add", "10.99.0.1/24", "dev", "vmdbr0", NULL);
	net_ip("link", "set", "vmdbr0", "up", NULL, NULL);
	spec_tap_derive("lan", "n0", tap);
	qemu_put(f, "lan",
		 "  cmdline: console=ttyS0 quiet vmd.ip=10.99.0.2/24\n  networks:\n"
		 "    - {id: n0, type: bridge, bridge: vmdbr0, mac: \"52:54:00:00:02:00\"}\n");
	fixture_start_daemon(f);
	pid = fixture_running(f, "lan");
	(void)fixture_wait_console(f, "lan", "VMD-GUEST-IP 10.99.0.2/24", 0);
	master = net_master_of(tap);
	assert_non_null(master);
	assert_string_equal(master, "vmdbr0");
	cmd = cmdline_of(pid);
	/* 4 is the serial console's socket, 5 QMP's; the tap comes after them. */
	assert_non_null(strstr(cmd, "id=vmd-qmp,fd=5,"));
	assert_non_null(strstr(cmd, "tap,id=netdev-n0,fd=6"));
	assert_null(strstr(cmd, "ifname="));
	wait_ping("10.99.0.2");
	/* The guest's address, from the host's neighbour table, in status at the next pass. */
	assert_int_equal(kill(f->pid, SIGHUP), 0);
	json_decref(fixture_wait_status(f, "lan", first_address_is, "10.99.0.2"));

	/* Hot-added: the tap made, on the bridge, and given to QEMU with getfd. */
	spec_tap_derive("lan", "n1", tap1);
	qemu_put(f, "lan",
		 "  cmdline: console=ttyS0 quiet vmd.ip=10.99.0.2/24\n  networks:\n"
		 "    - {id: n0, type: bridge, bridge: vmdbr0, mac: \"52:54:00:00:02:00\"}\n"
		 "    - {id: n1, type: bridge, bridge: vmdbr0, mac: \"52:54:00:00:02:01\"}\n");
	qemu_wait_devices(f, "lan", "", "eth0@52:54:00:00:02:00,eth1@52:54:00:00:02:01");
	free(master);
	master = net_master_of(tap1);
	assert_non_null(master);
	assert_string_equal(master, "vmdbr0");
	/* Unplugged: the guest let it go, QEMU closed it, and the tap is gone. */
	qemu_put(f, "lan",
		 "  cmdline: console=ttyS0 quiet vmd.ip=10.99.0.2/24\n  networks:\n"
		 "    - {id: n0, type: bridge, bridge: vmdbr0, mac: \"52:54:00:00:02:00\"}\n");
	qemu_wait_devices(f, "lan", "", "eth0@52:54:00:00:02:00");
	net_wait_link_gone(tap1);

	/* The tap lives as long as a descriptor of it: QEMU's, now that vmd closed its own. */
	remove_file(f, "lan");
	(void)fixture_wait_status(f, "lan", absent, NULL);
	net_wait_link_gone(tap);
	net_ip("link", "del", "vmdbr0", NULL, NULL, NULL);
}

/*
 * type macvtap: vmd makes it on the link, with the guest's MAC, and deletes it when the VM
 * is gone. The host reaches the guest through a macvlan of its own on the same link.
 */
static void test_macvtap(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *address = NULL;
	char tap[SPEC_IFNAME_MAX + 1], mac[18];
	uint8_t m[6];

	/* A bridge as the lower link: this kernel may have no dummy or veth links. */
	net_ip("link", "add", "vmdlow0", "type", "bridge", NULL);
	net_ip("link", "set", "vmdlow0", "up", NULL, NULL);
	net_ip("link", "add", "vmdhost0", "link", "vmdlow0", "type", "macvlan", "mode", "bridge",
	       NULL);
	net_ip("addr", "add", "10.98.0.1/24", "dev", "vmdhost0", NULL);
	net_ip("link", "set", "vmdhost0", "up", NULL, NULL);
	spec_tap_derive("edge", "up", tap);
	spec_mac_derive("edge", "up", m);
	spec_mac_format(m, mac);
	qemu_put(f, "edge",
		 "  cmdline: console=ttyS0 quiet vmd.ip=10.98.0.2/24\n  networks:\n"
		 "    - {id: up, type: macvtap, link: vmdlow0}\n");
	fixture_start_daemon(f);
	(void)fixture_running(f, "edge");
	(void)fixture_wait_console(f, "edge", "VMD-GUEST-IP 10.98.0.2/24", 0);
	address = net_attr(tap, "address");
	assert_non_null(address);
	assert_string_equal(address, mac);
	wait_ping("10.98.0.2");
	remove_file(f, "edge");
	(void)fixture_wait_status(f, "edge", absent, NULL);
	net_wait_link_gone(tap);
	net_ip("link", "del", "vmdhost0", NULL, NULL, NULL);
	net_ip("link", "del", "vmdlow0", NULL, NULL, NULL);
}

/* Connect to 127.0.0.1:port, send line, and return what comes back (NULL: nothing yet). */
static char *echo_over(unsigned port, const char *line)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { .tv_sec = 2 };
	char buf[256];
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    write(fd, line, strlen(line)) != (ssize_t)strlen(line) ||
	    (n = read(fd, buf, sizeof(buf) - 1)) <= 0) {
		close(fd);
		return NULL;
	}
	close(fd);
	buf[n] = '\0';
	return strdup(buf);
}

/*
 * type user with ports: a host port on the loopback reaches the guest's TCP service
 * (hostfwd), at boot.
 */
static void test_user_ports(void **state)
{
	Fixture *f = *state;
	char *got = NULL;
	json_t *s, *ports;

	qemu_put(f, "nat",
		 "  cmdline: console=ttyS0 quiet vmd.ip=10.0.2.15/24 vmd.echo=7\n  networks:\n"
		 "    - {id: n0, type: user, ports: [{host: 24007, guest: 7}]}\n");
	fixture_start_daemon(f);
	(void)fixture_running(f, "nat");
	(void)fixture_wait_console(f, "nat", "VMD-GUEST-ECHO 7", 0);
	for (unsigned i = 0; i < 60 && !got; i++) {
		got = echo_over(24007, "hello-42\n");
		if (!got)
			usleep(500 * 1000);
	}
	assert_non_null(got);
	assert_string_equal(got, "hello-42\n");
	free(got);
	s = fixture_status(f, "nat");
	ports = json_object_get(json_array_get(json_object_get(s, "networks"), 0), "ports");
	assert_int_equal(json_array_size(ports), 1);
	assert_string_equal(json_string_value(json_array_get(ports, 0)), "tcp:127.0.0.1:24007-:7");
	json_decref(s);
}

/*
 * A tap that does not exist is an error that says so, and none is made (QEMU would have
 * made one, down and on no bridge); a bridge that does not exist likewise.
 */
static void test_missing_devices(void **state)
{
	Fixture *f = *state;
	json_t *s;

	qemu_put(f, "notap",
		 "  cmdline: console=ttyS0 quiet\n  networks:\n"
		 "    - {id: n0, type: tap, tap: vmdnone0}\n");
	qemu_put(f, "nobr",
		 "  cmdline: console=ttyS0 quiet\n  networks:\n"
		 "    - {id: n0, type: bridge, bridge: vmdnobr0, tap: vmdnobrtap}\n");
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "notap", failing, "tap 'vmdnone0' does not exist");
	assert_int_equal(pid_of(s), 0);
	json_decref(s);
	s = fixture_wait_status(f, "nobr", failing, "bridge 'vmdnobr0' does not exist");
	assert_int_equal(pid_of(s), 0);
	json_decref(s);
	assert_false(net_link_exists("vmdnone0"));
	assert_false(net_link_exists("vmdnobrtap"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tap, qemu_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_bridge, qemu_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_macvtap, qemu_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_missing_devices, qemu_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_user_ports, qemu_setup, fixture_teardown),
	};
	_cleanup_free_ char *kernel = qemu_guest_file("vmlinux");

	/* QEMUs outlive a daemon killed with -9: they come to this binary, which reaps them. */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	/*
	 * A network namespace of its own, for the taps, bridges and macvtaps of the tests, and
	 * a mount namespace with a sysfs of that network namespace: /sys/class/net shows the
	 * namespace of whoever mounted it.
	 */
	if (net_namespace("test-qemu-net") < 0)
		return 1;
	if (access(kernel, R_OK) < 0 || access("/usr/bin/qemu-system-x86_64", X_OK) < 0) {
		fprintf(stderr,
			"test-qemu-net: needs %s (tests/guest/build) and QEMU (scripts/install-deps)\n",
			kernel);
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
