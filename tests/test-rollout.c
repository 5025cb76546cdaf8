/* SPDX-License-Identifier: MIT */
/*
 * Safe rollouts (reconciler/rollout.c): the planner with the disruption budget as its
 * input; then the real `vmd daemon` on noop sandboxes whose readiness is a tcp probe to a
 * listener this test opens or not on the loopback (their NIC's lease, --dhcp-leases, says
 * 127.0.0.1, as in test-readiness.c): three changed sandboxes restarted one at a time, a
 * rollout blocked by one that is not Ready after its restart, a generation rolled back
 * for its readiness timeout and for its crash loop, kept across a restart of vmd and ended
 * by a newer edit; and on QEMU (TCG) a generation whose kernel panics, rolled back to the
 * one whose console shows the test guest's marker.
 */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "plan.h"
#include "qemu-fixture.h"
#include "spec-json.h"
#include "spec-yaml.h"
#include "status.h"

/* The planner */

static SandboxSpec *spec_of(const char *yaml)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	const SpecLoadOptions opts = { .default_backend = BACKEND_NOOP };
	SandboxSpec *s = NULL;

	if (spec_load_buffer("sb.yaml", yaml, strlen(yaml), &opts, &s, &diags) < 0)
		fail_msg("bad spec: %s", diags.n ? diags.items[0].message : "?");
	return s;
}

#define SPEC_V(cmdline, policy)                                                                    \
	"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  memory: 64Mi\n  cmdline: " cmdline            \
	"\n  updatePolicy: " policy "\n"

typedef struct Case {
	const char *what;
	VmState state;
	bool no_slot, rollback;
	const char *policy; /* updatePolicy of the new spec */
	ActionType expect;  /* _ACTION_TYPE_INVALID: none */
	bool waits, restart_required;
} Case;

/*
 * A VM that runs generation 1 (cmdline a) and a file at generation 2 (cmdline b): only
 * a restart can apply it. The budget holds that restart back, and nothing else.
 */
static void test_plan_budget(void **state _unused_)
{
	static const Case cases[] = {
		{ "a slot is free", VM_RUNNING, false, false, "restart", ACTION_RESTART },
		{ "no slot: it waits", VM_RUNNING, true, false, "restart", _ACTION_TYPE_INVALID,
		  .waits = true },
		{ "on-next-boot takes no slot", VM_RUNNING, true, false, "on-next-boot",
		  _ACTION_TYPE_INVALID, .restart_required = true },
		{ "a start after an exit is no disruption", VM_EXITED, true, false, "restart",
		  ACTION_START },
		{ "a first start neither", VM_ABSENT, true, false, "restart", ACTION_START },
		{ "a rollback restarts under on-next-boot", VM_RUNNING, false, true, "on-next-boot",
		  ACTION_RESTART },
		{ "a rollback waits for a slot too", VM_RUNNING, true, true, "on-next-boot",
		  _ACTION_TYPE_INVALID, .waits = true },
	};
	_cleanup_(sandbox_spec_freep) SandboxSpec *have = spec_of(SPEC_V("a", "restart"));

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		const Case *c = &cases[i];
		_cleanup_(sandbox_spec_freep) SandboxSpec *want = NULL;
		_cleanup_free_ char *yaml = NULL;
		VmObserved o = { .state = c->state, .generation = 1, .config = have };
		PlanInput in;
		Plan plan;

		assert_true(asprintf(&yaml, SPEC_V("b", "%s"), c->policy) > 0);
		want = spec_of(yaml);
		in = (PlanInput){ .desired = want,
				  .generation = 2,
				  .observed = &o,
				  .caps = BACKEND_CAP_PAUSE,
				  .no_disruption_slot = c->no_slot,
				  .rollback = c->rollback };
		plan_sandbox(&in, 10000, 2000, &plan);
		if (c->expect == _ACTION_TYPE_INVALID)
			assert_int_equal(plan.n_actions, 0);
		else {
			if (plan.n_actions != 1 || plan.actions[0].type != c->expect)
				fail_msg("%s: %zu actions, the first %s", c->what, plan.n_actions,
					 plan.n_actions ? action_type_to_string(plan.actions[0].type)
							: "none");
		}
		if (plan.disruption_waits != c->waits || plan.restart_required != c->restart_required)
			fail_msg("%s: waits %d, restart_required %d", c->what,
				 plan.disruption_waits, plan.restart_required);
	}
}

