/* SPDX-License-Identifier: MIT */
/*
 * status.c on its own, on a read-only manager (no loop, no lock) over temporary
 * directories: status.json byte for byte, written only when it changes, and the STATUS=
 * line kept up to date as sandboxes change phase, fail, come and go.
 */
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "manager-fixture.h"
#include "spec-json.h"
#include "spec-yaml.h"

static SandboxSpec *spec_of(const char *name, const char *yaml)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	_cleanup_free_ char *path = NULL;
	const SpecLoadOptions opts = { .default_backend = BACKEND_NOOP };
	SandboxSpec *s = NULL;

	assert_true(asprintf(&path, "/etc/vmd/sandboxes/%s.yaml", name) > 0);
	assert_int_equal(spec_load_buffer(path, yaml, strlen(yaml), &opts, &s, &diags), 0);
	return s;
}

static char *status_text(ManagerFixture *f, const char *name)
{
	_cleanup_free_ char *path = NULL;

	assert_true(asprintf(&path, "%s/%s/status.json", f->run, name) > 0);
	return test_read_file(path, NULL);
}

/* Update the status twice: the second time with every transition time fixed, to compare. */
static char *render(ManagerFixture *f, Sandbox *sb)
{
	const Plan plan = {};

	sandbox_update_status(f->m, sb, &plan);
	for (size_t i = 0; i < _CONDITION_TYPE_MAX; i++)
		sb->status.conditions[i].last_transition = 1767225600000000ull + i * 1234567;
	sb->status_hash = 0;
	sandbox_update_status(f->m, sb, &plan);
	return status_text(f, sb->name);
}

static const char *WEB_YAML =
	"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n  vcpus: 2\n"
	"  disks:\n  - {id: root, path: /d/root.raw}\n  - {id: data, path: \"/d/d\\u00e4ta \\\"1\\\".qcow2\", format: qcow2, readOnly: true}\n"
	"  networks:\n  - {id: net0, type: tap, tap: vmtap0, mac: \"52:54:00:12:34:56\"}\n  - {id: net1, type: user}\n";

/* The last conditions of both statuses below (never rolled back, no wake failed). */
#define NO_ROLLBACK                                                                                \
	"    {\n"                                                                                  \
	"      \"type\": \"RolledBack\",\n"                                                        \
	"      \"status\": \"False\",\n"                                                           \
	"      \"reason\": \"NoRollback\",\n"                                                      \
	"      \"message\": \"\",\n"                                                               \
	"      \"lastTransitionTime\": \"2026-01-01T00:00:06.172Z\"\n"                             \
	"    },\n"                                                                                 \
	"    {\n"                                                                                  \
	"      \"type\": \"WakeFailed\",\n"                                                        \
	"      \"status\": \"False\",\n"                                                           \
	"      \"reason\": \"NoWakeFailure\",\n"                                                   \
	"      \"message\": \"\",\n"                                                               \
	"      \"lastTransitionTime\": \"2026-01-01T00:00:07.407Z\"\n"                             \
	"    }\n"

