/* SPDX-License-Identifier: MIT */
/*
 * spec.after (reconciler/after-spec.c, ordering.c): the planner's gating, table-driven;
 * the file's errors and the JSON copy; vmd validate across files (a cycle, with each edge's
 * file:line:col, and a name no file gives); and the real `vmd daemon` on noop sandboxes
 * made Ready or not by a tcp probe to a listener this test opens on the loopback (as
 * test-readiness.c does): the ordered start of three at daemon start, a cycle refused, a
 * name that comes later, and the reverse order of their stops when their files go at once.
 * Orders are read from the daemon's log, one event after another, never from a clock.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "after-spec.h"
#include "daemon-fixture.h"
#include "helpers.h"
#include "host-systemd.h"
#include "manager-fixture.h"
#include "plan.h"
#include "spec-json.h"
#include "spec-yaml.h"
#include "status.h"

/* The planner */

#define BASE "memory: 64Mi\n"
#define AFTER "after: [db, cache]\n"

typedef struct Row {
	const char *what;
	const char *want; /* spec: lines; NULL for a removed file */
	VmState state;
	const char *have; /* the config the VM runs; NULL: same as want */
	int exit_status;
	const char *const *ready;
	bool stop_waits;
	const char *expect; /* "type ..." */
	bool waits;	    /* Plan.waits_for_after */
	bool stop_waited;   /* Plan.stop_waits */
} Row;

static const char *const none[] = { NULL };
static const char *const db[] = { "db", NULL };
static const char *const both[] = { "cache", "db", NULL };
static const char *const others[] = { "web", "cache", NULL };

static const Row rows[] = {
	{ "nothing Ready: no start", BASE AFTER, VM_ABSENT, .ready = none, .expect = "",
	  .waits = true },
	{ "no set given: as none Ready", BASE AFTER, VM_ABSENT, .expect = "", .waits = true },
	{ "one of two Ready: no start", BASE AFTER, VM_ABSENT, .ready = db, .expect = "",
	  .waits = true },
	{ "other names Ready: no start", BASE AFTER, VM_ABSENT, .ready = others, .expect = "",
	  .waits = true },
	{ "both Ready, any order: start", BASE AFTER, VM_ABSENT, .ready = both, .expect = "start" },
	{ "no after: nothing to wait for", BASE, VM_ABSENT, .ready = none, .expect = "start" },
	{ "paused wanted, both Ready", BASE AFTER "state: paused\n", VM_ABSENT, .ready = both,
	  .expect = "start pause" },
	{ "stopped wanted: no wait to say", BASE AFTER "state: stopped\n", VM_ABSENT, .ready = none,
	  .expect = "" },
	{ "crashed, always: the restart waits", BASE AFTER, VM_EXITED, .exit_status = 1,
	  .ready = db, .expect = "", .waits = true },
	{ "crashed, always, both Ready", BASE AFTER, VM_EXITED, .exit_status = 1, .ready = both,
	  .expect = "start" },
	{ "running, one not Ready any more: never stopped", BASE AFTER, VM_RUNNING, .ready = none,
	  .expect = "" },
	{ "restart for a change, not Ready: not begun",
	  BASE AFTER "updatePolicy: restart\n"
		     "cmdline: new\n",
	  VM_RUNNING, .have = BASE AFTER, .ready = db, .expect = "", .waits = true },
	{ "restart for a change, both Ready", BASE AFTER "updatePolicy: restart\ncmdline: new\n",
	  VM_RUNNING, .have = BASE AFTER, .ready = both, .expect = "restart" },
	{ "after edited alone: no restart", BASE "after: [db]\nupdatePolicy: restart\n", VM_RUNNING,
	  .have = BASE AFTER "updatePolicy: restart\n", .ready = none, .expect = "" },
	{ "file removed, one naming it stops too: waits", NULL, VM_RUNNING, .have = BASE,
	  .stop_waits = true, .expect = "", .stop_waited = true },
	{ "file removed, nobody waits for it: stop", NULL, VM_RUNNING, .have = BASE,
	  .expect = "stop" },
	{ "stopped wanted, one naming it stops too: waits", BASE "state: stopped\n", VM_RUNNING,
	  .have = BASE, .stop_waits = true, .expect = "", .stop_waited = true },
	{ "file removed, paused, nobody waits: stop", NULL, VM_PAUSED, .have = BASE,
	  .expect = "stop" },
};

