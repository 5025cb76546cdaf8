/* SPDX-License-Identifier: MIT */
/*
 * The mass deletion guard (reconciler/deletion-guard.c): --max-deletions as it parses and
 * counts, then the real `vmd daemon` on the noop backend, nine sandboxes running, as an
 * operator meets it: most files removed at once, the directory emptied, a tmpfs mounted
 * over it (in a mount namespace of this test's own), the files coming back, approvals and
 * stale ones. What "not stopped" means is the noop backend's own record (noop.json) still
 * saying running, with the same startedAt. Waits are bounded (a failure, not a speed claim).
 */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "daemon-fixture.h"
#include "deletion-guard.h"
#include "helpers.h"
#include "status.h"
#include "util.h"

/* --max-deletions */

static void test_limit_parse(void **state _unused_)
{
	static const struct {
		const char *arg;
		DeletionLimit want;
	} good[] = {
		{ "1,50%", { .has_count = true, .count = 1, .has_percent = true, .percent = 50 } },
		{ "50%,1", { .has_count = true, .count = 1, .has_percent = true, .percent = 50 } },
		{ "3", { .has_count = true, .count = 3 } },
		{ "0", { .has_count = true, .count = 0 } },
		{ "100%", { .has_percent = true, .percent = 100 } },
		{ "0%", { .has_percent = true, .percent = 0 } },
		{ "4294967295", { .has_count = true, .count = 4294967295u } },
		{ "off", { .off = true } },
	};
	static const char *const bad[] = {
		"",    "-1",   "1,",	",1",  "1,2",  "50%,60%", "101%",
		"1.5", "5 ",   " 5",	"x",   "%",    "1,50%,2", "4294967296",
		"OFF", "none", "1;50%", "1%%", "50%1", "1,,50%",
	};

	for (size_t i = 0; i < ELEMENTSOF(good); i++) {
		DeletionLimit l;
		char buf[32];

		if (deletion_limit_from_string(good[i].arg, &l) < 0)
			fail_msg("'%s' refused", good[i].arg);
		assert_int_equal(l.off, good[i].want.off);
		assert_int_equal(l.has_count, good[i].want.has_count);
		assert_int_equal(l.count, good[i].want.count);
		assert_int_equal(l.has_percent, good[i].want.has_percent);
		assert_int_equal(l.percent, good[i].want.percent);
		deletion_limit_format(&l, buf);
		/* Printed as given, but for the order of the terms. */
		assert_string_equal(buf, streq(good[i].arg, "50%,1") ? "1,50%" : good[i].arg);
	}
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		DeletionLimit l = {};

		if (deletion_limit_from_string(bad[i], &l) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
	}
}

static void test_limit_count(void **state _unused_)
{
	static const struct {
		const char *limit;
		size_t n, total;
		bool exceeded;
	} rows[] = {
		/* The default: more than 1 and more than half. */
		{ "1,50%", 1, 9, false }, /* one file of nine: stopped as ever */
		{ "1,50%", 4, 9, false }, { "1,50%", 5, 9, true },  { "1,50%", 8, 9, true },
		{ "1,50%", 1, 1, false }, /* the only VM: one is not more than 1 */
		{ "1,50%", 2, 2, true },  { "1,50%", 2, 4, false }, /* half is not more than half */
		{ "1,50%", 3, 4, true },  { "1,50%", 0, 0, false }, { "3", 3, 3, false },
		{ "3", 4, 100, true },	  { "0", 1, 100, true }, /* every stop waits for an approval */
		{ "0", 0, 100, false },	  { "50%", 1, 1, true }, /* a share alone: even one */
		{ "50%", 1, 2, false },	  { "100%", 9, 9, false },  { "off", 9, 9, false },
	};

	for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
		DeletionLimit l;

		assert_int_equal(deletion_limit_from_string(rows[i].limit, &l), 0);
		if (deletion_limit_exceeded(&l, rows[i].n, rows[i].total) != rows[i].exceeded)
			fail_msg("%s: %zu of %zu: want %s", rows[i].limit, rows[i].n, rows[i].total,
				 rows[i].exceeded ? "exceeded" : "not exceeded");
	}
	assert_false(deletion_limit_exceeded(&DELETION_LIMIT_DEFAULT, 4, 9));
	assert_true(deletion_limit_exceeded(&DELETION_LIMIT_DEFAULT, 5, 9));
}

/* The daemon */

#define N_VMS 9

static const char *SPEC =
	"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n";

static char *started[N_VMS]; /* startedAt of each, as first seen running */

