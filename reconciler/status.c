/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "events.h"
#include "log.h"
#include "manager.h"
#include "neigh.h"
#include "ordering.h"
#include "probe.h"
#include "idle.h"
#include "rollout.h"
#include "status.h"

const char *const phase_table[_PHASE_MAX] = {
	[PHASE_PENDING] = "Pending", [PHASE_STARTING] = "Starting", [PHASE_RUNNING] = "Running",
	[PHASE_PAUSED] = "Paused",   [PHASE_STOPPING] = "Stopping", [PHASE_STOPPED] = "Stopped",
	[PHASE_FAILED] = "Failed",   [PHASE_UNKNOWN] = "Unknown",   [PHASE_SUSPENDED] = "Suspended",
};
DEFINE_STRING_TABLE(phase, Phase, _PHASE_MAX)

const char *const condition_type_table[_CONDITION_TYPE_MAX] = {
	[CONDITION_CONFIG_VALID] = "ConfigValid",
	[CONDITION_READY] = "Ready",
	[CONDITION_RESTART_REQUIRED] = "RestartRequired",
	[CONDITION_DEGRADED] = "Degraded",
	[CONDITION_RUNNING] = "Running",
	[CONDITION_ROLLED_BACK] = "RolledBack",
	[CONDITION_WAKE_FAILED] = "WakeFailed",
};

void sandbox_status_done(SandboxStatus *s)
{
	for (size_t i = 0; i < _CONDITION_TYPE_MAX; i++)
		free(s->conditions[i].message);
	*s = (SandboxStatus){};
}

const char *const condition_status_table[_CONDITION_STATUS_MAX] = {
	[CONDITION_FALSE] = "False",
	[CONDITION_TRUE] = "True",
	[CONDITION_UNKNOWN] = "Unknown",
};

void condition_set(SandboxStatus *s, ConditionType t, ConditionStatus status, const char *reason,
		   const char *message, uint64_t now_realtime)
{
	Condition *c = &s->conditions[t];
	char *m = strdup(message ?: "");

	if (!m)
		return; /* keep the old message rather than none */
	if (c->last_transition == 0 || c->status != status)
		c->last_transition = now_realtime;
	c->status = status;
	c->reason = reason;
	free(c->message);
	c->message = m;
}

void status_file_hash_format(uint64_t h, char buf[static 32])
{
	snprintf(buf, 32, "fnv1a64:%016" PRIx64, h);
}

void format_timestamp(uint64_t usec, char buf[static 32])
{
	time_t t = (time_t)(usec / 1000000);
	struct tm tm;
	size_t n;

	gmtime_r(&t, &tm);
	n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, 32 - n, ".%03uZ", (unsigned)(usec / 1000 % 1000));
}

/* Found running with a VMM that did not answer: left alone until it does (retries too). */
static bool left_alone(const Sandbox *sb)
{
	return sb->quarantined && (sb->observed.unwatched || sb->observed.job == BACKEND_OP_ADOPT);
}

/* A VMM runs for it that vmd cannot take in charge: its record is lost, or names another. */
static const char *stray_reason(const Sandbox *sb)
{
	return sb->observed.stray == VM_STRAY_NOT_OURS ? "NotOurs" : "RecordLost";
}

static Phase compute_phase(const Manager *m, const Sandbox *sb, const Plan *plan)
{
	const SandboxSpec *want = sb->path ? idle_wanted(sb) : NULL;
	const VmObserved *o = &sb->observed;

	if (sb->observe_failed || sb->stranger || o->stray || left_alone(sb))
		return PHASE_UNKNOWN;
	switch (o->state) {
	case VM_STARTING:
		return PHASE_STARTING;
	case VM_RUNNING:
		return PHASE_RUNNING;
	case VM_PAUSED:
		return PHASE_PAUSED;
	case VM_STOPPING:
		return PHASE_STOPPING;
	default:
		break;
	}
	if (sb->snapshot)
		return PHASE_SUSPENDED; /* until it is woken, or its snapshot dropped */
	/* Suspended without a snapshot: it never ran, and there was nothing to save. */
	if (!want || IN_SET(want->state, SANDBOX_STOPPED, SANDBOX_SUSPENDED))
		return PHASE_STOPPED;
	if (sb->failures > 0 || sb->refusal)
		return PHASE_FAILED;
	if (manager_backend_of((Manager *)m, sb) == NULL)
		return PHASE_FAILED;
	for (size_t i = 0; i < plan->n_actions; i++)
		if (plan->actions[i].type == ACTION_START)
			return PHASE_STARTING;
	if (o->state == VM_EXITED && !plan->held && !plan->waits_for_after)
		return o->exit_status == 0 ? PHASE_STOPPED : PHASE_FAILED;
	if (o->state == VM_EXITED && sb->quick_exits > 1)
		return PHASE_FAILED; /* a crash loop, waiting to restart */
	return PHASE_PENDING;
}