static void test_plan_rows(void **state _unused_)
{
	unsigned failures = 0;

	for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
		const Row *r = &rows[i];
		_cleanup_(sandbox_spec_freep) SandboxSpec *want =
			r->want ? test_spec_of(r->want) : NULL;
		const char *have_text = r->have ?: r->want;
		VmObserved o = { .state = r->state, .generation = 2, .exit_status = r->exit_status };
		PlanInput in = { .desired = want,
				 .generation = 2,
				 .observed = &o,
				 .caps = BACKEND_CAP_PAUSE,
				 .desired_since = 1000,
				 .ready = r->ready,
				 .stop_waits = r->stop_waits };
		char got[256] = "";
		size_t off = 0;
		Plan plan;

		if (r->state != VM_ABSENT && r->state != VM_EXITED && have_text)
			o.config = test_spec_of(have_text);
		plan_sandbox(&in, 10000, 100, &plan);
		for (size_t k = 0; k < plan.n_actions; k++)
			off += (size_t)snprintf(got + off, sizeof(got) - off, "%s%s", k ? " " : "",
						action_type_to_string(plan.actions[k].type));
		if (!streq(got, r->expect) || plan.waits_for_after != r->waits ||
		    plan.stop_waits != r->stop_waited) {
			print_error(
				"row %zu '%s': got '%s' waits=%d stop_waits=%d, expected '%s' %d %d\n",
				i, r->what, got, plan.waits_for_after, plan.stop_waits, r->expect,
				r->waits, r->stop_waited);
			failures++;
		}
		vm_observed_done(&o);
	}
	assert_int_equal(failures, 0);
}

/* The file */

static void load_error(const char *after, const char *expect)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	_cleanup_free_ char *text = NULL;
	const SpecLoadOptions opts = { .default_backend = BACKEND_NOOP };
	SandboxSpec *s = NULL;
	char got[512];

	assert_true(asprintf(&text, "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  memory: 64Mi\n%s",
			     after) > 0);
	assert_int_equal(spec_load_buffer("app.yaml", text, strlen(text), &opts, &s, &diags),
			 -EINVAL);
	assert_true(diags.n >= 1);
	snprintf(got, sizeof(got), "%u:%u: %s", diags.items[0].line, diags.items[0].column,
		 diags.items[0].message);
	assert_string_equal(got, expect);
}

static void test_file_errors(void **state _unused_)
{
	load_error("  after: [db, db]\n", "5:15: spec.after[1]: 'db' is named twice; name it once");
	load_error("  after: [db, app]\n",
		   "5:15: spec.after: 'app' is this sandbox itself: it cannot wait for itself");
	load_error(
		"  after: [Db]\n",
		"5:11: spec.after[0]: 'Db' is not a sandbox name: expected 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit");
	load_error(
		"  after: db\n",
		"5:10: spec.after: expected a list of sandbox names, such as [db, cache], got 'db'");
	load_error("  after: [{name: db}]\n",
		   "5:11: spec.after[0]: expected a string, got a mapping");
}

/* The state dir's copy and the noop backend's keep it; a spec without one has no key. */
static void test_json_round_trip(void **state _unused_)
{
	_cleanup_(sandbox_spec_freep) SandboxSpec *s = test_spec_of(BASE AFTER), *back = NULL,
						  *plain = test_spec_of(BASE);
	json_t *j = spec_to_json(s), *p = spec_to_json(plain);

	assert_non_null(j);
	assert_int_equal(json_array_size(json_object_get(j, "after")), 2);
	assert_int_equal(spec_from_json(j, &back), 0);
	assert_int_equal(back->n_after, 2);
	assert_string_equal(back->after[0].name, "db");
	assert_string_equal(back->after[1].name, "cache");
	assert_true(spec_equal(s, back));
	assert_false(spec_equal(s, plain));
	assert_null(json_object_get(p, "after"));
	json_object_set_new(j, "after", json_pack("[s]", "Not-A-Name"));
	back = sandbox_spec_free(back);
	assert_int_equal(spec_from_json(j, &back), -EINVAL);
	json_decref(j);
	json_decref(p);
}

