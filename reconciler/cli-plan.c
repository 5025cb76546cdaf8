/* SPDX-License-Identifier: MIT */
/*
 * vmd plan: what the daemon would do now, read-only. It reads the sandbox directory and
 * asks the backends what runs exactly as the daemon does, and calls the same planner; it
 * takes no lock and writes nothing, so it works while the daemon runs.
 *
 * Stops of several at once go in the reverse order of spec.after, as the daemon has them
 * (ordering.c ordering_stop_waits(): a stop waits while one naming it in its spec.after
 * is stopped too): the planner plans each alone, and the order is put on its stops here.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>

#include "after-spec.h"
#include "cli.h"
#include "log.h"
#include "manager.h"
#include "ordering.h"
#include "rollout.h"

static int name_compare(const void *a, const void *b)
{
	return strcmp((*(Sandbox *const *)a)->name, (*(Sandbox *const *)b)->name);
}

static json_t *plan_one(Manager *m, Sandbox *sb, json_t *held)
{
	Backend *b = manager_backend_of(m, sb);
	json_t *actions = json_array(), *j;
	_cleanup_free_ char *refused = NULL;
	const char *note = NULL;
	Plan plan = {};

	sandbox_observe(m, sb);
	if (!b)
		note = "its backend is not available in this build";
	else if (sb->observe_failed)
		note = "its backend cannot say what runs";
	else if (sb->observed.stray)
		note = sb->observed.stray_message;
	else if (sb->path && !sb->desired)
		note = "no valid spec to go by: the daemon leaves whatever runs as it is";
	else if (sb->path && sb->spec_from_state_dir && sb->generation < sb->observed.generation)
		note = "the last valid spec kept is older than what its VM runs: the daemon leaves it as it runs";
	else {
		const char *ready[SPEC_AFTER_MAX + 1];
		PlanInput in = {
			.desired = sb->path ? sb->desired : NULL,
			.generation = sb->generation,
			.observed = &sb->observed,
			.caps = b->ops->caps,
			.host = manager_admission(m, b),
			.ready = ready,
			.snapshot = sb->snapshot,
		};
		/* spec.after: Ready as the daemon's status of each says it (ordering.c). */
		ordering_ready(m, sb, ready);
		/* A rollback in force: the spec the daemon goes by is the one rolled back to. */
		rollout_plan_input(m, sb, &in);
		/* The daemon's grace window (and a disruption slot) is a matter of seconds: show what follows it. */
		in.no_disruption_slot = false;
		plan_sandbox(&in, 1, 0, &plan);
		ordering_update_waiting(m, sb, plan.waits_for_after);
		if (plan.insufficient && in.desired)
			refused = sandbox_refusal_message(in.desired, in.host);
	}
	for (size_t i = 0; i < plan.n_actions; i++)
		json_array_append_new(actions,
				      json_pack("{s:s, s:s?, s:s, s:b}", "action",
						action_type_to_string(plan.actions[i].type),
						"device", plan.actions[i].device, "reason",
						plan.actions[i].reason, "destructive",
						action_is_destructive(plan.actions[i].type)));
	j = json_pack("{s:s, s:s, s:s, s:o, s:b, s:b, s:s?, s:s?, s:s?, s:s?}", "name", sb->name,
		      "backend", backend_kind_to_string(manager_backend_kind(m, sb)), "vmState",
		      sb->observe_failed ? "unknown" : vm_state_to_string(sb->observed.state),
		      "actions", actions, "restartRequired", plan.restart_required, "stopHeld",
		      deletions_file_names(held, sb->name), "configError", sb->config_error, "note",
		      note, "insufficientResources", refused, "waiting", sb->waiting);
	return j;
}

/* The stop planned in p, or NULL; one the mass deletion guard holds waits for nothing. */
static json_t *stop_of(json_t *p)
{
	json_t *a;
	size_t i;

	if (json_is_true(json_object_get(p, "stopHeld")))
		return NULL;
	json_array_foreach(json_object_get(p, "actions"), i, a)
	{
		if (streq_ptr(json_string_value(json_object_get(a, "action")), "stop"))
			return a;
	}
	return NULL;
}

