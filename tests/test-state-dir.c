/* SPDX-License-Identifier: MIT */
/*
 * What the real `vmd daemon` (noop backend, tests/daemon-fixture.h) keeps in its state
 * dir, the last valid spec of every sandbox, and what it does with it at a restart: written
 * on a clean stop; a lost state dir and a broken file leave the running VM alone; a kept
 * spec is held to the backend's rules again; a full state dir (a 256 KiB tmpfs in a mount
 * namespace of the test's own, unmounted in teardown) is shown, said once and retried;
 * and a kept spec older than what the VM runs is not applied. Waits are bounded (a
 * failure, not a speed claim).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "status.h"
#include "util.h"

/*
 * The state dir lost, and the file broken while vmd was down: there is no valid spec to go
 * by, so the VM it finds running is left as it is; it is not taken for a removed file.
 */
static void test_invalid_without_last_valid(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *vm = NULL, *cmd = NULL;
	json_t *s;

	test_write_str(f->sb, "web.yaml", FIXTURE_NOOP_SPEC);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "web", phase_is, "Running"));
	fixture_expect_notify(f, "READY=1");
	assert_int_equal(kill(f->pid, SIGTERM), 0);
	fixture_expect_notify(f, "STOPPING=1");
	(void)waitpid(f->pid, NULL, 0);
	f->pid = 0;

	test_tmpdir_remove(strdup(f->state));
	test_write_str(f->sb, "web.yaml",
		       "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n");
	fixture_start_daemon(f);
	fixture_expect_notify(f, "READY=1");
	s = fixture_wait_status(f, "web", config_invalid, NULL);
	assert_string_equal(json_string_value(json_object_get(s, "vmState")), "running");
	json_decref(s);
	/* Ten grace periods later, still running. */
	fixture_pass_time(f, 3000);
	vm = fixture_noop_state(f, "web");
	assert_string_equal(vm, "running");
}

/* A clean stop leaves the last valid spec of every sandbox in the state dir. */
static void test_state_written_on_stop(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *copy = NULL, *text = NULL;

	test_write_str(f->sb, "web.yaml", FIXTURE_NOOP_SPEC);
	fixture_start_daemon(f);
	fixture_expect_notify(f, "READY=1");
	assert_int_equal(kill(f->pid, SIGTERM), 0);
	(void)waitpid(f->pid, NULL, 0);
	f->pid = 0;
	copy = path_in(f->state, "sandboxes/web.json");
	text = test_read_file(copy, NULL);
	assert_non_null(text);
	assert_non_null(strstr(text, "\"generation\": 1"));
	assert_non_null(strstr(text, "memory: 64Mi"));
}

/*
 * The last valid spec kept by a vmd whose rules were looser is held to the backend's rules
 * at a restart, as the file is: with no valid spec to go by, nothing is started.
 */
static void test_persisted_backend_rule(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *dir = path_in(f->state, "sandboxes"), *copy = path_in(dir, "web.json"),
			    *web = path_in(f->sb, "web.yaml"), *log = NULL;
	json_t *j, *s;

	assert_int_equal(mkdir(f->state, 0700), 0);
	assert_int_equal(mkdir(dir, 0700), 0);
	j = json_pack("{s:i, s:s, s:s}", "generation", 4, "file", web, "yaml", FIXTURE_FC_3_VCPUS);
	assert_int_equal(json_dump_file(j, copy, 0), 0);
	json_decref(j);
	test_write_str(f->sb, "web.yaml", FIXTURE_FC_3_VCPUS);

	fixture_start_daemon(f);
	fixture_expect_notify(f, "READY=1");
	s = fixture_wait_status(f, "web", config_invalid, NULL);
	assert_non_null(
		strstr(status_condition(s, "ConfigValid", "message"), FIXTURE_FC_3_VCPUS_ERROR));
	assert_string_equal(json_string_value(json_object_get(s, "desiredState")), "stopped");
	assert_int_equal(json_integer_value(json_object_get(s, "generation")), 0);
	assert_string_equal(json_string_value(json_object_get(s, "vmState")), "absent");
	json_decref(s);
	fixture_pass_time(f, 3000);
	log = test_read_file(f->log, NULL);
	assert_null(strstr(log, "web: start"));
}