/* vmd validate across files */

static void put_file(const char *dir, const char *name, const char *after)
{
	char file[64], text[512];

	snprintf(file, sizeof(file), "%s.yaml", name);
	snprintf(text, sizeof(text), FIXTURE_NOOP_SPEC "%s", after);
	test_write_str(dir, file, text);
}

static void validate(TestRun *r, const char *a1, const char *a2)
{
	char *argv[] = { (char *)test_vmd(), "validate", (char *)a1, (char *)a2, NULL };

	test_run(r, argv);
}

static void test_validate_cycle(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r = {};
	char *dir = test_tmpdir();
	char expect[2048];

	put_file(dir, "a", "  after: [b]\n");
	put_file(dir, "b", "  # c first\n  after: [web, c]\n");
	put_file(dir, "c", "  after: [a]\n");
	put_file(dir, "web", "");
	validate(&r, dir, NULL);
	assert_int_equal(r.status, 1);
	/* Each file of the cycle, from its own edge, every edge at its name in after:. */
	snprintf(expect, sizeof(expect),
		 "%s/a.yaml:6:11: error: spec.after[0]: a cycle of after: %s/a.yaml:6:11 a after b, %s/b.yaml:7:16 b after c, %s/c.yaml:6:11 c after a; none of them would ever start: remove one of these names\n",
		 dir, dir, dir, dir);
	assert_non_null(strstr(r.err, expect));
	snprintf(expect, sizeof(expect),
		 "%s/b.yaml:7:16: error: spec.after[1]: a cycle of after: %s/b.yaml:7:16 b after c, %s/c.yaml:6:11 c after a, %s/a.yaml:6:11 a after b;",
		 dir, dir, dir, dir);
	assert_non_null(strstr(r.err, expect));
	snprintf(expect, sizeof(expect),
		 "%s/c.yaml:6:11: error: spec.after[0]: a cycle of after: ", dir);
	assert_non_null(strstr(r.err, expect));
	snprintf(expect, sizeof(expect), "%s/web.yaml: ok (sandbox 'web', backend noop)", dir);
	assert_non_null(strstr(r.out, expect));
	assert_null(strstr(r.out, "a.yaml: ok"));
	test_run_done(&r);

	/* Broken: every file valid, each said once. */
	put_file(dir, "c", "  after: [web]\n");
	validate(&r, dir, NULL);
	assert_int_equal(r.status, 0);
	assert_int_equal(count_in(r.out, ": ok (sandbox"), 4);
	test_tmpdir_remove(dir);
}

static void test_validate_unknown(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r = {};
	_cleanup_free_ char *file = NULL;
	char *dir = test_tmpdir();
	char expect[1024];

	put_file(dir, "app", "  after: [db, cache]\n");
	put_file(dir, "db", "");
	test_write_str(dir, "cache.yaml", "not: [valid\n"); /* its own error; its name is known */
	put_file(dir, "api", "  after: [nosuch]\n");
	validate(&r, "--json", dir);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.out, "\"reason\": \"UnknownDependency\""));
	assert_non_null(strstr(r.out, "no file gives sandbox 'nosuch'"));
	assert_null(strstr(r.out, "no file gives sandbox 'cache'"));
	test_run_done(&r);

	validate(&r, dir, NULL);
	snprintf(expect, sizeof(expect),
		 "%s/api.yaml:6:11: error: spec.after[0]: no file gives sandbox 'nosuch': it would wait for it to be Ready, and never start\n",
		 dir);
	assert_non_null(strstr(r.err, expect));
	test_run_done(&r);

	/* A file alone cannot know the others: nothing is said of names. */
	file = path_in(dir, "api.yaml");
	validate(&r, file, NULL);
	assert_int_equal(r.status, 0);
	assert_null(strstr(r.err, "nosuch"));
	test_tmpdir_remove(dir);
}

/* The daemon on noop */

/* Sandbox name, i-th of its kind (its MAC), Ready when port accepts, waiting for after. */
static void put_probed(Fixture *f, const char *name, unsigned i, uint16_t port, const char *after)
{
	char text[1024];

	snprintf(text, sizeof(text),
		 FIXTURE_NOOP_SPEC
		 "  networks:\n    - {id: n0, tap: tap-%s, mac: \"52:54:00:00:0c:%02x\"}\n"
		 "  readiness: {tcp: {port: %u}, period: 100ms}\n%s",
		 name, i, port, after);
	fixture_put(f, name, text);
}

