/* SPDX-License-Identifier: MIT */
/*
 * Carrying out plans: observe a sandbox, adopt what it finds running that nobody watches,
 * plan, run the actions through its backend's ops table, and back off after a failure
 * (1 s, doubling, at most 5 min; a new spec starts afresh). Synchronous backends converge
 * in one pass; the VMM backends take an action and complete it later (op_done), and that,
 * an exit or a timer brings the sandbox back here. Nothing here waits on a VMM.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <syslog.h>

#include "events.h"
#include "image-copies.h"
#include "log.h"
#include "manager.h"
#include "ordering.h"
#include "vm-scope.h"
#include "probe.h"
#include "idle.h"
#include "rollout.h"

#define BACKOFF_FIRST_USEC (1000u * 1000u)
#define BUSY_RETRY_USEC (1000u * 1000u) /* a VMM busy with the last change: not a failure */
#define BACKOFF_MAX_USEC (300ull * 1000u * 1000u)
#define PASSES_MAX 4

/* A VMM of its own (noop's VMs are no processes), where it belongs: in its own scope. */
static void scope_update(Manager *m, Sandbox *sb, const Backend *b)
{
	const SandboxSpec *spec = sb->observed.config ?: sb->desired;
	uint64_t memory_max;

	if (!m->systemd || !b || !b->ops->takes_host_resources || sb->observed.pid <= 0 ||
	    sb->stranger || sb->observed.stray || !spec)
		return;
	memory_max = vm_scope_memory_max(spec->memory, sb->observed.max_memory);
	if (sb->observed.pid != sb->scope_pid) {
		sb->scope_pid = sb->observed.pid;
		sb->scope_memory_max = memory_max;
		host_systemd_scope(m->systemd, sb->name, sb->observed.pid, spec,
				   sb->observed.max_memory, sb->observed.max_vcpus);
		return;
	}
	/*
	 * Its room to grow known only later (Firecracker's virtio-mem, configured after the
	 * spawn): the scope's MemoryMax follows, before any resize can use the room.
	 */
	if (memory_max > sb->scope_memory_max) {
		sb->scope_memory_max = memory_max;
		host_systemd_scope_memory(m->systemd, sb->name, memory_max);
	}
}

void sandbox_observe(Manager *m, Sandbox *sb)
{
	Backend *b = manager_backend_of(m, sb);
	int r;

	vm_observed_done(&sb->observed);
	sb->observe_failed = false;
	r = b ? b->ops->observe(b, sb->name, &sb->observed) : 0;
	if (r < 0) {
		if (!sb->observe_failed)
			log_fields(LOG_ERR,
				   &(LogFields){ .sandbox = sb->name,
						 .backend = b->ops->name,
						 .error = -r,
						 .message_id = LOG_MESSAGE_VMM },
				   "cannot tell what runs");
		vm_observed_done(&sb->observed);
		sb->observe_failed = true;
	}
	deletion_guard_update(m, sb);
	scope_update(m, sb, b);
}

