/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "log.h"
#include "manager.h"
#include "spec-json.h"
#include "status.h"

const char *const phase_table[_PHASE_MAX] = {
	[PHASE_PENDING] = "Pending", [PHASE_STARTING] = "Starting", [PHASE_RUNNING] = "Running",
	[PHASE_PAUSED] = "Paused",   [PHASE_STOPPING] = "Stopping", [PHASE_STOPPED] = "Stopped",
	[PHASE_FAILED] = "Failed",   [PHASE_UNKNOWN] = "Unknown",
};
DEFINE_STRING_TABLE(phase, Phase, _PHASE_MAX)

const char *const condition_type_table[_CONDITION_TYPE_MAX] = {
	[CONDITION_CONFIG_VALID] = "ConfigValid",
	[CONDITION_READY] = "Ready",
	[CONDITION_RESTART_REQUIRED] = "RestartRequired",
	[CONDITION_DEGRADED] = "Degraded",
};

void sandbox_status_done(SandboxStatus *s)
{
	for (size_t i = 0; i < _CONDITION_TYPE_MAX; i++)
		free(s->conditions[i].message);
	*s = (SandboxStatus){};
}

void condition_set(SandboxStatus *s, ConditionType t, bool status, const char *reason,
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

void format_timestamp(uint64_t usec, char buf[static 32])
{
	time_t t = (time_t)(usec / 1000000);
	struct tm tm;
	size_t n;

	gmtime_r(&t, &tm);
	n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, 32 - n, ".%03uZ", (unsigned)(usec / 1000 % 1000));
}

static Phase compute_phase(const Manager *m, const Sandbox *sb, const Plan *plan)
{
	const SandboxSpec *want = sb->path ? sb->desired : NULL;
	const VmObserved *o = &sb->observed;

	if (sb->observe_failed || sb->stranger)
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
	if (!want || want->state == SANDBOX_STOPPED)
		return PHASE_STOPPED;
	if (sb->failures > 0)
		return PHASE_FAILED;
	if (manager_backend_of((Manager *)m, sb) == NULL)
		return PHASE_FAILED;
	for (size_t i = 0; i < plan->n_actions; i++)
		if (plan->actions[i].type == ACTION_START)
			return PHASE_STARTING;
	if (o->state == VM_EXITED && !plan->held)
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
	default:
		return p == PHASE_STOPPED;
	}
}

static void compute_conditions(Manager *m, Sandbox *sb, const Plan *plan, uint64_t now)
{
	SandboxStatus *s = &sb->status;
	const SandboxSpec *want = sb->path ? sb->desired : NULL;
	bool ready = want && phase_is_desired(s->phase, want) && plan->n_actions == 0 &&
		     !plan->held && !sb->observed.busy;
	char msg[256];

	if (sb->config_error)
		condition_set(s, CONDITION_CONFIG_VALID, false, sb->config_reason, sb->config_error,
			      now);
	else if (!sb->path)
		condition_set(s, CONDITION_CONFIG_VALID, false, "FileRemoved",
			      "its file was removed; it is stopped after the grace period", now);
	else
		condition_set(s, CONDITION_CONFIG_VALID, true, "Valid", "", now);

	if (ready)
		condition_set(s, CONDITION_READY, true, "AsDesired", "", now);
	else if (!want)
		condition_set(s, CONDITION_READY, false, "NoValidSpec", "no valid spec to run", now);
	else if (!manager_backend_of(m, sb)) {
		snprintf(msg, sizeof(msg), "backend '%s' is not available in this build of vmd",
			 backend_kind_to_string(manager_backend_kind(m, sb)));
		condition_set(s, CONDITION_READY, false, "BackendUnavailable", msg, now);
	} else if (plan->held && sb->retry_at)
		condition_set(s, CONDITION_READY, false, "BackingOff", sb->last_error, now);
	else if (plan->held)
		condition_set(s, CONDITION_READY, false, "GracePeriod",
			      "waiting out the grace period before a stop, restart or removal", now);
	else
		condition_set(s, CONDITION_READY, false, "Progressing", sb->observed.progress ?: "",
			      now);

	if (sb->restart_required)
		condition_set(
			s, CONDITION_RESTART_REQUIRED, true, "UpdatePolicyOnNextBoot",
			"the file changed what only a new boot can apply; it applies at the next start (updatePolicy on-next-boot)",
			now);
	else
		condition_set(s, CONDITION_RESTART_REQUIRED, false, "UpToDate", "", now);

	if (sb->stranger)
		condition_set(s, CONDITION_DEGRADED, true, "NotOurs",
			      "runtime state vmd cannot prove is its own; it does not touch it", now);
	else if (sb->observe_failed)
		condition_set(s, CONDITION_DEGRADED, true, "ObserveFailed", sb->last_error, now);
	else if (sb->failures > 0)
		condition_set(s, CONDITION_DEGRADED, true, "ActionFailed", sb->last_error, now);
	else if (sb->quick_exits > 1) {
		snprintf(msg, sizeof(msg),
			 "exited %u times in a row soon after starting; restarts back off",
			 sb->quick_exits);
		condition_set(s, CONDITION_DEGRADED, true, "CrashLoop", msg, now);
	} else
		condition_set(s, CONDITION_DEGRADED, false, "AsExpected", "", now);
}

