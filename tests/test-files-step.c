/* SPDX-License-Identifier: MIT */
/*
 * The files step of a start (backends/vmm-boot.c): what a VMM gets (the kernel's sealed
 * copy, the disks' checked opens, the VMM user's access checks) is made by a worker, a
 * child of vmd, never by the event loop. With the test knob VMD_TEST_FILES_PAUSE=1 the
 * worker stops itself (SIGSTOP) before its first file: while it is stopped, the loop still
 * serves (the status says what the step does, another sandbox starts), and once it goes
 * on the start completes; a start cancelled meanwhile leaves no worker and no descriptor,
 * and a vmd killed meanwhile takes its worker with it.
 * Cloud Hypervisor's simulator (tests/sim/), as the VMM user nobody, as test-vmm-user.c.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "qemu-fixture.h"
#include "util.h"

#define USER_ID 65534

static char ch[4096], fc[4096];

static int setup(void **state)
{
	static const char *const args[] = { "--cloud-hypervisor-binary",
					    ch,
					    "--firecracker-binary",
					    fc,
					    "--vmm-user",
					    "65534:65534",
					    NULL };
	int r = fixture_setup(state);

	((Fixture *)*state)->daemon_args = args;
	fixture_vmm_user(*state, USER_ID);
	setenv("VMD_TEST_FILES_PAUSE", "1", 1);
	return r;
}

static int teardown(void **state)
{
	unsetenv("VMD_TEST_FILES_PAUSE");
	return fixture_teardown(state);
}

/* A child of parent in state (T: stopped by a signal, in /proc/PID/stat; 0: any), or 0. */
static pid_t child_in_state(pid_t parent, char want)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;

	assert_non_null(d);
	while (!found && (e = readdir(d))) {
		_cleanup_free_ char *path = NULL, *text = NULL;
		char state = 0;
		int ppid = 0;
		const char *p;

		if (atoi(e->d_name) <= 0 || asprintf(&path, "/proc/%s/stat", e->d_name) < 0)
			continue;
		text = test_read_file(path, NULL);
		p = text ? strrchr(text, ')') : NULL;
		if (p && sscanf(p + 1, " %c %d", &state, &ppid) == 2 && ppid == parent &&
		    (!want || state == want))
			found = atoi(e->d_name);
	}
	closedir(d);
	return found;
}

static pid_t stopped_child(pid_t daemon)
{
	return child_in_state(daemon, 'T');
}

static pid_t wait_stopped_child(pid_t parent)
{
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;
	pid_t pid;

	while (!(pid = stopped_child(parent))) {
		assert_true(ms_now() < end);
		usleep(20000);
	}
	return pid;
}

static pid_t wait_stopped_worker(Fixture *f)
{
	return wait_stopped_child(f->pid);
}

