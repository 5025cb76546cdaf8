/* SPDX-License-Identifier: MIT */
/*
 * The VM generation ID of QEMU VMs (docs/backends.md, "qemu"): every fresh boot has the
 * vmgenid device, a wake has it iff the save had it (qemu-ports.json says), and a snapshot
 * of a vmd before (no such record) wakes without it. On the simulator, whose stream
 * carries the device layout and refuses to load into another (a stream with the device
 * into a QEMU without it too), as QEMU does; and on real
 * QEMU (TCG), whose query-vm-generation-id answers the GUID it writes into the guest at a
 * load: it differs after a wake, and between two restores of one template (startFrom:
 * snapshot), which is what makes a Linux guest reseed its RNG.
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "qemu-fixture.h"
#include "qmp.h"
#include "status.h"
#include "util.h"

#define VMGENID_ARG "vmgenid,id=vmd-vmgenid,guid=auto"

static void put_sim(Fixture *f, const char *state)
{
	_cleanup_free_ char *extra = NULL;

	assert_true(asprintf(&extra, "  memory: 64Mi\n  cmdline: quiet\n  state: %s\n", state) > 0);
	fixture_put_sim(f, "vm", "qemu", extra);
}

static bool suspended(json_t *s, const void *arg _unused_)
{
	return phase_is(s, "Suspended") && json_is_object(json_object_get(s, "snapshot"));
}

static bool running_unsnapshotted(json_t *s, const void *arg _unused_)
{
	return phase_is(s, "Running") && json_is_null(json_object_get(s, "snapshot")) &&
	       streq(status_condition(s, "Ready", "status"), "True");
}

/* Whether process pid was started with -device vmgenid. */
static bool argv_has_vmgenid(pid_t pid)
{
	_cleanup_free_ char *path = NULL, *argv = NULL;
	const char *prev = "";
	size_t n = 0;
	bool found = false;

	assert_true(asprintf(&path, "/proc/%d/cmdline", (int)pid) > 0);
	argv = test_read_file(path, &n);
	assert_non_null(argv);
	for (size_t i = 0; i < n; prev = argv + i, i += strlen(argv + i) + 1)
		found = found || (streq(prev, "-device") && streq(argv + i, VMGENID_ARG));
	return found;
}

/* The JSON file at dir/file. */
static json_t *load_json(const char *dir, const char *file)
{
	_cleanup_free_ char *p = path_in(dir, "%s", file);
	json_t *j = json_load_file(p, 0, NULL);

	if (!j)
		fail_msg("%s: not JSON", p);
	return j;
}

static bool json_has_vmgenid(const char *dir, const char *file)
{
	json_t *j = load_json(dir, file);
	bool r = json_is_true(json_object_get(j, "vmgenid"));

	json_decref(j);
	return r;
}

static pid_t running_pid(Fixture *f)
{
	json_t *s = fixture_wait_status(f, "vm", running_unsnapshotted, NULL);
	pid_t pid = pid_of(s);

	json_decref(s);
	return pid;
}

/* How many times the daemons' log says name's VM was re-adopted. */
static unsigned count_readopted(Fixture *f, const char *name)
{
	_cleanup_free_ char *log = test_read_file(f->log, NULL), *line = NULL;
	unsigned n = 0;

	assert_true(asprintf(&line, "%s: re-adopted its running VM", name) > 0);
	for (const char *p = log; p && (p = strstr(p, line)); p += strlen(line))
		n++;
	return n;
}

/*
 * name's generation ID as its QEMU reports it (query-vm-generation-id), asked on its QMP
 * socket while no vmd holds it (QEMU takes one client at a time: vmd is killed, and
 * started again after, to re-adopt the VM); "error: ..." if QEMU refuses.
 */
static char *qmp_guid(Fixture *f, const char *name)
{
	_cleanup_free_ char *sock = path_in(f->run, "%s/qmp.sock", name), *err = NULL;
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;
	unsigned before;
	json_t *ret = NULL;
	Qmp *q = NULL;
	char *guid;
	int r;

	fixture_stop_daemon(f, SIGKILL);
	before = count_readopted(f, name);
	assert_int_equal(qmp_open(sock, 10000000, &q), 0);
	r = qmp_call(q, "query-vm-generation-id", NULL, 10000000, &ret, &err);
	qmp_free(q);
	if (r == 0)
		guid = strdup(json_string_value(json_object_get(ret, "guid")) ?: "");
	else
		assert_true(asprintf(&guid, "error: %s", err ?: strerror(-r)) > 0);
	json_decref(ret);
	fixture_start_daemon(f);
	/* This vmd's own line: the log has those of the ones before it too. */
	while (count_readopted(f, name) <= before) {
		if (ms_now() > end)
			fail_msg("%s: not re-adopted", name);
		usleep(50000);
	}
	return guid;
}