/* spec.rollback: true, false or absent (the daemon's --rollback), kept by the state dir's JSON. */
static void test_spec_rollback(void **state _unused_)
{
	static const struct {
		const char *line;
		SpecRollback want;
	} ok[] = { { "", SPEC_ROLLBACK_DEFAULT },
		   { "  rollback: true\n", SPEC_ROLLBACK_ON },
		   { "  rollback: false\n", SPEC_ROLLBACK_OFF } };
	const SpecLoadOptions opts = { .default_backend = BACKEND_NOOP };

	for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
		_cleanup_(sandbox_spec_freep) SandboxSpec *s = NULL, *copy = NULL;
		_cleanup_free_ char *yaml = NULL;

		assert_true(asprintf(&yaml, SPEC_V("a", "restart") "%s", ok[i].line) > 0);
		s = spec_of(yaml);
		assert_int_equal(s->rollback, ok[i].want);
		assert_int_equal(spec_copy(s, &copy), 0);
		assert_int_equal(copy->rollback, ok[i].want);
	}
	for (size_t i = 0; i < 2; i++) {
		_cleanup_(diag_list_done) DiagList diags = {};
		_cleanup_free_ char *yaml = NULL;
		SandboxSpec *s = NULL;

		assert_true(asprintf(&yaml, SPEC_V("a", "restart") "  rollback: %s\n",
				     i ? "\"true\"" : "yes") > 0);
		assert_int_equal(spec_load_buffer("sb.yaml", yaml, strlen(yaml), &opts, &s, &diags),
				 -EINVAL);
		assert_int_equal(diags.n, 1);
		assert_null(s);
	}
}

/* The daemon on noop */

/* A port nothing listens on (for now). */
static uint16_t free_port(void)
{
	uint16_t port;

	close(test_listen_loopback(0, &port));
	return port;
}

static char leases[4096];
static const char *daemon_args[] = { "--dhcp-leases", leases, NULL, NULL };

/* Sandboxes 0..n-1 get NICs whose lease is the loopback; the daemon then gets extra. */
static void set_leases(Fixture *f, unsigned n, const char *extra)
{
	_cleanup_free_ char *text = strdup("");

	for (unsigned i = 0; i < n; i++) {
		char *t = NULL;

		assert_true(asprintf(&t, "%s0 52:54:00:00:0c:%02x 127.0.0.1 s%u *\n", text, i, i) > 0);
		free(text);
		text = t;
	}
	snprintf(leases, sizeof(leases), "%s/dnsmasq.leases", f->dir);
	test_write_str(f->dir, "dnsmasq.leases", text);
	daemon_args[2] = extra;
	f->daemon_args = daemon_args;
}

/*
 * Sandbox name, NIC number i, at version (its cmdline: a change of it is a restart), its
 * readiness a tcp probe to port (with timeout, if not NULL), with more lines in extra.
 * Its file's text, freed by the caller.
 */
static char *put_version(Fixture *f, const char *name, unsigned i, const char *version,
			 unsigned port, const char *timeout, const char *extra)
{
	char *text = NULL;

	assert_true(asprintf(&text,
			     FIXTURE_NOOP_SPEC
			     "  updatePolicy: restart\n  cmdline: %s\n"
			     "  networks:\n    - {id: n0, tap: tap-r%u, mac: \"52:54:00:00:0c:%02x\"}\n"
			     "  readiness: {tcp: {port: %u}, period: 100ms%s%s}\n%s",
			     version, i, i, port, timeout ? ", timeout: " : "", timeout ?: "",
			     extra ?: "") > 0);
	fixture_put(f, name, text);
	return text;
}

static json_int_t num(json_t *s, const char *key)
{
	return json_integer_value(json_object_get(s, key));
}

#define N 3
static const char *const names[N] = { "a", "b", "c" };

typedef struct Stage {
	unsigned restarted; /* how many run generation 2 (observedGeneration 2) */
	const char *holder; /* the one restarting, named by the others' status */
} Stage;

/* Of the three: exactly want->restarted at generation 2, the rest waiting for a slot. */
static bool at_stage(Fixture *f, const Stage *want, char *ret_holder)
{
	unsigned restarted = 0, waiting = 0;
	char holder[16] = "";

	for (unsigned i = 0; i < N; i++) {
		_cleanup_(json_decrefp) json_t *s = fixture_status(f, names[i]);
		const char *msg = status_condition(s, "RestartRequired", "message");

		if (!s || num(s, "generation") != 2)
			return false;
		if (num(s, "observedGeneration") == 2) {
			restarted++;
			/* The last one restarted is not Ready: its probe's port is closed. */
			if (!streq(status_condition(s, "Ready", "status"), "True"))
				snprintf(holder, sizeof(holder), "%s", names[i]);
		} else if (streq(status_condition(s, "RestartRequired", "reason"),
				 "WaitingForDisruptionSlot") &&
			   strstr(msg, "waiting for a disruption slot: ") &&
			   strstr(msg, " is restarting"))
			waiting++;
	}
	if (restarted != want->restarted || waiting != N - restarted)
		return false;
	if (ret_holder)
		snprintf(ret_holder, 16, "%s", holder);
	return true;
}

