/* SPDX-License-Identifier: MIT */
/*
 * Safe rollouts: the disruption budget and rollbacks (rollout.h says what they are).
 *
 * What is kept, in <state-dir>/rollout/:
 *   NAME.ready.json  the state dir's copy of its spec (desired.c's sandboxes/NAME.json, the
 *                    same format) as it was when that generation was Ready
 *   NAME.json        {"disrupting": bool, "rolledBack": {from, to, reason, message}} while
 *                    either is so; removed when neither is
 * Both are written whole, tmp + rename, when they change: at a Ready of a new generation,
 * at the start and end of a restart or a rollback. Those are rare, and small.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <syslog.h>

#include "host-ports.h"
#include "log.h"
#include "manager.h"
#include "probe-spec.h"
#include "probe.h"
#include "rollout.h"
#include "spec-json.h"
#include "spec-yaml.h"

typedef struct Rollout {
	Sandbox *sb;
	ListNode slot_node; /* Manager.disruptions: it holds a disruption slot */
	ListNode wait_node; /* Manager.disruption_waiters: a restart of it waits for one */
	bool failed;	    /* holds a slot and is not Ready after its restart: others wait */
	uint64_t ready_generation;    /* the last generation that was Ready; 0: none known */
	uint64_t previous_generation; /* the one Ready before it; 0: none known */
	uint64_t stable_generation;   /* Ready past CRASH_LOOP_USEC of its start (not kept) */
	uint64_t ready_failed;	      /* a generation whose spec could not be kept as Ready */
	uint64_t refused_generation;  /* could not be rolled back (no Ready spec): said once */
	/* A rollback in force: from the file's generation to the last Ready one's spec. */
	bool rolled_back;
	uint64_t from, to;
	const char *reason; /* static: ReadinessTimeout, CrashLoop */
	char *message;
	SandboxSpec *spec; /* generation to's */
	/* Without a readiness probe: not Ready by deadline (CLOCK_MONOTONIC), it is rolled back. */
	uint64_t watch_generation, deadline;
	sd_event_source *timer;
} Rollout;

static char *rollout_path(Manager *m, const char *name, const char *suffix)
{
	char *p = NULL;

	return asprintf(&p, "%s/rollout/%s%s.json", m->config.state_dir, name, suffix) < 0 ? NULL : p;
}

static const char *const reasons[] = { "ReadinessTimeout", "CrashLoop" };

static const char *reason_from_string(const char *s)
{
	for (size_t i = 0; i < ELEMENTSOF(reasons); i++)
		if (streq_ptr(s, reasons[i]))
			return reasons[i];
	return reasons[0];
}

static int write_json(Manager *m, const char *path, json_t *j)
{
	_cleanup_free_ char *text = j ? json_dumps(j, JSON_SORT_KEYS) : NULL, *dir = NULL;
	int r;

	if (!text || asprintf(&dir, "%s/rollout", m->config.state_dir) < 0)
		return -ENOMEM;
	r = mkdir_p(dir, 0700);
	return r < 0 ? r : write_file_atomic(path, text, strlen(text), 0600, false);
}

/* NAME.json: what a restarted vmd must go on with. */
static void save_state(Manager *m, Rollout *ro)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_(json_decrefp) json_t *j = NULL;
	bool disrupting = list_contains(&m->disruptions, &ro->slot_node);
	int r = -ENOMEM;

	if (m->read_only || !(path = rollout_path(m, ro->sb->name, "")))
		return;
	if (!disrupting && !ro->rolled_back) {
		(void)unlink(path);
		return;
	}
	j = json_pack("{s:b}", "disrupting", disrupting);
	if (j && ro->rolled_back)
		json_object_set_new(j, "rolledBack",
				    json_pack("{s:I, s:I, s:s, s:s}", "from", (json_int_t)ro->from,
					      "to", (json_int_t)ro->to, "reason", ro->reason,
					      "message", ro->message ?: ""));
	r = write_json(m, path, j);
	if (r < 0)
		log_fields(LOG_ERR,
			   &(LogFields){ .sandbox = ro->sb->name,
					 .error = -r,
					 .message_id = LOG_MESSAGE_DAEMON },
			   "cannot write %s; a restarted vmd would not know of its rollout", path);
}