static json_t *time_or_null(uint64_t usec)
{
	char buf[32];

	if (usec == 0)
		return json_null();
	format_timestamp(usec, buf);
	return json_string(buf);
}

static json_t *status_to_json(Manager *m, Sandbox *sb, uint64_t now_mono, uint64_t now_real)
{
	const SandboxStatus *s = &sb->status;
	const VmObserved *o = &sb->observed;
	json_t *j, *conds = json_array(), *disks = json_array(), *nets = json_array();
	uint64_t retry = sb->retry_at > now_mono ? now_real + (sb->retry_at - now_mono) : 0;

	for (size_t i = 0; i < _CONDITION_TYPE_MAX; i++) {
		const Condition *c = &s->conditions[i];

		json_array_append_new(
			conds, json_pack("{s:s, s:s, s:s, s:s, s:o}", "type", condition_type_table[i],
					 "status", c->status ? "True" : "False", "reason",
					 c->reason ?: "", "message", c->message ?: "",
					 "lastTransitionTime", time_or_null(c->last_transition)));
	}
	if (o->config && IN_SET(o->state, VM_STARTING, VM_RUNNING, VM_PAUSED, VM_STOPPING)) {
		json_t *c = spec_to_json(o->config);

		if (c) {
			json_array_extend(disks, json_object_get(c, "disks"));
			json_array_extend(nets, json_object_get(c, "networks"));
			json_decref(c);
		}
	}
	j = json_pack(
		"{s:s, s:s, s:s?, s:I, s:I, s:s, s:s, s:o, s:I, s:o, s:i, s:s?, s:o, s:o, s:o, s:s}",
		"name", sb->name, "backend", backend_kind_to_string(manager_backend_kind(m, sb)),
		"file", sb->path, "generation", (json_int_t)sb->generation, "observedGeneration",
		(json_int_t)(o->state == VM_ABSENT ? 0 : o->generation), "desiredState",
		sb->path && sb->desired ? sandbox_state_to_string(sb->desired->state) : "stopped",
		"phase", phase_to_string(s->phase), "conditions", conds, "pid", (json_int_t)o->pid,
		"startedAt",
		time_or_null(IN_SET(o->state, VM_STARTING, VM_RUNNING, VM_PAUSED, VM_STOPPING)
				     ? o->started_at_usec
				     : 0),
		"restarts", (int)sb->restarts, "lastError", sb->last_error, "nextRetryAt",
		time_or_null(retry), "disks", disks, "networks", nets, "vmState",
		vm_state_to_string(o->state));
	return j;
}

static void set_phase(Manager *m, Sandbox *sb, Phase p)
{
	m->phase_tally[sb->status.phase]--;
	m->phase_tally[p]++;
	sb->status.phase = p;
}