static bool phase_is_desired(Phase p, const SandboxSpec *want)
{
	switch (want->state) {
	case SANDBOX_RUNNING:
		return p == PHASE_RUNNING;
	case SANDBOX_PAUSED:
		return p == PHASE_PAUSED;
	case SANDBOX_SUSPENDED:
		/* One that never ran has nothing to save: it stays stopped. */
		return IN_SET(p, PHASE_SUSPENDED, PHASE_STOPPED);
	default:
		return p == PHASE_STOPPED;
	}
}

/* Running: whether the VMM runs the guest, whatever its probes say. */
static void compute_running(Manager *m, Sandbox *sb, uint64_t now)
{
	static const struct {
		const char *reason, *message;
	} not_running[_VM_STATE_MAX] = {
		[VM_ABSENT] = { "NotStarted", "no VM runs" },
		[VM_STARTING] = { "Starting", "its VMM is coming up" },
		[VM_PAUSED] = { "Paused", "its VM is paused" },
		[VM_STOPPING] = { "Stopping", "its VM is being stopped" },
		[VM_EXITED] = { "Exited", NULL },
	};
	SandboxStatus *s = &sb->status;
	VmState st = sb->observed.state;

	if (sb->observed.stray)
		condition_set(s, CONDITION_RUNNING, CONDITION_UNKNOWN, stray_reason(sb),
			      sb->observed.stray_message, now);
	else if (left_alone(sb) || sb->observed.unresponsive)
		condition_set(s, CONDITION_RUNNING, CONDITION_UNKNOWN, "VmmNotResponding",
			      sb->observed.unresponsive ?: sb->adopt_error, now);
	else if (sb->observed.job == BACKEND_OP_ADOPT || (sb->observed.unwatched && !m->read_only))
		condition_set(s, CONDITION_RUNNING, CONDITION_UNKNOWN, "Adopting",
			      "checking that what runs is what vmd started", now);
	else if (st == VM_RUNNING)
		condition_set(s, CONDITION_RUNNING, true, "VmRunning", "", now);
	else if (sb->snapshot && st != VM_STARTING) {
		_cleanup_free_ char *msg = NULL;
		char size[32], at[32];

		format_size(sb->snapshot->size, size);
		format_timestamp(sb->snapshot->taken_at_usec, at);
		set_format(&msg, "%s: its state is in a snapshot of %s, taken at %s; no VMM runs",
			   idle_reason(sb) ?: "suspended", size, at);
		condition_set(s, CONDITION_RUNNING, false, "Suspended", msg, now);
	} else if (st >= 0 && st < _VM_STATE_MAX && not_running[st].reason)
		condition_set(s, CONDITION_RUNNING, false, not_running[st].reason,
			      not_running[st].message ?: sb->exit_reason ?: "its VMM exited", now);
	else
		condition_set(s, CONDITION_RUNNING, false, "NotStarted", "no VM runs", now);
}

