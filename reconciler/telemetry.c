/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
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
	if (r < 0)
		log_fields(LOG_ERR, &(LogFields){ .error = -r, .message_id = LOG_MESSAGE_DAEMON },
			   "cannot write %s", path);
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