static void wait_stage(Fixture *f, unsigned restarted, char *ret_holder)
{
	const Stage want = { restarted, NULL };

	for (uint64_t end = ms_now() + FIXTURE_WAIT_MS; !at_stage(f, &want, ret_holder);) {
		if (ms_now() > end)
			fail_msg("not %u of %u restarted, the others waiting for a slot", restarted,
				 N);
		usleep(20 * 1000);
	}
}

/*
 * Three sandboxes change at once. Each one's probe goes to a port of its own, which the
 * test closes once all three are Ready: a probe that passed stays passed (there is no
 * liveness), so what waits stays Ready, and what restarts is not Ready until the test
 * opens its port again. One restarts, the two others wait and say for which; opening its
 * port makes it Ready, and only then does the next one restart.
 */
static void test_budget(void **state)
{
	Fixture *f = *state;
	uint16_t ports[N];
	int fds[N];
	char holder[16];
	bool done[N] = {};

	set_leases(f, N, NULL);
	for (unsigned i = 0; i < N; i++) {
		fds[i] = test_listen_loopback(0, &ports[i]);
		free(put_version(f, names[i], i, "v1", ports[i], NULL, NULL));
	}
	fixture_start_daemon(f);
	for (unsigned i = 0; i < N; i++)
		json_decref(fixture_wait_status(f, names[i], ready, "Running"));
	for (unsigned i = 0; i < N; i++) {
		close(fds[i]);
		fds[i] = -1;
		free(put_version(f, names[i], i, "v2", ports[i], NULL, NULL));
	}

	for (unsigned stage = 1; stage <= N; stage++) {
		unsigned h;
		json_t *s;

		wait_stage(f, stage, holder);
		for (h = 0; h < N && !streq(names[h], holder); h++)
			;
		assert_true(h < N);
		assert_false(done[h]);
		/* The others that wait still run their first boot, Ready. */
		for (unsigned i = 0; i < N; i++) {
			_cleanup_(json_decrefp) json_t *o = fixture_status(f, names[i]);
			_cleanup_free_ char *named = NULL;

			if (i == h || done[i])
				continue;
			assert_true(asprintf(&named, "waiting for a disruption slot: %s is restarting",
					     holder) > 0);
			assert_string_equal(status_condition(o, "RestartRequired", "message"), named);
			assert_int_equal(num(o, "observedGeneration"), 1);
			assert_string_equal(status_condition(o, "Ready", "status"), "True");
		}
		fds[h] = test_listen_loopback(ports[h], NULL);
		s = fixture_wait_status(f, holder, ready, "Running");
		assert_int_equal(num(s, "observedGeneration"), 2);
		json_decref(s);
		done[h] = true;
	}
	for (unsigned i = 0; i < N; i++) {
		assert_true(done[i]);
		close(fds[i]);
	}
}

/* Wait until b says a blocks its restart; its status. */
static json_t *wait_blocked(Fixture *f)
{
	const char *needle = "blocked by a: not Ready after restart (ProbeTimeout: ";
	json_t *s;

	for (uint64_t end = ms_now() + FIXTURE_WAIT_MS;;) {
		s = fixture_status(f, "b");
		if (s && strstr(status_condition(s, "RestartRequired", "message"), needle))
			break;
		json_decref(s);
		if (ms_now() > end)
			fail_msg("b does not say it is blocked by a");
		usleep(20 * 1000);
	}
	assert_string_equal(status_condition(s, "RestartRequired", "reason"), "RolloutBlocked");
	assert_int_equal(num(s, "observedGeneration"), 1);
	return s;
}

/*
 * One that is not Ready after its restart blocks the others, across a restart of vmd,
 * until an edit fixes it.
 */
