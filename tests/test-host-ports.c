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

/* A noop sandbox whose user network forwards host port (tcp) to the guest's 22; extra after. */
static void put_forwarding_with(Fixture *f, const char *name, unsigned port, const char *extra)
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
			     "        - {host: %u, guest: 22}\n"
			     "%s",
			     port, extra) > 0);
	fixture_put(f, name, text);
}

static void put_forwarding(Fixture *f, const char *name, unsigned port)
{
	put_forwarding_with(f, name, port, "");
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

static bool rolled_back(json_t *s, const void *arg _unused_)
{
	return s && streq_ptr(status_condition(s, "RolledBack", "status"), "True") &&
	       phase_is(s, "Running");
}

/*
 * a (rollback on) Ready forwarding 2222, then its generation 2 forwarding 2223, which
 * crashes exit_after after each start.
 */
static void start_then_crashing(Fixture *f, const char *exit_after)
{
	_cleanup_free_ char *v2 = NULL;

	put_forwarding_with(f, "a", 2222, "  rollback: true\n  updatePolicy: restart\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "a", ready, "Running"));
	assert_true(asprintf(&v2,
			     "  rollback: true\n  updatePolicy: restart\n  cmdline: v2\n"
			     "metadata:\n  labels: {noop.vmd/exit-after: %s}\n",
			     exit_after) > 0);
	put_forwarding_with(f, "a", 2223, v2);
}

/*
 * A sandbox rolled back (rollout.c) runs the spec it went back to, and holds that spec's
 * ports: one that its file's newer generation gave up is not free for another sandbox.
 */
static void test_rollback_keeps_port(void **state)
{
	Fixture *f = *state;
	json_t *s;

	/* Generation 2 moves to 2223 and crashes at once, again and again: rolled back. */
	start_then_crashing(f, "100ms");
	json_decref(fixture_wait_status(f, "a", rolled_back, NULL));
	/* Generation 1 runs, and forwards 2222: b may not have it. */
	put_forwarding(f, "b", 2222);
	s = fixture_wait_status(f, "b", refused_for_port, NULL);
	assert_non_null(strstr(status_condition(s, "ConfigValid", "message"),
			       "host port tcp/2222 is forwarded by sandbox 'a' already"));
	json_decref(s);
	/* A newer edit of a's file ends the rollback, and gives 2222 up: b gets it. */
	put_forwarding(f, "a", 2224);
	json_decref(fixture_wait_status(f, "a", valid_and_running, NULL));
	assert_int_equal(kill(f->pid, SIGHUP), 0);
	json_decref(fixture_wait_status(f, "b", valid_and_running, NULL));
}

/*
 * The port the new generation gave up, taken since by another sandbox: the rollback would
 * not get it, so there is none, and the other keeps it.
 */
static void test_rollback_refused_for_port(void **state)
{
	Fixture *f = *state;
	json_t *s;

	/* Generation 2 gives 2222 up, runs a while, then crashes: b takes 2222 meanwhile. */
	start_then_crashing(f, "3s");
	json_decref(fixture_wait_status(f, "a", generation_settled, (void *)(uintptr_t)2));
	put_forwarding(f, "b", 2222);
	json_decref(fixture_wait_status(f, "b", valid_and_running, NULL));
	fixture_wait_log(f, "cannot run again");
	fixture_wait_log(f, "host port tcp/2222 is forwarded by sandbox 'b' already");
	s = fixture_status(f, "a");
	assert_string_equal(status_condition(s, "RolledBack", "status"), "False");
	json_decref(s);
	s = fixture_status(f, "b");
	assert_true(valid_and_running(s, NULL));
	json_decref(s);
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
		cmocka_unit_test_setup_teardown(test_rollback_keeps_port, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_rollback_refused_for_port, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_validate_dir, fixture_setup, fixture_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
