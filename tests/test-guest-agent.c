/* SPDX-License-Identifier: MIT */
/*
 * The QEMU guest agent (backends/guest-agent.c): what vmd keeps of a
 * guest-network-get-interfaces reply, and, on real QEMU with TCG and the test guest's
 * initramfs-agent.cpio (qemu-ga in it), a guest's own address in status.json where the host
 * never sees it (user-mode networking), again after a kill -9 of vmd. Cloud Hypervisor and
 * Firecracker refuse guestAgent.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "guest-agent.h"
#include "qemu-fixture.h"
#include "spec.h"

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

	put_agent_guest(f, "ga");
	fixture_start_daemon(f);
	(void)fixture_running(f, "ga");
	(void)fixture_wait_console(f, "ga", "VMD-GUEST-AGENT", 0);
	json_decref(fixture_wait_status(f, "ga", has_address, "10.0.2.15"));

	fixture_stop_daemon(f, SIGKILL);
	fixture_start_daemon(f);
	(void)fixture_running(f, "ga");
	fixture_console_type(f, "ga", "ip addr add 10.0.2.16/24 dev eth0\n");
	json_decref(fixture_wait_status(f, "ga", has_address, "10.0.2.16"));
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
		cmocka_unit_test_setup_teardown(test_agent_addresses, qemu_setup, fixture_teardown),
	};

	/* QEMUs outlive a daemon killed with -9: they come to this binary, which reaps them. */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
