/* SPDX-License-Identifier: MIT */
/*
 * Guests' addresses without the guests' help (reconciler/neigh.c): the host's neighbour
 * table, and a dnsmasq lease file; and, on the real `vmd daemon` with a noop sandbox, the
 * lease's address in status.json, and an address as soon as it is learned: from a lease
 * written, or a neighbour entry that comes, while the daemon runs (its resync is an hour:
 * only the events show them). The binary has a network namespace of its own.
 */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "neigh.h"
#include "spec.h"
#include "status.h"

static char *addresses_of(const NeighTable *t, const char *mac)
{
	uint8_t m[6];

	assert_int_equal(spec_mac_parse(mac, m), 0);
	return neigh_addresses(t, m);
}

static void test_leases(void **state _unused_)
{
	char *dir = test_tmpdir(), line[512], *a;
	_cleanup_free_ char *path = NULL;
	NeighTable *t = NULL;
	long long now = (long long)time(NULL);

	snprintf(line, sizeof(line),
		 "%lld 52:54:00:00:00:01 10.0.0.1 web *\n"	    /* live */
		 "%lld 52:54:00:00:00:02 10.0.0.2 old *\n"	    /* expired */
		 "0 52:54:00:00:00:03 10.0.0.3 static *\n"	    /* never expires */
		 "%lld 52:54:00:00:00:01 fd00::1 web *\n"	    /* a second address */
		 "duid 00:01:00:01:2a:2b:2c:2d:52:54:00:00:00:09\n" /* not a lease */
		 "%lld nonsense 10.0.0.4 x *\n"
		 "0 52:54:00:00:00:05 <script> x *\n", /* no address: never shown */
		 now + 3600, now - 10, now + 3600, now + 3600);
	test_write_str(dir, "dnsmasq.leases", line);
	assert_true(asprintf(&path, "%s/dnsmasq.leases", dir) > 0);
	assert_int_equal(neigh_table_load(&t), 0);
	assert_int_equal(neigh_table_add_leases(t, path, now), 0);
	a = addresses_of(t, "52:54:00:00:00:01");
	assert_string_equal(a, "10.0.0.1,fd00::1");
	free(a);
	assert_null(addresses_of(t, "52:54:00:00:00:02"));
	a = addresses_of(t, "52:54:00:00:00:03");
	assert_string_equal(a, "10.0.0.3");
	free(a);
	assert_null(addresses_of(t, "52:54:00:00:00:05"));
	/* A file that is not there (yet) adds nothing and is no error. */
	assert_int_equal(neigh_table_add_leases(t, "/nonexistent/leases", now), 0);
	neigh_table_free(t);
	test_tmpdir_remove(dir);
}

static bool lease_shown(json_t *s, const void *arg)
{
	json_t *a = json_object_get(json_array_get(json_object_get(s, "networks"), 0), "addresses");

	return json_array_size(a) == 1 && streq_ptr(json_string_value(json_array_get(a, 0)), arg);
}

/* --dhcp-leases: the address a lease gives the NIC's MAC is in its status. */
static void test_daemon_shows_lease(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *leases = path_in(f->dir, "dnsmasq.leases");
	char line[128];
	const char *args[] = { "--dhcp-leases", leases, NULL };

	f->daemon_args = args;
	snprintf(line, sizeof(line), "0 52:54:00:00:0a:01 192.0.2.7 lan *\n");
	test_write_str(f->dir, "dnsmasq.leases", line);
	fixture_put(f, "lan",
		    "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n"
		    "  networks:\n    - {id: n0, tap: tap-lan, mac: \"52:54:00:00:0a:01\"}\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "lan", lease_shown, "192.0.2.7"));
}

static bool ready_without_address(json_t *s, const void *arg _unused_)
{
	json_t *n = json_array_get(json_object_get(s, "networks"), 0);

	return streq_ptr(status_condition(s, "Ready", "status"), "True") && n &&
	       json_array_size(json_object_get(n, "addresses")) == 0;
}

static const char *const NOOP_NIC =
	"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n"
	"  networks:\n    - {id: n0, tap: tap-lan, mac: \"52:54:00:00:0a:02\"}\n";

/* A lease written after the sandbox started shows without waiting for a pass. */
static void test_daemon_lease_later(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *leases = path_in(f->dir, "leases/dnsmasq.leases");
	const char *args[] = { "--dhcp-leases", leases, NULL };

	f->daemon_args = args;
	test_write_str(f->dir, "leases/other", "");
	fixture_put(f, "lan", NOOP_NIC);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "lan", ready_without_address, NULL));
	/* Another file of the directory is nothing to it. */
	test_write_str(f->dir, "leases/other", "0 52:54:00:00:0a:02 192.0.2.99 lan *\n");
	test_write_str(f->dir, "leases/dnsmasq.leases", "0 52:54:00:00:0a:02 192.0.2.8 lan *\n");
	json_decref(fixture_wait_status(f, "lan", lease_shown, "192.0.2.8"));
	/* And one that goes, goes from the status too. */
	test_write_str(f->dir, "leases/dnsmasq.leases", "");
	json_decref(fixture_wait_status(f, "lan", ready_without_address, NULL));
}

/* ip ARGS..., which must succeed. */
static void run_ip(const char **argv)
{
	TestRun r;

	test_run(&r, (char *const *)argv);
	if (r.status != 0)
		fail_msg("ip %s %s: %s", argv[1], argv[2], r.err);
	test_run_done(&r);
}
#define IP(...) run_ip((const char *[]){ "/usr/sbin/ip", __VA_ARGS__, NULL })

/* A neighbour entry the host learns while the daemon runs shows; one that goes, goes. */
static void test_daemon_neighbour_event(void **state)
{
	Fixture *f = *state;

	fixture_put(f, "lan", NOOP_NIC);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "lan", ready_without_address, NULL));
	IP("link", "add", "nb0", "type", "veth", "peer", "name", "nb1");
	IP("link", "set", "nb0", "up");
	IP("neigh", "add", "198.51.100.4", "lladdr", "52:54:00:00:0a:02", "dev", "nb0", "nud",
	   "permanent");
	json_decref(fixture_wait_status(f, "lan", lease_shown, "198.51.100.4"));
	IP("neigh", "del", "198.51.100.4", "dev", "nb0");
	json_decref(fixture_wait_status(f, "lan", ready_without_address, NULL));
	IP("link", "del", "nb0");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_leases),
		cmocka_unit_test_setup_teardown(test_daemon_shows_lease, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_daemon_lease_later, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_daemon_neighbour_event, fixture_setup,
						fixture_teardown),
	};

	/* The neighbour entries the tests make are the namespace's, gone with it. */
	if (unshare(CLONE_NEWNET) < 0) {
		fprintf(stderr, "test-neigh: cannot make a network namespace: %m\n");
		return 1;
	}

	return cmocka_run_group_tests(tests, NULL, NULL);
}