/* Every NIC of put_probed() gets the loopback, as a DHCP server's lease would say. */
static void start_daemon(Fixture *f)
{
	static char leases[4096];
	static const char *args[] = { "--dhcp-leases", leases, "--max-deletions", "off", NULL };
	char text[512] = "";

	for (unsigned i = 1; i <= 4; i++)
		snprintf(text + strlen(text), sizeof(text) - strlen(text),
			 "0 52:54:00:00:0c:%02x 127.0.0.1 probe *\n", i);
	snprintf(leases, sizeof(leases), "%s/dnsmasq.leases", f->dir);
	test_write_str(f->dir, "dnsmasq.leases", text);
	f->daemon_args = args;
	fixture_start_daemon(f);
}

/* Where line first is in the daemon's log (its offset), failing if it is not there. */
static size_t log_at(const char *log, const char *line)
{
	const char *p = strstr(log, line);

	if (!p)
		fail_msg("not in the daemon's log: '%s'", line);
	return (size_t)(p - log);
}

/* c first, b once c is Ready, a once b is: at the daemon's start, by the order of events. */
static void test_ordered_start(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *log = NULL;
	uint16_t pc = 0, pb = 0, pa = 0;
	int fb = fixture_listen_loopback(&pb), fa = fixture_listen_loopback(&pa), fc;
	json_t *s;

	close(fixture_listen_loopback(&pc)); /* nothing listens for c yet: its probe is refused */
	put_probed(f, "a", 1, pa, "  after: [b]\n");
	put_probed(f, "b", 2, pb, "  after: [c]\n");
	put_probed(f, "c", 3, pc, "");
	start_daemon(f);

	/* c runs and is not Ready: b waits for it, a for b; neither runs. */
	json_decref(fixture_wait_cond(f, "c", "Ready", "False", "ProbeFailed", "Connection refused"));
	s = fixture_wait_cond(
		f, "b", "Ready", "False", "WaitingForDependencies",
		"waiting for c (Ready=False: ProbeFailed) to be Ready before it starts (spec.after)");
	assert_string_equal(status_condition(s, "Running", "reason"), "NotStarted");
	assert_string_equal(json_string_value(json_object_get(s, "phase")), "Pending");
	json_decref(s);
	s = fixture_wait_cond(f, "a", "Ready", "False", "WaitingForDependencies",
			      "waiting for b (Ready=False: WaitingForDependencies)");
	assert_string_equal(status_condition(s, "Running", "reason"), "NotStarted");
	json_decref(s);
	{
		/* vmd plan says it as the daemon's status does. */
		_cleanup_(test_run_done) TestRun r = {};
		char *argv[] = {
			(char *)test_vmd(), "plan",   "--sandboxes", f->sb, "--run-dir", f->run,
			"--state-dir",	    f->state, NULL
		};

		test_run(&r, argv);
		assert_int_equal(r.status, 0);
		assert_non_null(strstr(
			r.out,
			"b: nothing yet: waiting for c (Ready=False: ProbeFailed) to be Ready before it starts (spec.after)\n"));
		assert_non_null(strstr(r.out, "c: up to date (running)\n"));
	}

	fc = fixture_listen_loopback_on(pc); /* c's guest comes up */
	json_decref(fixture_wait_cond(f, "a", "Ready", "True", "AsDesired", NULL));

	log = test_read_file(f->log, NULL);
	assert_true(log_at(log, "vmd: c: start: ") < log_at(log, "vmd: c: readiness probe passed"));
	assert_true(log_at(log, "vmd: c: readiness probe passed") < log_at(log, "vmd: b: start: "));
	assert_true(log_at(log, "vmd: b: readiness probe passed") < log_at(log, "vmd: a: start: "));
	/* Said once, as each began to wait. */
	assert_int_equal(count_in(log, "vmd: b: waiting for c"), 1);
	close(fa);
	close(fb);
	close(fc);
}