static void compute_conditions(Manager *m, Sandbox *sb, const Plan *plan, uint64_t now)
{
	SandboxStatus *s = &sb->status;
	const SandboxSpec *want = sb->path ? idle_wanted(sb) : NULL;
	bool ready = want && phase_is_desired(s->phase, want) && plan->n_actions == 0 &&
		     !plan->held && !plan->resize_waits && !sb->observed.busy && !sb->refusal &&
		     !plan->waits_for_after;
	bool held = deletion_guard_holds(m, sb);
	const char *probe_reason, *probe_message;
	char msg[512], unwritten[512];

	if (sb->persist_failed)
		snprintf(unwritten, sizeof(unwritten),
			 "its last valid spec (generation %" PRIu64
			 ") is not in the state dir yet: %s; retried with a backoff",
			 sb->generation, m->state_write_error ?: "an earlier write failed");

	if (sb->config_error)
		condition_set(s, CONDITION_CONFIG_VALID, false, sb->config_reason, sb->config_error,
			      now);
	else if (!sb->path && held)
		condition_set(s, CONDITION_CONFIG_VALID, false, "FileRemoved",
			      "its file was removed; vmd holds its stop (see Degraded)", now);
	else if (!sb->path)
		condition_set(s, CONDITION_CONFIG_VALID, false, "FileRemoved",
			      "its file was removed; it is stopped after the grace period", now);
	else
		condition_set(s, CONDITION_CONFIG_VALID, true, "Valid", "", now);

	if (sb->observed.stray)
		condition_set(s, CONDITION_READY, CONDITION_UNKNOWN, stray_reason(sb),
			      sb->observed.stray_message, now);
	else if (left_alone(sb))
		condition_set(s, CONDITION_READY, CONDITION_UNKNOWN, "VmmNotResponding",
			      sb->adopt_error, now);
	else if (sb->observed.unresponsive)
		condition_set(s, CONDITION_READY, CONDITION_UNKNOWN, "VmmNotResponding",
			      sb->observed.unresponsive, now);
	else if (sb->observed.job == BACKEND_OP_ADOPT || (sb->observed.unwatched && !m->read_only))
		condition_set(s, CONDITION_READY, CONDITION_UNKNOWN, "Adopting",
			      sb->observed.progress ?: "checking that what runs is what vmd started",
			      now);
	else if (sb->spec_stale) {
		snprintf(msg, sizeof(msg),
			 "the last valid spec vmd kept (generation %" PRIu64
			 ") is older than what its VM runs (generation %" PRIu64
			 "); vmd leaves the VM as it runs until its file is valid again",
			 sb->stale_generation, sb->generation);
		condition_set(s, CONDITION_READY, false, "StaleSpec", msg, now);
	} else if (ready && probe_holds_ready(sb, &probe_reason, &probe_message))
		condition_set(s, CONDITION_READY, false, probe_reason, probe_message, now);
	else if (ready && sb->persist_failed)
		condition_set(s, CONDITION_READY, false, "StateWriteFailed", unwritten, now);
	else if (ready)
		condition_set(s, CONDITION_READY, true, "AsDesired", "", now);
	else if (plan->stop_waits)
		condition_set(
			s, CONDITION_READY, false, "StopWaitsForDependents",
			"its stop waits until those naming it in their spec.after, stopping too, are stopped",
			now);
	else if (!want)
		condition_set(s, CONDITION_READY, false, "NoValidSpec", "no valid spec to run", now);
	else if (!manager_backend_of(m, sb)) {
		snprintf(msg, sizeof(msg), "backend '%s' is not available in this build of vmd",
			 backend_kind_to_string(manager_backend_kind(m, sb)));
		condition_set(s, CONDITION_READY, false, "BackendUnavailable", msg, now);
	} else if (sb->refusal)
		condition_set(s, CONDITION_READY, false, "InsufficientResources", sb->refusal, now);
	else if (plan->waits_for_after && sb->waiting)
		condition_set(s, CONDITION_READY, false, "WaitingForDependencies", sb->waiting, now);
	else if (plan->held && sb->retry_at)
		condition_set(s, CONDITION_READY, false, "BackingOff", sb->last_error, now);
	else if (plan->held)
		condition_set(s, CONDITION_READY, false, "GracePeriod",
			      "waiting out the grace period before a stop, restart or removal", now);
	else if (plan->resize_waits && !sb->observed.progress)
		condition_set(s, CONDITION_READY, false, "Progressing",
			      "the VMM is busy with the last change; the resize is tried again shortly",
			      now);
	else
		condition_set(s, CONDITION_READY, false, "Progressing", sb->observed.progress ?: "",
			      now);

	if (plan->disruption_waits) {
		const char *why = rollout_wait_why(m, msg, sizeof(msg));

		condition_set(s, CONDITION_RESTART_REQUIRED, true, why, msg, now);
	} else if (sb->restart_required)
		condition_set(
			s, CONDITION_RESTART_REQUIRED, true, "UpdatePolicyOnNextBoot",
			sb->restart_why
				?: "the file changed what only a new boot can apply; it applies at the next start (updatePolicy on-next-boot)",
			now);
	else
		condition_set(s, CONDITION_RESTART_REQUIRED, false, "UpToDate", "", now);

	if (sb->observed.stray)
		condition_set(s, CONDITION_DEGRADED, true, stray_reason(sb),
			      sb->observed.stray_message, now);
	else if (held)
		condition_set(
			s, CONDITION_DEGRADED, true, "SuspiciousMassDeletion",
			m->guard.replaced
				? "the sandbox directory was replaced under vmd and lacks its file; vmd does not stop it until the file is back or an approval comes (vmd approve-deletions)"
				: "its file went at once with those of too many others (--max-deletions); vmd does not stop it until the file is back or an approval comes (vmd approve-deletions)",
			now);
	else if (sb->stranger)
		condition_set(s, CONDITION_DEGRADED, true, "NotOurs",
			      "runtime state vmd cannot prove is its own; it does not touch it", now);
	else if (left_alone(sb))
		condition_set(s, CONDITION_DEGRADED, true, "VmmNotResponding", sb->adopt_error, now);
	else if (sb->observed.unresponsive)
		condition_set(s, CONDITION_DEGRADED, true, "VmmNotResponding",
			      sb->observed.unresponsive, now);
	else if (sb->observe_failed)
		condition_set(s, CONDITION_DEGRADED, true, "ObserveFailed", sb->last_error, now);
	else if (sb->failures > 0)
		condition_set(s, CONDITION_DEGRADED, true, "ActionFailed", sb->last_error, now);
	else if (sb->quick_exits > 1) {
		_cleanup_free_ char *loop = NULL;

		/* The VMM's own words first: what to fix, not only that it keeps exiting. */
		if (asprintf(&loop,
			     "exited %u times in a row soon after starting (the last: %s); restarts back off",
			     sb->quick_exits, sb->exit_reason ?: "no reason known") < 0)
			loop = NULL;
		condition_set(s, CONDITION_DEGRADED, true, "CrashLoop", loop ?: "", now);
	} else if (sb->persist_failed)
		condition_set(s, CONDITION_DEGRADED, true, "StateWriteFailed", unwritten, now);
	else
		condition_set(s, CONDITION_DEGRADED, false, "AsExpected", "", now);
	compute_running(m, sb, now);
}

