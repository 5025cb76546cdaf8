/* SPDX-License-Identifier: MIT */
/*
 * The planner, table-driven: each row a desired spec (as the lines under spec: of a
 * sandbox file, NULL when the file is gone), what the backend observes (its state and the
 * config it runs, in the same form), the backend's capabilities and the clock, and the
 * exact actions expected.
 */
#include <inttypes.h>
#include <stdio.h>

#include "helpers.h"
#include "plan.h"
#include "spec-yaml.h"

#define ALL                                                                                        \
	(BACKEND_CAP_PAUSE | BACKEND_CAP_DISK_HOTPLUG | BACKEND_CAP_NET_HOTPLUG | BACKEND_CAP_RESIZE)
#define GRACE 2000
#define BASE "memory: 64Mi\n"
#define D1 "disks: [{id: root, path: /d/root.raw}]\n"
#define D2 "disks: [{id: root, path: /d/root.raw}, {id: data, path: /d/data.raw}]\n"
#define N1 "networks: [{id: net0, tap: tap0}]\n"
/* Disks from images: /etc/passwd and /etc/group, files every host has, read as raw images. */
#define I1 "disks: [{id: root, image: /etc/passwd, imageFormat: raw, size: 1Mi}]\n"
#define I1_EPHEMERAL                                                                               \
	"disks: [{id: root, image: /etc/passwd, imageFormat: raw, size: 1Mi, ephemeral: true}]\n"
#define I1_GROWN "disks: [{id: root, image: /etc/passwd, imageFormat: raw, size: 2Mi}]\n"
#define I2 "disks: [{id: root, image: /etc/group, imageFormat: raw, size: 1Mi}]\n"
#define N2 "networks: [{id: net0, tap: tap0}, {id: net1, tap: tap1}]\n"

typedef struct Row {
	const char *what;
	const char *want; /* spec: lines; NULL for a removed file */
	VmState state;
	const char *have;  /* the config the VM runs; NULL: same as want */
	uint64_t have_gen; /* generation it runs; want is generation 2 */
	int exit_status;
	BackendCaps caps;
	uint64_t now, since, retry_at;
	uint64_t resize_retry_at; /* the VMM was busy for the last resize */
	const char *expect;	  /* "type[:device] ..." */
	bool restart_required;
	uint64_t wake_at;
	bool busy;		       /* a hot-unplug is in flight */
	BackendOp job;		       /* an operation under way on the VM */
	bool unresponsive;	       /* its VMM does not answer */
	unsigned min_vcpus, max_vcpus; /* live resize room; 0 for none known */
	uint64_t min_memory, max_memory;
	uint64_t memory_step; /* growth only by multiples of it, memory_grows_left times */
	unsigned memory_grows_left;
	unsigned host_cpus; /* admission: what the host has; both 0 for no check */
	uint64_t host_memory;
	bool insufficient; /* expected: refused for want of resources */
} Row;

#define HOST .host_cpus = 2, .host_memory = 24ull << 30