/* One action of the plan for in (its spec and generation: the file's, or a rollback's). */
static int execute(Sandbox *sb, Backend *b, const PlanInput *in, const Action *a)
{
	const BackendOps *ops = b->ops;
	const SandboxSpec *want = in->desired ?: sb->desired;
	const SandboxSpec *have = sb->observed.config;
	uint64_t timeout_ms = (want ?: have) ? (want ?: have)->stop_timeout_ms : 30000;
	uint64_t generation = in->generation;
	const void *dev;

	switch (a->type) {
	case ACTION_START: {
		/* Not after the save of its template: that exit was vmd's. */
		bool again = sb->observed.state == VM_EXITED &&
			     sb->observed.generation == generation && !sb->template_resume;
		int r;

		if (!ops->start)
			return -EOPNOTSUPP;
		/* startFrom: snapshot: its template, if it still stands for a boot of want. */
		r = sandbox_template_start(sb->manager, sb, b, want, generation);
		sb->template_resume = false;
		sb->boot_afresh = false;
		if (r == -ENOENT) {
			probe_vm_starting(sb->manager, sb);
			r = ops->start(b, want, generation);
			if (r >= 0)
				set_format(&sb->start_note, "booted");
		}
		if (r >= 0 && again)
			sb->restarts++;
		return r;
	}
	case ACTION_STOP:
	case ACTION_RESTART:
		/* A half-restored VM has no guest to hear a button: forced. */
		return ops->stop ? ops->stop(b, sb->name, timeout_ms, sb->observed.restoring)
				 : -EOPNOTSUPP;
	case ACTION_PAUSE:
		return ops->pause ? ops->pause(b, sb->name) : -EOPNOTSUPP;
	case ACTION_RESUME:
		return ops->resume ? ops->resume(b, sb->name) : -EOPNOTSUPP;
	case ACTION_DISK_ADD:
		dev = spec_find_disk(want, a->device);
		return ops->disk_add && dev ? ops->disk_add(b, sb->name, dev, generation)
					    : -EOPNOTSUPP;
	case ACTION_DISK_UPDATE:
		dev = spec_find_disk(want, a->device);
		return ops->disk_update && dev ? ops->disk_update(b, sb->name, dev, generation)
					       : -EOPNOTSUPP;
	case ACTION_DISK_REMOVE:
		return ops->disk_remove ? ops->disk_remove(b, sb->name, a->device, generation)
					: -EOPNOTSUPP;
	case ACTION_NET_ADD:
		dev = spec_find_net(want, a->device);
		return ops->net_add && dev ? ops->net_add(b, sb->name, dev, generation) : -EOPNOTSUPP;
	case ACTION_NET_REMOVE:
		return ops->net_remove ? ops->net_remove(b, sb->name, a->device, generation)
				       : -EOPNOTSUPP;
	case ACTION_RESIZE:
		return ops->resize ? ops->resize(b, sb->name, want->vcpus, want->memory, generation)
				   : -EOPNOTSUPP;
	case ACTION_CLEANUP:
		return ops->cleanup ? ops->cleanup(b, sb->name) : 0;
	case ACTION_SUSPEND:
		return sandbox_suspend(sb->manager, sb, b);
	case ACTION_WAKE:
		return sandbox_wake(sb->manager, sb, b);
	case ACTION_DROP_SNAPSHOT:
		return sandbox_drop_snapshot(sb->manager, sb);
	case ACTION_SAVE_TEMPLATE:
		return sandbox_template_save(sb->manager, sb, b);
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

	free(sb->exit_reason);
	if (asprintf(&sb->exit_reason, "%s%sstatus %d", reason ?: "", reason ? ", " : "", status) < 0)
		sb->exit_reason = NULL;
	if (probe_liveness_kill(sb)) {
		/* Forced off for its liveness: a failure, backed off like one. */
		delay = backoff_usec(++sb->failures);
		sb->retry_at = now_usec(CLOCK_MONOTONIC) + delay;
		set_format(&sb->last_error, "%s; restarting in %llu s (restartPolicy permitting)",
			   probe_liveness_kill(sb), (unsigned long long)(delay / 1000000));
		return;
	}
	if (started == 0 || now - started >= CRASH_LOOP_USEC) {
		sb->quick_exits = 0; /* it ran for a while: restart at once */
		return;
	}
	/* The first quick exit restarts at once; after more, the restarts back off. */
	if (++sb->quick_exits < 2)
		return;
	delay = backoff_usec(sb->quick_exits - 1);
	sb->retry_at = now_usec(CLOCK_MONOTONIC) + delay;
	set_format(&sb->last_error,
		   "%s%sexited with status %d within %llu s of starting, %u times in a row; "
		   "restarting in %llu s",
		   reason ?: "", reason ? "; " : "", status, CRASH_LOOP_USEC / 1000000,
		   sb->quick_exits, (unsigned long long)(delay / 1000000));
}

/* An action failed (what, on device, with why or the errno's words): back off, say it once. */
static void failed(Sandbox *sb, Backend *b, const char *what, const char *device, int r,
		   const char *why)
{
	uint64_t delay = backoff_usec(sb->failures + 1);
	char *err = NULL;

	sb->failures++;
	sb->retry_at = now_usec(CLOCK_MONOTONIC) + delay;
	telemetry_action(sb->manager, sb, what, ACTION_RESULT_FAILED);
	set_format(&err, "%s%s%s failed: %s", what, device ? " " : "", device ?: "",
		   why ?: strerror(-r));
	events_action(sb->manager, sb, what, device, "failed", why ?: strerror(-r));

	/* Transitions are logged, not every retry: the first failure, or a different one. */
	if (sb->failures == 1 || !streq_ptr(err, sb->last_error))
		log_fields(LOG_ERR,
			   &(LogFields){ .sandbox = sb->name,
					 .backend = b->ops->name,
					 .action = what,
					 .result = "failed",
					 .error = -r,
					 .message_id = LOG_MESSAGE_ACTION_FAILED },
			   "%s; retrying in %" PRIu64 " s", err ?: "failed", delay / 1000000);
	free(sb->last_error);
	sb->last_error = err;
}

/*
 * The VMM cannot take the change yet, and says so (Cloud Hypervisor's 429 for a resize
 * while the guest has not let go of vCPUs a resize removed): no failure, no backoff
 * step, tried again shortly.
 */
static void busy(Sandbox *sb, Backend *b, const char *what, const char *message)
{
	sb->resize_retry_at = now_usec(CLOCK_MONOTONIC) + BUSY_RETRY_USEC;
	log_fields(LOG_INFO,
		   &(LogFields){ .sandbox = sb->name, .backend = b->ops->name, .action = what },
		   "%s: the VMM is busy%s%s; trying again in %llu s", what, message ? ": " : "",
		   message ?: "", (unsigned long long)(BUSY_RETRY_USEC / 1000000));
}

static void action_failed(Sandbox *sb, Backend *b, const Action *a, int r)
{
	_cleanup_free_ char *why = backend_take_error(b);

	failed(sb, b, action_type_to_string(a->type), a->device, r, why);
}

/* An action did what it was to do (reason: why it was planned, or NULL when it completed later). */
static void done(Sandbox *sb, Backend *b, const char *what, const char *device, const char *reason)
{
	log_fields(LOG_INFO,
		   &(LogFields){ .sandbox = sb->name,
				 .backend = b->ops->name,
				 .action = what,
				 .result = "done",
				 .message_id = LOG_MESSAGE_ACTION_DONE },
		   "%s%s%s: %s", what, device ? " " : "", device ?: "", reason ?: "done");
	telemetry_action(sb->manager, sb, what, ACTION_RESULT_DONE);
	events_action(sb->manager, sb, what, device, "succeeded", reason);
	if (sb->failures > 0)
		log_fields(LOG_INFO,
			   &(LogFields){ .sandbox = sb->name,
					 .backend = b->ops->name,
					 .result = "recovered",
					 .message_id = LOG_MESSAGE_RECOVERED },
			   "recovered after %u failed attempts", sb->failures);
	sb->failures = 0;
	sb->retry_at = 0;
	sb->resize_retry_at = 0;
	sb->last_error = mfree(sb->last_error);
}

/* The VMM took the request and completes it later: the VM's job until it does. */
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

/* Adoption */

static void adopted(Sandbox *sb, Backend *b)
{
	if (sb->adopt_failures > 0 || sb->quarantined)
		log_fields(LOG_INFO,
			   &(LogFields){ .sandbox = sb->name,
					 .backend = b->ops->name,
					 .result = "adopted",
					 .message_id = LOG_MESSAGE_ADOPTED },
			   "its VMM answers now, after %u tries", sb->adopt_failures + 1);
	log_fields(LOG_INFO,
		   &(LogFields){ .sandbox = sb->name,
				 .backend = b->ops->name,
				 .result = "adopted",
				 .message_id = LOG_MESSAGE_ADOPTED },
		   "re-adopted its %s VM", vm_state_to_string(sb->observed.state));
	sb->quarantined = false;
	sb->adopt_failures = 0;
	sb->adopt_retry_at = 0;
	sb->adopt_error = mfree(sb->adopt_error);
}

/*
 * A VM vmd cannot take in charge: not its own (-ESTALE: left alone for good), or its VMM
 * does not answer (left running, never started twice, tried again with the backoff).
 */
static void adopt_failed(Sandbox *sb, Backend *b, int r, const char *why)
{
	uint64_t delay;

	if (r == -ESTALE) {
		sb->stranger = true;
		log_fields(LOG_ERR,
			   &(LogFields){ .sandbox = sb->name,
					 .backend = b->ops->name,
					 .result = "refused",
					 .error = -r,
					 .message_id = LOG_MESSAGE_ADOPTED },
			   "found a VM vmd cannot prove is its own (%s); leaving it alone",
			   why ?: strerror(-r));
		return;
	}
	delay = backoff_usec(++sb->adopt_failures);
	sb->quarantined = true;
	sb->adopt_retry_at = now_usec(CLOCK_MONOTONIC) + delay;
	set_format(&sb->adopt_error,
		   "%s; vmd leaves it running and tries again in %" PRIu64
		   " s (or at once on SIGHUP)",
		   why ?: strerror(-r), delay / 1000000);
	if (sb->adopt_failures == 1)
		log_fields(LOG_ERR,
			   &(LogFields){ .sandbox = sb->name,
					 .backend = b->ops->name,
					 .result = "unresponsive",
					 .error = -r,
					 .message_id = LOG_MESSAGE_ADOPTED },
			   "cannot take in charge the VM it found running: %s", sb->adopt_error);
}

/*
 * What runs and nobody watches (found after a restart of vmd) is adopted before anything
 * else is done to it. true: go on and plan.
 */
static bool adopt(Manager *m, Sandbox *sb, Backend *b, uint64_t now)
{
	_cleanup_free_ char *why = NULL;
	int r;

	if (!sb->observed.unwatched || m->read_only) {
		/* Gone, or watched now: nothing is left alone any more. */
		if (sb->observed.job != BACKEND_OP_ADOPT)
			sb->quarantined = false;
		return true;
	}
	if (sb->stranger || sb->adopt_retry_at > now)
		return false;
	free(backend_take_error(b));
	r = b->ops->adopt ? b->ops->adopt(b, sb->name) : 0;
	if (r > 0)
		return false; /* its VMM is asked; op_done tells */
	why = backend_take_error(b);
	if (r < 0) {
		adopt_failed(sb, b, r, why);
		return false;
	}
	sandbox_observe(m, sb);
	adopted(sb, b);
	return true;
}

/* The action an operation completes, as the journal and the metrics name it. */
static const char *op_action(BackendOp op)
{
	return op == BACKEND_OP_RESTORE ? action_type_to_string(ACTION_WAKE)
					: backend_op_to_string(op);
}

void sandbox_op_done(Manager *m, Sandbox *sb, BackendOp op, const char *device, int error,
		     const char *message)
{
	Backend *b = manager_backend_of(m, sb);

	if (!b)
		return;
	sandbox_suspend_op_done(m, sb, op, error);
	sandbox_template_op_done(m, sb, op, error);
	if (op == BACKEND_OP_ADOPT) {
		sandbox_observe(m, sb);
		if (error < 0)
			adopt_failed(sb, b, error, message);
		else
			adopted(sb, b);
	} else if (error == -ECANCELED)
		; /* a stop took its place */
	else if (error == -EBUSY && op == BACKEND_OP_RESIZE)
		busy(sb, b, backend_op_to_string(op), message);
	else if (error < 0)
		failed(sb, b, op_action(op), device, error, message);
	else
		done(sb, b, op_action(op), device, NULL);
	manager_mark_dirty(m, sb);
}

char *sandbox_refusal_message(const SandboxSpec *spec, const HostResources *host)
{
	bool memory = host->memory && spec->memory > host->memory,
	     cpus = host->cpus && spec->vcpus > host->cpus;
	char want[32], have[32], *s = NULL;

	if (!memory && !cpus)
		return NULL;
	format_size(spec->memory, want);
	format_size(host->memory, have);
	if (memory && cpus)
		set_format(&s, "memory %s and %u vCPUs are more than the host has (%s, %u CPUs)",
			   want, spec->vcpus, have, host->cpus);
	else if (memory)
		set_format(&s, "memory %s is more than the host has (%s)", want, have);
	else
		set_format(&s, "%u vCPUs are more than the host has (%u CPUs)", spec->vcpus,
			   host->cpus);
	return s;
}

/*
 * The plan refused a start, restart or resize that the host cannot hold: say why in the
 * status, and once in the journal (again only when the reason changes).
 */
static void update_refusal(Manager *m, Sandbox *sb, Backend *b, const Plan *plan)
{
	const HostResources *host = manager_admission(m, b);
	bool up = IN_SET(sb->observed.state, VM_RUNNING, VM_PAUSED);
	_cleanup_free_ char *what = NULL;
	char *why = NULL;

	if (plan->insufficient && host && sb->desired)
		what = sandbox_refusal_message(sb->desired, host);
	if (what && asprintf(&why, "%s; %s (--allow-overcommit allows it)", what,
			     up ? "it keeps running as it is" : "no VMM is started for it") < 0)
		why = NULL;
	if (why && !streq_ptr(why, sb->refusal)) {
		telemetry_action(m, sb, up ? "resize" : "start", ACTION_RESULT_REFUSED);
		log_fields(LOG_ERR,
			   &(LogFields){ .sandbox = sb->name,
					 .backend = b->ops->name,
					 .action = up ? NULL : "start",
					 .result = "refused",
					 .message_id = LOG_MESSAGE_ACTION_FAILED },
			   "refused, InsufficientResources: %s", why);
	}
	free(sb->refusal);
	sb->refusal = why;
}

/*
 * The state dir's copy of its last valid spec is older than what the VM runs (a write of
 * the newer one failed, or vmd died before it): applying it would take back what the VM
 * was given since. While its file is refused nothing is done, and the generation shown is
 * the VM's, never lower. A valid file ends it (desired.c).
 */
static bool spec_is_stale(Sandbox *sb)
{
	if (!sb->path || !sb->spec_from_state_dir)
		return false;
	if (!sb->spec_stale && sb->generation < sb->observed.generation) {
		log_fields(LOG_WARNING,
			   &(LogFields){ .sandbox = sb->name,
					 .result = "stale",
					 .message_id = LOG_MESSAGE_CONFIG_INVALID },
			   "the last valid spec in the state dir (generation %" PRIu64
			   ") is older than what its VM runs (generation %" PRIu64
			   "); leaving the VM as it runs until its file is valid again",
			   sb->generation, sb->observed.generation);
		sb->spec_stale = true;
		sb->stale_generation = sb->generation;
		sb->generation = sb->observed.generation;
	}
	return sb->spec_stale;
}

/*
 * Whether vmd has done all it is going to do about this generation: nothing is left to do,
 * held (grace period, backoff) or under way. What only policy keeps from happening counts
 * as done: a change waiting for the next boot, a restart the restartPolicy does not want, a
 * start refused for want of resources. That generation is the status' observedGeneration.
 */
static bool is_settled(const Sandbox *sb, const Plan *plan)
{
	const VmObserved *o = &sb->observed;

	return sb->path && sb->desired && plan->n_actions == 0 && !plan->held &&
	       !plan->resize_waits && !plan->waits_for_after && !plan->stop_waits &&
	       !plan->disruption_waits && o->job == BACKEND_OP_NONE && !o->busy &&
	       !o->unresponsive && !o->unwatched && !IN_SET(o->state, VM_STARTING, VM_STOPPING);
}

static int wake_fired(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	Sandbox *sb = userdata;

	sb->wake = sd_event_source_disable_unref(sb->wake);
	manager_mark_dirty(sb->manager, sb);
	return 0;
}

/*
 * The backoff outlives vmd. <run-dir>/<name>/backoff.json keeps the restarts, the step of
 * each backoff (failures and quick exits in a row), when the next try is due and why (and
 * a WakeFailed condition not cleared yet: suspend.c), so
 * that a vmd killed and started again goes on where the last one was instead of starting
 * afresh. It lives as long as the run dir, a tmpfs, does: one boot; the time of the next
 * try is CLOCK_BOOTTIME, which no change of the wall clock moves, beside the boot id.
 */
static uint64_t backoff_fingerprint(const Sandbox *sb)
{
	const uint64_t v[] = { sb->restarts, sb->failures, sb->quick_exits, sb->retry_at,
			       sb->wake_failed_generation };
	uint64_t h = fnv1a64(FNV1A64_INIT, v, sizeof(v));

	h = sb->last_error ? fnv1a64(h, sb->last_error, strlen(sb->last_error) + 1) : h;
	return sb->wake_failed ? fnv1a64(h, sb->wake_failed, strlen(sb->wake_failed) + 1) : h;
}

static char *backoff_path(Manager *m, const Sandbox *sb)
{
	char *p = NULL;

	return asprintf(&p, "%s/%s/" SANDBOX_BACKOFF_FILE, m->config.run_dir, sb->name) < 0 ? NULL
											    : p;
}

void sandbox_load_backoff(Manager *m, Sandbox *sb)
{
	_cleanup_free_ char *path = backoff_path(m, sb);
	_cleanup_(json_decrefp) json_t *j = NULL;
	uint64_t at, now_boot = now_usec(CLOCK_BOOTTIME), now_mono = now_usec(CLOCK_MONOTONIC);
	const char *error;

	j = path ? json_load_file(path, JSON_REJECT_DUPLICATES, NULL) : NULL;
	/* Another boot's (a run dir that is not a tmpfs) says nothing about this one. */
	if (json_is_object(j) &&
	    streq_ptr(json_string_value(json_object_get(j, "bootId")), m->boot_id)) {
		sb->restarts = (unsigned)json_integer_value(json_object_get(j, "restarts"));
		sb->failures = (unsigned)json_integer_value(json_object_get(j, "failures"));
		sb->quick_exits = (unsigned)json_integer_value(json_object_get(j, "quickExits"));
		at = (uint64_t)json_integer_value(json_object_get(j, "retryAtBoottimeUsec"));
		/* Due already, or still to wait for, in this vmd's clock. */
		sb->retry_at = at > now_boot ? now_mono + (at - now_boot) : 0;
		error = json_string_value(json_object_get(j, "lastError"));
		free(sb->last_error);
		sb->last_error = error ? strdup(error) : NULL;
		/* The WakeFailed condition: the user has not seen it any more than before. */
		error = json_string_value(json_object_get(j, "wakeFailed"));
		free(sb->wake_failed);
		sb->wake_failed = error ? strdup(error) : NULL;
		sb->wake_failed_generation =
			(uint64_t)json_integer_value(json_object_get(j, "wakeFailedGeneration"));
	}
	sb->backoff_hash = backoff_fingerprint(sb);
}

/* Write backoff.json when what it keeps changed; none once there is nothing to keep. */
static void save_backoff(Manager *m, Sandbox *sb)
{
	_cleanup_free_ char *path = NULL, *dir = NULL, *text = NULL;
	_cleanup_(json_decrefp) json_t *j = NULL;
	uint64_t h = backoff_fingerprint(sb), at = 0;
	int r = -ENOMEM;

	if (m->read_only || h == sb->backoff_hash)
		return;
	path = backoff_path(m, sb);
	if (!path || asprintf(&dir, "%s/%s", m->config.run_dir, sb->name) < 0)
		return;
	if (sb->restarts == 0 && sb->failures == 0 && sb->quick_exits == 0 && !sb->retry_at &&
	    !sb->last_error && !sb->wake_failed) {
		if (unlink(path) == 0 || errno == ENOENT)
			sb->backoff_hash = h;
		return;
	}
	if (sb->retry_at)
		at = sb->retry_at + (now_usec(CLOCK_BOOTTIME) - now_usec(CLOCK_MONOTONIC));
	j = json_pack("{s:s, s:i, s:i, s:i, s:I, s:s?, s:s?, s:I}", "bootId", m->boot_id,
		      "restarts", (int)sb->restarts, "failures", (int)sb->failures, "quickExits",
		      (int)sb->quick_exits, "retryAtBoottimeUsec", (json_int_t)at, "lastError",
		      sb->last_error, "wakeFailed", sb->wake_failed, "wakeFailedGeneration",
		      (json_int_t)sb->wake_failed_generation);
	text = j ? json_dumps(j, JSON_SORT_KEYS) : NULL;
	if (text && (r = mkdir_p(dir, 0755)) >= 0)
		r = write_file_atomic(path, text, strlen(text), 0644, false);
	if (r < 0) {
		log_fields(LOG_ERR,
			   &(LogFields){ .sandbox = sb->name,
					 .error = -r,
					 .message_id = LOG_MESSAGE_DAEMON },
			   "cannot write %s; a restarted vmd would back off afresh", path);
		return;
	}
	sb->backoff_hash = h;
}

/* A VMM found running that vmd cannot take in charge (a stray), and its end: said once each. */
static void report_stray(Sandbox *sb, Backend *b)
{
	bool stray = sb->observed.stray != VM_STRAY_NONE;

	if (!b || stray == sb->stray_reported)
		return;
	sb->stray_reported = stray;
	if (stray)
		log_fields(LOG_ERR,
			   &(LogFields){ .sandbox = sb->name,
					 .backend = b->ops->name,
					 .result = "refused",
					 .message_id = LOG_MESSAGE_ADOPTED },
			   "%s", sb->observed.stray_message);
	else
		log_fields(LOG_INFO,
			   &(LogFields){ .sandbox = sb->name,
					 .backend = b->ops->name,
					 .message_id = LOG_MESSAGE_ADOPTED },
			   "the VMM that ran for it without a record is gone or recorded again");
}

void sandbox_reconcile(Manager *m, Sandbox *sb)
{
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	Backend *b = manager_backend_of(m, sb);
	bool planned = false;
	Plan plan = {};

	/* The host shuts down: the guests are on their way down, and nothing starts again. */
	if (m->host_stopping)
		return;
	for (unsigned pass = 0; pass < PASSES_MAX; pass++) {
		const char *ready[SPEC_AFTER_MAX + 1];
		PlanInput in;
		size_t k;

		sandbox_observe(m, sb);
		/*
		 * Act on nothing vmd cannot see, or cannot prove is its own; and start nothing
		 * beside a VMM that runs for it without a record (a stray).
		 */
		if (!b || sb->observe_failed || sb->stranger || sb->observed.stray ||
		    !adopt(m, sb, b, now))
			break;
		/* A file that vanished while the directory cannot be read is not gone. */
		if (!sb->path && m->degraded)
			break;
		/*
		 * A file that is there but was never valid (its last valid spec lost with the
		 * state dir) says nothing vmd can act on: whatever runs is left alone.
		 */
		if (sb->path && !sb->desired) {
			sb->generation = MAX(sb->generation, sb->observed.generation);
			break;
		}
		/* Nor on a spec older than what the VM runs. */
		if (spec_is_stale(sb))
			break;
		/* Saved, but not yet its snapshot (the commit failed): that first. */
		if (sb->snapshot_new && sb->observed.job == BACKEND_OP_NONE &&
		    IN_SET(sb->observed.state, VM_ABSENT, VM_EXITED) &&
		    sandbox_suspend_commit(m, sb) < 0)
			break;
		/* Its template is being synced to disk: it starts from it once it is committed. */
		if (sb->template_saving && sb->snapshot_new && sb->observed.job == BACKEND_OP_NONE &&
		    IN_SET(sb->observed.state, VM_ABSENT, VM_EXITED))
			break;
		in = (PlanInput){
			.desired = sb->path ? sb->desired : NULL,
			.generation = sb->generation,
			.observed = &sb->observed,
			.caps = b->ops->caps,
			.desired_since = sb->desired_since,
			.retry_at = sb->retry_at,
			.resize_retry_at = sb->resize_retry_at,
			.host = manager_admission(m, b),
			.ready = ready,
			.snapshot = sb->snapshot,
			.template_due = sandbox_template_due(sb, b),
			.template_resume = sb->template_resume,
			.boot_afresh = sb->boot_afresh,
		};
		ordering_ready(m, sb, ready);
		/* A rollback in force: the spec the daemon goes by is the one rolled back to. */
		rollout_plan_input(m, sb, &in);
		/* Asleep for idling (suspendAfterIdle): suspended, whatever the file says. */
		idle_plan_input(m, sb, &in);
		/* A stop of its own, with others going at once: those naming it go first. */
		if (!in.desired || in.desired->state == SANDBOX_STOPPED)
			in.stop_waits = ordering_stop_waits(m, sb);
		plan_sandbox(&in, now, m->config.grace_usec, &plan);
		idle_plan_reasons(sb, &plan);
		planned = true;
		sb->restart_required = plan.restart_required;
		sb->restart_why = plan.restart_why;
		/* Its file is gone: a stop waits while too many went at once (deletion-guard.c). */
		if (!in.desired)
			deletion_guard_filter(m, sb, &plan);
		if (plan.n_actions == 0) {
			if (is_settled(sb, &plan))
				sb->settled_generation = in.generation;
			break;
		}
		for (k = 0; k < plan.n_actions; k++) {
			int r;

			free(backend_take_error(b)); /* only this action's own words */
			sb->action_began = now_usec(CLOCK_MONOTONIC);
			events_action(m, sb, action_type_to_string(plan.actions[k].type),
				      plan.actions[k].device, "begun", plan.actions[k].reason);
			r = execute(sb, b, &in, &plan.actions[k]);
			if (r >= 0 && plan.actions[k].type == ACTION_RESTART)
				rollout_restart_begun(m, sb);
			if (r < 0) {
				action_failed(sb, b, &plan.actions[k], r);
				break;
			}
			if (r > 0) {
				/* The rest waits for it: the backend's vm_changed brings us back. */
				action_started(sb, b, &plan.actions[k]);
				break;
			}
			done(sb, b, action_type_to_string(plan.actions[k].type),
			     plan.actions[k].device, plan.actions[k].reason);
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

	report_stray(sb, b);
	/* Its file is gone and nothing of it is left: forget it. */
	if (!sb->path && !m->degraded && sb->observed.state == VM_ABSENT && !sb->observe_failed &&
	    !sb->observed.stray && !sandbox_has_snapshot(sb)) {
		log_fields(LOG_INFO,
			   &(LogFields){ .sandbox = sb->name,
					 .result = "removed",
					 .message_id = LOG_MESSAGE_REMOVED },
			   "removed: its file is gone and its VM is cleaned up");
		if (!m->read_only && sb->desired)
			(void)image_copies_remove(m->config.state_dir, sb->desired);
		if (!m->read_only)
			(void)sandbox_template_drop(m, sb, "its file was removed");
		sandbox_remove_status(m, sb);
		events_deleted(m, sb);
		manager_forget_persisted(m, sb->name);
		rollout_forget(m, sb);
		idle_forget(m, sb);
		manager_drop_sandbox(m, sb);
		return;
	}

	if (planned) {
		update_refusal(m, sb, b, &plan);
		ordering_update_waiting(m, sb, plan.waits_for_after);
	}
	save_backoff(m, sb);
	sb->wake = sd_event_source_disable_unref(sb->wake);
	/* Held actions come due then, or a VM left alone is tried again. */
	if (sb->quarantined && sb->observed.unwatched &&
	    (plan.wake_at == 0 || sb->adopt_retry_at < plan.wake_at))
		plan.wake_at = sb->adopt_retry_at;
	if (plan.wake_at && m->event)
		(void)sd_event_add_time(m->event, &sb->wake, CLOCK_MONOTONIC, plan.wake_at, 1000,
					wake_fired, sb);
	idle_update(m, sb);
	sandbox_update_status(m, sb, &plan);
}