/* The spec of the last Ready generation, from NAME.ready.json; -errno if there is none. */
static int load_ready_spec(Manager *m, const char *name, uint64_t generation, SandboxSpec **ret)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	_cleanup_free_ char *path = rollout_path(m, name, ".ready"), *yaml_path = NULL;
	_cleanup_(json_decrefp) json_t *j = NULL;
	const SpecLoadOptions opts = backend_spec_load_options(m->config.default_backend);
	SandboxSpec *spec = NULL;
	json_t *rec, *yaml;
	int r;

	if (!path || asprintf(&yaml_path, "%s.yaml", name) < 0)
		return -ENOMEM;
	j = json_load_file(path, 0, NULL);
	rec = json_object_get(j, "previous");
	if ((uint64_t)json_integer_value(json_object_get(j, "generation")) == generation)
		rec = j;
	yaml = json_object_get(rec, "yaml");
	if (!json_is_string(yaml) ||
	    (uint64_t)json_integer_value(json_object_get(rec, "generation")) != generation)
		return -ENOENT;
	r = spec_load_buffer(yaml_path, json_string_value(yaml), json_string_length(yaml), &opts,
			     &spec, &diags);
	if (r < 0)
		return r;
	spec_provision_hash_files(spec);
	*ret = spec;
	return 0;
}

static void end_rollback(Rollout *ro)
{
	ro->rolled_back = false;
	ro->from = ro->to = 0;
	ro->reason = NULL;
	ro->message = mfree(ro->message);
	ro->spec = sandbox_spec_free(ro->spec);
}

void rollout_load(Manager *m, Sandbox *sb)
{
	_cleanup_free_ char *path = rollout_path(m, sb->name, ""),
			    *ready = rollout_path(m, sb->name, ".ready");
	_cleanup_(json_decrefp) json_t *j = NULL, *r = NULL;
	Rollout *ro = calloc(1, sizeof(Rollout));
	json_t *rb;

	if (!ro)
		return;
	ro->sb = sb;
	sb->rollout = ro;
	r = ready ? json_load_file(ready, 0, NULL) : NULL;
	ro->ready_generation = (uint64_t)json_integer_value(json_object_get(r, "generation"));
	ro->previous_generation = (uint64_t)json_integer_value(
		json_object_get(json_object_get(r, "previous"), "generation"));
	j = path ? json_load_file(path, 0, NULL) : NULL;
	if (json_is_true(json_object_get(j, "disrupting")))
		list_append(&m->disruptions, &ro->slot_node);
	rb = json_object_get(j, "rolledBack");
	if (!json_is_object(rb))
		return;
	ro->to = (uint64_t)json_integer_value(json_object_get(rb, "to"));
	if (load_ready_spec(m, sb->name, ro->to, &ro->spec) < 0)
		return; /* the spec it went back to is lost: the file's is tried */
	ro->rolled_back = true;
	ro->from = (uint64_t)json_integer_value(json_object_get(rb, "from"));
	ro->reason = reason_from_string(json_string_value(json_object_get(rb, "reason")));
	ro->message = strdup(json_string_value(json_object_get(rb, "message")) ?: "");
}

/* The restarts that wait for a slot are planned again, in the order they came to wait. */
static void wake_waiters(Manager *m)
{
	if (m->stopping || m->read_only)
		return;
	for (ListNode *n = m->disruption_waiters.first; n; n = n->next)
		manager_mark_dirty(m, list_entry(n, Rollout, wait_node)->sb);
}

static void release(Manager *m, Rollout *ro)
{
	if (!list_contains(&m->disruptions, &ro->slot_node))
		return;
	list_remove(&m->disruptions, &ro->slot_node);
	ro->failed = false;
	save_state(m, ro);
	wake_waiters(m);
}

void rollout_free(Manager *m, Sandbox *sb)
{
	Rollout *ro = sb->rollout;

	if (!ro)
		return;
	list_remove(&m->disruption_waiters, &ro->wait_node);
	if (list_contains(&m->disruptions, &ro->slot_node)) {
		list_remove(&m->disruptions, &ro->slot_node);
		wake_waiters(m);
	}
	sd_event_source_disable_unref(ro->timer);
	end_rollback(ro);
	sb->rollout = mfree(ro);
}

void rollout_forget(Manager *m, Sandbox *sb)
{
	_cleanup_free_ char *path = NULL, *ready = NULL;

	if (m->read_only)
		return;
	path = rollout_path(m, sb->name, "");
	ready = rollout_path(m, sb->name, ".ready");
	if (path)
		(void)unlink(path);
	if (ready)
		(void)unlink(ready);
}