static unsigned count_fds(pid_t pid)
{
	_cleanup_free_ char *path = NULL;
	DIR *d;
	unsigned n = 0;

	assert_true(asprintf(&path, "/proc/%d/fd", (int)pid) > 0);
	d = opendir(path);
	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static bool says(json_t *s, const void *arg)
{
	_cleanup_free_ char *text = s ? json_dumps(s, 0) : NULL;

	return text && strstr(text, arg);
}

/* f->dir/name, empty: the VMM user's, or root's alone (0600). */
static char *put_file(Fixture *f, const char *name, bool users)
{
	char *path = path_in(f->dir, "%s", name);

	test_write_str(f->dir, name, "");
	if (users)
		assert_int_equal(chown(path, USER_ID, USER_ID), 0);
	assert_int_equal(chmod(path, 0600), 0);
	return path;
}

/* A sandbox whose disk is the VMM user's: the worker opens it, and checks it as that user. */
static void put_vm(Fixture *f)
{
	_cleanup_free_ char *a = put_file(f, "a.img", true), *text = NULL;

	assert_true(asprintf(&text, "  memory: 64Mi\n  disks:\n    - {id: a, path: \"%s\"}\n", a) > 0);
	fixture_put_sim(f, "vm", "cloud-hypervisor", text);
}

/*
 * While worker is stopped, the status of vm says doing, and the loop serves the rest: vmd
 * status says it too, and another sandbox starts.
 */
static void expect_loop_serves(Fixture *f, pid_t worker, const char *doing)
{
	char *const argv[] = { (char *)test_vmd(), "status", "--run-dir", f->run, "vm", NULL };
	TestRun run;

	json_decref(fixture_wait_status(f, "vm", says, doing));
	test_run(&run, argv);
	assert_int_equal(run.status, 0);
	assert_non_null(strstr(run.out, doing));
	test_run_done(&run);
	fixture_put(f, "other", FIXTURE_NOOP_SPEC);
	json_decref(fixture_wait_status(f, "other", phase_is, "Running"));
	assert_int_equal(stopped_child(f->pid), worker);
}

/*
 * The worker stopped before the kernel's copy: the start waits in its files phase, which
 * the status says, and the loop serves the rest (vmd status, another sandbox's start).
 * Going on, it copies, opens and checks, and the VMM runs with what it sent.
 */
static void test_loop_does_not_wait(void **state)
{
	Fixture *f = *state;
	pid_t worker;

	put_vm(f);
	fixture_start_daemon(f);
	worker = wait_stopped_worker(f);
	json_decref(fixture_wait_status(f, "vm", says, "\"phase\": \"files\""));
	expect_loop_serves(f, worker, "copying the kernel ");
	assert_int_equal(fixture_count_requests(f, "PUT /api/v1/vm.create"), 0);

	assert_int_equal(kill(worker, SIGCONT), 0);
	(void)fixture_running(f, "vm");
	fixture_wait_gone(worker);
	fixture_wait_console(f, "vm", "disks=a", 0);
}

/*
 * The sandbox file removed while the worker is stopped: the start ends there, the worker
 * is killed and reaped, and vmd holds no more descriptors than before it began.
 */
static void test_cancelled(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *file = path_in(f->sb, "vm.yaml"), *log = NULL;
	unsigned before;
	pid_t worker;
	int status;

	fixture_put(f, "other", FIXTURE_NOOP_SPEC);
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "other", phase_is, "Running"));
	before = count_fds(f->pid);

	put_vm(f);
	worker = wait_stopped_worker(f);
	json_decref(fixture_wait_status(f, "vm", says, "\"phase\": \"files\""));
	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "vm", absent, NULL));
	fixture_wait_gone(worker);
	assert_int_equal(count_fds(f->pid), before);
	assert_int_equal(fixture_count_requests(f, "PUT /api/v1/vm.create"), 0);

	/* Stopped, vmd exits clean: nothing the step made is left for the leak check. */
	assert_int_equal(kill(f->pid, SIGTERM), 0);
	assert_int_equal(waitpid(f->pid, &status, 0), f->pid);
	f->pid = 0;
	log = test_read_file(f->log, NULL);
	assert_null(strstr(log ?: "", "Sanitizer"));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* vmd killed mid-step: its worker dies with it; the next vmd starts over, and the VM runs. */
static void test_killed_mid_step(void **state)
{
	Fixture *f = *state;
	pid_t worker;

	put_vm(f);
	fixture_start_daemon(f);
	worker = wait_stopped_worker(f);
	fixture_stop_daemon(f, SIGKILL);
	fixture_wait_gone(worker);
	unsetenv("VMD_TEST_FILES_PAUSE");
	fixture_start_daemon(f);
	(void)fixture_running(f, "vm");
	fixture_wait_console(f, "vm", "disks=a", 0);
}

/*
 * The worker stopped again in its access check as the VMM user (VMD_TEST_FILES_PAUSE=check),
 * after its stop at the start of its work: its pid.
 */
static pid_t worker_in_check(Fixture *f)
{
	pid_t worker;

	put_vm(f);
	setenv("VMD_TEST_FILES_PAUSE", "check", 1);
	fixture_start_daemon(f);
	worker = wait_stopped_worker(f);
	assert_int_equal(kill(worker, SIGCONT), 0);
	assert_int_equal(wait_stopped_worker(f), worker);
	return worker;
}

