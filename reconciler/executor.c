/* SPDX-License-Identifier: MIT */
/*
 * Carrying out plans: observe a sandbox, plan, run the actions through its backend's ops
 * table, and back off after a failure (1 s, doubling, at most 5 min; a new spec starts
 * afresh). Synchronous backends converge in one pass; for the others the next event
 * (an exit, a timer) brings the sandbox back here.
 */
#include <inttypes.h>
#include <stdio.h>
#include <syslog.h>

#include "log.h"
#include "manager.h"

#define BACKOFF_FIRST_USEC (1000u * 1000u)
#define BACKOFF_MAX_USEC (300ull * 1000u * 1000u)
#define CRASH_LOOP_USEC (10ull * 1000u * 1000u) /* an exit sooner than this after a start */
#define PASSES_MAX 4

void sandbox_observe(Manager *m, Sandbox *sb)
{
	Backend *b = manager_backend_of(m, sb);
	int r;

	vm_observed_done(&sb->observed);
	sb->observe_failed = false;
	if (!b)
		return;
	r = b->ops->observe(b, sb->name, &sb->observed);
	if (r < 0) {
		if (!sb->observe_failed)
			log_fields(LOG_ERR,
				   &(LogFields){ .sandbox = sb->name,
						 .backend = b->ops->name,
						 .error = -r },
				   "cannot tell what runs");
		vm_observed_done(&sb->observed);
		sb->observe_failed = true;
	}
}

static int stop_timer_fired(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata);

/* Force the stop if the VM is still up after its stopTimeout. */
static void arm_stop_timer(Manager *m, Sandbox *sb, uint64_t timeout_ms)
{
	sb->stop_timer = sd_event_source_disable_unref(sb->stop_timer);
	if (m->event)
		(void)sd_event_add_time_relative(m->event, &sb->stop_timer, CLOCK_MONOTONIC,
						 timeout_ms * 1000, 1000, stop_timer_fired, sb);
}

/* A VM adopted in the middle of a stop: its stopTimeout runs again from now. */
void sandbox_adopted(Manager *m, Sandbox *sb)
{
	const SandboxSpec *s = sb->desired ?: sb->observed.config;

	if (sb->observed.state == VM_STOPPING)
		arm_stop_timer(m, sb, s ? s->stop_timeout_ms : 30000);
}

static int execute(Manager *m, Sandbox *sb, Backend *b, const Action *a)
{
	const BackendOps *ops = b->ops;
	const SandboxSpec *want = sb->desired;
	const SandboxSpec *have = sb->observed.config;
	uint64_t timeout_ms = (want ?: have) ? (want ?: have)->stop_timeout_ms : 30000;
	const void *dev;

	switch (a->type) {
	case ACTION_START:
		if (!ops->start)
			return -EOPNOTSUPP;
		if (sb->observed.state == VM_EXITED && sb->observed.generation == sb->generation)
			sb->restarts++;
		return ops->start(b, want, sb->generation);
	case ACTION_STOP:
	case ACTION_RESTART:
		if (!ops->stop)
			return -EOPNOTSUPP;
		arm_stop_timer(m, sb, timeout_ms);
		return ops->stop(b, sb->name, timeout_ms, false);
	case ACTION_PAUSE:
		return ops->pause ? ops->pause(b, sb->name) : -EOPNOTSUPP;
	case ACTION_RESUME:
		return ops->resume ? ops->resume(b, sb->name) : -EOPNOTSUPP;
	case ACTION_DISK_ADD:
		dev = spec_find_disk(want, a->device);
		return ops->disk_add && dev ? ops->disk_add(b, sb->name, dev, sb->generation)
					    : -EOPNOTSUPP;
	case ACTION_DISK_REMOVE:
		return ops->disk_remove ? ops->disk_remove(b, sb->name, a->device, sb->generation)
					: -EOPNOTSUPP;
	case ACTION_NET_ADD:
		dev = spec_find_net(want, a->device);
		return ops->net_add && dev ? ops->net_add(b, sb->name, dev, sb->generation)
					   : -EOPNOTSUPP;
	case ACTION_NET_REMOVE:
		return ops->net_remove ? ops->net_remove(b, sb->name, a->device, sb->generation)
				       : -EOPNOTSUPP;
	case ACTION_RESIZE:
		return ops->resize
			       ? ops->resize(b, sb->name, want->vcpus, want->memory, sb->generation)
			       : -EOPNOTSUPP;
	case ACTION_CLEANUP:
		return ops->cleanup ? ops->cleanup(b, sb->name) : 0;
	default:
		return -EINVAL;
	}
}