const SandboxSpec *rollout_spec(const Sandbox *sb)
{
	return sb->rollout && sb->rollout->rolled_back ? sb->rollout->spec : sb->desired;
}

uint64_t rollout_generation(const Sandbox *sb)
{
	return sb->rollout && sb->rollout->rolled_back ? sb->rollout->to : sb->generation;
}

void rollout_plan_input(Manager *m, Sandbox *sb, PlanInput *in)
{
	Rollout *ro = sb->rollout;

	if (!ro)
		return;
	if (ro->rolled_back && ro->from != sb->generation) {
		/* A newer edit of the file: it is tried, as any new generation. */
		log_fields(LOG_INFO,
			   &(LogFields){ .sandbox = sb->name,
					 .action = "rollback",
					 .result = "ended",
					 .message_id = LOG_MESSAGE_ACTION_DONE },
			   "generation %" PRIu64
			   " of its file ends the rollback from generation %" PRIu64 " to %" PRIu64,
			   sb->generation, ro->from, ro->to);
		end_rollback(ro);
		save_state(m, ro);
		host_ports_claim(m, sb); /* the ports of the spec rolled back to go */
	}
	if (ro->rolled_back && in->desired) {
		in->desired = ro->spec;
		in->generation = ro->to;
		in->rollback = true;
	}
	in->no_disruption_slot = m->config.max_disruptions > 0 &&
				 !list_contains(&m->disruptions, &ro->slot_node) &&
				 m->disruptions.size >= m->config.max_disruptions;
}

void rollout_restart_begun(Manager *m, Sandbox *sb)
{
	Rollout *ro = sb->rollout;

	if (!ro || list_contains(&m->disruptions, &ro->slot_node))
		return;
	list_append(&m->disruptions, &ro->slot_node);
	save_state(m, ro);
}

const char *rollout_wait_why(Manager *m, char *buf, size_t size)
{
	Rollout *first = NULL;

	for (ListNode *n = m->disruptions.first; n; n = n->next) {
		Rollout *ro = list_entry(n, Rollout, slot_node);

		if (ro->failed) {
			snprintf(buf, size, "blocked by %s: not Ready after restart (%s: %s)",
				 ro->sb->name,
				 ro->sb->status.conditions[CONDITION_READY].reason ?: "",
				 ro->sb->status.conditions[CONDITION_READY].message ?: "");
			return "RolloutBlocked";
		}
		first = first ?: ro;
	}
	if (!first)
		snprintf(buf, size, "waiting for a disruption slot");
	else if (m->disruptions.size == 1)
		snprintf(buf, size, "waiting for a disruption slot: %s is restarting",
			 first->sb->name);
	else
		snprintf(buf, size, "waiting for a disruption slot: %s and %zu more are restarting",
			 first->sb->name, m->disruptions.size - 1);
	return "WaitingForDisruptionSlot";
}

/* Holds a slot and did not come back Ready: the rollouts of the others stop for it. */
static bool is_failing(const Sandbox *sb)
{
	const Condition *r = &sb->status.conditions[CONDITION_READY];

	return sb->failures > 0 || sb->quick_exits > 1 || sb->status.phase == PHASE_FAILED ||
	       streq_ptr(r->reason, "ProbeTimeout") || streq_ptr(r->reason, "BackingOff");
}

static int deadline_fired(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	Rollout *ro = userdata;

	ro->timer = sd_event_source_disable_unref(ro->timer);
	manager_mark_dirty(ro->sb->manager, ro->sb);
	return 0;
}

/*
 * Its generation has been Ready for longer than an exit counts as a crash after a start:
 * a crash loop of it later is no failed rollout of it (not rolled back).
 */
static void note_stable(Manager *m, Sandbox *sb, Rollout *ro)
{
	uint64_t due = sb->observed.started_at_usec + CRASH_LOOP_USEC;

	if (ro->stable_generation == sb->generation)
		return;
	if (sb->observed.state != VM_RUNNING || !sb->observed.started_at_usec ||
	    now_usec(CLOCK_REALTIME) >= due) {
		ro->stable_generation = sb->generation;
		return;
	}
	if (m->event && !ro->timer)
		(void)sd_event_add_time(m->event, &ro->timer, CLOCK_REALTIME, due, 100 * 1000,
					deadline_fired, ro);
}