/* A name no file gives yet: waited for, said in the status; its file comes, and it starts. */
static void test_unknown_then_added(void **state)
{
	Fixture *f = *state;
	uint16_t pa = 0, pd = 0;
	int fa = fixture_listen_loopback(&pa), fd = fixture_listen_loopback(&pd);

	put_probed(f, "a", 1, pa, "  after: [db]\n");
	start_daemon(f);
	json_decref(fixture_wait_cond(f, "a", "Ready", "False", "WaitingForDependencies",
				      "waiting for db (no such sandbox)"));
	json_decref(fixture_wait_cond(f, "a", "ConfigValid", "True", "Valid", NULL));
	put_probed(f, "db", 4, pd, "");
	json_decref(fixture_wait_cond(f, "a", "Ready", "True", "AsDesired", NULL));
	close(fa);
	close(fd);
}

static bool restarts_at_least(json_t *s, const void *arg)
{
	return s && json_integer_value(json_object_get(s, "restarts")) >= (json_int_t)(uintptr_t)arg;
}

/*
 * db goes not Ready (a new readiness probe it fails) while web and app run after it: web
 * runs on, never stopped for it; app, whose VM exits on its own, is not restarted until db
 * is Ready again.
 */
static void test_restart_waits(void **state)
{
	Fixture *f = *state;
	uint16_t pd = 0, other = 0;
	int fd = fixture_listen_loopback(&pd), fo;
	_cleanup_free_ char *state_now = NULL;
	json_int_t restarts;
	json_t *s;
	pid_t web;

	close(fixture_listen_loopback(&other)); /* nothing listens there, for now */
	put_probed(f, "db", 4, pd, "");
	fixture_put(f, "web", FIXTURE_NOOP_SPEC "  after: [db]\n");
	fixture_put(f, "app",
		    FIXTURE_NOOP_SPEC "  after: [db]\n"
				      "metadata:\n  labels: {noop.vmd/exit-after: 300ms}\n");
	start_daemon(f);
	s = fixture_wait_cond(f, "web", "Ready", "True", "AsDesired", NULL);
	web = pid_of(s);
	json_decref(s);
	json_decref(fixture_wait_status(f, "app", restarts_at_least, (void *)1));

	put_probed(f, "db", 4, other, ""); /* a new probe, which fails: Ready goes */
	json_decref(fixture_wait_cond(f, "db", "Ready", "False", "ProbeFailed", NULL));
	s = fixture_wait_cond(f, "app", "Ready", "False", "WaitingForDependencies",
			      "waiting for db (Ready=False: ProbeFailed)");
	assert_string_equal(status_condition(s, "Running", "status"), "False");
	restarts = json_integer_value(json_object_get(s, "restarts"));
	json_decref(s);
	state_now = fixture_noop_state(f, "app");
	assert_string_equal(state_now, "exited");
	s = fixture_status(f, "web");
	assert_string_equal(status_condition(s, "Running", "status"), "True");
	assert_int_equal(pid_of(s), web);
	json_decref(s);

	fo = fixture_listen_loopback_on(other); /* db's guest answers again */
	json_decref(fixture_wait_cond(f, "db", "Ready", "True", "AsDesired", NULL));
	json_decref(fixture_wait_status(f, "app", restarts_at_least,
					(void *)(uintptr_t)(restarts + 1)));
	close(fd);
	close(fo);
}

/* A cycle across files: the file that closes it is refused; nothing starts. */
static void test_cycle_refused(void **state)
{
	Fixture *f = *state;
	json_t *sa, *sb;
	const char *ra, *rb;

	fixture_put(f, "a", FIXTURE_NOOP_SPEC "  after: [b]\n");
	fixture_put(f, "b", FIXTURE_NOOP_SPEC "  after: [a]\n");
	start_daemon(f);
	sa = fixture_wait_cond(f, "a", "Ready", "False", NULL, NULL);
	sb = fixture_wait_cond(f, "b", "Ready", "False", NULL, NULL);
	/* Wait for both to be judged: one refused, the other waiting for it. */
	for (unsigned i = 0; i < 600; i++) {
		ra = status_condition(sa, "ConfigValid", "reason");
		rb = status_condition(sb, "ConfigValid", "reason");
		if (streq(ra, "DependencyCycle") != streq(rb, "DependencyCycle"))
			break;
		json_decref(sa);
		json_decref(sb);
		fixture_pass_time(f, 100);
		sa = fixture_status(f, "a");
		sb = fixture_status(f, "b");
	}
	assert_true(streq(ra, "DependencyCycle") != streq(rb, "DependencyCycle"));
	{
		json_t *refused = streq(ra, "DependencyCycle") ? sa : sb,
		       *other = refused == sa ? sb : sa;
		const char *msg = status_condition(refused, "ConfigValid", "message");

		assert_non_null(strstr(msg, "a.yaml:6:11 a after b"));
		assert_non_null(strstr(msg, "b.yaml:6:11 b after a"));
		assert_non_null(strstr(msg, ": spec.after[0]: a cycle of after: "));
		assert_string_equal(status_condition(other, "ConfigValid", "status"), "True");
		assert_string_equal(status_condition(other, "Ready", "reason"),
				    "WaitingForDependencies");
		assert_string_equal(status_condition(other, "Running", "reason"), "NotStarted");
		assert_string_equal(status_condition(refused, "Running", "reason"), "NotStarted");
	}
	json_decref(sa);
	json_decref(sb);
}