/* 1 s after the first of n failures in a row, doubling, at most 5 min. */
static uint64_t backoff_usec(unsigned n)
{
	uint64_t delay = BACKOFF_FIRST_USEC;

	for (unsigned i = 1; i < n && delay < BACKOFF_MAX_USEC; i++)
		delay *= 2;
	return delay > BACKOFF_MAX_USEC ? BACKOFF_MAX_USEC : delay;
}

void sandbox_vm_exited(Manager *m _unused_, Sandbox *sb, int status, const char *reason)
{
	uint64_t started = sb->observed.started_at_usec, now = now_usec(CLOCK_REALTIME);
	uint64_t delay;

	if (started == 0 || now - started >= CRASH_LOOP_USEC) {
		sb->quick_exits = 0; /* it ran for a while: restart at once */
		return;
	}
	/* The first quick exit restarts at once; after more, the restarts back off. */
	if (++sb->quick_exits < 2)
		return;
	delay = backoff_usec(sb->quick_exits - 1);
	sb->retry_at = now_usec(CLOCK_MONOTONIC) + delay;
	free(sb->last_error);
	sb->last_error = NULL;
	(void)asprintf(&sb->last_error,
		       "%s%sexited with status %d within %llu s of starting, %u times in a row; "
		       "restarting in %llu s",
		       reason ?: "", reason ? "; " : "", status, CRASH_LOOP_USEC / 1000000,
		       sb->quick_exits, (unsigned long long)(delay / 1000000));
}

static void action_failed(Manager *m, Sandbox *sb, Backend *b, const Action *a, int r)
{
	_cleanup_free_ char *why = backend_take_error(b);
	uint64_t delay = backoff_usec(sb->failures + 1);
	char *err = NULL;

	sb->failures++;
	sb->retry_at = now_usec(CLOCK_MONOTONIC) + delay;
	(void)asprintf(&err, "%s%s%s failed: %s", action_type_to_string(a->type),
		       a->device ? " " : "", a->device ?: "", why ?: strerror(-r));

	/* Transitions are logged, not every retry: the first failure, or a different one. */
	if (sb->failures == 1 || !streq_ptr(err, sb->last_error))
		log_fields(LOG_ERR,
			   &(LogFields){ .sandbox = sb->name,
					 .backend = b->ops->name,
					 .action = action_type_to_string(a->type),
					 .result = "failed",
					 .error = -r,
					 .message_id = LOG_MESSAGE_ACTION_FAILED },
			   "%s; retrying in %" PRIu64 " s", err ?: "failed", delay / 1000000);
	free(sb->last_error);
	sb->last_error = err;
	(void)m;
}

static void action_done(Sandbox *sb, Backend *b, const Action *a)
{
	log_fields(LOG_INFO,
		   &(LogFields){ .sandbox = sb->name,
				 .backend = b->ops->name,
				 .action = action_type_to_string(a->type),
				 .result = "done",
				 .message_id = LOG_MESSAGE_ACTION_DONE },
		   "%s%s%s: %s", action_type_to_string(a->type), a->device ? " " : "",
		   a->device ?: "", a->reason);
	if (sb->failures > 0)
		log_fields(LOG_INFO,
			   &(LogFields){ .sandbox = sb->name,
					 .backend = b->ops->name,
					 .result = "recovered" },
			   "recovered after %u failed attempts", sb->failures);
	sb->failures = 0;
	sb->retry_at = 0;
	sb->last_error = mfree(sb->last_error);
}