/*
 * vmd killed while the worker checks the disk as the VMM user: the worker dies with vmd,
 * and the check with it. A check made by a child of the worker, its parent-death signal set
 * before it dropped to the user, lost it with that change of uid: it stayed, running as the
 * user, with the worker's descriptors of the disks.
 */
static void test_killed_mid_check(void **state)
{
	Fixture *f = *state;
	pid_t worker = worker_in_check(f);

	fixture_stop_daemon(f, SIGKILL);
	fixture_wait_gone(worker);
	assert_int_equal(child_in_state(worker, 0), 0);
}

/*
 * The start cancelled while the worker checks the disk as the VMM user: the worker is
 * killed and reaped, and vmd is left no child, not even a zombie (one of a check child,
 * killed with the worker and left to vmd, its subreaper, which reaps only what it knows).
 */
static void test_cancelled_mid_check(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *file = path_in(f->sb, "vm.yaml");
	pid_t worker = worker_in_check(f);

	assert_int_equal(unlink(file), 0);
	json_decref(fixture_wait_status(f, "vm", absent, NULL));
	fixture_wait_gone(worker); /* a zombie still answers kill(pid, 0): reaped */
	assert_int_equal(child_in_state(f->pid, 0), 0);
}

static bool error_is(json_t *s, const void *arg)
{
	const char *e = json_string_value(json_object_get(s, "lastError"));

	return e && strstr(e, arg);
}

/*
 * A disk the VMM opens by path itself, as the VMM user, changed on a running VM (CH: a disk
 * added, vm.add-disk; an unjailed Firecracker: a drive's new path, PATCH /drives/ID): the
 * user's access is checked by a worker in the job's files phase, the loop serving
 * meanwhile; one root's alone is refused with the words of a start, the VMM never asked.
 */
static void hot_refused(Fixture *f, bool firecracker)
{
	const char *backend = firecracker ? "firecracker" : "cloud-hypervisor";
	_cleanup_free_ char *a = put_file(f, "a.img", true),
			    *secret = put_file(f, "secret.img", false), *text = NULL, *want = NULL;
	pid_t worker;

	assert_true(asprintf(&text, "  memory: 64Mi\n  disks:\n    - {id: d, path: \"%s\"}\n",
			     firecracker ? a : secret) > 0);
	/* Cloud Hypervisor starts without it; Firecracker with a, the user's. */
	fixture_put_sim(f, "vm", backend, firecracker ? text : "  memory: 64Mi\n");
	fixture_start_daemon(f);
	assert_int_equal(kill(wait_stopped_worker(f), SIGCONT), 0);
	(void)fixture_running(f, "vm");

	free(text);
	assert_true(asprintf(&text, "  memory: 64Mi\n  disks:\n    - {id: d, path: \"%s\"}\n",
			     secret) > 0);
	fixture_put_sim(f, "vm", backend, text);
	worker = wait_stopped_worker(f);
	/* A change's job shows in job (its Ready stays as it was). */
	json_decref(fixture_wait_status(f, "vm", says, "\"phase\": \"files\""));
	fixture_put(f, "other", FIXTURE_NOOP_SPEC);
	json_decref(fixture_wait_status(f, "other", phase_is, "Running"));
	assert_int_equal(kill(worker, SIGCONT), 0);
	assert_true(
		asprintf(&want,
			 "disk 'd': '%s' is not readable and writable by the VMM user (uid 65534, gid 65534: --vmm-user): Permission denied; chown it to that user, or give it access with an ACL (setfacl -m u:65534:rw '%s')",
			 secret, secret) > 0);
	json_decref(fixture_wait_status(f, "vm", error_is, want));
	assert_int_equal(fixture_count_requests(f, firecracker ? "PATCH /drives"
							       : "PUT /api/v1/vm.add-disk"),
			 0);
	/* A retry of the change pauses its worker too: let it go, for the teardown. */
	while ((worker = stopped_child(f->pid)))
		(void)kill(worker, SIGKILL);
}