static int setup(void **state)
{
	fixture_setup(state);
	fixture_listen_notify(*state);
	return 0;
}

static int teardown(void **state)
{
	Fixture *f = *state;

	/* A test that failed with its tmpfs mounted: out of the way of the removal. */
	(void)umount2(f->sb, MNT_DETACH);
	for (size_t i = 0; i < N_VMS; i++)
		started[i] = mfree(started[i]);
	return fixture_teardown(state);
}

static const char *name(unsigned i)
{
	static char buf[N_VMS][8];

	snprintf(buf[i], sizeof(buf[i]), "vm-%u", i);
	return buf[i];
}

static void put_range(Fixture *f, unsigned from, unsigned to)
{
	for (unsigned i = from; i < to; i++)
		fixture_put(f, name(i), SPEC);
}

static void remove_range(Fixture *f, unsigned from, unsigned to)
{
	for (unsigned i = from; i < to; i++) {
		_cleanup_free_ char *p = path_in(f->sb, "%s.yaml", name(i));

		assert_int_equal(unlink(p), 0);
	}
}

/* What the noop backend itself says of name's VM: "running", ..., or NULL for none. */
static char *noop_state(Fixture *f, const char *vm)
{
	_cleanup_free_ char *p = path_in(f->run, "%s/noop.json", vm);
	json_t *j = json_load_file(p, 0, NULL);
	char *s = j ? strdup(json_string_value(json_object_get(j, "state"))) : NULL;

	json_decref(j);
	return s;
}

static bool held(json_t *s, const void *arg _unused_)
{
	return s && streq(status_condition(s, "Degraded", "status"), "True") &&
	       streq(status_condition(s, "Degraded", "reason"), "SuspiciousMassDeletion");
}

static bool released(json_t *s, const void *arg _unused_)
{
	return ready(s, "Running") && streq(status_condition(s, "Degraded", "status"), "False");
}

/* Start the daemon with vm-0 ... vm-(n-1) and wait until they run. */
static void start_with(Fixture *f, unsigned n, const char *const *args)
{
	put_range(f, 0, n);
	f->daemon_args = args;
	fixture_start_daemon(f);
	for (unsigned i = 0; i < n; i++) {
		json_t *s = fixture_wait_status(f, name(i), ready, "Running");

		started[i] = strdup(json_string_value(json_object_get(s, "startedAt")));
		json_decref(s);
	}
	fixture_expect_notify(f, "READY=1");
}

/* Ten grace periods (0.3 s each) and more: anything held only by the grace is done by now. */
static void well_past_grace(Fixture *f)
{
	fixture_pass_time(f, 3000);
}

/* vm-from ... vm-(to-1) run the VM they ran at the start, never stopped or restarted. */
static void still_running(Fixture *f, unsigned from, unsigned to, StatusPred pred)
{
	for (unsigned i = from; i < to; i++) {
		_cleanup_free_ char *vm = noop_state(f, name(i));
		json_t *s = fixture_wait_status(f, name(i), pred, NULL);

		assert_string_equal(vm ?: "(none)", "running");
		assert_string_equal(json_string_value(json_object_get(s, "startedAt")), started[i]);
		assert_int_equal(json_integer_value(json_object_get(s, "restarts")), 0);
		json_decref(s);
	}
}

static void stopped(Fixture *f, unsigned from, unsigned to)
{
	for (unsigned i = from; i < to; i++) {
		_cleanup_free_ char *vm = NULL;

		json_decref(fixture_wait_status(f, name(i), absent, NULL));
		vm = noop_state(f, name(i));
		assert_null(vm);
	}
}