/* Whether the stop of list[a] waits for that of list[b]: b names a in its spec.after. */
static bool stop_waits_for(Sandbox **list, size_t a, size_t b)
{
	return a != b && spec_after_has(list[b]->desired, list[a]->name);
}

/*
 * The order of the stops planned (plans[i] is list[i]'s): each that waits for others gets
 * "stopAfter" (their names) and "stopStep", 1 + the highest step of those; each that only
 * others wait for, step 1. No cycle (refused at load): the steps settle within ns rounds.
 */
static void order_stops(Sandbox **list, json_t *plans, size_t n)
{
	_cleanup_free_ size_t *s = calloc(n, sizeof(size_t));
	_cleanup_free_ unsigned *step = calloc(n, sizeof(unsigned));
	bool changed = true;
	size_t ns = 0;

	if (!s || !step)
		return;
	/* Those going down for good, as ordering.c going_down() has them: not a wake again. */
	for (size_t i = 0; i < n; i++)
		if (stop_of(json_array_get(plans, i)) &&
		    (!list[i]->path ||
		     (list[i]->desired && list[i]->desired->state == SANDBOX_STOPPED)))
			s[ns++] = i;
	for (size_t a = 0; a < ns; a++)
		for (size_t b = 0; b < ns; b++) {
			json_t *stop = stop_of(json_array_get(plans, s[a])), *after;

			if (!stop_waits_for(list, s[a], s[b]))
				continue;
			after = json_object_get(stop, "stopAfter");
			if (!after && json_object_set_new(stop, "stopAfter", after = json_array()) < 0)
				return;
			json_array_append_new(after, json_string(list[s[b]]->name));
			step[s[a]] = step[s[b]] = 1;
		}
	for (size_t round = 0; round < ns && changed; round++) {
		changed = false;
		for (size_t a = 0; a < ns; a++)
			for (size_t b = 0; b < ns; b++)
				if (stop_waits_for(list, s[a], s[b]) && step[s[b]] + 1 > step[s[a]]) {
					step[s[a]] = step[s[b]] + 1;
					changed = true;
				}
	}
	for (size_t a = 0; a < ns; a++)
		if (step[s[a]])
			json_object_set_new(stop_of(json_array_get(plans, s[a])), "stopStep",
					    json_integer(step[s[a]]));
}

/* " [stop 2: after a, b]", " [stop 1]", or "" for a stop in no order. */
static void print_stop_order(json_t *a)
{
	json_t *after = json_object_get(a, "stopAfter"), *e;
	size_t i;

	if (!json_is_integer(json_object_get(a, "stopStep")))
		return;
	printf(" [stop %lld", (long long)json_integer_value(json_object_get(a, "stopStep")));
	json_array_foreach(after, i, e)
	{
		printf("%s%s", i ? ", " : ": after ", json_string_value(e));
	}
	printf("%s]", json_array_size(after) ? " (spec.after)" : "");
}

static void print_plan(json_t *p)
{
	const char *name = json_string_value(json_object_get(p, "name"));
	json_t *actions = json_object_get(p, "actions"), *a;
	size_t i;

	if (json_string_value(json_object_get(p, "configError")))
		printf("%s: file refused, keeping the last valid spec: %s\n", name,
		       json_string_value(json_object_get(p, "configError")));
	if (json_string_value(json_object_get(p, "note")))
		printf("%s: nothing: %s\n", name, json_string_value(json_object_get(p, "note")));
	else if (json_string_value(json_object_get(p, "insufficientResources")))
		printf("%s: refused (InsufficientResources): %s; --allow-overcommit allows it\n",
		       name, json_string_value(json_object_get(p, "insufficientResources")));
	else if (json_string_value(json_object_get(p, "waiting")))
		printf("%s: nothing yet: %s\n", name,
		       json_string_value(json_object_get(p, "waiting")));
	else if (json_array_size(actions) == 0 && json_is_true(json_object_get(p, "restartRequired")))
		printf("%s: nothing now; a change waits for the next boot (updatePolicy on-next-boot)\n",
		       name);
	else if (json_array_size(actions) == 0)
		printf("%s: up to date (%s)\n", name,
		       json_string_value(json_object_get(p, "vmState")));
	json_array_foreach(actions, i, a)
	{
		const char *dev = json_string_value(json_object_get(a, "device"));
		const char *what = json_string_value(json_object_get(a, "action"));
		const char *when = "";

		if (json_is_true(json_object_get(p, "stopHeld")) && streq_ptr(what, "stop"))
			when = " [held: too many files went at once; vmd approve-deletions]";
		else if (json_is_true(json_object_get(a, "destructive")))
			when = " [after the grace period]";
		printf("%s: %s%s%s (%s)%s", name, what, dev ? " " : "", dev ?: "",
		       json_string_value(json_object_get(a, "reason")), when);
		print_stop_order(a);
		printf("\n");
	}
}