/* A format: %s is net1's derived MAC. */
static const char *WEB_STATUS = "{\n"
				"  \"name\": \"web\",\n"
				"  \"backend\": \"noop\",\n"
				"  \"file\": \"/etc/vmd/sandboxes/web.yaml\",\n"
				"  \"generation\": 3,\n"
				"  \"observedGeneration\": 2,\n"
				"  \"desiredState\": \"running\",\n"
				"  \"phase\": \"Running\",\n"
				"  \"conditions\": [\n"
				"    {\n"
				"      \"type\": \"ConfigValid\",\n"
				"      \"status\": \"True\",\n"
				"      \"reason\": \"Valid\",\n"
				"      \"message\": \"\",\n"
				"      \"lastTransitionTime\": \"2026-01-01T00:00:00.000Z\"\n"
				"    },\n"
				"    {\n"
				"      \"type\": \"Ready\",\n"
				"      \"status\": \"True\",\n"
				"      \"reason\": \"AsDesired\",\n"
				"      \"message\": \"\",\n"
				"      \"lastTransitionTime\": \"2026-01-01T00:00:01.234Z\"\n"
				"    },\n"
				"    {\n"
				"      \"type\": \"RestartRequired\",\n"
				"      \"status\": \"False\",\n"
				"      \"reason\": \"UpToDate\",\n"
				"      \"message\": \"\",\n"
				"      \"lastTransitionTime\": \"2026-01-01T00:00:02.469Z\"\n"
				"    },\n"
				"    {\n"
				"      \"type\": \"Degraded\",\n"
				"      \"status\": \"False\",\n"
				"      \"reason\": \"AsExpected\",\n"
				"      \"message\": \"\",\n"
				"      \"lastTransitionTime\": \"2026-01-01T00:00:03.703Z\"\n"
				"    },\n"
				"    {\n"
				"      \"type\": \"Running\",\n"
				"      \"status\": \"True\",\n"
				"      \"reason\": \"VmRunning\",\n"
				"      \"message\": \"\",\n"
				"      \"lastTransitionTime\": \"2026-01-01T00:00:04.938Z\"\n"
				"    },\n" NO_ROLLBACK

				"  ],\n"
				"  \"pid\": 4242,\n"
				"  \"startedAt\": \"2026-01-01T12:34:56.789Z\",\n"
				"  \"restarts\": 2,\n"
				"  \"lastError\": null,\n"
				"  \"nextRetryAt\": null,\n"
				"  \"disks\": [\n"
				"    {\n"
				"      \"id\": \"root\",\n"
				"      \"path\": \"/d/root.raw\",\n"
				"      \"readOnly\": false,\n"
				"      \"format\": \"raw\"\n"
				"    },\n"
				"    {\n"
				"      \"id\": \"data\",\n"
				"      \"path\": \"/d/d\xc3\xa4"
				"ta \\\"1\\\".qcow2\",\n"
				"      \"readOnly\": true,\n"
				"      \"format\": \"qcow2\"\n"
				"    }\n"
				"  ],\n"
				"  \"networks\": [\n"
				"    {\n"
				"      \"id\": \"net0\",\n"
				"      \"type\": \"tap\",\n"
				"      \"tap\": \"vmtap0\",\n"
				"      \"mac\": \"52:54:00:12:34:56\",\n"
				"      \"addresses\": [],\n"
				"      \"ports\": []\n"
				"    },\n"
				"    {\n"
				"      \"id\": \"net1\",\n"
				"      \"type\": \"user\",\n"
				"      \"tap\": \"\",\n"
				"      \"mac\": \"%s\",\n"
				"      \"addresses\": [],\n"
				"      \"ports\": []\n"
				"    }\n"
				"  ],\n"
				"  \"vmState\": \"running\",\n"
				"  \"job\": null,\n"
				"  \"vmmVersion\": null,\n"
				"  \"fileHash\": null,\n"
				"  \"sourceRevision\": null,\n"
				"  \"snapshot\": null,\n"
				"  \"startedFrom\": null\n"
				"}";

static const char *BAD_STATUS = "{\n"
				"  \"name\": \"bad\",\n"
				"  \"backend\": \"noop\",\n"
				"  \"file\": \"/etc/vmd/sandboxes/bad.yaml\",\n"
				"  \"generation\": 0,\n"
				"  \"observedGeneration\": 1,\n"
				"  \"desiredState\": \"stopped\",\n"
				"  \"phase\": \"Stopped\",\n"
				"  \"conditions\": [\n"
				"    {\n"
				"      \"type\": \"ConfigValid\",\n"
				"      \"status\": \"False\",\n"
				"      \"reason\": \"InvalidConfig\",\n"
				"      \"message\": \"bad.yaml:6:3: spec: unknown field 'v\xc3\xa9"
				"pcus'\\n\\t\\\"here\\\"\",\n"
				"      \"lastTransitionTime\": \"2026-01-01T00:00:00.000Z\"\n"
				"    },\n"
				"    {\n"
				"      \"type\": \"Ready\",\n"
				"      \"status\": \"False\",\n"
				"      \"reason\": \"NoValidSpec\",\n"
				"      \"message\": \"no valid spec to run\",\n"
				"      \"lastTransitionTime\": \"2026-01-01T00:00:01.234Z\"\n"
				"    },\n"
				"    {\n"
				"      \"type\": \"RestartRequired\",\n"
				"      \"status\": \"False\",\n"
				"      \"reason\": \"UpToDate\",\n"
				"      \"message\": \"\",\n"
				"      \"lastTransitionTime\": \"2026-01-01T00:00:02.469Z\"\n"
				"    },\n"
				"    {\n"
				"      \"type\": \"Degraded\",\n"
				"      \"status\": \"True\",\n"
				"      \"reason\": \"ActionFailed\",\n"
				"      \"message\": \"start failed: no room\",\n"
				"      \"lastTransitionTime\": \"2026-01-01T00:00:03.703Z\"\n"
				"    },\n"
				"    {\n"
				"      \"type\": \"Running\",\n"
				"      \"status\": \"False\",\n"
				"      \"reason\": \"Exited\",\n"
				"      \"message\": \"its VMM exited\",\n"
				"      \"lastTransitionTime\": \"2026-01-01T00:00:04.938Z\"\n"
				"    },\n" NO_ROLLBACK

				"  ],\n"
				"  \"pid\": 0,\n"
				"  \"startedAt\": null,\n"
				"  \"restarts\": 0,\n"
				"  \"lastError\": \"start failed: no room\",\n"
				"  \"nextRetryAt\": null,\n"
				"  \"disks\": [],\n"
				"  \"networks\": [],\n"
				"  \"vmState\": \"exited\",\n"
				"  \"job\": null,\n"
				"  \"vmmVersion\": null,\n"
				"  \"fileHash\": null,\n"
				"  \"sourceRevision\": null,\n"
				"  \"snapshot\": null,\n"
				"  \"startedFrom\": null\n"
				"}";

