/* SPDX-License-Identifier: MIT */
/*
 * The networks vmd makes (backends/netdev.c) on the REST VMMs, the real `vmd daemon` on
 * their simulators: Cloud Hypervisor gets each tap as a descriptor with vm.add-net
 * (SCM_RIGHTS, backends/http-fds.c), which its simulator receives as upstream does and
 * checks is a tap (TUNGETIFF); Firecracker opens a tap by name, jailed as the jail's uid,
 * so vmd makes a persistent tap owned by that uid, which its simulator really opens
 * (TUNSETIFF, dropped to that uid). Everything runs in a network namespace of this binary's
 * own, with a sysfs of it; the host's interfaces are not touched. Waits are bounded (a
 * failure, not a speed claim).
 */
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "http-unix.h"
#include "net-fixture.h"
#include "spec.h"
#include "status.h"
#include "util.h"

static char ch_binary[4096], fc_binary[4096], jailer[4096];

static int ch_setup(void **state)
{
	static const char *args[] = { "--cloud-hypervisor-binary", ch_binary, NULL };
	int r = fixture_setup(state);

	((Fixture *)*state)->daemon_args = args;
	return r;
}

/* vm.info from the simulator of sandbox name. */
static json_t *ch_info(Fixture *f, const char *name)
{
	_cleanup_free_ char *sock = path_in(f->run, "%s/api.sock", name);
	_cleanup_(http_freep) Http *h = NULL;
	HttpReply r;
	json_t *j;

	assert_int_equal(http_new(sock, &h), 0);
	assert_int_equal(http_call(h, "GET", "/api/v1/vm.info", NULL, 2000000, &r), 0);
	j = json_incref(r.json);
	http_reply_done(&r);
	return j;
}

/* vm.info's NIC id: its config as CH keeps it, NULL if it has none of that id. */
static json_t *ch_net(json_t *info, const char *id)
{
	json_t *nets = json_object_get(json_object_get(info, "config"), "net"), *n;
	size_t i;

	json_array_foreach(nets, i, n)
	{
		if (streq_ptr(json_string_value(json_object_get(n, "id")), id))
			return n;
	}
	return NULL;
}

/* NIC id came as one descriptor, which the simulator found is tap (TUNGETIFF); no name. */
static void assert_fd_nic(json_t *info, const char *id, const char *tap)
{
	json_t *n = ch_net(info, id);

	assert_non_null(n);
	assert_null(json_object_get(n, "tap"));
	assert_int_equal(json_array_size(json_object_get(n, "fds")), 1);
	assert_string_equal(json_string_value(json_array_get(json_object_get(n, "sim_taps"), 0)),
			    tap);
}

static void assert_on_bridge(const char *tap, const char *bridge)
{
	_cleanup_free_ char *master = net_master_of(tap);

	assert_non_null(master);
	assert_string_equal(master, bridge);
}

/* What the simulated guest of sandbox lan lists: n0, the macvtap up, and n1 if asked. */
static void wait_lan_devices(Fixture *f, bool n1)
{
	_cleanup_free_ char *want = NULL;
	char mac[18];
	uint8_t m[6];

	spec_mac_derive("lan", "up", m);
	spec_mac_format(m, mac);
	assert_true(asprintf(&want, "disks= nets=n0@52:54:00:00:03:00,up@%s%s vcpus=1", mac,
			     n1 ? ",n1@52:54:00:00:03:01" : "") > 0);
	fixture_wait_line(f, "lan", "SIM-GUEST-DEVICES ", want);
}

#define CH_LAN_N0 "    - {id: n0, type: bridge, bridge: vmdbr0, mac: \"52:54:00:00:03:00\"}\n"
#define CH_LAN_N1 "    - {id: n1, type: bridge, bridge: vmdbr0, mac: \"52:54:00:00:03:01\"}\n"
#define CH_LAN_UP "    - {id: up, type: macvtap, link: vmdlow0}\n"

/*
 * Cloud Hypervisor, type bridge at the start and hot-added, and a macvtap: vmd makes each
 * device and sends its descriptor with vm.add-net (vm.create takes none), before the boot
 * or while it runs; the simulator has a tap for each, and vmd none of them once CH has
 * them. A NIC removed takes its tap with it; the sandbox removed, all of them.
 */