/* The state dir's copy of sb's spec (desired.c's persist()), if it is of its generation. */
static json_t *spec_record(Manager *m, const Sandbox *sb)
{
	_cleanup_free_ char *copy = NULL, *p = NULL;
	const char *text = sb->persist_text; /* waiting to be written, if it is not yet */
	json_t *j;

	if (!text) {
		if (asprintf(&p, "%s/sandboxes/%s.json", m->config.state_dir, sb->name) < 0)
			return NULL;
		(void)read_file(p, 16u << 20, &copy, NULL);
		text = copy;
	}
	j = text ? json_loads(text, 0, NULL) : NULL;
	if (j && (uint64_t)json_integer_value(json_object_get(j, "generation")) != sb->generation) {
		json_decref(j);
		return NULL;
	}
	return j;
}

/*
 * Its generation Ready: the state dir's copy of its spec is kept as the last Ready one,
 * with the one before as "previous" (a generation Ready a moment before its crash loop
 * goes back to that one).
 */
static void keep_ready(Manager *m, Sandbox *sb, Rollout *ro)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_(json_decrefp) json_t *j = NULL, *old = NULL;
	int r = -ENOENT;

	if (m->read_only || !sb->path || !sb->desired || sb->spec_stale ||
	    sb->settled_generation != sb->generation || ro->ready_generation == sb->generation ||
	    ro->ready_failed == sb->generation)
		return;
	path = rollout_path(m, sb->name, ".ready");
	j = spec_record(m, sb);
	if (j && path) {
		old = ro->ready_generation ? json_load_file(path, 0, NULL) : NULL;
		if (json_is_object(old)) {
			json_object_del(old, "previous");
			json_object_set(j, "previous", old);
		}
		r = write_json(m, path, j);
	}
	if (r < 0) {
		ro->ready_failed = sb->generation;
		log_fields(LOG_WARNING,
			   &(LogFields){ .sandbox = sb->name,
					 .error = -r,
					 .message_id = LOG_MESSAGE_DAEMON },
			   "cannot keep generation %" PRIu64
			   " as the last Ready one; a rollback goes back to generation %" PRIu64,
			   sb->generation, ro->ready_generation);
		return;
	}
	ro->previous_generation = json_is_object(old) ? ro->ready_generation : 0;
	ro->ready_generation = sb->generation;
}

static bool rollback_is_on(const Manager *m, const SandboxSpec *s)
{
	return s->rollback == SPEC_ROLLBACK_ON ||
	       (s->rollback == SPEC_ROLLBACK_DEFAULT && m->config.rollback);
}

/*
 * Without a readiness probe: not Ready within the probe's default timeout of its VM
 * running it (or trying to) is a readiness timeout too.
 */
static bool deadline_passed(Manager *m, Sandbox *sb, Rollout *ro)
{
	uint64_t now = now_usec(CLOCK_MONOTONIC);

	if (ro->watch_generation != sb->generation) {
		ro->watch_generation = sb->generation;
		ro->deadline = now + PROBE_TIMEOUT_DEFAULT_MS * 1000;
		ro->timer = sd_event_source_disable_unref(ro->timer);
		if (m->event)
			(void)sd_event_add_time(m->event, &ro->timer, CLOCK_MONOTONIC, ro->deadline,
						1000 * 1000, deadline_fired, ro);
	}
	return now >= ro->deadline;
}

/* Why generation of sb is to be rolled back now (its reason, and *why), or NULL. */
static const char *rollback_cause(Manager *m, Sandbox *sb, Rollout *ro, char **why)
{
	const SandboxSpec *want = sb->desired;
	const Condition *r = &sb->status.conditions[CONDITION_READY];

	if (sb->quick_exits > 1 && ro->stable_generation != sb->generation) {
		set_format(why, "crashed %u times in a row soon after starting (%s)",
			   sb->quick_exits, sb->exit_reason ?: "no reason known");
		return "CrashLoop";
	}
	if (want->readiness.kind != PROBE_NONE && streq_ptr(r->reason, "ProbeTimeout")) {
		set_format(why, "did not pass its readiness probe within its timeout (%s)",
			   r->message ?: "");
		return "ReadinessTimeout";
	}
	if (want->readiness.kind == PROBE_NONE && deadline_passed(m, sb, ro)) {
		set_format(why, "was not Ready within %llu s of its VM starting",
			   (unsigned long long)(PROBE_TIMEOUT_DEFAULT_MS / 1000));
		return "ReadinessTimeout";
	}
	return NULL;
}