/*
 * What a status.json says, as plain values: status_render() reads this and nothing else
 * (constant tables aside), so that its fingerprint is one of the file, and a status.json
 * is rendered and written only when that changes; most passes change nothing.
 *
 * The fingerprint cannot forget a field: it names none. Each record hashes its numbers as
 * num.v[] and its strings (NULL apart from "") as str.v[], arrays that static assertions
 * keep exactly as long as the named fields over them; so a number or a string added to a
 * record is in the fingerprint as it is added. Only a new kind of part (a list, like the
 * devices) needs a line in status_fingerprint(), and it cannot be rendered without one
 * here either. Every number is a uint64_t: no padding between them to hash.
 */
typedef struct StatusDisk {
	union {
		struct {
			uint64_t read_only;
		};
		uint64_t v[1];
	} num;
	union {
		struct {
			const char *id, *path, *format, *image; /* image: NULL for a file's disk */
		};
		const char *v[4];
	} str;
} StatusDisk;

typedef struct StatusNet {
	union {
		struct {
			const char *id, *type, *tap, *mac;
			const char *addresses; /* "a,b" from the neighbour table, or NULL */
			const char *ports;     /* "tcp:127.0.0.1:2222-:22,...", or NULL */
		};
		const char *v[6];
	} str;
	char mac[18];			 /* what str.mac points to */
	char *addresses_buf, *ports_buf; /* what str.addresses and str.ports point to */
} StatusNet;