int verb_plan(int argc, char **argv)
{
	static const struct option options[] = {
		CLI_MANAGER_OPTIONS,
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	ManagerConfig config;
	_cleanup_(manager_freep) Manager *m = NULL;
	_cleanup_free_ Sandbox **list = NULL;
	_cleanup_free_ char *held_path = NULL;
	json_auto_t *held = NULL;
	json_t *all;
	bool json = false;
	size_t n = 0;
	void *v;
	int c;

	manager_config_defaults(&config);
	optind = 0;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		int r = cli_manager_option("plan", c, optarg, &config);

		if (r < 0)
			return EXIT_USAGE;
		if (r > 0)
			continue;
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			printf("Usage: vmd plan [--sandboxes DIR] [--run-dir DIR] [--state-dir DIR]\n"
			       "                [--default-backend NAME] [--backend-override NAME]\n"
			       "                [--qemu-binary PATH] [--qemu-accel ACCEL]\n"
			       "                [--cloud-hypervisor-binary PATH] [--firecracker-binary PATH]\n"
			       "                [--jailer PATH --jailer-uid UID --jailer-gid GID]\n"
			       "                [--jailer-chroot-base DIR] [--allow-overcommit]\n"
			       "                [--trusted-uid UID]... [--trusted-gid GID]...\n"
			       "                [--json]\n"
			       "\nShow what the daemon would do now, changing nothing. Use the daemon's options.\n");
			return EXIT_OK;
		default:
			return EXIT_USAGE;
		}
	}
	if (cli_manager_options_check("plan", &config) < 0)
		return EXIT_USAGE;
	log_setup(LOG_TARGET_CONSOLE);
	if (manager_new_read_only(&config, &m) < 0) {
		fprintf(stderr, "vmd plan: cannot set up\n");
		return EXIT_INVALID;
	}
	manager_find_vms(m);
	manager_load_persisted(m);
	manager_load_snapshots(m);
	manager_load_templates(m);
	(void)manager_scan(m);
	if (m->degraded)
		fprintf(stderr, "vmd plan: %s; the daemon stops nothing while it cannot read it\n",
			m->degraded);

	/* What the daemon's mass deletion guard holds, if it runs and holds anything. */
	if (asprintf(&held_path, "%s/%s", config.run_dir, DELETIONS_HELD_FILE) >= 0)
		held = json_load_file(held_path, 0, NULL);

	list = calloc(hashmap_size(m->sandboxes) + 1, sizeof(Sandbox *));
	if (!list)
		return EXIT_INVALID;
	for (size_t i = 0; hashmap_next(m->sandboxes, &i, &v);)
		list[n++] = v;
	qsort(list, n, sizeof(Sandbox *), name_compare);

	all = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(all, plan_one(m, list[i], held));
	order_stops(list, all, n);
	for (size_t i = 0; i < n && !json; i++)
		print_plan(json_array_get(all, i));
	if (json) {
		json_dumpf(all, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	} else if (n == 0)
		printf("no sandboxes\n");
	json_decref(all);
	return EXIT_OK;
}
