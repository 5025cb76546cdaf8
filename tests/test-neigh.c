/* SPDX-License-Identifier: MIT */
/*
 * Guests' addresses without the guests' help (reconciler/neigh.c): the host's neighbour
 * table, and a dnsmasq lease file; and, on the real `vmd daemon` with a noop sandbox, the
 * lease's address in status.json.
 */
#include <signal.h>
#include <stdio.h>
#include <time.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "neigh.h"
#include "spec.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_leases),
		cmocka_unit_test_setup_teardown(test_daemon_shows_lease, fixture_setup,
						fixture_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