/* Removed at once: a (which names b) stops first, then b (which names c), then c. */
static void test_reverse_stop(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *log = NULL, *pa = NULL, *pb = NULL, *pc = NULL;

	fixture_put(f, "a", FIXTURE_NOOP_SPEC "  after: [b]\n");
	fixture_put(f, "b", FIXTURE_NOOP_SPEC "  after: [c]\n");
	fixture_put(f, "c", FIXTURE_NOOP_SPEC);
	start_daemon(f);
	json_decref(fixture_wait_status(f, "a", ready, "Running"));
	pa = path_in(f->sb, "a.yaml");
	pb = path_in(f->sb, "b.yaml");
	pc = path_in(f->sb, "c.yaml");
	/* c's goes first: without the order, its stop would be the first to come due. */
	assert_int_equal(unlink(pc), 0);
	assert_int_equal(unlink(pb), 0);
	assert_int_equal(unlink(pa), 0);
	json_decref(fixture_wait_status(f, "c", absent, NULL));
	json_decref(fixture_wait_status(f, "b", absent, NULL));
	json_decref(fixture_wait_status(f, "a", absent, NULL));
	log = test_read_file(f->log, NULL);
	assert_true(log_at(log, "vmd: a: stop: its file was removed") <
		    log_at(log, "vmd: b: stop: its file was removed"));
	assert_true(log_at(log, "vmd: b: stop: its file was removed") <
		    log_at(log, "vmd: c: stop: its file was removed"));
}

/* The line of out that begins with prefix, without its newline (to free); fails if none. */
static char *line_of(const char *out, const char *prefix)
{
	for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, prefix, strlen(prefix)) == 0)
			return strndup(p, strcspn(p, "\n"));
	fail_msg("no line '%s...' in:\n%s", prefix, out);
	return NULL;
}

/*
 * vmd plan shows the order of stops that go at once: a (which names b) first, then b
 * (which names c), then c; d, in no order, as it was. On the VMs a daemon killed left
 * running, their files removed since.
 */