static unsigned count(const char *haystack, const char *needle)
{
	unsigned n = 0;

	for (const char *p = haystack; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static void approve(Fixture *f, const char *only, TestRun *r)
{
	char *argv[] = { (char *)test_vmd(),  (char *)"approve-deletions",
			 (char *)"--run-dir", f->run,
			 (char *)only,	      NULL };

	test_run(r, argv);
}

static const char *TRIP_8 =
	"STATUS=Degraded: SuspiciousMassDeletion: the files of 8 of the 9 sandboxes with a VM went at once (more than --max-deletions 1,50%); stopping none of them";

/*
 * 8 files of 9 removed at once: nothing stopped, said once; back: nothing restarted;
 * removed again and approved: those 8 stop, the ninth runs on.
 */
static void test_mass_removal(void **state)
{
	Fixture *f = *state;
	_cleanup_(test_run_done) TestRun r = {};
	_cleanup_free_ char *log = NULL, *held_file = path_in(f->run, "deletions-held.json"),
			    *text = NULL;
	json_t *j;

	start_with(f, N_VMS, NULL);
	remove_range(f, 0, 8);
	fixture_expect_notify(f, TRIP_8);
	well_past_grace(f);
	still_running(f, 0, 8, held);
	still_running(f, 8, N_VMS, released);
	j = json_load_file(held_file, 0, NULL);
	assert_int_equal(json_array_size(json_object_get(j, "sandboxes")), 8);
	assert_string_equal(json_string_value(json_array_get(json_object_get(j, "sandboxes"), 0)),
			    "vm-0");
	json_decref(j);
	log = test_read_file(f->log, NULL);
	assert_int_equal(count(log, "SuspiciousMassDeletion"), 1); /* said once */
	assert_null(strstr(log, ": stop:"));
	free(log);

	/* Back: the guard lets go, and nothing is started again. */
	put_range(f, 0, 8);
	fixture_expect_notify(f, "STATUS=9 sandboxes, 9 ready, 9 Running");
	still_running(f, 0, N_VMS, released);
	assert_int_equal(access(held_file, F_OK), -1);
	log = test_read_file(f->log, NULL);
	assert_int_equal(count(log, ": start:"), N_VMS);
	assert_non_null(strstr(log, "no stop of a removed file is held any more"));

	/* Removed again, and approved: these eight stop. */
	remove_range(f, 0, 8);
	fixture_expect_notify(f, TRIP_8);
	approve(f, NULL, &r);
	if (r.status != 0)
		fail_msg("vmd approve-deletions: %s%s", r.out, r.err);
	assert_non_null(strstr(r.out, "approved the stop of 8 sandboxes whose file is gone:\n"
				      "  vm-0\n"));
	stopped(f, 0, 8);
	still_running(f, 8, N_VMS, released);
	fixture_expect_notify(f, "STATUS=1 sandbox, 1 ready, 1 Running");
	text = test_read_file(f->log, NULL);
	assert_non_null(
		strstr(text, "approved: stopping 8 sandboxes whose file is gone; 0 stay held"));
}

/* One file of nine: stopped after the grace period, as without a guard. */
static void test_single_removal(void **state)
{
	Fixture *f = *state;

	start_with(f, N_VMS, NULL);
	remove_range(f, 0, 1);
	stopped(f, 0, 1);
	still_running(f, 1, N_VMS, released);
	fixture_expect_notify(f, "STATUS=8 sandboxes, 8 ready, 8 Running");
	assert_null(strstr(f->notify.messages, "SuspiciousMassDeletion"));
}

/* The directory emptied, then filled again: nothing stopped, nothing restarted. */
static void test_emptied_and_restored(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *log = NULL;

	start_with(f, N_VMS, NULL);
	remove_range(f, 0, N_VMS);
	fixture_expect_notify(
		f, "STATUS=Degraded: SuspiciousMassDeletion: the files of 9 of the 9 sandboxes");
	well_past_grace(f);
	still_running(f, 0, N_VMS, held);

	put_range(f, 0, N_VMS);
	fixture_expect_notify(f, "STATUS=9 sandboxes, 9 ready, 9 Running");
	still_running(f, 0, N_VMS, released);
	log = test_read_file(f->log, NULL);
	assert_int_equal(count(log, ": start:"), N_VMS);
	assert_null(strstr(log, ": stop:"));
}

/* An approval made by hand: text, then SIGHUP; wait until vmd took it. */
static void approve_by_hand(Fixture *f, const char *text)
{
	_cleanup_free_ char *p = path_in(f->run, "deletions-approved.json");
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	test_write_str(f->run, "deletions-approved.json", text);
	assert_int_equal(chmod(p, 0600), 0);
	assert_int_equal(kill(f->pid, SIGHUP), 0);
	while (access(p, F_OK) == 0) {
		if (ms_now() > end)
			fail_msg("vmd never took %s", p);
		fixture_pass_time(f, 20);
	}
	fixture_expect_notify(f, "READY=1");
}

/*
 * An approval is for the trip it was given for: one made for a trip that ended lets go
 * nothing of the next, nor does one left over; and one that names some lets go those.
 */
static void test_approval_is_for_its_trip(void **state)
{
	Fixture *f = *state;
	_cleanup_(test_run_done) TestRun r = {};
	_cleanup_free_ char *first = NULL, *log = NULL,
			    *held_file = path_in(f->run, "deletions-held.json");

	start_with(f, N_VMS, NULL);
	/* Left over from before any trip: no id of a trip, nothing approved. */
	approve_by_hand(f, "{\"id\": \"\", \"sandboxes\": [\"vm-0\"]}");

	remove_range(f, 0, 8);
	fixture_expect_notify(f, TRIP_8);
	first = test_read_file(held_file, NULL);
	assert_non_null(first);
	put_range(f, 0, 8);
	fixture_expect_notify(f, "STATUS=9 sandboxes, 9 ready, 9 Running");

	/* Another trip: the first one's approval, held back until now, approves none of it. */
	remove_range(f, 0, 8);
	fixture_expect_notify(f, TRIP_8);
	approve_by_hand(f, first);
	well_past_grace(f);
	still_running(f, 0, 8, held);
	log = test_read_file(f->log, NULL);
	assert_int_equal(count(log, "it approves stops vmd no longer holds"), 2);

	/* An approval of one: that one stops, the seven others stay held. */
	approve(f, "vm-3", &r);
	if (r.status != 0)
		fail_msg("vmd approve-deletions: %s%s", r.out, r.err);
	stopped(f, 3, 4);
	well_past_grace(f);
	still_running(f, 0, 3, held);
	still_running(f, 4, 8, held);
	test_run_done(&r);

	/* A name it does not hold is refused, and approves nothing. */
	approve(f, "vm-8", &r);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "vmd holds no stop of 'vm-8'"));
	still_running(f, 8, N_VMS, released);
}