/* The VMM took the request and completes it later: the VM is busy until it does. */
static void action_started(Sandbox *sb, Backend *b, const Action *a)
{
	log_fields(LOG_INFO,
		   &(LogFields){ .sandbox = sb->name,
				 .backend = b->ops->name,
				 .action = action_type_to_string(a->type),
				 .result = "started",
				 .message_id = LOG_MESSAGE_ACTION_DONE },
		   "%s%s%s: %s; waiting for it to complete", action_type_to_string(a->type),
		   a->device ? " " : "", a->device ?: "", a->reason);
}

static int wake_fired(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	Sandbox *sb = userdata;

	sb->wake = sd_event_source_disable_unref(sb->wake);
	manager_mark_dirty(sb->manager, sb);
	return 0;
}

static int stop_timer_fired(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	Sandbox *sb = userdata;
	Manager *m = sb->manager;
	Backend *b = manager_backend_of(m, sb);

	sb->stop_timer = sd_event_source_disable_unref(sb->stop_timer);
	sandbox_observe(m, sb);
	if (b && b->ops->stop &&
	    IN_SET(sb->observed.state, VM_STARTING, VM_RUNNING, VM_PAUSED, VM_STOPPING)) {
		log_fields(LOG_WARNING,
			   &(LogFields){ .sandbox = sb->name,
					 .backend = b->ops->name,
					 .action = "stop",
					 .result = "forced" },
			   "did not stop within its stopTimeout; forcing it off");
		(void)b->ops->stop(b, sb->name, 0, true);
	}
	manager_mark_dirty(m, sb);
	return 0;
}

void sandbox_reconcile(Manager *m, Sandbox *sb)
{
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	Backend *b = manager_backend_of(m, sb);
	Plan plan = {};

	for (unsigned pass = 0; pass < PASSES_MAX; pass++) {
		PlanInput in;
		size_t k;

		sandbox_observe(m, sb);
		/* Act on nothing vmd cannot see, or cannot prove is its own. */
		if (!b || sb->observe_failed || sb->stranger)
			break;
		/* A file that vanished while the directory cannot be read is not gone. */
		if (!sb->path && m->degraded)
			break;
		/*
		 * A file that is there but was never valid (its last valid spec lost with the
		 * state dir) says nothing vmd can act on: whatever runs is left alone.
		 */
		if (sb->path && !sb->desired)
			break;
		in = (PlanInput){
			.desired = sb->path ? sb->desired : NULL,
			.generation = sb->generation,
			.observed = &sb->observed,
			.caps = b->ops->caps,
			.desired_since = sb->desired_since,
			.retry_at = sb->retry_at,
		};
		plan_sandbox(&in, now, m->config.grace_usec, &plan);
		sb->restart_required = plan.restart_required;
		if (plan.n_actions == 0)
			break;
		for (k = 0; k < plan.n_actions; k++) {
			int r;

			free(backend_take_error(b)); /* only this action's own words */
			r = execute(m, sb, b, &plan.actions[k]);
			if (r < 0) {
				action_failed(m, sb, b, &plan.actions[k], r);
				break;
			}
			if (r > 0) {
				/* The rest waits for it: the backend's vm_changed brings us back. */
				action_started(sb, b, &plan.actions[k]);
				break;
			}
			action_done(sb, b, &plan.actions[k]);
		}
		if (k < plan.n_actions) {
			/* Plan again for the status: it now says when the retry is. */
			sandbox_observe(m, sb);
			in.retry_at = sb->retry_at;
			plan_sandbox(&in, now, m->config.grace_usec, &plan);
			break;
		}
		now = now_usec(CLOCK_MONOTONIC);
	}

	/* Its file is gone and nothing of it is left: forget it. */
	if (!sb->path && !m->degraded && sb->observed.state == VM_ABSENT && !sb->observe_failed) {
		log_fields(LOG_INFO, &(LogFields){ .sandbox = sb->name, .result = "removed" },
			   "removed: its file is gone and its VM is cleaned up");
		sandbox_remove_status(m, sb);
		manager_forget_persisted(m, sb->name);
		manager_drop_sandbox(m, sb);
		return;
	}

	sb->wake = sd_event_source_disable_unref(sb->wake);
	if (plan.wake_at && m->event)
		(void)sd_event_add_time(m->event, &sb->wake, CLOCK_MONOTONIC, plan.wake_at, 1000,
					wake_fired, sb);
	sandbox_update_status(m, sb, &plan);
}