/* A GUID as QEMU prints one (qemu_uuid_unparse()), not the null one. */
static void assert_guid(const char *g)
{
	static const char hex[] = "0123456789abcdef";
	bool ok = strlen(g) == 36 && !streq(g, "00000000-0000-0000-0000-000000000000");

	for (size_t i = 0; ok && i < 36; i++)
		ok = IN_SET(i, 8, 13, 18, 23) ? g[i] == '-' : strchr(hex, g[i]) != NULL;
	if (!ok)
		fail_msg("query-vm-generation-id answers '%s', not a GUID", g);
}

/* Boot, suspend, wake on the simulator: the device at each of them, recorded. */
static void test_sim_wake(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *before = NULL, *after = NULL;
	pid_t pid;

	put_sim(f, "running");
	fixture_start_daemon(f);
	pid = running_pid(f);
	assert_true(argv_has_vmgenid(pid));
	assert_true(json_has_vmgenid(f->run, "vm/vm.json"));
	before = qmp_guid(f, "vm");
	assert_guid(before);
	put_sim(f, "suspended");
	json_decref(fixture_wait_status(f, "vm", suspended, NULL));
	assert_true(json_has_vmgenid(f->state, "snapshots/vm/current/qemu-ports.json"));
	/* Woken: a QEMU with the device, or the stream would not load (QEMU 7.2's rule). */
	put_sim(f, "running");
	pid = running_pid(f);
	assert_true(argv_has_vmgenid(pid));
	assert_true(json_has_vmgenid(f->run, "vm/vm.json"));
	/* Another GUID, its new process's; a restarted vmd adopts the VM as it is. */
	after = qmp_guid(f, "vm");
	assert_guid(after);
	assert_string_not_equal(before, after);
	assert_int_equal(running_pid(f), pid);
	assert_true(json_has_vmgenid(f->run, "vm/vm.json"));
}

/*
 * The snapshot in the state dir made into one of a vmd before the device: its stream
 * without the vmgenid device (the simulator's header line lists the devices), its
 * qemu-ports.json without the record of it.
 */
static void make_old(Fixture *f)
{
	_cleanup_free_ char *dir = path_in(f->state, "snapshots/vm/current");
	_cleanup_free_ char *state = path_in(dir, "state"), *data = NULL;
	_cleanup_free_ char *head_text = NULL, *text = NULL;
	json_t *head, *layout, *ports = load_json(dir, "qemu-ports.json");
	size_t n = 0, i;
	const char *nl;
	json_t *e;

	assert_true(json_object_del(ports, "vmgenid") == 0);
	text = json_dumps(ports, JSON_SORT_KEYS);
	test_write_str(dir, "qemu-ports.json", text);
	json_decref(ports);

	data = test_read_file(state, &n);
	nl = memchr(data, '\n', n);
	assert_non_null(nl);
	assert_int_equal(strncmp(data, "SIM-QEMU-MIGRATION ", 19), 0);
	head = json_loadb(data + 19, (size_t)(nl - data) - 19, 0, NULL);
	assert_non_null(head);
	layout = json_object_get(head, "layout");
	json_array_foreach(layout, i, e) if (streq_ptr(json_string_value(json_array_get(e, 0)),
						       "vmgenid")) break;
	assert_true(i < json_array_size(layout));
	assert_int_equal(json_array_remove(layout, i), 0);
	head_text = json_dumps(head, JSON_COMPACT);
	json_decref(head);
	{
		FILE *w = fopen(state, "w");

		assert_non_null(w);
		fprintf(w, "SIM-QEMU-MIGRATION %s", head_text);
		fwrite(nl, 1, n - (size_t)(nl - data), w);
		assert_int_equal(fclose(w), 0);
	}
}