/* status.json byte for byte, as vmd has always written it (docs/status.md). */
static void test_status_json(void **state)
{
	ManagerFixture *f = *state;
	Sandbox *web = manager_sandbox(f->m, "web", true), *bad = manager_sandbox(f->m, "bad", true);
	_cleanup_free_ char *text = NULL, *want = NULL;
	char mac[18];

	web->desired = spec_of("web", WEB_YAML);
	web->path = strdup("/etc/vmd/sandboxes/web.yaml");
	web->generation = 3;
	web->restarts = 2;
	web->observed = (VmObserved){ .state = VM_RUNNING,
				      .pid = 4242,
				      .started_at_usec = 1767270896789999ull,
				      .generation = 2 };
	assert_int_equal(spec_copy(web->desired, &web->observed.config), 0);
	text = render(f, web);
	/* net1's MAC is derived from the names (docs/sandbox-file.md). */
	spec_mac_format(web->desired->networks[1].mac, mac);
	assert_true(asprintf(&want, WEB_STATUS, mac) > 0);
	assert_string_equal(text, want);

	/* Refused, failed, exited: nulls, escapes, UTF-8, empty device lists. */
	bad->path = strdup("/etc/vmd/sandboxes/bad.yaml");
	bad->config_error = strdup("bad.yaml:6:3: spec: unknown field 'v\xc3\xa9pcus'\n\t\"here\"");
	bad->config_reason = "InvalidConfig";
	bad->failures = 1;
	bad->last_error = strdup("start failed: no room");
	bad->observed = (VmObserved){ .state = VM_EXITED, .exit_status = 1, .generation = 1 };
	free(text);
	text = render(f, bad);
	assert_string_equal(text, BAD_STATUS);

	/* A job under way on a VMM that does not answer: the job, and Unknown. */
	web->observed.job = BACKEND_OP_DISK_ADD;
	web->observed.job_phase = "request";
	web->observed.job_since_usec = 1767270896789999ull;
	web->observed.unresponsive = strdup("QEMU pid 4242 did not answer device_add within 5 s");
	web->observed.vmm_version = strdup("qemu 7.2.22");
	free(text);
	text = render(f, web);
	assert_non_null(strstr(text, "  \"job\": {\n"
				     "    \"type\": \"disk-add\",\n"
				     "    \"phase\": \"request\",\n"
				     "    \"since\": \"2026-01-01T12:34:56.789Z\"\n"
				     "  },\n"
				     "  \"vmmVersion\": \"qemu 7.2.22\",\n"));
	assert_non_null(strstr(
		text, "      \"type\": \"Ready\",\n"
		      "      \"status\": \"Unknown\",\n"
		      "      \"reason\": \"VmmNotResponding\",\n"
		      "      \"message\": \"QEMU pid 4242 did not answer device_add within 5 s\",\n"));
	assert_non_null(strstr(
		text, "\"reason\": \"VmmNotResponding\",\n"
		      "      \"message\": \"QEMU pid 4242 did not answer device_add within 5 s\",\n"
		      "      \"lastTransitionTime\": \"2026-01-01T00:00:03.703Z\""));
}

static bool status_exists(ManagerFixture *f, const char *name)
{
	_cleanup_free_ char *path = NULL;

	assert_true(asprintf(&path, "%s/%s/status.json", f->run, name) > 0);
	return access(path, F_OK) == 0;
}