typedef struct StatusView {
	union {
		struct {
			uint64_t generation, observed_generation, pid, restarts;
			/* CLOCK_REALTIME usec in whole milliseconds, as they are shown; 0: null */
			uint64_t started_at, next_retry_at, job_since;
			uint64_t condition_status[_CONDITION_TYPE_MAX]; /* a ConditionStatus */
			uint64_t condition_since[_CONDITION_TYPE_MAX]; /* lastTransitionTime, likewise */
			uint64_t has_snapshot, snapshot_size, snapshot_taken_at; /* suspended */
		};
		uint64_t v[10 + 2 * _CONDITION_TYPE_MAX];
	} num;
	union {
		struct {
			const char *name, *backend, *file, *desired_state, *phase, *last_error,
				*vm_state;
			const char *job_type, *job_phase; /* NULL: no job */
			const char *vmm_version;	  /* NULL: not known, or no VMM */
			const char *file_hash;		  /* NULL: its file was not read */
			const char *condition_reason[_CONDITION_TYPE_MAX];
			const char *condition_message[_CONDITION_TYPE_MAX];
			const char *source_kind, *source_revision; /* NULL: none known */
			const char *start_note; /* how its VM last started (template.c); NULL */
		};
		const char *v[14 + 2 * _CONDITION_TYPE_MAX];
	} str;
	StatusDisk *disks; /* of the observed config, while the VM is up */
	size_t n_disks;
	StatusNet *networks;
	size_t n_networks;
	char file_hash[32]; /* what str.file_hash points to */
} StatusView;