/* Nothing held: nothing to approve, and approve-deletions says so. */
static void test_nothing_to_approve(void **state)
{
	Fixture *f = *state;
	_cleanup_(test_run_done) TestRun r = {};

	start_with(f, 1, NULL);
	approve(f, NULL, &r);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "vmd holds no stop in "));
}

/* --max-deletions 0: even one file of nine waits for an approval. */
static void test_limit_zero(void **state)
{
	static const char *const args[] = { "--max-deletions", "0", NULL };
	Fixture *f = *state;

	start_with(f, N_VMS, args);
	remove_range(f, 0, 1);
	fixture_expect_notify(
		f,
		"STATUS=Degraded: SuspiciousMassDeletion: the files of 1 of the 9 sandboxes with a VM went at once (more than --max-deletions 0)");
	well_past_grace(f);
	still_running(f, 0, 1, held);
}

/* --max-deletions off: eight of nine stop, as they did before there was a guard. */
static void test_limit_off(void **state)
{
	static const char *const args[] = { "--max-deletions", "off", NULL };
	Fixture *f = *state;

	start_with(f, N_VMS, args);
	remove_range(f, 0, 8);
	stopped(f, 0, 8);
	fixture_expect_notify(f, "STATUS=1 sandbox, 1 ready, 1 Running");
	assert_null(strstr(f->notify.messages, "SuspiciousMassDeletion"));
}

/* A mount namespace of this test's own, so that its mounts are seen by nobody else. */
static void private_mounts(void)
{
	if (unshare(CLONE_NEWNS) < 0)
		skip(); /* not root: a user namespace would hide the daemon's other work */
	assert_int_equal(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
}

/*
 * A tmpfs mounted over the directory: no file event, another directory at the same path.
 * vmd notices, stops nothing, says so; unmounted, all is as it was. One sandbox of one: a
 * count would let its stop go ahead, a replaced directory does not.
 */
static void test_mount_over(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *want = NULL;

	private_mounts();
	start_with(f, 1, NULL);
	assert_int_equal(mount("tmpfs", f->sb, "tmpfs", 0, "mode=0755"), 0);
	assert_true(asprintf(&want,
			     "STATUS=Degraded: SuspiciousMassDeletion: %s was replaced under vmd",
			     f->sb) > 0);
	fixture_expect_notify(f, want);
	well_past_grace(f);
	still_running(f, 0, 1, held);
	/* Read again, as every resync does: the new directory is still what it lacks. */
	assert_int_equal(kill(f->pid, SIGHUP), 0);
	fixture_expect_notify(f, "READY=1");
	well_past_grace(f);
	still_running(f, 0, 1, held);

	assert_int_equal(umount2(f->sb, 0), 0);
	fixture_expect_notify(f, "STATUS=1 sandbox, 1 ready, 1 Running");
	still_running(f, 0, 1, released);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limit_parse),
		cmocka_unit_test(test_limit_count),
		cmocka_unit_test_setup_teardown(test_mass_removal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_single_removal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_emptied_and_restored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_approval_is_for_its_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nothing_to_approve, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limit_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limit_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mount_over, setup, teardown),
	};

	return cmocka_run_group_tests_name("deletion-guard", tests, NULL, NULL);
}