/* Remove name's status.json, update its status: whether that wrote it again. */
static bool rewritten(ManagerFixture *f, Sandbox *sb)
{
	_cleanup_free_ char *path = NULL;
	const Plan plan = {};

	assert_true(asprintf(&path, "%s/%s/status.json", f->run, sb->name) > 0);
	(void)unlink(path); /* not there if the last update did not write it */
	sandbox_update_status(f->m, sb, &plan);
	return status_exists(f, sb->name);
}

/* Written when what it says changes, anywhere in it; not again when nothing does. */
static void test_status_written_on_change(void **state)
{
	ManagerFixture *f = *state;
	Sandbox *web = manager_sandbox(f->m, "web", true);
	const Plan plan = {};

	web->desired = spec_of("web", WEB_YAML);
	web->path = strdup("/etc/vmd/sandboxes/web.yaml");
	web->observed = (VmObserved){ .state = VM_RUNNING, .pid = 1, .generation = 1 };
	assert_int_equal(spec_copy(web->desired, &web->observed.config), 0);
	sandbox_update_status(f->m, web, &plan);
	assert_true(status_exists(f, "web"));

	assert_false(rewritten(f, web));
	web->restarts++; /* a number */
	assert_true(rewritten(f, web));
	assert_false(rewritten(f, web));
	web->observed.config->disks[1].read_only = false; /* a device's number */
	assert_true(rewritten(f, web));
	free(web->observed.config->disks[0].path); /* a device's string */
	web->observed.config->disks[0].path = strdup("/d/other.raw");
	assert_true(rewritten(f, web));
	web->observed.config->networks[0].mac[5]++; /* a MAC */
	assert_true(rewritten(f, web));
	web->observed.config->n_networks--; /* a device less */
	assert_true(rewritten(f, web));
	web->last_error = strdup(""); /* "" is not null */
	assert_true(rewritten(f, web));
	web->observed.state = VM_PAUSED; /* a phase, a condition */
	assert_true(rewritten(f, web));
	assert_false(rewritten(f, web));
	web->observed.job = BACKEND_OP_PAUSE; /* a job */
	web->observed.job_phase = "request";
	assert_true(rewritten(f, web));
	web->observed.job_phase = "rollback"; /* its phase */
	assert_true(rewritten(f, web));
	assert_false(rewritten(f, web));
}

/*
 * What STATUS= must say, counted over every sandbox as vmd once did after each pass: the
 * sandboxes Ready (when any are), per phase, and the failing one (Failed, or its file refused) with
 * the smallest name. Messages here are short and printable: the line shows them as they are.
 */
static void expected_line(Manager *m, char *line, size_t size)
{
	unsigned counts[_PHASE_MAX] = {}, ready = 0;
	const Sandbox *first = NULL;
	size_t o;
	void *v;

	for (size_t i = 0; hashmap_next(m->sandboxes, &i, &v);) {
		const Sandbox *sb = v;
		bool is_failing = sb->status.phase == PHASE_FAILED || sb->config_error;

		counts[sb->status.phase]++;
		ready += sb->status.conditions[CONDITION_READY].status == CONDITION_TRUE;
		if (is_failing && (!first || strcmp(sb->name, first->name) < 0))
			first = sb;
	}
	o = (size_t)snprintf(line, size, "%zu sandbox%s", hashmap_size(m->sandboxes),
			     hashmap_size(m->sandboxes) == 1 ? "" : "es");
	if (ready > 0)
		o += (size_t)snprintf(line + o, size - o, ", %u ready", ready);
	for (Phase p = 0; p < _PHASE_MAX; p++)
		if (counts[p] > 0)
			o += (size_t)snprintf(line + o, size - o, ", %u %s", counts[p],
					      phase_to_string(p));
	if (first)
		snprintf(line + o, size - o, "; first failing: %s: %s", first->name,
			 first->config_error ?: first->last_error ?: "failed");
}

/* Put sb in one of a few situations, each giving a phase, and update its status. */
static void set_situation(ManagerFixture *f, Sandbox *sb, unsigned k)
{
	const Plan plan = {};

	sb->observe_failed = false;
	sb->failures = 0;
	sb->observed = (VmObserved){};
	free(sb->path);
	sb->path = k == 2 ? NULL : strdup("/etc/vmd/sandboxes/x.yaml");
	if (!sb->desired)
		sb->desired = spec_of(sb->name,
				      "apiVersion: vmd/v1\nkind: Sandbox\nspec: {memory: 64Mi}\n");
	switch (k) {
	case 0:
		sb->observed.state = VM_RUNNING; /* Running */
		break;
	case 1:
		sb->observed.state = VM_PAUSED; /* Paused */
		break;
	case 3:
		sb->failures = 1; /* Failed */
		break;
	case 4:
		sb->observed.state = VM_EXITED; /* Failed: it exited with 1 */
		sb->observed.exit_status = 1;
		break;
	case 5:
		sb->observe_failed = true; /* Unknown */
		break;
	default:
		break; /* 2: Stopped, its file gone; 6: Pending */
	}
	sandbox_update_status(f->m, sb, &plan);
}