/* now 10000, the file changed at 5000 (grace over) unless a row says otherwise. */
static const Row rows[] = {
	/* Nothing runs */
	{ "absent, running wanted", BASE, VM_ABSENT, .expect = "start" },
	{ "absent, paused wanted", BASE "state: paused\n", VM_ABSENT, .expect = "start pause" },
	{ "absent, paused wanted, no pause", BASE "state: paused\n", VM_ABSENT,
	  .caps = BACKEND_CAP_DISK_HOTPLUG, .expect = "start" },
	{ "absent, stopped wanted", BASE "state: stopped\n", VM_ABSENT, .expect = "" },
	{ "start is constructive: no grace", BASE, VM_ABSENT, .since = 9999, .expect = "start" },
	{ "exited, always", BASE, VM_EXITED, .exit_status = 0, .expect = "start" },
	{ "crashed, always", BASE, VM_EXITED, .exit_status = 137, .expect = "start" },
	{ "clean exit, on-failure", BASE "restartPolicy: on-failure\n", VM_EXITED, .expect = "" },
	{ "crashed, on-failure", BASE "restartPolicy: on-failure\n", VM_EXITED, .exit_status = 1,
	  .expect = "start" },
	{ "crashed, never", BASE "restartPolicy: never\n", VM_EXITED, .exit_status = 1, .expect = "" },
	{ "exited, never, file changed since", BASE "restartPolicy: never\n", VM_EXITED,
	  .have_gen = 1, .exit_status = 1, .expect = "start" },
	{ "exited, stopped wanted", BASE "state: stopped\n", VM_EXITED, .expect = "" },
	{ "exited, paused wanted", BASE "state: paused\n", VM_EXITED, .exit_status = 1,
	  .expect = "start pause" },

	/* It runs as the file says */
	{ "running, in line", BASE D1 N1, VM_RUNNING, .expect = "" },
	{ "paused, in line", BASE "state: paused\n", VM_PAUSED, .expect = "" },
	{ "running, pause wanted", BASE "state: paused\n", VM_RUNNING, .expect = "pause" },
	{ "running, pause wanted, no pause", BASE "state: paused\n", VM_RUNNING,
	  .caps = BACKEND_CAP_DISK_HOTPLUG, .expect = "" },
	{ "paused, running wanted", BASE, VM_PAUSED, .expect = "resume" },
	{ "running, stop wanted, grace over", BASE "state: stopped\n", VM_RUNNING, .expect = "stop" },
	{ "running, stop wanted, in grace", BASE "state: stopped\n", VM_RUNNING, .since = 9000,
	  .expect = "", .wake_at = 11000 },
	{ "paused, stop wanted", BASE "state: stopped\n", VM_PAUSED, .expect = "stop" },
	{ "stopping: wait for the exit", BASE, VM_STOPPING, .expect = "" },
	{ "starting: wait until it is up", BASE, VM_STARTING, .expect = "" },
	{ "starting, file gone: the stop cuts the start short", NULL, VM_STARTING, .have = BASE,
	  .job = BACKEND_OP_START, .expect = "stop" },
	{ "starting, file gone, in grace", NULL, VM_STARTING, .have = BASE, .since = 9000,
	  .job = BACKEND_OP_START, .expect = "", .wake_at = 11000 },
	{ "starting, stop wanted", BASE "state: stopped\n", VM_STARTING, .job = BACKEND_OP_START,
	  .expect = "stop" },
	{ "stopping, file gone: wait", NULL, VM_STOPPING, .have = BASE, .expect = "" },

	/* The file is gone */
	{ "removed, running, grace over", NULL, VM_RUNNING, .have = BASE, .expect = "stop" },
	{ "removed, running, in grace", NULL, VM_RUNNING, .have = BASE, .since = 9500, .expect = "",
	  .wake_at = 11500 },
	{ "removed, paused", NULL, VM_PAUSED, .have = BASE, .expect = "stop" },
	{ "removed, exited", NULL, VM_EXITED, .have = BASE, .expect = "cleanup" },
	{ "removed, exited, in grace", NULL, VM_EXITED, .have = BASE, .since = 9000, .expect = "",
	  .wake_at = 11000 },
	{ "removed, absent", NULL, VM_ABSENT, .expect = "" },

	/* Hot-plug */
	{ "disk added", BASE D2, VM_RUNNING, .have = BASE D1, .expect = "disk-add:data" },
	{ "disk added while in grace: constructive", BASE D2, VM_RUNNING, .have = BASE D1,
	  .since = 9999, .expect = "disk-add:data" },
	{ "disk removed", BASE D1, VM_RUNNING, .have = BASE D2, .expect = "disk-remove:data" },
	{ "disk removed, an unplug in flight: wait for it", BASE D1, VM_RUNNING, .have = BASE D2,
	  .busy = true, .expect = "" },
	{ "busy, paused wanted: pause all the same", BASE "state: paused\n" D1, VM_RUNNING,
	  .have = BASE D2, .busy = true, .expect = "pause" },
	{ "disk removed, in grace", BASE D1, VM_RUNNING, .have = BASE D2, .since = 9000,
	  .expect = "", .wake_at = 11000 },
	{ "disk changed", BASE "disks: [{id: root, path: /d/other.raw}]\n", VM_RUNNING,
	  .have = BASE D1, .expect = "disk-remove:root disk-add:root" },
	{ "disk made read-only", BASE "disks: [{id: root, path: /d/root.raw, readOnly: true}]\n",
	  VM_RUNNING, .have = BASE D1, .expect = "disk-remove:root disk-add:root" },
	{ "disk changed, in grace: neither", BASE "disks: [{id: root, path: /d/other.raw}]\n",
	  VM_RUNNING, .have = BASE D1, .since = 9000, .expect = "", .wake_at = 11000 },
	{ "disk path changed, path cap", BASE "disks: [{id: root, path: /d/other.raw}]\n",
	  VM_RUNNING, .have = BASE D1, .caps = BACKEND_CAP_PAUSE | BACKEND_CAP_DISK_PATH,
	  .expect = "disk-update:root" },
	{ "disk path changed, path cap, in grace", BASE "disks: [{id: root, path: /d/other.raw}]\n",
	  VM_RUNNING, .have = BASE D1, .caps = BACKEND_CAP_DISK_PATH, .since = 9000, .expect = "",
	  .wake_at = 11000 },
	{ "disk made read-only, path cap only",
	  BASE "disks: [{id: root, path: /d/root.raw, readOnly: true}]\n", VM_RUNNING,
	  .have = BASE D1, .caps = BACKEND_CAP_DISK_PATH, .expect = "", .restart_required = true },
	{ "disk swapped for another", BASE "disks: [{id: data, path: /d/data.raw}]\n", VM_RUNNING,
	  .have = BASE D1, .expect = "disk-remove:root disk-add:data" },
	{ "disk in grace, add goes on", BASE "disks: [{id: data, path: /d/data.raw}]\n", VM_RUNNING,
	  .have = BASE D1, .since = 9000, .expect = "disk-add:data", .wake_at = 11000 },
	{ "net added", BASE N2, VM_RUNNING, .have = BASE N1, .expect = "net-add:net1" },
	{ "net removed", BASE, VM_RUNNING, .have = BASE N1, .expect = "net-remove:net0" },
	{ "net mac changed", BASE "networks: [{id: net0, tap: tap0, mac: \"02:00:00:00:00:09\"}]\n",
	  VM_RUNNING, .have = BASE N1, .expect = "net-remove:net0 net-add:net0" },
	{ "disk and net added while paused", BASE "state: paused\n" D1 N1, VM_PAUSED, .have = BASE,
	  .expect = "disk-add:root net-add:net0" },
	{ "disk added and resume", BASE D1, VM_PAUSED, .have = BASE,
	  .expect = "disk-add:root resume" },
	{ "resized", BASE "vcpus: 2\n", VM_RUNNING, .have = BASE, .expect = "resize" },
	{ "resized within the room", "memory: 256Mi\nvcpus: 4\n", VM_RUNNING, .have = BASE,
	  .max_vcpus = 4, .min_memory = 64 << 20, .max_memory = 256 << 20, .expect = "resize" },
	{ "resized down within the room", BASE, VM_RUNNING, .have = BASE "vcpus: 3\n",
	  .max_vcpus = 4, .min_memory = 64 << 20, .max_memory = 256 << 20, .expect = "resize" },

	/* What cannot be applied live */
	{ "disk added, no hotplug, on-next-boot", BASE D1, VM_RUNNING, .have = BASE,
	  .caps = BACKEND_CAP_PAUSE, .expect = "", .restart_required = true },
	{ "disk added, no hotplug, restart", BASE "updatePolicy: restart\n" D1, VM_RUNNING,
	  .have = BASE, .caps = BACKEND_CAP_PAUSE, .expect = "restart" },
	{ "disk added, no hotplug, restart, in grace", BASE "updatePolicy: restart\n" D1, VM_RUNNING,
	  .have = BASE, .caps = BACKEND_CAP_PAUSE, .since = 9000, .expect = "", .wake_at = 11000 },
	{ "net added, no net hotplug", BASE N1, VM_RUNNING, .have = BASE,
	  .caps = BACKEND_CAP_DISK_HOTPLUG, .expect = "", .restart_required = true },
	{ "disk hotplug only, net unchanged", BASE D1 N1, VM_RUNNING, .have = BASE N1,
	  .caps = BACKEND_CAP_DISK_HOTPLUG, .expect = "disk-add:root" },
	{ "resize, no resize cap", BASE "vcpus: 2\n", VM_RUNNING, .have = BASE,
	  .caps = BACKEND_CAP_PAUSE, .expect = "", .restart_required = true },
	{ "more vcpus than the VM has room for", BASE "vcpus: 5\n", VM_RUNNING, .have = BASE,
	  .max_vcpus = 4, .expect = "", .restart_required = true },
	{ "fewer vcpus than the VM can keep", BASE "vcpus: 1\n", VM_RUNNING, .have = BASE "vcpus: 2\n",
	  .min_vcpus = 2, .max_vcpus = 2, .expect = "", .restart_required = true },
	{ "memory only, vcpus fixed", "memory: 128Mi\nvcpus: 2\n", VM_RUNNING,
	  .have = BASE "vcpus: 2\n", .min_vcpus = 2, .max_vcpus = 2, .min_memory = 64 << 20,
	  .max_memory = 256 << 20, .expect = "resize" },
	{ "more memory than the VM has room for, restart", "memory: 512Mi\nupdatePolicy: restart\n",
	  VM_RUNNING, .have = BASE, .max_memory = 256 << 20, .expect = "restart" },
	{ "resize the VMM was busy for: later, the resume now", BASE "vcpus: 2\n", VM_PAUSED,
	  .have = BASE, .resize_retry_at = 12000, .expect = "resume", .wake_at = 12000 },
	{ "resize the VMM was busy for, due", BASE "vcpus: 2\n", VM_RUNNING, .have = BASE,
	  .resize_retry_at = 9000, .expect = "resize" },
	{ "memory grown by whole steps", "memory: 320Mi\n", VM_RUNNING, .have = BASE,
	  .max_memory = 512 << 20, .memory_step = 128 << 20, .memory_grows_left = 1,
	  .expect = "resize" },
	{ "memory grown by part of a step", "memory: 100Mi\n", VM_RUNNING, .have = BASE,
	  .max_memory = 512 << 20, .memory_step = 128 << 20, .memory_grows_left = 8, .expect = "",
	  .restart_required = true },
	{ "memory grown with no hot-add left", "memory: 192Mi\n", VM_RUNNING, .have = BASE,
	  .max_memory = 512 << 20, .memory_step = 128 << 20, .memory_grows_left = 0, .expect = "",
	  .restart_required = true },
	{ "vcpus changed, memory as it is, no hot-add left", BASE "vcpus: 2\n", VM_RUNNING,
	  .have = BASE, .memory_step = 128 << 20, .expect = "resize" },
	{ "less memory than it booted with", "memory: 32Mi\n", VM_RUNNING, .have = BASE,
	  .min_memory = 64 << 20, .max_memory = 256 << 20, .expect = "", .restart_required = true },
	{ "kernel changed", BASE "kernel: /k2\n", VM_RUNNING, .have = BASE "kernel: /k1\n",
	  .expect = "", .restart_required = true },
	/* Disks from images: their copies are made by a start, never live */
	{ "disk from an image, in line", BASE I1, VM_RUNNING, .caps = ALL, .expect = "" },
	{ "disk from an image made ephemeral: nothing to do now", BASE I1_EPHEMERAL, VM_RUNNING,
	  .have = BASE I1, .caps = ALL, .expect = "" },
	{ "image changed: for the next boot, not hot-plugged", BASE I2, VM_RUNNING, .have = BASE I1,
	  .caps = ALL | BACKEND_CAP_DISK_PATH, .expect = "", .restart_required = true },
	{ "image changed, restart", BASE "updatePolicy: restart\n" I2, VM_RUNNING, .have = BASE I1,
	  .caps = ALL, .expect = "restart" },
	{ "image's copy grown: for the next boot", BASE I1_GROWN, VM_RUNNING, .have = BASE I1,
	  .caps = ALL, .expect = "", .restart_required = true },
	{ "disk from an image added: for the next boot, not hot-plugged", BASE I1, VM_RUNNING,
	  .have = BASE, .caps = ALL, .expect = "", .restart_required = true },
	{ "disk from an image removed: hot-unplugged", BASE, VM_RUNNING, .have = BASE I1,
	  .caps = ALL, .expect = "disk-remove:root" },
	{ "disk path replaced by an image, restart", BASE "updatePolicy: restart\n" I1, VM_RUNNING,
	  .have = BASE D1, .caps = ALL, .expect = "restart" },

	{ "cmdline changed, restart", BASE "updatePolicy: restart\ncmdline: quiet\n", VM_RUNNING,
	  .have = BASE, .expect = "restart" },
	{ "guest agent added", BASE "guestAgent: true\n", VM_RUNNING, .have = BASE, .expect = "",
	  .restart_required = true },
	/* spec.resources goes into the VMM's scope as it is made: a boot-time change. */
	{ "cpu quota added: for the next boot", BASE "resources:\n  cpuQuota: 50%\n", VM_RUNNING,
	  .have = BASE, .caps = ALL, .expect = "", .restart_required = true },
	{ "cpu weight changed, restart", BASE "updatePolicy: restart\nresources:\n  cpuWeight: 7\n",
	  VM_RUNNING, .have = BASE "resources:\n  cpuWeight: 8\n", .caps = ALL, .expect = "restart" },
	{ "resources the same: nothing to do", BASE "resources:\n  ioWeight: 9\n", VM_RUNNING,
	  .have = BASE "resources:\n  ioWeight: 9\n", .caps = ALL, .expect = "" },
	{ "initrd changed, paused, restart", BASE "state: paused\nupdatePolicy: restart\ninitrd: /i\n",
	  VM_PAUSED, .have = BASE, .expect = "restart" },
	{ "kernel changed and pause: pause anyway", BASE "state: paused\nkernel: /k2\n", VM_RUNNING,
	  .have = BASE "kernel: /k1\n", .expect = "pause", .restart_required = true },
	{ "kernel changed and stop: stop", BASE "state: stopped\nkernel: /k2\n", VM_RUNNING,
	  .have = BASE "kernel: /k1\n", .expect = "stop", .restart_required = true },
	{ "user-data changed: the seed is read at boot", BASE "cloudInit: {userData: b}\n", VM_RUNNING,
	  .have = BASE "cloudInit: {userData: a}\n", .expect = "", .restart_required = true },
	{ "seed added, restart", BASE "updatePolicy: restart\ncloudInit: {}\n", VM_RUNNING,
	  .have = BASE, .expect = "restart" },
	{ "credential's file changed, restart",
	  BASE "updatePolicy: restart\ncredentials: [{name: a, fromFile: /s/b}]\n", VM_RUNNING,
	  .have = BASE "credentials: [{name: a, fromFile: /s/a}]\n", .expect = "restart" },
	{ "labels and policies are not the VM's", BASE "restartPolicy: never\nstopTimeout: 5s\n",
	  VM_RUNNING, .have = BASE, .expect = "" },

	/* An operation under way, a VMM that does not answer */
	{ "pausing: wait for it", BASE "state: paused\n", VM_RUNNING, .job = BACKEND_OP_PAUSE,
	  .expect = "" },
	{ "adding a disk, another added: one at a time", BASE D2, VM_RUNNING, .have = BASE,
	  .job = BACKEND_OP_DISK_ADD, .expect = "" },
	{ "resizing, file gone: the stop cuts in", NULL, VM_RUNNING, .have = BASE,
	  .job = BACKEND_OP_RESIZE, .expect = "stop" },
	{ "stopping, file gone: no second stop", NULL, VM_STOPPING, .have = BASE,
	  .job = BACKEND_OP_STOP, .expect = "" },
	{ "adopting, file gone: nothing until it is proven ours", NULL, VM_RUNNING, .have = BASE,
	  .job = BACKEND_OP_ADOPT, .expect = "" },
	{ "adopting, paused wanted: nothing yet", BASE "state: paused\n", VM_RUNNING,
	  .job = BACKEND_OP_ADOPT, .expect = "" },
	{ "unresponsive, disk added: nothing", BASE D1, VM_RUNNING, .have = BASE,
	  .unresponsive = true, .expect = "" },
	{ "unresponsive, paused wanted: nothing", BASE "state: paused\n", VM_RUNNING,
	  .unresponsive = true, .expect = "" },
	{ "unresponsive, file gone: stop", NULL, VM_RUNNING, .have = BASE, .unresponsive = true,
	  .expect = "stop" },
	{ "unresponsive, paused, stop wanted: stop", BASE "state: stopped\n", VM_PAUSED,
	  .unresponsive = true, .expect = "stop" },

	/* Admission: what the host cannot hold is not started, restarted or resized to */
	{ "absent, more memory than the host", "memory: 1Ti\n", VM_ABSENT, HOST, .expect = "",
	  .insufficient = true },
	{ "absent, more vcpus than the host", BASE "vcpus: 256\n", VM_ABSENT, HOST, .expect = "",
	  .insufficient = true },
	{ "absent, as much as the host has", "memory: 24Gi\nvcpus: 2\n", VM_ABSENT, HOST,
	  .expect = "start" },
	{ "absent, no host check (overcommit, noop)", "memory: 1Ti\n", VM_ABSENT, .expect = "start" },
	{ "crashed, restart beyond the host", "memory: 1Ti\n", VM_EXITED, .exit_status = 1, HOST,
	  .expect = "", .insufficient = true },
	{ "paused wanted beyond the host: no start, no pause", "memory: 1Ti\nstate: paused\n",
	  VM_ABSENT, HOST, .expect = "", .insufficient = true },
	{ "restart to more than the host: it keeps running", "memory: 1Ti\nupdatePolicy: restart\n",
	  VM_RUNNING, .have = BASE, .caps = BACKEND_CAP_PAUSE, HOST, .expect = "",
	  .insufficient = true },
	{ "on-next-boot to more than the host: waits, refused only at the start", "memory: 1Ti\n",
	  VM_RUNNING, .have = BASE, .caps = BACKEND_CAP_PAUSE, HOST, .expect = "",
	  .restart_required = true },
	{ "resize beyond the host", BASE "vcpus: 256\n", VM_RUNNING, .have = BASE, HOST,
	  .expect = "", .insufficient = true },
	{ "resize beyond the host, a disk added all the same", BASE "vcpus: 4\n" D1, VM_RUNNING,
	  .have = BASE, HOST, .expect = "disk-add:root", .insufficient = true },
	{ "running beyond the host already, nothing changed: left alone", "memory: 1Ti\n",
	  VM_RUNNING, HOST, .expect = "" },

	/* Backoff */
	{ "backing off", BASE, VM_ABSENT, .retry_at = 12000, .expect = "", .wake_at = 12000 },
	{ "backoff over", BASE, VM_ABSENT, .retry_at = 10000, .expect = "start" },
	{ "backing off, file gone", NULL, VM_RUNNING, .have = BASE, .retry_at = 15000, .expect = "",
	  .wake_at = 15000 },
};