void sandbox_update_status(Manager *m, Sandbox *sb, const Plan *plan)
{
	uint64_t now_real = now_usec(CLOCK_REALTIME), now_mono = now_usec(CLOCK_MONOTONIC);
	_cleanup_free_ char *dir = NULL, *path = NULL, *text = NULL;
	uint64_t hash;
	json_t *j;
	int r;

	set_phase(m, sb, compute_phase(m, sb, plan));
	manager_tally_update(m, sb);
	compute_conditions(m, sb, plan, now_real);

	j = status_to_json(m, sb, now_mono, now_real);
	if (!j)
		return;
	text = json_dumps(j, JSON_INDENT(2));
	json_decref(j);
	if (!text)
		return;
	/* A hash, not the text: 10,000 sandboxes should not keep 10,000 copies around. */
	hash = fnv1a64(FNV1A64_INIT, text, strlen(text));
	if (hash == sb->status_hash)
		return;

	if (asprintf(&dir, "%s/%s", m->config.run_dir, sb->name) < 0 ||
	    asprintf(&path, "%s/status.json", dir) < 0)
		return;
	r = mkdir_p(dir, 0755);
	if (r >= 0)
		r = write_file_atomic(path, text, strlen(text), 0644, false);
	if (r < 0) {
		log_fields(LOG_ERR, &(LogFields){ .sandbox = sb->name, .error = -r },
			   "cannot write %s", path);
		return;
	}
	sb->status_hash = hash;
}

void sandbox_remove_status(Manager *m, Sandbox *sb)
{
	_cleanup_free_ char *dir = NULL, *path = NULL;

	if (asprintf(&dir, "%s/%s", m->config.run_dir, sb->name) < 0 ||
	    asprintf(&path, "%s/status.json", dir) < 0)
		return;
	(void)unlink(path);
	(void)rmdir(dir); /* only if the backend left nothing else there */
}

/* Append s to buf, made safe for a STATUS= line: printable, at most max bytes, whole UTF-8. */
static void append_clean(char *buf, size_t size, const char *s, size_t max)
{
	size_t o = strlen(buf), start = o;

	for (; *s && o + 1 < size && o - start < max; s++)
		buf[o++] = (unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s;
	while (o > start && ((unsigned char)buf[o - 1] & 0xC0) == 0x80 && o - start >= max)
		o--;
	if (o > start && ((unsigned char)buf[o - 1] & 0xC0) == 0xC0)
		o--;
	buf[o] = '\0';
}

static int name_order(const void *a, const void *b)
{
	return strcmp(((const Sandbox *)a)->name, ((const Sandbox *)b)->name);
}

void manager_tally_add(Manager *m, Sandbox *sb)
{
	m->phase_tally[sb->status.phase]++;
	manager_tally_update(m, sb);
}

void manager_tally_remove(Manager *m, Sandbox *sb)
{
	m->phase_tally[sb->status.phase]--;
	prioq_remove(m->failing, &sb->failing_idx);
}

void manager_tally_update(Manager *m, Sandbox *sb)
{
	if (sb->status.phase != PHASE_FAILED && !sb->config_error)
		prioq_remove(m->failing, &sb->failing_idx);
	else if (m->failing || (m->failing = prioq_new(name_order)))
		(void)prioq_put(m->failing, sb, &sb->failing_idx); /* -ENOMEM: left out of STATUS= */
}

/* The STATUS= line: counts per phase, the first failing sandbox and why. */
static void status_line(Manager *m, char *line, size_t size)
{
	const Sandbox *failing = prioq_peek(m->failing);
	size_t total = hashmap_size(m->sandboxes);

	line[0] = '\0';
	if (m->degraded) {
		append_clean(line, size, "Degraded: ", 16);
		append_clean(line, size, m->degraded, 200);
		append_clean(line, size, "; ", 2);
	}
	snprintf(line + strlen(line), size - strlen(line), "%zu sandbox%s", total,
		 total == 1 ? "" : "es");
	for (int p = 0; p < _PHASE_MAX; p++)
		if (m->phase_tally[p])
			snprintf(line + strlen(line), size - strlen(line), ", %u %s",
				 m->phase_tally[p], phase_to_string(p));
	if (failing) {
		append_clean(line, size, "; first failing: ", 20);
		append_clean(line, size, failing->name, 64);
		append_clean(line, size, ": ", 2);
		append_clean(line, size, failing->config_error ?: failing->last_error ?: "failed", 300);
	}
}

void manager_notify_status(Manager *m)
{
	char line[1024];

	status_line(m, line, sizeof(line));
	if (streq_ptr(line, m->notified_status))
		return;
	free(m->notified_status);
	m->notified_status = strdup(line);
	(void)sd_notifyf(false, "STATUS=%s", line);
}

void manager_notify_ready(Manager *m)
{
	char line[1024];

	/* One datagram: systemd never shows "ready" beside a stale status. */
	status_line(m, line, sizeof(line));
	free(m->notified_status);
	m->notified_status = strdup(line);
	(void)sd_notifyf(false, "READY=1\nSTATUS=%s", line);
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