static void test_ch(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *file = path_in(f->sb, "lan.yaml");
	char tap0[SPEC_IFNAME_MAX + 1], tap1[SPEC_IFNAME_MAX + 1], up[SPEC_IFNAME_MAX + 1];
	json_t *info, *s;
	pid_t pid;

	net_ip("link", "add", "vmdbr0", "type", "bridge", NULL);
	net_ip("link", "set", "vmdbr0", "up", NULL, NULL);
	net_ip("link", "add", "vmdlow0", "type", "bridge", NULL);
	net_ip("link", "set", "vmdlow0", "up", NULL, NULL);
	spec_tap_derive("lan", "n0", tap0);
	spec_tap_derive("lan", "n1", tap1);
	spec_tap_derive("lan", "up", up);
	fixture_put_sim(f, "lan", "cloud-hypervisor",
			"  memory: 64Mi\n  networks:\n" CH_LAN_N0 CH_LAN_UP);
	/* Started beside it: a VMM that inherits none of lan's devices (vmm_spawn(), O_CLOEXEC). */
	fixture_put_sim(f, "other", "cloud-hypervisor", "  memory: 64Mi\n");
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "lan", ready, "Running");
	pid = pid_of(s);
	json_decref(s);
	s = fixture_wait_status(f, "other", ready, "Running");
	assert_int_equal(net_tap_fds(pid_of(s)), 0);
	json_decref(s);
	wait_lan_devices(f, false);
	info = ch_info(f, "lan");
	assert_fd_nic(info, "n0", tap0);
	assert_fd_nic(info, "up", up);
	json_decref(info);
	assert_on_bridge(tap0, "vmdbr0");
	/* The macvtap's character device has no fdinfo of its own: counted by its node. */
	assert_true(net_holds_tap(pid, tap0));
	assert_int_equal(net_tap_fds(pid), 2);
	assert_int_equal(net_tap_fds(f->pid), 0);

	/* Hot-added: made, on the bridge, and sent with vm.add-net to the running VM. */
	fixture_put_sim(f, "lan", "cloud-hypervisor",
			"  memory: 64Mi\n  networks:\n" CH_LAN_N0 CH_LAN_UP CH_LAN_N1);
	wait_lan_devices(f, true);
	json_decref(fixture_wait_status(f, "lan", ready, "Running"));
	info = ch_info(f, "lan");
	assert_fd_nic(info, "n1", tap1);
	json_decref(info);
	assert_on_bridge(tap1, "vmdbr0");
	assert_true(net_holds_tap(pid, tap1));
	assert_int_equal(net_tap_fds(f->pid), 0);

	/* Removed: the guest ejects it, CH drops the device and its tap goes. */
	fixture_put_sim(f, "lan", "cloud-hypervisor",
			"  memory: 64Mi\n  networks:\n" CH_LAN_N0 CH_LAN_UP);
	fixture_wait_console(f, "lan", "SIM-GUEST-REMOVED n1", 0);
	net_wait_link_gone(tap1);
	assert_true(net_link_exists(tap0));

	/* The sandbox gone: the bridge's tap with CH, the macvtap deleted by vmd. */
	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "lan", absent, NULL));
	net_wait_link_gone(tap0);
	net_wait_link_gone(up);
	net_ip("link", "del", "vmdbr0", NULL, NULL, NULL);
	net_ip("link", "del", "vmdlow0", NULL, NULL, NULL);
}

/* Firecracker through the jailer, as uid and gid 4242, jails under <dir>/jail. */
static int fc_setup(void **state)
{
	_cleanup_free_ char *base = NULL;
	int r = fixture_setup(state);

	if (r < 0)
		return r;
	base = path_in(((Fixture *)*state)->dir, "jail");
	fixture_jailed(*state, fc_binary, jailer, base);
	return 0;
}

static unsigned ifindex_of(const char *tap)
{
	_cleanup_free_ char *i = net_attr(tap, "ifindex");

	assert_non_null(i);
	return (unsigned)strtoul(i, NULL, 10);
}

/* tap is persistent, its owner and group the jail's, on bridge, and held by pid. */
static void assert_jail_tap(const char *tap, const char *bridge, pid_t pid)
{
	_cleanup_free_ char *owner = net_attr(tap, "owner"), *group = net_attr(tap, "group"),
			    *flags = net_attr(tap, "tun_flags");

	assert_non_null(owner);
	assert_string_equal(owner, FIXTURE_JAIL_UID);
	assert_non_null(group);
	assert_string_equal(group, FIXTURE_JAIL_UID);
	assert_non_null(flags);
	assert_true(strtoul(flags, NULL, 16) & 0x0800); /* IFF_PERSIST */
	assert_on_bridge(tap, bridge);
	/* The simulator opened it by name at PUT /network-interfaces, as uid 4242. */
	assert_true(net_holds_tap(pid, tap));
}

/* Running, in a VMM other than *arg. */
static bool running_not(json_t *s, const void *arg)
{
	return ready(s, "Running") && pid_of(s) > 0 && pid_of(s) != *(const pid_t *)arg;
}

#define FC_N0 "    - {id: n0, type: bridge, bridge: vmdbr1, mac: \"52:54:00:00:04:00\"}\n"

/*
 * Firecracker, jailed, type bridge: a persistent tap owned by the jail's uid, on the
 * bridge, which Firecracker (dropped to that uid) opens by name; vmd holds none of it.
 * Firecracker killed: the restart takes the same tap again. The NIC removed (a restart)
 * removes its tap; so does the sandbox removed.
 */