static void test_ch_hot_add_refused(void **state)
{
	hot_refused(*state, false);
}

static void test_fc_drive_refused(void **state)
{
	hot_refused(*state, true);
}

/*
 * The path of a disk hot-added read-only is a FIFO by the time the worker checks it (put
 * there after the file was loaded): the VMM user's open of it must not wait for a writer,
 * as vmd's own opens do not (vmm-files.c, O_NONBLOCK), else the worker waits until the
 * files phase's deadline (300 s), the job with it.
 */
static void test_ch_hot_add_fifo(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *ro = put_file(f, "ro.img", true), *text = NULL;
	uint64_t end;
	pid_t worker;
	int fd;

	fixture_put_sim(f, "vm", "cloud-hypervisor", "  memory: 64Mi\n");
	fixture_start_daemon(f);
	assert_int_equal(kill(wait_stopped_worker(f), SIGCONT), 0);
	(void)fixture_running(f, "vm");

	assert_true(asprintf(&text,
			     "  memory: 64Mi\n  disks:\n    - {id: d, path: \"%s\", readOnly: true}\n",
			     ro) > 0);
	fixture_put_sim(f, "vm", "cloud-hypervisor", text);
	worker = wait_stopped_worker(f);
	assert_int_equal(unlink(ro), 0);
	assert_int_equal(mkfifo(ro, 0600), 0);
	assert_int_equal(chown(ro, USER_ID, USER_ID), 0);
	assert_int_equal(kill(worker, SIGCONT), 0);
	fixture_wait_gone(worker);

	/* The simulator opens it too, to read its magic: a writer that comes and goes ends that. */
	end = ms_now() + FIXTURE_WAIT_MS;
	while ((fd = open(ro, O_WRONLY | O_NONBLOCK | O_CLOEXEC)) < 0 && ms_now() < end)
		usleep(20000);
	if (fd >= 0)
		close(fd);
	(void)fixture_running(f, "vm");
	while ((worker = stopped_child(f->pid)))
		(void)kill(worker, SIGKILL);
}

/* On the QEMU simulator, the worker stopped before its first work. */
static int qemu_paused_setup(void **state)
{
	int r = qemu_sim_setup(state);

	setenv("VMD_TEST_FILES_PAUSE", "1", 1);
	return r;
}

/* Once the stopped worker of the start of name is sent on: its VMM's pid. */
static pid_t go_on(Fixture *f, const char *name, pid_t worker)
{
	pid_t vmm;

	assert_int_equal(kill(worker, SIGCONT), 0);
	vmm = fixture_running(f, name);
	fixture_wait_gone(worker);
	return vmm;
}

/*
 * Another VM's copy of a kernel is found by the worker, on the file it opens, not by the
 * loop: b's start, the file as a's, shares a's memfd; c's, the file replaced while its
 * worker is stopped (its start begun, its wants listed), gets a copy of the new file.
 * Without a worker's match the loop's stat at the start of c found a's copy.
 */
static void test_kernel_matched_in_worker(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *kernel = path_in(f->dir, "vmlinux"),
			    *next = path_in(f->dir, "vmlinux.next");
	ino_t a, b, c;

	fixture_put_sim(f, "a", "qemu", "  memory: 64Mi\n");
	fixture_start_daemon(f);
	a = qemu_memfd_of(go_on(f, "a", wait_stopped_worker(f)), "kernel");
	assert_true(a != 0);

	fixture_put_sim(f, "b", "qemu", "  memory: 64Mi\n");
	json_decref(fixture_wait_status(f, "b", says, "copying the kernel "));
	b = qemu_memfd_of(go_on(f, "b", wait_stopped_worker(f)), "kernel");
	assert_true(b == a);

	fixture_put_sim(f, "c", "qemu", "  memory: 64Mi\n");
	json_decref(fixture_wait_status(f, "c", says, "copying the kernel "));
	test_write_str(f->dir, "vmlinux.next", "another kernel\n");
	assert_int_equal(rename(next, kernel), 0);
	c = qemu_memfd_of(go_on(f, "c", wait_stopped_worker(f)), "kernel");
	assert_true(c != 0);
	assert_true(c != a);
}