static void test_plan_stop_order(void **state)
{
	Fixture *f = *state;
	_cleanup_(test_run_done) TestRun r = {}, rj = {};
	char *argv[] = { (char *)test_vmd(), "plan",   "--sandboxes", f->sb, "--run-dir", f->run,
			 "--state-dir",	     f->state, NULL,	      NULL };
	_cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;
	json_t *all, *e, *stop;
	size_t i;

	fixture_put(f, "a", FIXTURE_NOOP_SPEC "  after: [b]\n");
	fixture_put(f, "b", FIXTURE_NOOP_SPEC "  after: [c]\n");
	fixture_put(f, "c", FIXTURE_NOOP_SPEC);
	fixture_put(f, "d", FIXTURE_NOOP_SPEC);
	start_daemon(f);
	json_decref(fixture_wait_status(f, "a", ready, "Running"));
	json_decref(fixture_wait_status(f, "d", ready, "Running"));
	fixture_stop_daemon(f, SIGKILL);
	for (const char *n = "abc"; *n; n++) {
		_cleanup_free_ char *p = path_in(f->sb, "%c.yaml", *n);

		assert_int_equal(unlink(p), 0);
	}

	test_run(&r, argv);
	assert_int_equal(r.status, 0);
	a = line_of(r.out, "a: stop (its file was removed)");
	b = line_of(r.out, "b: stop (its file was removed)");
	c = line_of(r.out, "c: stop (its file was removed)");
	assert_true(strlen(a) > 8 && streq(a + strlen(a) - 8, "[stop 1]"));
	assert_non_null(strstr(b, "[stop 2: after a (spec.after)]"));
	assert_non_null(strstr(c, "[stop 3: after b (spec.after)]"));
	assert_non_null(strstr(r.out, "d: up to date (running)\n"));

	argv[8] = "--json";
	test_run(&rj, argv);
	assert_int_equal(rj.status, 0);
	all = json_loads(rj.out, 0, NULL);
	assert_non_null(all);
	json_array_foreach(all, i, e)
	{
		const char *name = json_string_value(json_object_get(e, "name"));

		stop = json_array_get(json_object_get(e, "actions"), 0);
		if (streq(name, "d")) {
			assert_int_equal(json_array_size(json_object_get(e, "actions")), 0);
			continue;
		}
		assert_int_equal(json_integer_value(json_object_get(stop, "stopStep")),
				 name[0] - 'a' + 1);
		if (streq(name, "c"))
			assert_string_equal(json_string_value(json_array_get(
						    json_object_get(stop, "stopAfter"), 0)),
					    "b");
	}
	json_decref(all);
}

/*
 * The host's shutdown through the daemon (SystemState "stopping" at SIGTERM, which needs a
 * system bus: here called as its reply would): a's guest first, then b's, then c's, though
 * the manager knows c first. What the daemon says goes to stderr, taken here in a file.
 */
static void test_host_shutdown_order(void **state)
{
	ManagerFixture *mf = *state;
	Manager *m = mf->m;
	_cleanup_free_ char *log_path = path_in(mf->dir, "vmd.log"), *log = NULL;
	const char *names[] = { "c", "b", "a" };
	int saved, fd, code;

	for (size_t i = 0; i < ELEMENTSOF(names); i++)
		assert_non_null(manager_sandbox(m, names[i], true)); /* c first in Manager.all */
	put_file(mf->sb, "a", "  after: [b]\n");
	put_file(mf->sb, "b", "  after: [c]\n");
	put_file(mf->sb, "c", "");
	assert_int_equal(manager_scan(m), 0);
	for (unsigned pass = 0; pass < 4; pass++)
		for (ListNode *n = m->all.first; n; n = n->next)
			sandbox_reconcile(m, list_entry(n, Sandbox, all_node));
	for (size_t i = 0; i < ELEMENTSOF(names); i++)
		assert_int_equal(manager_sandbox(m, names[i], false)->observed.state, VM_RUNNING);

	fflush(stderr);
	saved = dup(STDERR_FILENO);
	fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(saved >= 0 && fd >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	host_systemd_shut_guests_down(m);
	fflush(stderr);
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	close(fd);

	log = test_read_file(log_path, NULL);
	assert_true(log_at(log, "vmd: a: shutting its guest down") <
		    log_at(log, "vmd: b: shutting its guest down"));
	assert_true(log_at(log, "vmd: b: shutting its guest down") <
		    log_at(log, "vmd: c: shutting its guest down"));
	/* Every guest down: the loop is told to end, not left for the deadline. */
	assert_true(sd_event_get_exit_code(m->event, &code) >= 0);
	for (size_t i = 0; i < ELEMENTSOF(names); i++)
		assert_int_not_equal(manager_sandbox(m, names[i], false)->observed.state, VM_RUNNING);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan_rows),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_json_round_trip),
		cmocka_unit_test(test_validate_cycle),
		cmocka_unit_test(test_validate_unknown),
		cmocka_unit_test_setup_teardown(test_ordered_start, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_unknown_then_added, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_restart_waits, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_cycle_refused, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_reverse_stop, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_plan_stop_order, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_host_shutdown_order, manager_fixture_setup,
						manager_fixture_teardown),
	};

	if (getenv("VMD_TEST_FILTER")) /* one test, for a run by hand */
		cmocka_set_test_filter(getenv("VMD_TEST_FILTER"));
	return cmocka_run_group_tests_name("ordering", tests, NULL, NULL);
}