/*
 * STATUS= kept up to date without counting over all sandboxes: after each of many random
 * changes (a phase, a refused file, an error, a sandbox dropped, created or renamed) it
 * says what a count over every sandbox says.
 */
static void test_status_line(void **state)
{
	ManagerFixture *f = *state;
	char want[1024], name[32];
	unsigned seed = 7;

	for (int i = 0; i < 3000; i++) {
		unsigned r = rand_r(&seed), op = r % 8, k = (r / 8) % 40;
		Sandbox *sb;

		snprintf(name, sizeof(name), "sb-%02u", k);
		sb = manager_sandbox(f->m, name, op < 2);
		if (!sb)
			continue;
		switch (op) {
		case 0: /* created (or there already): its first status, or none yet */
		case 1:
		case 2:
			if (r % 3)
				set_situation(f, sb, (r / 320) % 7);
			break;
		case 3: /* its file refused, or valid again */
			free(sb->config_error);
			sb->config_error = (r / 320) % 2 ? NULL : strdup("refused");
			sb->config_reason = sb->config_error ? "InvalidConfig" : NULL;
			set_situation(f, sb, (r / 640) % 7);
			break;
		case 4: /* an error, shown once it is failing */
			free(sb->last_error);
			sb->last_error = (r / 320) % 2 ? NULL : strdup("start failed: boom");
			set_situation(f, sb, (r / 640) % 7);
			break;
		case 5: /* dropped */
			manager_drop_sandbox(f->m, sb);
			break;
		default: { /* renamed: gone under its name, back under another */
			unsigned situation = (r / 320) % 7;

			manager_drop_sandbox(f->m, sb);
			snprintf(name, sizeof(name), "sb-%02u", (k + 17) % 40);
			sb = manager_sandbox(f->m, name, true);
			assert_non_null(sb);
			set_situation(f, sb, situation);
			break;
		}
		}
		manager_notify_status(f->m);
		expected_line(f->m, want, sizeof(want));
		if (!streq(f->m->notified_status, want))
			fail_msg("after change %d: STATUS=%s, not %s", i, f->m->notified_status,
				 want);
	}
}

/* The daemon's own troubles lead STATUS=, each with its reason. */
static void test_status_line_degraded(void **state)
{
	ManagerFixture *f = *state;

	f->m->watch_error = strdup("cannot watch /s: the inotify watches are used up");
	f->m->state_write_error = strdup("cannot write the last valid specs to /v: full");
	manager_notify_status(f->m);
	assert_string_equal(
		f->m->notified_status,
		"Degraded (WatchUnavailable): cannot watch /s: the inotify watches are used up; "
		"Degraded (StateWriteFailed): cannot write the last valid specs to /v: full; "
		"0 sandboxes");
}

/* A crash loop's message gives the VMM's own words, not only how often it exited. */
static void test_crash_loop_words(void **state)
{
	ManagerFixture *f = *state;
	const Plan plan = {};
	Sandbox *sb = manager_sandbox(f->m, "k", true);

	assert_non_null(sb);
	sb->path = strdup("/etc/vmd/sandboxes/k.yaml");
	sb->desired = spec_of("k", "apiVersion: vmd/v1\nkind: Sandbox\nspec: {memory: 64Mi}\n");
	sb->observed.state = VM_EXITED;
	sb->observed.exit_status = 1;
	sb->quick_exits = 5;
	/* As sandbox_vm_exited() keeps it from the backend's reason. */
	sb->exit_reason = strdup(
		"QEMU exited: qemu: could not open kernel file '/k': No such file or directory, status 1");
	sandbox_update_status(f->m, sb, &plan);
	assert_string_equal(
		sb->status.conditions[CONDITION_DEGRADED].message,
		"exited 5 times in a row soon after starting (the last: QEMU exited: qemu: could not "
		"open kernel file '/k': No such file or directory, status 1); restarts back off");
}