/* A snapshot of a vmd before wakes without the device, and stays without until a boot. */
static void test_sim_old_snapshot(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *guid = NULL;
	pid_t pid;

	put_sim(f, "running");
	fixture_start_daemon(f);
	(void)running_pid(f);
	put_sim(f, "suspended");
	json_decref(fixture_wait_status(f, "vm", suspended, NULL));
	fixture_stop_daemon(f, SIGTERM);
	make_old(f);
	fixture_start_daemon(f);
	put_sim(f, "running");
	pid = running_pid(f);
	assert_false(argv_has_vmgenid(pid));
	assert_false(json_has_vmgenid(f->run, "vm/vm.json"));
	guid = qmp_guid(f, "vm");
	assert_string_equal(guid, "error: VM Generation ID device not found");
	/* Saved again: still a save without it, which wakes without it. */
	put_sim(f, "suspended");
	json_decref(fixture_wait_status(f, "vm", suspended, NULL));
	assert_false(json_has_vmgenid(f->state, "snapshots/vm/current/qemu-ports.json"));
	put_sim(f, "running");
	assert_false(argv_has_vmgenid(running_pid(f)));
	/* A fresh boot has it again. */
	put_sim(f, "stopped");
	json_decref(fixture_wait_status(f, "vm", phase_is, "Stopped"));
	put_sim(f, "running");
	assert_true(argv_has_vmgenid(running_pid(f)));
}

/*
 * Real QEMU: the generation ID after a wake is not the one before the save (that is
 * what QEMU writes into the guest's memory and notifies it of, at the load).
 */
static void test_qemu_wake(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *before = NULL, *after = NULL;

	qemu_put(f, "web", "  cmdline: console=ttyS0 quiet\n");
	fixture_start_daemon(f);
	fixture_wait_console(f, "web", "VMD-GUEST-READY", 0);
	json_decref(fixture_wait_status(f, "web", ready, "Running"));
	before = qmp_guid(f, "web");
	assert_guid(before);

	qemu_put(f, "web", "  cmdline: console=ttyS0 quiet\n  state: suspended\n");
	json_decref(fixture_wait_status(f, "web", suspended, NULL));
	qemu_put(f, "web", "  cmdline: console=ttyS0 quiet\n");
	json_decref(fixture_wait_status(f, "web", running_unsnapshotted, NULL));
	after = qmp_guid(f, "web");
	assert_guid(after);
	if (streq(before, after))
		fail_msg("the generation ID is %s before the save and after the wake", after);
	/* The guest runs on, in its new QEMU, with vmd again. */
	fixture_wait_console(f, "web", "VMD-GUEST-TICK", 0);
	json_decref(fixture_wait_status(f, "web", ready, "Running"));
}

/* Running and Ready, and status.json's startedFrom begins with arg. */
static bool started(json_t *s, const void *arg)
{
	const char *how = s ? json_string_value(json_object_get(s, "startedFrom")) : NULL;

	return phase_is(s, "Running") && streq(status_condition(s, "Ready", "status"), "True") &&
	       how && strncmp(how, arg, strlen(arg)) == 0;
}

/*
 * Real QEMU, startFrom: snapshot: two restores of one template (the one right after its
 * save, and the one after a crash) have generation IDs of their own.
 */
static void test_qemu_template(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *first = NULL, *second = NULL;
	pid_t pid;
	json_t *s;

	qemu_put(f, "web",
		 "  cmdline: console=ttyS0 quiet\n  startFrom: snapshot\n"
		 "  readiness: {console: {match: \"VMD-GUEST-TICK [3-9]\"}, period: 100ms}\n");
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "web", started, "booted; its template was saved");
	pid = pid_of(s);
	json_decref(s);
	first = qmp_guid(f, "web");
	assert_guid(first);

	assert_int_equal(kill(pid, SIGKILL), 0);
	fixture_wait_gone(pid);
	json_decref(fixture_wait_status(f, "web", started, "restored from its template of "));
	second = qmp_guid(f, "web");
	assert_guid(second);
	if (streq(first, second))
		fail_msg("two restores of one template have the generation ID %s", first);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sim_wake, qemu_sim_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_sim_old_snapshot, qemu_sim_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_qemu_wake, qemu_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_qemu_template, qemu_setup, fixture_teardown),
	};

	if (getenv("VMD_TEST_FILTER")) /* one test, for a run by hand */
		cmocka_set_test_filter(getenv("VMD_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