/*
 * A state dir of 256 KiB, a tmpfs of its own, in a mount namespace the test process enters
 * (its daemons with it): the host sees none of it. Teardown unmounts it.
 */
static void small_state_dir(Fixture *f)
{
	assert_int_equal(mkdir(f->state, 0700), 0);
	assert_int_equal(unshare(CLONE_NEWNS), 0);
	assert_int_equal(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
	assert_int_equal(
		mount("tmpfs", f->state, "tmpfs", MS_NOSUID | MS_NODEV, "size=256k,mode=0700"), 0);
}

/* Fill the state dir up with one file; return its path (unlink it to make room). */
static char *fill_state_dir(Fixture *f)
{
	char *filler = path_in(f->state, "filler");
	char block[4096] = {};
	int fd = open(filler, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	while (write(fd, block, sizeof(block)) > 0)
		;
	assert_int_equal(errno, ENOSPC);
	close(fd);
	return filler;
}

/* Wait (bounded) until the state dir's copy of name says "generation": gen. */
static void wait_persisted(Fixture *f, const char *name, int gen)
{
	_cleanup_free_ char *copy = path_in(f->state, "sandboxes/%s.json", name), *want = NULL;
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	assert_true(asprintf(&want, "\"generation\": %d,", gen) > 0);
	for (;;) {
		_cleanup_free_ char *text = test_read_file(copy, NULL);

		if (text && strstr(text, want))
			return;
		if (ms_now() > end)
			fail_msg("%s never said %s; it says: %s", copy, want, text ?: "(nothing)");
		fixture_pass_time(f, 20);
	}
}

/* web running (generation 1), its copy in the state dir; returns its startedAt. */
static char *started_web_persisted(Fixture *f)
{
	char *started = fixture_start_noop(f, "web");

	wait_persisted(f, "web", 1);
	return started;
}

static bool condition_is(json_t *s, const char *type, const char *reason)
{
	return s && streq(status_condition(s, type, "reason"), reason);
}

static bool state_write_failed(json_t *s, const void *arg _unused_)
{
	return condition_is(s, "Degraded", "StateWriteFailed") &&
	       streq(status_condition(s, "Degraded", "status"), "True") &&
	       condition_is(s, "Ready", "StateWriteFailed");
}

static bool ready_again(json_t *s, const void *arg _unused_)
{
	return condition_is(s, "Degraded", "AsExpected") && condition_is(s, "Ready", "AsDesired");
}

static const char *WEB_D1 = FIXTURE_NOOP_SPEC "  disks: [{id: a, path: /d/a.raw}]\n";
static const char *WEB_D2 =
	FIXTURE_NOOP_SPEC "  disks: [{id: a, path: /d/a.raw}, {id: b, path: /d/b.raw}]\n";

/*
 * The state dir full: the copy of a new spec cannot be written. That is shown (the
 * sandbox's status.json, in the run dir, and the daemon's STATUS=), said once in the
 * journal however often it is retried, and the copy is written once there is room.
 */
static void test_state_write_failed(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *filler = NULL, *log = NULL;
	json_t *s;

	small_state_dir(f);
	free(started_web_persisted(f));
	filler = fill_state_dir(f);

	fixture_put(f, "web", WEB_D1);
	s = fixture_wait_status(f, "web", state_write_failed, NULL);
	assert_non_null(strstr(
		status_condition(s, "Degraded", "message"),
		"its last valid spec (generation 2) is not in the state dir yet: cannot write the last valid specs to "));
	assert_non_null(strstr(status_condition(s, "Degraded", "message"), "No space left on device"));
	assert_int_equal(json_array_size(json_object_get(s, "disks")), 1);
	json_decref(s);
	fixture_expect_notify(
		f, "STATUS=Degraded (StateWriteFailed): cannot write the last valid specs to ");

	/* Room again: the retry writes it, and all is well. */
	assert_int_equal(unlink(filler), 0);
	json_decref(fixture_wait_status(f, "web", ready_again, NULL));
	wait_persisted(f, "web", 2);
	fixture_expect_notify(f, "STATUS=1 sandbox, 1 ready, 1 Running");
	log = test_read_file(f->log, NULL);
	assert_int_equal(count_in(log, "cannot write the last valid specs to"), 1);
	assert_non_null(strstr(log, "the state dir takes writes again after "));
}

static bool stale_spec(json_t *s, const void *arg _unused_)
{
	return condition_is(s, "Ready", "StaleSpec") &&
	       condition_is(s, "ConfigValid", "InvalidConfig");
}

static bool disks_settled(json_t *s, const void *arg)
{
	return generation_settled(s, arg) && json_array_size(json_object_get(s, "disks")) == 2 &&
	       condition_is(s, "ConfigValid", "Valid");
}

/*
 * The newest spec's copy lost to a full state dir, then an invalid edit, then a restart
 * of vmd: the copy it finds is older than what the VM runs. It is not applied (the disk
 * the VM got since is not hot-removed), the generation does not go back, and the status
 * says why. A valid file is a new generation after the VM's.
 */
static void test_stale_spec_after_restart(void **state)
{
	Fixture *f = *state;
	_cleanup_(test_run_done) TestRun r = {};
	_cleanup_free_ char *filler = NULL, *log = NULL, *started = NULL;
	json_t *s;

	small_state_dir(f);
	started = started_web_persisted(f);
	fixture_put(f, "web", WEB_D1);
	json_decref(fixture_wait_status(f, "web", disks_are, (void *)1));
	wait_persisted(f, "web", 2);
	filler = fill_state_dir(f);
	fixture_put(f, "web", WEB_D2); /* generation 3: hot-added, its copy not written */
	json_decref(fixture_wait_status(f, "web", state_write_failed, NULL));
	json_decref(fixture_wait_status(f, "web", disks_are, (void *)2));
	fixture_put(
		f, "web",
		"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n  vpcus: 2\n");
	json_decref(fixture_wait_status(f, "web", config_invalid, NULL));

	fixture_stop_daemon(f, SIGKILL);
	fixture_start_daemon(f);
	fixture_expect_notify(f, "READY=1");
	s = fixture_wait_status(f, "web", stale_spec, NULL);
	assert_int_equal(json_integer_value(json_object_get(s, "generation")), 3);
	assert_string_equal(
		status_condition(s, "Ready", "message"),
		"the last valid spec vmd kept (generation 2) is older than what its VM runs (generation 3); vmd leaves the VM as it runs until its file is valid again");
	assert_int_equal(json_array_size(json_object_get(s, "disks")), 2);
	assert_string_equal(json_string_value(json_object_get(s, "startedAt")), started);
	json_decref(s);
	/* vmd plan says the same. */
	test_run(&r, (char *[]){ (char *)test_vmd(), "plan", "--sandboxes", f->sb, "--run-dir",
				 f->run, "--state-dir", f->state, NULL });
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(
		r.out,
		"web: nothing: the last valid spec kept is older than what its VM runs: the daemon leaves it as it runs\n"));
	assert_null(strstr(r.out, "disk-remove"));
	/* Ten grace periods later: nothing was taken from the VM. */
	fixture_pass_time(f, 3000);
	s = fixture_status(f, "web");
	assert_int_equal(json_array_size(json_object_get(s, "disks")), 2);
	assert_int_equal(json_integer_value(json_object_get(s, "generation")), 3);
	json_decref(s);

	/* Valid again, as generation 3 was: generation 4, applied, nothing removed. */
	fixture_put(f, "web", WEB_D2);
	json_decref(fixture_wait_status(f, "web", disks_settled, (void *)4));
	log = test_read_file(f->log, NULL);
	assert_null(strstr(log, "disk-remove"));
	assert_non_null(strstr(
		log,
		"web: the last valid spec in the state dir (generation 2) is older than what its VM runs (generation 3)"));
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_invalid_without_last_valid,
						fixture_setup_notify, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_state_written_on_stop, fixture_setup_notify,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_persisted_backend_rule, fixture_setup_notify,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_state_write_failed, fixture_setup_notify,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_stale_spec_after_restart, fixture_setup_notify,
						fixture_teardown),
	};

	return cmocka_run_group_tests_name("state-dir", tests, NULL, NULL);
}