#define COVERS_ALL(record, part)                                                                   \
	_Static_assert(sizeof(((record *)NULL)->part) == sizeof(((record *)NULL)->part.v),         \
		       #record "." #part ".v[] must be exactly as long as its named fields")
COVERS_ALL(StatusView, num);
COVERS_ALL(StatusView, str);
COVERS_ALL(StatusDisk, num);
COVERS_ALL(StatusDisk, str);
COVERS_ALL(StatusNet, str);

static void status_view_done(StatusView *v)
{
	for (size_t i = 0; i < v->n_networks; i++) {
		free(v->networks[i].addresses_buf);
		free(v->networks[i].ports_buf);
	}
	free(v->disks);
	free(v->networks);
}

static uint64_t whole_ms(uint64_t usec)
{
	return usec - usec % 1000;
}

static int status_view_build(Manager *m, const Sandbox *sb, uint64_t now_mono, uint64_t now_real,
			     StatusView *v)
{
	const SandboxStatus *s = &sb->status;
	const VmObserved *o = &sb->observed;
	bool up = IN_SET(o->state, VM_STARTING, VM_RUNNING, VM_PAUSED, VM_STOPPING);

	*v = (StatusView){};
	v->num.generation = sb->generation;
	/*
	 * What vmd has settled (executor.c); until it settles one, what the VM was started
	 * with or changed to, as a vmd that was restarted finds it.
	 */
	v->num.observed_generation = sb->settled_generation;
	if (v->num.observed_generation == 0 && o->state != VM_ABSENT)
		v->num.observed_generation = o->generation;
	v->num.pid = (uint64_t)(int64_t)o->pid;
	v->num.restarts = sb->restarts;
	v->num.started_at = up ? whole_ms(o->started_at_usec) : 0;
	v->num.next_retry_at =
		sb->retry_at > now_mono ? whole_ms(now_real + (sb->retry_at - now_mono)) : 0;
	v->str.name = sb->name;
	v->str.backend = backend_kind_to_string(manager_backend_kind(m, sb));
	v->str.file = sb->path;
	v->str.desired_state =
		sb->path && sb->desired ? sandbox_state_to_string(sb->desired->state) : "stopped";
	v->str.phase = phase_to_string(s->phase);
	v->str.last_error = sb->last_error;
	v->str.vm_state = vm_state_to_string(o->state);
	v->str.vmm_version = up ? o->vmm_version : NULL;
	if (sb->snapshot) {
		v->num.has_snapshot = 1;
		v->num.snapshot_size = sb->snapshot->size;
		v->num.snapshot_taken_at = whole_ms(sb->snapshot->taken_at_usec);
	}
	if (sb->path && sb->file_hashed) {
		status_file_hash_format(sb->file_hash, v->file_hash);
		v->str.file_hash = v->file_hash;
	}
	v->str.start_note = sb->start_note;
	if (sb->source_revision) {
		v->str.source_kind = source_revision_kind_to_string(sb->source_kind);
		v->str.source_revision = sb->source_revision;
	}
	if (o->job != BACKEND_OP_NONE) {
		v->str.job_type = backend_op_to_string(o->job);
		v->str.job_phase = o->job_phase ?: "";
		v->num.job_since = whole_ms(o->job_since_usec);
	}
	for (size_t i = 0; i < _CONDITION_TYPE_MAX; i++) {
		const Condition *c = &s->conditions[i];

		v->num.condition_status[i] = c->status;
		v->num.condition_since[i] = whole_ms(c->last_transition);
		v->str.condition_reason[i] = c->reason ?: "";
		v->str.condition_message[i] = c->message ?: "";
	}
	if (!o->config || !up)
		return 0;

	v->disks = calloc(o->config->n_disks ?: 1, sizeof(StatusDisk));
	v->networks = calloc(o->config->n_networks ?: 1, sizeof(StatusNet));
	if (!v->disks || !v->networks)
		return -ENOMEM;
	for (size_t i = 0; i < o->config->n_disks; i++) {
		const DiskSpec *d = &o->config->disks[i];
		StatusDisk *sd = &v->disks[v->n_disks++];

		sd->num.read_only = d->read_only;
		sd->str.id = d->id;
		sd->str.path = d->path;
		sd->str.format = disk_format_to_string(d->format);
		sd->str.image = d->image;
	}
	for (size_t i = 0; i < o->config->n_networks; i++) {
		const NetSpec *n = &o->config->networks[i];
		StatusNet *sn = &v->networks[v->n_networks++];

		spec_mac_format(n->mac, sn->mac);
		sn->str.id = n->id;
		sn->str.type = net_type_to_string(n->type);
		sn->str.tap = n->tap;
		sn->str.mac = sn->mac;
		/* A user network's guest is behind QEMU's NAT: no neighbour of the host's. */
		_cleanup_free_ char *seen =
			n->type == NET_USER ? NULL : neigh_addresses(manager_neigh(m), n->mac);
		const char *said = i < o->n_net_addresses ? o->net_addresses[i] : NULL;

		if (n->type == NET_USER)
			sn->str.ports = sn->ports_buf = spec_ports_format(n);
		/* What the host saw of it, and what its guest agent says. */
		sn->str.addresses = sn->addresses_buf =
			said ? list_union(seen, said) : TAKE_PTR(seen);
	}
	return 0;
}

static uint64_t hash_record(uint64_t h, const uint64_t *num, size_t n_num, const char *const *str,
			    size_t n_str)
{
	h = fnv1a64(h, num, n_num * sizeof(uint64_t));
	for (size_t i = 0; i < n_str; i++) {
		/* Its length first, and 0 for NULL: "a","b" is not "ab", nor null "". */
		uint64_t len = str[i] ? strlen(str[i]) + 1 : 0;

		h = fnv1a64(h, &len, sizeof(len));
		if (str[i])
			h = fnv1a64(h, str[i], len - 1);
	}
	return h;
}

static uint64_t status_fingerprint(const StatusView *v)
{
	uint64_t h = hash_record(FNV1A64_INIT, v->num.v, ELEMENTSOF(v->num.v), v->str.v,
				 ELEMENTSOF(v->str.v));

	h = fnv1a64(h, &v->n_disks, sizeof(v->n_disks));
	for (size_t i = 0; i < v->n_disks; i++)
		h = hash_record(h, v->disks[i].num.v, ELEMENTSOF(v->disks[i].num.v),
				v->disks[i].str.v, ELEMENTSOF(v->disks[i].str.v));
	h = fnv1a64(h, &v->n_networks, sizeof(v->n_networks));
	for (size_t i = 0; i < v->n_networks; i++)
		h = hash_record(h, NULL, 0, v->networks[i].str.v, ELEMENTSOF(v->networks[i].str.v));
	return h;
}

/*
 * A string that may name a file (a path, a message): what is not UTF-8 in it escaped, as
 * JSON takes nothing else (jansson escapes control characters itself).
 */
static json_t *text_or_null(const char *s)
{
	_cleanup_free_ char *e = s ? utf8_escape(s) : NULL;

	return e ? json_string(e) : json_null();
}

static json_t *time_or_null(uint64_t usec)
{
	char buf[32];

	if (usec == 0)
		return json_null();
	format_timestamp(usec, buf);
	return json_string(buf);
}

/* "a,b" as ["a", "b"]; NULL as []. */
static json_t *split_list(const char *s)
{
	json_t *a = json_array();

	for (const char *p = s; a && p && *p;) {
		size_t n = strcspn(p, ",");

		json_array_append_new(a, json_stringn(p, n));
		p += n + (p[n] == ',');
	}
	return a;
}

/* The JSON of a status.json (docs/status.md), from the view alone. */
static json_t *status_render(const StatusView *v)
{
	json_t *conds = json_array(), *disks = json_array(), *nets = json_array(), *job = NULL;

	for (size_t i = 0; i < _CONDITION_TYPE_MAX; i++)
		json_array_append_new(
			conds,
			json_pack("{s:s, s:s, s:s, s:o, s:o}", "type", condition_type_table[i],
				  "status", condition_status_table[v->num.condition_status[i]],
				  "reason", v->str.condition_reason[i], "message",
				  text_or_null(v->str.condition_message[i]), "lastTransitionTime",
				  time_or_null(v->num.condition_since[i])));
	for (size_t i = 0; i < v->n_disks; i++) {
		const StatusDisk *d = &v->disks[i];

		json_t *j = json_pack("{s:s, s:s?, s:b, s:s}", "id", d->str.id, "path", d->str.path,
				      "readOnly", (int)d->num.read_only, "format", d->str.format);

		/* A disk from an image: path is its copy, and image what it is a copy of. */
		if (j && d->str.image)
			json_object_set_new(j, "image", json_string(d->str.image));
		json_array_append_new(disks, j);
	}
	for (size_t i = 0; i < v->n_networks; i++) {
		const StatusNet *n = &v->networks[i];

		json_array_append_new(nets, json_pack("{s:s, s:s, s:s, s:s, s:o, s:o}", "id",
						      n->str.id, "type", n->str.type, "tap",
						      n->str.tap, "mac", n->str.mac, "addresses",
						      split_list(n->str.addresses), "ports",
						      split_list(n->str.ports)));
	}
	if (v->str.job_type)
		job = json_pack("{s:s, s:s, s:o}", "type", v->str.job_type, "phase",
				v->str.job_phase, "since", time_or_null(v->num.job_since));
	return json_pack(
		"{s:s, s:s, s:o, s:I, s:I, s:s, s:s, s:o, s:I, s:o, s:i, s:o, s:o, s:o, s:o, s:s, s:o, s:o, s:o}",
		"name", v->str.name, "backend", v->str.backend, "file", text_or_null(v->str.file),
		"generation", (json_int_t)v->num.generation, "observedGeneration",
		(json_int_t)v->num.observed_generation, "desiredState", v->str.desired_state,
		"phase", v->str.phase, "conditions", conds, "pid", (json_int_t)(int64_t)v->num.pid,
		"startedAt", time_or_null(v->num.started_at), "restarts", (int)v->num.restarts,
		"lastError", text_or_null(v->str.last_error), "nextRetryAt",
		time_or_null(v->num.next_retry_at), "disks", disks, "networks", nets, "vmState",
		v->str.vm_state, "job", job ?: json_null(), "vmmVersion",
		text_or_null(v->str.vmm_version), "fileHash", text_or_null(v->str.file_hash));
}

/* status.json's snapshot: its size and time while it is suspended, or null. */
static json_t *snapshot_render(const StatusView *v)
{
	if (!v->num.has_snapshot)
		return json_null();
	return json_pack("{s:I, s:o}", "size", (json_int_t)v->num.snapshot_size, "takenAt",
			 time_or_null(v->num.snapshot_taken_at));
}

static int status_write(Manager *m, const Sandbox *sb, const StatusView *v)
{
	_cleanup_free_ char *dir = NULL, *path = NULL, *text = NULL;
	json_t *j = status_render(v);
	int r;

	/* Where the spec came from (source-revision.c): {kind, revision}, or null. */
	if (j)
		json_object_set_new(j, "sourceRevision",
				    v->str.source_revision
					    ? json_pack("{s:s, s:s}", "kind", v->str.source_kind,
							"revision", v->str.source_revision)
					    : json_null());

	if (j)
		json_object_set_new(j, "snapshot", snapshot_render(v));
	/* startFrom: snapshot: "booted", "booted; its template was saved", "restored from ...". */
	if (j)
		json_object_set_new(j, "startedFrom",
				    v->str.start_note ? json_string(v->str.start_note) : json_null());
	text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	json_decref(j);
	if (!text)
		return -ENOMEM;
	if (asprintf(&dir, "%s/%s", m->config.run_dir, sb->name) < 0 ||
	    asprintf(&path, "%s/status.json", dir) < 0)
		return -ENOMEM;
	/*
	 * Not for everyone: its messages quote the sandbox file. 0640, of vmd's group, or of the
	 * run dir's when that is setgid (docs/status.md): a monitoring group reads it.
	 */
	r = mkdir_p(dir, 0750);
	if (r >= 0)
		r = write_file_atomic(path, text, strlen(text), 0640, false);
	if (r < 0)
		return log_fields(LOG_ERR,
				  &(LogFields){ .sandbox = sb->name,
						.error = -r,
						.message_id = LOG_MESSAGE_DAEMON },
				  "cannot write %s", path);
	return 0;
}

static void set_phase(Manager *m, Sandbox *sb, Phase p, uint64_t now)
{
	if (p != sb->status.phase || !sb->phase_since)
		sb->phase_since = now;
	m->phase_tally[sb->status.phase]--;
	m->phase_tally[p]++;
	sb->status.phase = p;
}

void sandbox_update_status(Manager *m, Sandbox *sb, const Plan *plan)
{
	uint64_t now_real = now_usec(CLOCK_REALTIME), now_mono = now_usec(CLOCK_MONOTONIC);
	_cleanup_(status_view_done) StatusView v = {};
	uint64_t fingerprint;
	Phase old_phase = sb->status.phase;
	ConditionStatus old_ready = sb->status.conditions[CONDITION_READY].status;
	const char *old_reason = sb->status.conditions[CONDITION_READY].reason;
	EventsMark before;

	events_mark(sb, &before);
	set_phase(m, sb, compute_phase(m, sb, plan), now_real);
	manager_tally_update(m, sb);
	probe_sync(m, sb);
	compute_conditions(m, sb, plan, now_real);
	rollout_status_updated(m, sb, plan, now_real);
	sandbox_wake_condition(sb, now_real);
	manager_tally_ready(m, sb);
	ordering_status_changed(m, sb, old_phase, old_ready, old_reason);

	if (status_view_build(m, sb, now_mono, now_real, &v) < 0)
		return;
	/* A fingerprint, not the text: 100,000 sandboxes should not keep 100,000 copies. */
	fingerprint = status_fingerprint(&v);
	if (fingerprint == sb->status_hash)
		return;
	if (status_write(m, sb, &v) >= 0)
		sb->status_hash = fingerprint;
	events_status_changed(m, sb, &before);
}

void sandbox_remove_status(Manager *m, Sandbox *sb)
{
	_cleanup_free_ char *dir = NULL, *path = NULL, *backoff = NULL;

	if (asprintf(&dir, "%s/%s", m->config.run_dir, sb->name) < 0 ||
	    asprintf(&path, "%s/status.json", dir) < 0 ||
	    asprintf(&backoff, "%s/" SANDBOX_BACKOFF_FILE, dir) < 0)
		return;
	(void)unlink(path);
	(void)unlink(backoff);
	/* What a kill left half-written is vmd's too. */
	(void)remove_atomic_temporaries(AT_FDCWD, dir);
	(void)rmdir(dir); /* only if the backend left nothing else there */
}

const char *status_condition(json_t *status, const char *type, const char *field)
{
	size_t i;
	json_t *c;

	json_array_foreach(json_object_get(status, "conditions"), i, c)
	{
		if (streq_ptr(json_string_value(json_object_get(c, "type")), type))
			return json_string_value(json_object_get(c, field)) ?: "";
	}
	return "";
}

static int read_status(const char *run_dir, const char *name, json_t **ret)
{
	_cleanup_free_ char *path = NULL;
	json_t *j;

	if (asprintf(&path, "%s/%s/status.json", run_dir, name) < 0)
		return -ENOMEM;
	j = json_load_file(path, 0, NULL);
	if (!j)
		return access(path, F_OK) < 0 ? -ENOENT : -EBADMSG;
	*ret = j;
	return 0;
}

int status_read_one(const char *run_dir, const char *name, json_t **ret)
{
	return read_status(run_dir, name, ret);
}

static int name_compare(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

int status_read_all(const char *run_dir, json_t **ret_array)
{
	struct dirent **entries = NULL;
	json_t *a = json_array();
	int n;

	if (!a)
		return -ENOMEM;
	n = scandir(run_dir, &entries, NULL, name_compare);
	if (n < 0) {
		json_decref(a);
		return -errno;
	}
	for (int i = 0; i < n; i++) {
		json_t *j;

		if (entries[i]->d_name[0] != '.' && read_status(run_dir, entries[i]->d_name, &j) == 0)
			json_array_append_new(a, j);
		free(entries[i]);
	}
	free(entries);
	*ret_array = a;
	return 0;
}