static void maybe_roll_back(Manager *m, Sandbox *sb, Rollout *ro)
{
	_cleanup_free_ char *why = NULL;
	SandboxSpec *spec = NULL;
	const char *reason;
	int r;

	/* A newer generation than the last Ready one, that its VM runs (or ran) already. */
	uint64_t to = ro->ready_generation < sb->generation ? ro->ready_generation
							    : ro->previous_generation;

	if (m->read_only || ro->rolled_back || !sb->path || !sb->desired || sb->spec_stale ||
	    !rollback_is_on(m, sb->desired) || to == 0 || to >= sb->generation ||
	    ro->refused_generation == sb->generation || sb->observed.generation != sb->generation ||
	    !IN_SET(sb->observed.state, VM_RUNNING, VM_EXITED))
		return;
	reason = rollback_cause(m, sb, ro, &why);
	if (!reason)
		return;
	r = load_ready_spec(m, sb->name, to, &spec);
	if (r < 0) {
		ro->refused_generation = sb->generation;
		log_fields(LOG_ERR,
			   &(LogFields){ .sandbox = sb->name,
					 .action = "rollback",
					 .result = "failed",
					 .error = -r,
					 .message_id = LOG_MESSAGE_ACTION_FAILED },
			   "generation %" PRIu64 " %s, but the spec of generation %" PRIu64
			   ", the last Ready one, cannot be read back: no rollback",
			   sb->generation, why ?: "failed", to);
		return;
	}
	{
		/* Its ports given up by the new generation, and taken since by another. */
		_cleanup_free_ char *taken = host_ports_conflict(m, sb, spec, "its last Ready spec");

		if (taken) {
			ro->refused_generation = sb->generation;
			log_fields(LOG_ERR,
				   &(LogFields){ .sandbox = sb->name,
						 .action = "rollback",
						 .result = "failed",
						 .message_id = LOG_MESSAGE_ACTION_FAILED },
				   "generation %" PRIu64 " %s, but generation %" PRIu64
				   " cannot run again: %s; no rollback",
				   sb->generation, why ?: "failed", to, taken);
			sandbox_spec_free(spec);
			return;
		}
	}
	ro->rolled_back = true;
	ro->from = sb->generation;
	ro->to = to;
	ro->reason = reason;
	ro->spec = spec;
	host_ports_claim(m, sb);
	set_format(&ro->message,
		   "generation %" PRIu64 " %s; rolled back to generation %" PRIu64
		   ", the last that was Ready. The file is left as it is: a newer edit of it is tried",
		   ro->from, why ?: "", ro->to);
	log_fields(LOG_WARNING,
		   &(LogFields){ .sandbox = sb->name,
				 .action = "rollback",
				 .result = "rolled-back",
				 .message_id = LOG_MESSAGE_ACTION_DONE },
		   "rolling back: %s", ro->message ?: reason);
	save_state(m, ro);
	/* The generation rolled back to gets a new try at once, and is probed afresh. */
	sb->failures = 0;
	sb->quick_exits = 0;
	sb->retry_at = 0;
	sb->last_error = mfree(sb->last_error);
	probe_free(sb);
	ro->timer = sd_event_source_disable_unref(ro->timer);
	manager_mark_dirty(m, sb);
}

void rollout_status_updated(Manager *m, Sandbox *sb, const Plan *plan, uint64_t now)
{
	Rollout *ro = sb->rollout;
	bool ready;

	if (!ro)
		return;
	if (plan->disruption_waits && !list_contains(&m->disruption_waiters, &ro->wait_node))
		list_append(&m->disruption_waiters, &ro->wait_node);
	else if (!plan->disruption_waits)
		list_remove(&m->disruption_waiters, &ro->wait_node);

	ready = sb->status.conditions[CONDITION_READY].status == CONDITION_TRUE;
	if (ready) {
		ro->timer = sd_event_source_disable_unref(ro->timer);
		ro->watch_generation = 0;
		release(m, ro);
		if (!ro->rolled_back) {
			keep_ready(m, sb, ro);
			note_stable(m, sb, ro);
		}
	} else {
		if (list_contains(&m->disruptions, &ro->slot_node) && is_failing(sb) != ro->failed) {
			ro->failed = !ro->failed;
			wake_waiters(m); /* what they wait for changed: their status says it */
		}
		maybe_roll_back(m, sb, ro);
	}

	if (ro->rolled_back)
		condition_set(&sb->status, CONDITION_ROLLED_BACK, CONDITION_TRUE, ro->reason,
			      ro->message, now);
	else
		condition_set(&sb->status, CONDITION_ROLLED_BACK, CONDITION_FALSE, "NoRollback", "",
			      now);
}