/* `vmd status --run-dir run`; its stderr (the caller frees it), its stdout in *ret_out. */
static char *vmd_status(const char *run, char **ret_out)
{
	TestRun r;
	char *err;

	test_run(&r, (char *[]){ (char *)test_vmd(), "status", "--run-dir", (char *)run, NULL });
	assert_int_equal(r.status, 0);
	err = r.err;
	r.err = NULL;
	if (ret_out) {
		*ret_out = r.out;
		r.out = NULL;
	}
	test_run_done(&r);
	return err;
}

static void write_daemon_json(const char *run, uint64_t last_pass)
{
	_cleanup_free_ char *text = NULL;

	assert_true(asprintf(&text,
			     "{\"pid\": %d, \"lastPassEndedAtUsec\": %llu, \"resyncUsec\": 1000000}\n",
			     (int)getpid(), (unsigned long long)last_pass) > 0);
	test_write_str(run, "daemon.json", text);
}

/* A pid that no process has now: a child's, reaped. */
static pid_t dead_pid(void)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	return pid;
}

/*
 * vmd status says when no vmd runs (no vmd.lock, or nobody holds it), when the one that
 * holds it has not ended a pass for long, and which VMMs are gone while no vmd runs to see
 * it. What holds the lock here is this test, as a vmd would (vmd status reads /proc/locks).
 */
static void test_status_daemon_liveness(void **state _unused_)
{
	char *dir = test_tmpdir(), *err, *out;
	_cleanup_free_ char *run = NULL, *lock = NULL, *status = NULL;
	uint64_t now = now_usec(CLOCK_REALTIME);
	int fd;

	assert_true(asprintf(&run, "%s/run", dir) > 0);
	assert_true(asprintf(&lock, "%s/vmd.lock", run) > 0);
	assert_true(asprintf(&status,
			     "{\"name\": \"web\", \"backend\": \"qemu\", \"phase\": \"Running\", "
			     "\"pid\": %d, \"restarts\": 0, \"conditions\": [{\"type\": \"Ready\", "
			     "\"status\": \"True\", \"reason\": \"AsDesired\", \"message\": \"\"}]}\n",
			     (int)dead_pid()) > 0);
	test_write_str(run, "web/status.json", status);

	err = vmd_status(run, NULL);
	assert_non_null(strstr(err, "no vmd has run with run dir"));
	free(err);

	/* A vmd ran and stopped (or was killed): the status is what it last saw. */
	test_write_str(run, "vmd.lock", "4711\n");
	write_daemon_json(run, now);
	err = vmd_status(run, &out);
	assert_non_null(strstr(err, "vmd status: warning: vmd is not running (nothing holds "));
	assert_non_null(
		strstr(err, "pid 4711 held it last); what follows is as of its last pass, at "));
	/* Its VMM is gone, and nobody noticed: not Ready, and the table says why. */
	assert_non_null(strstr(out, "Running   ?       ?      0        its VMM (pid "));
	assert_non_null(strstr(out, ") is gone; no vmd runs to notice"));
	free(err);
	free(out);

	/* One runs (holds the lock) and ended a pass just now: nothing to warn of. */
	fd = open(lock, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
	err = vmd_status(run, &out);
	assert_string_equal(err, "");
	assert_null(strstr(out, "is gone"));
	free(err);
	free(out);

	/* One runs, but its last pass ended an hour ago though it passes every second. */
	write_daemon_json(run, now - 3600ull * 1000000);
	err = vmd_status(run, NULL);
	assert_non_null(strstr(err, "has not ended a pass since "));
	assert_non_null(strstr(err, "it passes every 1 s at the least): it may hang"));
	free(err);

	close(fd);
	test_tmpdir_remove(dir);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_crash_loop_words, manager_fixture_setup_read_only,
						manager_fixture_teardown),
		cmocka_unit_test(test_status_daemon_liveness),
		cmocka_unit_test_setup_teardown(test_status_json, manager_fixture_setup_read_only,
						manager_fixture_teardown),
		cmocka_unit_test_setup_teardown(test_status_written_on_change,
						manager_fixture_setup_read_only,
						manager_fixture_teardown),
		cmocka_unit_test_setup_teardown(test_status_line, manager_fixture_setup_read_only,
						manager_fixture_teardown),
		cmocka_unit_test_setup_teardown(test_status_line_degraded,
						manager_fixture_setup_read_only,
						manager_fixture_teardown),
	};

	return cmocka_run_group_tests_name("status", tests, NULL, NULL);
}