static void test_fc(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *file = path_in(f->sb, "fcl.yaml");
	char tap[SPEC_IFNAME_MAX + 1], tap1[SPEC_IFNAME_MAX + 1];
	unsigned ifindex;
	pid_t pid;
	json_t *s;

	net_ip("link", "add", "vmdbr1", "type", "bridge", NULL);
	net_ip("link", "set", "vmdbr1", "up", NULL, NULL);
	spec_tap_derive("fcl", "n0", tap);
	spec_tap_derive("fcl", "n1", tap1);
	fixture_put_sim(f, "fcl", "firecracker",
			"  memory: 64Mi\n  updatePolicy: restart\n  networks:\n" FC_N0);
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "fcl", ready, "Running");
	pid = pid_of(s);
	json_decref(s);
	assert_jail_tap(tap, "vmdbr1", pid);
	assert_int_equal(net_tap_fds(f->pid), 0);
	ifindex = ifindex_of(tap);

	/* A crash: the tap stays, and the restart takes it again (the same link). */
	assert_int_equal(kill(pid, SIGKILL), 0);
	s = fixture_wait_status(f, "fcl", restarted, (void *)1);
	assert_int_not_equal(pid_of(s), pid);
	pid = pid_of(s);
	json_decref(s);
	assert_int_equal(ifindex_of(tap), ifindex);
	assert_jail_tap(tap, "vmdbr1", pid);

	/* The NIC replaced (Firecracker restarts for it): n0's tap goes, n1's comes. */
	fixture_put_sim(f, "fcl", "firecracker",
			"  memory: 64Mi\n  updatePolicy: restart\n  networks:\n"
			"    - {id: n1, type: bridge, bridge: vmdbr1, mac: \"52:54:00:00:04:01\"}\n");
	for (unsigned i = 0; i < 400 && (net_link_exists(tap) || !net_link_exists(tap1)); i++)
		usleep(50 * 1000);
	assert_false(net_link_exists(tap));
	s = fixture_wait_status(f, "fcl", running_not, &pid);
	pid = pid_of(s);
	json_decref(s);
	assert_jail_tap(tap1, "vmdbr1", pid);

	/* The sandbox gone: its tap too. */
	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "fcl", absent, NULL));
	net_wait_link_gone(tap1);
	net_ip("link", "del", "vmdbr1", NULL, NULL, NULL);
}

/* Firecracker unjailed, as the VMM user (nobody): its taps are that user's. */
static int fc_user_setup(void **state)
{
	static const char *args[] = { "--firecracker-binary", fc_binary, "--vmm-user",
				      "65534:65534", NULL };
	int r = fixture_setup(state);

	((Fixture *)*state)->daemon_args = args;
	fixture_vmm_user(*state, 65534);
	return r;
}

/*
 * Firecracker unjailed as the VMM user, type bridge: the persistent tap is that user's,
 * and Firecracker, without capabilities, opens it by name (TUNSETIFF, as its owner).
 */
static void test_fc_vmm_user(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *file = path_in(f->sb, "fcu.yaml"), *owner = NULL, *group = NULL;
	char tap[SPEC_IFNAME_MAX + 1];
	pid_t pid;
	json_t *s;

	net_ip("link", "add", "vmdbr1", "type", "bridge", NULL);
	net_ip("link", "set", "vmdbr1", "up", NULL, NULL);
	spec_tap_derive("fcu", "n0", tap);
	fixture_put_sim(f, "fcu", "firecracker", "  memory: 64Mi\n  networks:\n" FC_N0);
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "fcu", ready, "Running");
	pid = pid_of(s);
	json_decref(s);
	test_expect_unprivileged(pid, 65534, 65534);
	owner = net_attr(tap, "owner");
	group = net_attr(tap, "group");
	assert_non_null(owner);
	assert_string_equal(owner, "65534");
	assert_non_null(group);
	assert_string_equal(group, "65534");
	assert_on_bridge(tap, "vmdbr1");
	assert_true(net_holds_tap(pid, tap));

	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "fcu", absent, NULL));
	net_wait_link_gone(tap);
	net_ip("link", "del", "vmdbr1", NULL, NULL, NULL);
}

int main(void)
{
	const struct CMUnitTest ch_tests[] = {
		cmocka_unit_test_setup_teardown(test_ch, ch_setup, fixture_teardown),
	};
	const struct CMUnitTest fc_tests[] = {
		cmocka_unit_test_setup_teardown(test_fc, fc_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_fc_vmm_user, fc_user_setup, fixture_teardown),
	};
	/* The Cloud Hypervisor releases vmd supports whose simulated behaviour differs. */
	static const char *const ch_releases[] = { "v52.0", "main" };
	int failed = 0;

	snprintf(ch_binary, sizeof(ch_binary), "%s", test_src("tests/sim/cloud-hypervisor"));
	snprintf(fc_binary, sizeof(fc_binary), "%s", test_src("tests/sim/firecracker"));
	snprintf(jailer, sizeof(jailer), "%s", test_src("tests/sim/jailer"));
	/* VMMs outlive a daemon killed with -9: they come to this binary, which reaps them. */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	if (net_namespace("test-vmm-net") < 0)
		return 1;
	for (size_t i = 0; i < ELEMENTSOF(ch_releases); i++) {
		setenv("VMD_SIM_CH_VERSION", ch_releases[i], 1);
		failed += _cmocka_run_group_tests(ch_releases[i], ch_tests, ELEMENTSOF(ch_tests),
						  NULL, NULL);
	}
	return failed + cmocka_run_group_tests_name("firecracker", fc_tests, NULL, NULL);
}