static void format_plan(const Plan *p, char *buf, size_t size)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < p->n_actions; i++)
		o += (size_t)snprintf(buf + o, size - o, "%s%s%s%s", i ? " " : "",
				      action_type_to_string(p->actions[i].type),
				      p->actions[i].device ? ":" : "", p->actions[i].device ?: "");
}

static void test_rows(void **state _unused_)
{
	unsigned failures = 0;

	assert_true(ELEMENTSOF(rows) >= 40);
	for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
		const Row *r = &rows[i];
		_cleanup_(sandbox_spec_freep) SandboxSpec *want =
			r->want ? test_spec_of(r->want) : NULL;
		const char *have_text = r->have ? r->have : r->want;
		VmObserved o = { .state = r->state,
				 .generation = r->have_gen ? r->have_gen : 2,
				 .exit_status = r->exit_status,
				 .busy = r->busy,
				 .job = r->job,
				 .unresponsive = r->unresponsive ? (char *)"silent" : NULL,
				 .min_vcpus = r->min_vcpus,
				 .max_vcpus = r->max_vcpus,
				 .min_memory = r->min_memory,
				 .max_memory = r->max_memory,
				 .memory_step = r->memory_step,
				 .memory_grows_left = r->memory_grows_left };
		const HostResources host = { .cpus = r->host_cpus, .memory = r->host_memory };
		PlanInput in = { .desired = want,
				 .generation = 2,
				 .observed = &o,
				 .caps = r->caps ? r->caps : ALL,
				 .desired_since = r->since ? r->since : 5000,
				 .retry_at = r->retry_at,
				 .resize_retry_at = r->resize_retry_at,
				 .host = r->host_cpus || r->host_memory ? &host : NULL };
		Plan plan;
		char got[512];

		if (r->state != VM_ABSENT && have_text)
			o.config = test_spec_of(have_text);
		plan_sandbox(&in, r->now ? r->now : 10000, GRACE, &plan);
		format_plan(&plan, got, sizeof(got));
		if (!streq(got, r->expect) || plan.restart_required != r->restart_required ||
		    plan.wake_at != r->wake_at || plan.insufficient != r->insufficient) {
			print_error("row %zu '%s': got '%s' restart_required=%d wake_at=%" PRIu64
				    " insufficient=%d, expected '%s' %d %" PRIu64 " %d\n",
				    i, r->what, got, plan.restart_required, plan.wake_at,
				    plan.insufficient, r->expect, r->restart_required, r->wake_at,
				    r->insufficient);
			failures++;
		}
		/* Every action says why. */
		for (size_t k = 0; k < plan.n_actions; k++)
			assert_non_null(plan.actions[k].reason);
		o.unresponsive = NULL; /* not allocated */
		vm_observed_done(&o);
	}
	assert_int_equal(failures, 0);
}

/* Destructive is exactly the set the grace window applies to. */
static void test_destructive(void **state _unused_)
{
	for (int t = 0; t < _ACTION_TYPE_MAX; t++) {
		bool d = IN_SET(t, ACTION_STOP, ACTION_RESTART, ACTION_DISK_REMOVE, ACTION_NET_REMOVE,
				ACTION_DISK_UPDATE, ACTION_CLEANUP, ACTION_DROP_SNAPSHOT);

		assert_int_equal(action_is_destructive(t), d);
		assert_int_equal(action_type_from_string(action_type_to_string(t)), t);
	}
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rows),
		cmocka_unit_test(test_destructive),
	};

	return cmocka_run_group_tests_name("plan", tests, NULL, NULL);
}
