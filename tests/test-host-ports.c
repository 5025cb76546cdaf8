/* SPDX-License-Identifier: MIT */
/*
 * Host ports forwarded to guests belong to one sandbox of the host, across files
 * (reconciler/host-ports.c), on the real `vmd daemon` with noop sandboxes: the sandbox that
 * holds a port keeps it, a file asking for it too is refused with file:line:col and the
 * holder's name, and is taken once the port is free. vmd validate DIR says the same.
 */
#include <signal.h>
#include <stdio.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "status.h"

/* A noop sandbox whose user network forwards host port (tcp) to the guest's 22. */
static void put_forwarding(Fixture *f, const char *name, unsigned port)
{
	_cleanup_free_ char *text = NULL;

	assert_true(asprintf(&text,
			     "apiVersion: vmd/v1\n"
			     "kind: Sandbox\n"
			     "spec:\n"
			     "  backend: noop\n"
			     "  memory: 64Mi\n"
			     "  networks:\n"
			     "    - id: nat\n"
			     "      type: user\n"
			     "      ports:\n"
			     "        - {host: %u, guest: 22}\n",
			     port) > 0);
	fixture_put(f, name, text);
}

static bool refused_for_port(json_t *s, const void *arg _unused_)
{
	return s && streq_ptr(status_condition(s, "ConfigValid", "reason"), "PortConflict");
}

static bool valid_and_running(json_t *s, const void *arg _unused_)
{
	return s && streq_ptr(status_condition(s, "ConfigValid", "status"), "True") &&
	       phase_is(s, "Running");
}

static void test_conflict_across_files(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *want = NULL;
	json_t *s;

	put_forwarding(f, "a", 2222);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "a", valid_and_running, NULL));
	/* b asks for a's port: refused, where and why, and nothing of it runs. */
	put_forwarding(f, "b", 2222);
	s = fixture_wait_status(f, "b", refused_for_port, NULL);
	assert_true(
		asprintf(&want,
			 "%s/b.yaml:10:18: spec.networks[0].ports[0].host: host port tcp/2222 is forwarded by sandbox 'a' already (%s/a.yaml)",
			 f->sb, f->sb) > 0);
	assert_string_equal(status_condition(s, "ConfigValid", "message"), want);
	assert_false(phase_is(s, "Running"));
	json_decref(s);
	/* a moves to another port: b gets 2222 at the next pass (here SIGHUP). */
	put_forwarding(f, "a", 2223);
	assert_int_equal(kill(f->pid, SIGHUP), 0);
	json_decref(fixture_wait_status(f, "b", valid_and_running, NULL));
	s = fixture_wait_status(f, "a", valid_and_running, NULL);
	json_decref(s);
	/* And now a cannot have it back. */
	put_forwarding(f, "a", 2222);
	json_decref(fixture_wait_status(f, "a", refused_for_port, NULL));
}

/* vmd validate DIR: the second file (in name order) is refused, as the daemon refuses it. */
static void test_validate_dir(void **state)
{
	Fixture *f = *state;
	_cleanup_(test_run_done) TestRun r = {};
	_cleanup_free_ char *want = NULL;
	char *argv[] = { (char *)test_vmd(), (char *)"validate", f->sb, NULL };

	put_forwarding(f, "a", 2222);
	put_forwarding(f, "b", 2222);
	put_forwarding(f, "c", 2223);
	test_run(&r, argv);
	assert_int_equal(r.status, 1);
	assert_true(
		asprintf(&want,
			 "%s/b.yaml:10:18: error: spec.networks[0].ports[0].host: host port tcp/2222 is forwarded by sandbox 'a' already (%s/a.yaml)",
			 f->sb, f->sb) > 0);
	assert_non_null(strstr(r.err, want));
	assert_non_null(strstr(r.out, "a.yaml: ok"));
	assert_non_null(strstr(r.out, "c.yaml: ok"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_conflict_across_files, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_validate_dir, fixture_setup, fixture_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