static void test_blocked(void **state)
{
	Fixture *f = *state;
	uint16_t p0, bad = free_port();
	int fd0 = test_listen_loopback(0, &p0);
	_cleanup_free_ char *want = NULL;
	_cleanup_free_ char *started = NULL; /* noop's VMs have no pid: their start time */
	json_t *s;

	set_leases(f, 2, NULL);
	free(put_version(f, "a", 0, "v1", p0, NULL, NULL));
	free(put_version(f, "b", 1, "v1", p0, NULL, NULL));
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "a", ready, "Running"));
	json_decref(fixture_wait_status(f, "b", ready, "Running"));
	/* a first, alone: then b, which waits for it. */
	free(put_version(f, "a", 0, "v2", bad, "500ms", NULL));
	json_decref(fixture_wait_status(f, "a", generation_settled, (void *)(uintptr_t)2));
	free(put_version(f, "b", 1, "v2", p0, NULL, NULL));
	s = wait_blocked(f);
	started = strdup(json_string_value(json_object_get(s, "startedAt")) ?: "");
	json_decref(s);
	/* A restarted vmd knows a holds the slot: b still waits, its VM untouched (same startedAt). */
	fixture_stop_daemon(f, SIGTERM);
	fixture_start_daemon(f);
	/* Past its grace period and a's probe timeout: b's status is the new vmd's. */
	fixture_pass_time(f, 2000);
	s = wait_blocked(f);
	assert_string_equal(json_string_value(json_object_get(s, "startedAt")) ?: "", started);
	json_decref(s);
	/* An edit of a that is Ready: b goes on. */
	want = put_version(f, "a", 0, "v3", p0, NULL, NULL);
	json_decref(fixture_wait_status(f, "a", generation_settled, (void *)(uintptr_t)3));
	s = fixture_wait_status(f, "b", generation_settled, (void *)(uintptr_t)2);
	json_decref(s);
	json_decref(fixture_wait_status(f, "b", ready, "Running"));
	close(fd0);
}

/* vmd wait NAME --for applied --timeout T: its exit status, and what it said in *err. */
static int wait_applied(Fixture *f, const char *name, const char *timeout, char **err)
{
	char *argv[] = { (char *)test_vmd(), "wait",	  "--run-dir",	   f->run,
			 "--sandboxes",	     f->sb,	  (char *)name,	   "--for",
			 "applied",	     "--timeout", (char *)timeout, NULL };
	TestRun r;
	int status;

	test_run(&r, argv);
	status = r.status;
	*err = TAKE_PTR(r.err);
	test_run_done(&r);
	return status;
}

static bool rolled_back(json_t *s, const void *arg)
{
	return s && streq(status_condition(s, "RolledBack", "status"), "True") &&
	       streq(status_condition(s, "RolledBack", "reason"), arg) &&
	       streq(status_condition(s, "Ready", "status"), "True") &&
	       num(s, "observedGeneration") == 1;
}

/*
 * A new generation never Ready (its probe's port is closed) is rolled back: the first
 * runs again, Ready; the file is left as it is and is not applied; a restart of vmd
 * keeps the rollback and restarts nothing; a newer edit ends it.
 */
static void test_rollback(void **state)
{
	Fixture *f = *state;
	uint16_t p0, bad = free_port();
	int fd0 = test_listen_loopback(0, &p0);
	_cleanup_free_ char *v2 = NULL, *file = NULL, *err = NULL, *path = NULL;
	const char *msg;
	_cleanup_free_ char *started = NULL; /* noop's VMs have no pid: their start time */
	json_t *s;

	set_leases(f, 1, NULL);
	free(put_version(f, "web", 0, "v1", p0, NULL, "  rollback: true\n"));
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "web", ready, "Running"));
	s = fixture_status(f, "web");
	assert_string_equal(status_condition(s, "RolledBack", "status"), "False");
	json_decref(s);

	v2 = put_version(f, "web", 0, "v2", bad, "500ms", "  rollback: true\n");
	s = fixture_wait_status(f, "web", rolled_back, "ReadinessTimeout");
	msg = status_condition(s, "RolledBack", "message");
	assert_non_null(strstr(msg, "generation 2 did not pass its readiness probe"));
	assert_non_null(strstr(msg, "rolled back to generation 1, the last that was Ready"));
	assert_int_equal(num(s, "generation"), 2);
	started = strdup(json_string_value(json_object_get(s, "startedAt")) ?: "");
	json_decref(s);
	path = path_in(f->sb, "web.yaml");
	assert_int_equal(read_file(path, 1 << 20, &file, NULL), 0);
	assert_string_equal(file, v2); /* never modified */

	/* Not applied, and vmd wait says why at once. */
	assert_int_equal(wait_applied(f, "web", "60s", &err), 1);
	assert_non_null(strstr(err, "RolledBack"));
	assert_non_null(strstr(err, "generation 2 did not pass"));

	/* vmd status' table says it, as the message of the sandbox. */
	{
		char *argv[] = { (char *)test_vmd(), "status", "--run-dir", f->run, NULL };
		TestRun r;

		test_run(&r, argv);
		assert_int_equal(r.status, 0);
		assert_non_null(strstr(r.out, "generation 2 did not pass its readiness probe"));
		test_run_done(&r);
	}
	/* vmd plan goes by the spec rolled back to: nothing to do. */
	{
		char *argv[] = {
			(char *)test_vmd(), "plan",   "--sandboxes", f->sb, "--run-dir", f->run,
			"--state-dir",	    f->state, NULL
		};
		TestRun r;

		test_run(&r, argv);
		assert_int_equal(r.status, 0);
		assert_string_equal(r.out, "web: up to date (running)\n");
		test_run_done(&r);
	}

	/* A restarted vmd goes on with the rollback, and restarts nothing. */
	fixture_stop_daemon(f, SIGTERM);
	fixture_start_daemon(f);
	fixture_pass_time(f, 1500);
	s = fixture_wait_status(f, "web", rolled_back, "ReadinessTimeout");
	assert_string_equal(json_string_value(json_object_get(s, "startedAt")) ?: "", started);
	assert_int_equal(num(s, "generation"), 2);
	json_decref(s);

	/* A newer edit ends it: generation 3 is tried, and is Ready. */
	free(put_version(f, "web", 0, "v3", p0, NULL, "  rollback: true\n"));
	s = fixture_wait_status(f, "web", generation_settled, (void *)(uintptr_t)3);
	json_decref(s);
	s = fixture_wait_status(f, "web", ready, "Running");
	assert_string_equal(status_condition(s, "RolledBack", "status"), "False");
	json_decref(s);
	close(fd0);
}