/* A qemu sandbox name with a credential pw of path, and a seed if cloud_init. */
static void put_provisioned(Fixture *f, const char *name, const char *path, bool cloud_init)
{
	_cleanup_free_ char *text = NULL;

	assert_true(asprintf(&text,
			     "  memory: 64Mi\n%s"
			     "  credentials:\n    - {name: pw, fromFile: \"%s\"}\n",
			     cloud_init ? "  cloudInit:\n    userData: \"#cloud-config\\n\"\n" : "",
			     path) > 0);
	fixture_put_sim(f, name, "qemu", text);
}

/*
 * The seed and the credentials' copies are the worker's first work: while it is stopped,
 * neither is in the run dir, the status says what it is to do, and the loop answers (vmd
 * status, another sandbox's start); sent on, it writes them and the VM runs from them.
 */
static void test_provision_in_worker(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *secret = path_in(f->dir, "secret"),
			    *seed = path_in(f->run, "vm/seed.iso"),
			    *copies = path_in(f->run, "vm/credentials");
	pid_t worker;

	test_write_str(f->dir, "secret", "not a real secret\n");
	put_provisioned(f, "vm", secret, true);
	fixture_start_daemon(f);
	worker = wait_stopped_worker(f);
	expect_loop_serves(f, worker, "writing its seed and its credentials' copies");
	assert_true(access(seed, F_OK) < 0 && errno == ENOENT);
	assert_true(access(copies, F_OK) < 0 && errno == ENOENT);

	(void)go_on(f, "vm", worker);
	assert_int_equal(access(seed, F_OK), 0);
}

/*
 * A credential whose fromFile is a FIFO: the worker, not the loop, finds it (stopped, the
 * start has not failed, and the loop serves); sent on, the start fails with the words it
 * always had, no VMM runs, and nothing of the copies is left in the run dir.
 */
static void test_provision_fifo(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *fifo = path_in(f->dir, "secret"),
			    *copies = path_in(f->run, "vm/credentials"), *want = NULL;
	json_t *s;
	pid_t worker;

	assert_int_equal(mkfifo(fifo, 0600), 0);
	put_provisioned(f, "vm", fifo, false);
	fixture_start_daemon(f);
	worker = wait_stopped_worker(f);
	expect_loop_serves(f, worker, "writing its seed and its credentials' copies");

	assert_int_equal(kill(worker, SIGCONT), 0);
	assert_true(asprintf(&want, "credential 'pw': fromFile '%s' is not a regular file", fifo) > 0);
	s = fixture_wait_status(f, "vm", failing, want);
	assert_int_equal(pid_of(s), 0);
	json_decref(s);
	fixture_wait_gone(worker);
	assert_true(access(copies, F_OK) < 0 && errno == ENOENT);
	/* Its retries' workers stop too: vmd's, ended here. */
	while ((worker = stopped_child(f->pid)))
		(void)kill(worker, SIGKILL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_loop_does_not_wait, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancelled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_killed_mid_step, setup, teardown),
		cmocka_unit_test_setup_teardown(test_killed_mid_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancelled_mid_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ch_hot_add_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fc_drive_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ch_hot_add_fifo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kernel_matched_in_worker, qemu_paused_setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_provision_in_worker, qemu_paused_setup, teardown),
		cmocka_unit_test_setup_teardown(test_provision_fifo, qemu_paused_setup, teardown),
	};

	snprintf(ch, sizeof(ch), "%s", test_src("tests/sim/cloud-hypervisor"));
	snprintf(fc, sizeof(fc), "%s", test_src("tests/sim/firecracker"));
	/* VMMs outlive a daemon killed with -9: they come to this binary, which reaps them. */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	if (getenv("VMD_TEST_FILTER"))
		cmocka_set_test_filter(getenv("VMD_TEST_FILTER"));
	return cmocka_run_group_tests_name("files-step", tests, NULL, NULL);
}
