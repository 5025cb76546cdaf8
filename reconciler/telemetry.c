/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include "log.h"
#include "manager.h"
#include "status.h"
#include "telemetry.h"

/* daemon.json is rewritten at most this often, however many passes come. */
#define WRITE_INTERVAL_USEC (1ull * 1000000)

const char *const pass_kind_table[_PASS_KIND_MAX] = {
	[PASS_EVENT] = "event",
	[PASS_RESYNC] = "resync",
};

const char *const action_result_table[_ACTION_RESULT_MAX] = {
	[ACTION_RESULT_DONE] = "done",
	[ACTION_RESULT_FAILED] = "failed",
	[ACTION_RESULT_REFUSED] = "refused",
};

void telemetry_action(Manager *m, Sandbox *sb, const char *what, ActionResult result)
{
	ActionType t = action_type_from_string(what);

	if (t < 0)
		return; /* an adoption: no action of the plan's */
	m->telemetry.actions[t][result]++;
	if (result == ACTION_RESULT_REFUSED || !sb->action_began)
		return;
	sb->action_stats[t].count++;
	sb->action_stats[t].usec += now_usec(CLOCK_MONOTONIC) - sb->action_began;
	sb->action_began = 0;
}

/* A label value as the exposition format quotes it: backslash, double quote, newline. */
static void put_label(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fputc('\\', f);
		if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

static void put_head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_sandbox_sample(FILE *f, const char *name, const Sandbox *sb, const char *label,
			       const char *value)
{
	fprintf(f, "%s{sandbox=\"", name);
	put_label(f, sb->name);
	if (label)
		fprintf(f, "\",%s=\"%s", label, value);
	fputs("\"} ", f);
}

static double seconds(uint64_t usec)
{
	return (double)usec / 1e6;
}

static void put_daemon(FILE *f, const Telemetry *t)
{
	put_head(f, "vmd_start_time_seconds", "gauge",
		 "When the daemon started, in seconds since the epoch.");
	fprintf(f, "vmd_start_time_seconds %.3f\n", seconds(t->started_at));
	put_head(f, "vmd_last_pass_timestamp_seconds", "gauge",
		 "When the daemon's last pass ended, in seconds since the epoch.");
	fprintf(f, "vmd_last_pass_timestamp_seconds %.3f\n", seconds(t->last_pass_end));
	put_head(f, "vmd_passes_total", "counter",
		 "Passes over the sandboxes: those events marked (event), or all of them (resync).");
	for (int k = 0; k < _PASS_KIND_MAX; k++)
		fprintf(f, "vmd_passes_total{kind=\"%s\"} %" PRIu64 "\n", pass_kind_table[k],
			t->passes[k]);
	put_head(f, "vmd_pass_duration_seconds", "summary", "How long the passes took.");
	for (int k = 0; k < _PASS_KIND_MAX; k++)
		fprintf(f,
			"vmd_pass_duration_seconds_sum{kind=\"%s\"} %.6f\n"
			"vmd_pass_duration_seconds_count{kind=\"%s\"} %" PRIu64 "\n",
			pass_kind_table[k], seconds(t->pass_usec[k]), pass_kind_table[k],
			t->passes[k]);
	put_head(f, "vmd_actions_total", "counter",
		 "Actions on VMs, by action and result (done, failed, refused).");
	for (int a = 0; a < _ACTION_TYPE_MAX; a++)
		for (int r = 0; r < _ACTION_RESULT_MAX; r++)
			fprintf(f, "vmd_actions_total{action=\"%s\",result=\"%s\"} %" PRIu64 "\n",
				action_type_to_string(a), action_result_table[r], t->actions[a][r]);
}

static void put_sandboxes(FILE *f, Manager *m)
{
	Sandbox *sb;

	put_head(f, "vmd_sandbox_phase", "gauge", "1 for the sandbox's phase, 0 for the others.");
	for (ListNode *n = m->all.first; n; n = n->next) {
		sb = list_entry(n, Sandbox, all_node);
		for (int p = 0; p < _PHASE_MAX; p++) {
			put_sandbox_sample(f, "vmd_sandbox_phase", sb, "phase", phase_to_string(p));
			fprintf(f, "%d\n", sb->status.phase == (Phase)p);
		}
	}
	put_head(f, "vmd_sandbox_ready", "gauge",
		 "1 if the VM is as its file asks and nothing is pending.");
	for (ListNode *n = m->all.first; n; n = n->next) {
		sb = list_entry(n, Sandbox, all_node);
		put_sandbox_sample(f, "vmd_sandbox_ready", sb, NULL, NULL);
		fprintf(f, "%d\n", sb->status.conditions[CONDITION_READY].status == CONDITION_TRUE);
	}
	put_head(f, "vmd_sandbox_restarts_total", "counter",
		 "How often vmd started the VM again after it exited.");
	for (ListNode *n = m->all.first; n; n = n->next) {
		sb = list_entry(n, Sandbox, all_node);
		put_sandbox_sample(f, "vmd_sandbox_restarts_total", sb, NULL, NULL);
		fprintf(f, "%u\n", sb->restarts);
	}
	put_head(f, "vmd_sandbox_last_transition_timestamp_seconds", "gauge",
		 "When the sandbox's phase last changed, in seconds since the epoch.");
	for (ListNode *n = m->all.first; n; n = n->next) {
		sb = list_entry(n, Sandbox, all_node);
		put_sandbox_sample(f, "vmd_sandbox_last_transition_timestamp_seconds", sb, NULL,
				   NULL);
		fprintf(f, "%.3f\n", seconds(sb->phase_since));
	}
	put_head(f, "vmd_sandbox_action_duration_seconds", "summary",
		 "How long actions on the sandbox's VM took, from the request to its completion.");
	for (ListNode *n = m->all.first; n; n = n->next) {
		sb = list_entry(n, Sandbox, all_node);
		for (int a = 0; a < _ACTION_TYPE_MAX; a++) {
			if (!sb->action_stats[a].count)
				continue;
			put_sandbox_sample(f, "vmd_sandbox_action_duration_seconds_sum", sb,
					   "action", action_type_to_string(a));
			fprintf(f, "%.6f\n", seconds(sb->action_stats[a].usec));
			put_sandbox_sample(f, "vmd_sandbox_action_duration_seconds_count", sb,
					   "action", action_type_to_string(a));
			fprintf(f, "%" PRIu64 "\n", sb->action_stats[a].count);
		}
	}
}

int telemetry_metrics(Manager *m, char **ret, size_t *ret_len)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return -errno;
	put_daemon(f, &m->telemetry);
	put_sandboxes(f, m);
	if (fclose(f) != 0) {
		free(buf);
		return -ENOMEM;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

/* A write's outcome, logged when it changes: a failure once, not once a second. */
static void report_write(const char *path, int r, int *last)
{
	if (r < 0 && r != *last)
		log_fields(LOG_ERR, &(LogFields){ .error = -r, .message_id = LOG_MESSAGE_DAEMON },
			   "cannot write %s; trying again after the next passes", path);
	else if (r >= 0 && *last < 0)
		log_fields(LOG_INFO, &(LogFields){ .message_id = LOG_MESSAGE_DAEMON },
			   "%s is written again", path);
	*last = r < 0 ? r : 0;
}

/* The metrics file, replaced whole: node_exporter never reads half of one. */
static void write_metrics(Manager *m)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	int r;

	if (!m->config.metrics_file)
		return;
	r = telemetry_metrics(m, &text, &len);
	if (r >= 0)
		r = write_file_atomic(m->config.metrics_file, text, len, 0644, false);
	report_write(m->config.metrics_file, r, &m->telemetry.metrics_error);
}

static void write_daemon_info(Manager *m)
{
	Telemetry *t = &m->telemetry;
	_cleanup_free_ char *path = NULL, *text = NULL;
	char started[32], last[32];
	json_t *j;
	int r;

	format_timestamp(t->started_at, started);
	format_timestamp(t->last_pass_end, last);
	j = json_pack("{s:i, s:s, s:s, s:I, s:I, s:I, s:I}", "pid", (int)getpid(), "startedAt",
		      started, "lastPassEndedAt", last, "lastPassEndedAtUsec",
		      (json_int_t)t->last_pass_end, "resyncUsec", (json_int_t)m->config.resync_usec,
		      "eventPasses", (json_int_t)t->passes[PASS_EVENT], "resyncPasses",
		      (json_int_t)t->passes[PASS_RESYNC]);
	text = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	if (asprintf(&path, "%s/%s", m->config.run_dir, DAEMON_INFO_FILE) < 0 || !text)
		return;
	r = write_file_atomic(path, text, strlen(text), 0644, false);
	report_write(path, r, &t->info_error);
	write_metrics(m);
	t->last_write = now_usec(CLOCK_MONOTONIC);
}

static int write_fired(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	Manager *m = userdata;

	m->telemetry.write_timer = sd_event_source_disable_unref(m->telemetry.write_timer);
	write_daemon_info(m);
	return 0;
}

void telemetry_init(Manager *m)
{
	m->telemetry.started_at = now_usec(CLOCK_REALTIME);
}

void telemetry_done(Manager *m)
{
	m->telemetry.write_timer = sd_event_source_disable_unref(m->telemetry.write_timer);
}

void telemetry_pass_done(Manager *m, PassKind kind, uint64_t began)
{
	Telemetry *t = &m->telemetry;
	uint64_t now = now_usec(CLOCK_MONOTONIC);

	if (m->read_only)
		return;
	t->passes[kind]++;
	t->pass_usec[kind] += now - began;
	t->last_pass_end = now_usec(CLOCK_REALTIME);
	if (t->write_timer)
		return; /* a write is due: it takes this pass in */
	if (!t->last_write || now >= t->last_write + WRITE_INTERVAL_USEC) {
		write_daemon_info(m);
		return;
	}
	if (sd_event_add_time(m->event, &t->write_timer, CLOCK_MONOTONIC,
			      t->last_write + WRITE_INTERVAL_USEC, 0, write_fired, m) < 0)
		write_daemon_info(m);
}

/* The pid vmd.lock names, and whether someone holds that lock (1), nobody does (0), -errno. */
static int lock_state(const char *run_dir, DaemonLiveness *d)
{
	_cleanup_free_ char *path = NULL, *pid = NULL;
	_cleanup_close_ int fd = -EBADF;
	pid_t holder;

	if (asprintf(&path, "%s/vmd.lock", run_dir) < 0)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	d->ran = true;
	if (read_file(path, 31, &pid, NULL) >= 0)
		d->pid = (pid_t)atoi(pid);
	/*
	 * /proc/locks, not a lock of our own: a shared lock taken to look would make a vmd
	 * starting that very moment think another one runs.
	 */
	holder = flock_holder(fd);
	if (holder < 0)
		return holder;
	/* A lock held for a pid that is gone: something it left holds it, not a vmd. */
	return holder > 0 && (kill(holder, 0) == 0 || errno == EPERM);
}

int daemon_liveness(const char *run_dir, DaemonLiveness *ret)
{
	_cleanup_free_ char *path = NULL, *text = NULL;
	DaemonLiveness d = {};
	json_t *j;
	int r;

	r = lock_state(run_dir, &d);
	if (r == -ENOMEM)
		return r;
	d.running = r > 0;
	d.unknown = r < 0;
	if (asprintf(&path, "%s/%s", run_dir, DAEMON_INFO_FILE) < 0)
		return -ENOMEM;
	if (read_file(path, 64 * 1024, &text, NULL) >= 0 && (j = json_loads(text, 0, NULL))) {
		d.last_pass = (uint64_t)json_integer_value(json_object_get(j, "lastPassEndedAtUsec"));
		d.resync_usec = (uint64_t)json_integer_value(json_object_get(j, "resyncUsec"));
		json_decref(j);
	}
	*ret = d;
	return 0;
}