/* A crash loop of a new generation (--rollback, the file says nothing) is rolled back too. */
static void test_rollback_crash_loop(void **state)
{
	Fixture *f = *state;
	uint16_t p0;
	int fd0 = test_listen_loopback(0, &p0);
	json_t *s;

	set_leases(f, 1, "--rollback");
	free(put_version(f, "web", 0, "v1", p0, NULL, NULL));
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "web", ready, "Running"));
	free(put_version(f, "web", 0, "v2", p0, NULL,
			 "metadata:\n  labels: {noop.vmd/exit-after: 100ms}\n"));
	s = fixture_wait_status(f, "web", rolled_back, "CrashLoop");
	assert_non_null(strstr(status_condition(s, "RolledBack", "message"),
			       "generation 2 crashed 2 times in a row"));
	json_decref(s);
	close(fd0);
}

/*
 * On QEMU (TCG), the test guest: generation 1 shows its console marker (its readiness);
 * generation 2's kernel panics (no init to run), so its marker never comes: its readiness
 * times out, and generation 1 boots again, marker and all.
 */
static void test_qemu_panic(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *console = NULL;
	const char *probe =
		"  readiness: {console: {match: \"^VMD-GUEST-READY$\"}, period: 200ms%s}\n";
	char spec[512], readiness[256];
	json_t *s;

	snprintf(readiness, sizeof(readiness), probe, "");
	snprintf(spec, sizeof(spec),
		 "  updatePolicy: restart\n  rollback: true\n  cmdline: console=ttyS0 quiet\n%s",
		 readiness);
	qemu_put(f, "guest", spec);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "guest", ready, "Running"));

	/* Long enough for its panic to be seen first, whatever the load. */
	snprintf(readiness, sizeof(readiness), probe, ", timeout: 60s");
	snprintf(spec, sizeof(spec),
		 "  updatePolicy: restart\n  rollback: true\n"
		 "  cmdline: console=ttyS0 rdinit=/nonexistent init=/nonexistent\n%s",
		 readiness);
	qemu_put(f, "guest", spec);
	json_decref(fixture_wait_status(f, "guest", generation_settled, (void *)(uintptr_t)2));
	fixture_wait_console(f, "guest", "Kernel panic", 0);
	s = fixture_wait_status(f, "guest", rolled_back, "ReadinessTimeout");
	assert_int_equal(num(s, "generation"), 2);
	assert_non_null(strstr(status_condition(s, "RolledBack", "message"),
			       "rolled back to generation 1"));
	json_decref(s);
	/* Generation 1 boots again: its console (a new one for each boot) shows the marker. */
	fixture_wait_console(f, "guest", "VMD-GUEST-READY", 0);
	assert_null(strstr(console = fixture_console(f, "guest"), "Kernel panic"));
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan_budget),
		cmocka_unit_test(test_spec_rollback),
		cmocka_unit_test_setup_teardown(test_budget, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_blocked, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_rollback, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_rollback_crash_loop, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_qemu_panic, qemu_setup, fixture_teardown),
	};

	return cmocka_run_group_tests_name("rollout", tests, NULL, NULL);
}
