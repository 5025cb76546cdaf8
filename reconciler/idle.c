/* SPDX-License-Identifier: MIT */
/*
 * suspendAfterIdle (idle.h). While a sandbox that has it runs, a timer samples its
 * backend's activity count every tenth of the idle time (100 ms to 30 s): a count that
 * changed is activity, and one that stood still for the whole idle time puts it to sleep.
 * Asleep, the planner is given its spec as state: suspended (the executor saves it as
 * that would); its file's next generation, or a wake request (`vmd wake`), wakes it.
 *
 * Once its VMM is gone, vmd listens on the TCP ports its user networks forward (QEMU's
 * hostfwd, gone with QEMU), and a connect to one wakes it: vmd closes them first, so that
 * the restored VMM can bind them again. The connection that woke it was in the listen
 * backlog, never accepted: the close resets it (the client's connect went through, then
 * ECONNRESET); a retry once the VMM listens again reaches the guest.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <jansson.h>
#include <stdio.h>
#include <unistd.h>

#include "idle.h"
#include "log.h"
#include "manager.h"
#include "spec-json.h"

#define SAMPLE_MIN_USEC (100ull * 1000)
#define SAMPLE_MAX_USEC (30ull * 1000 * 1000)

static char *state_path(Manager *m, const char *name)
{
	char *p = NULL;

	return asprintf(&p, "%s/idle/%s.json", m->config.state_dir, name) < 0 ? NULL : p;
}

/* "10m", "90s", "1500ms": as the file would say it. */
static void format_ms(uint64_t ms, char buf[static 32])
{
	if (ms % 3600000 == 0)
		snprintf(buf, 32, "%" PRIu64 "h", ms / 3600000);
	else if (ms % 60000 == 0)
		snprintf(buf, 32, "%" PRIu64 "m", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(buf, 32, "%" PRIu64 "s", ms / 1000);
	else
		snprintf(buf, 32, "%" PRIu64 "ms", ms);
}

static int set_asleep(Sandbox *sb, uint64_t generation, uint64_t idle_ms)
{
	char d[32];

	format_ms(idle_ms, d);
	free(sb->asleep_reason);
	sb->asleep_reason = NULL;
	if (asprintf(&sb->asleep_reason, "idle for %s: suspended", d) < 0)
		return -ENOMEM;
	sb->asleep_generation = generation;
	sb->asleep_idle_ms = idle_ms;
	return 0;
}

static void release_ports(Sandbox *sb)
{
	for (size_t i = 0; i < sb->n_asleep_ports; i++)
		sd_event_source_disable_unref(sb->asleep_ports[i]);
	sb->asleep_ports = mfree(sb->asleep_ports);
	sb->n_asleep_ports = 0;
	sb->asleep_ports_said = false;
}

static void clear_asleep(Sandbox *sb)
{
	release_ports(sb);
	sb->asleep_generation = 0;
	sb->asleep_idle_ms = 0;
	sb->asleep_spec = sandbox_spec_free(sb->asleep_spec);
	sb->asleep_reason = mfree(sb->asleep_reason);
}

void idle_load(Manager *m, Sandbox *sb)
{
	_cleanup_free_ char *path = state_path(m, sb->name);
	_cleanup_(json_decrefp) json_t *j = path ? json_load_file(path, 0, NULL) : NULL;
	uint64_t generation = (uint64_t)json_integer_value(json_object_get(j, "generation"));

	if (generation > 0)
		(void)set_asleep(sb, generation,
				 (uint64_t)json_integer_value(json_object_get(j, "idleMs")));
}

/* Kept atomically, so that a restarted vmd keeps it asleep; -errno said in the journal. */
static int save(Manager *m, Sandbox *sb)
{
	_cleanup_free_ char *path = state_path(m, sb->name), *dir = NULL, *text = NULL;
	_cleanup_(json_decrefp) json_t *j = NULL;
	int r;

	if (!path || asprintf(&dir, "%s/idle", m->config.state_dir) < 0)
		return -ENOMEM;
	if (sb->asleep_generation == 0) {
		r = unlink(path) < 0 && errno != ENOENT ? -errno : 0;
	} else {
		j = json_pack("{s:I, s:I}", "generation", (json_int_t)sb->asleep_generation,
			      "idleMs", (json_int_t)sb->asleep_idle_ms);
		text = j ? json_dumps(j, JSON_SORT_KEYS) : NULL;
		r = text ? mkdir_p(dir, 0700) : -ENOMEM;
		if (r >= 0)
			r = write_file_atomic(path, text, strlen(text), 0600, true);
	}
	if (r < 0)
		log_fields(LOG_ERR,
			   &(LogFields){ .sandbox = sb->name,
					 .error = -r,
					 .message_id = LOG_MESSAGE_DAEMON },
			   "cannot write %s; a restarted vmd would not know whether it sleeps", path);
	return r;
}

static void wake(Manager *m, Sandbox *sb, const char *why)
{
	if (sb->asleep_generation == 0)
		return;
	clear_asleep(sb);
	(void)save(m, sb);
	log_fields(LOG_INFO,
		   &(LogFields){ .sandbox = sb->name,
				 .action = "wake",
				 .message_id = LOG_MESSAGE_ACTION_DONE },
		   "woken: %s", why);
	manager_mark_dirty(m, sb);
}

void idle_plan_input(Manager *m, Sandbox *sb, PlanInput *in)
{
	if (sb->asleep_generation == 0 || !in->desired)
		return;
	if (sb->asleep_generation != sb->generation) {
		wake(m, sb, "its file changed");
		return;
	}
	if (in->desired->state != SANDBOX_RUNNING)
		return;
	if (!sb->asleep_spec && spec_copy(in->desired, &sb->asleep_spec) >= 0)
		sb->asleep_spec->state = SANDBOX_SUSPENDED;
	if (sb->asleep_spec)
		in->desired = sb->asleep_spec;
}

void idle_plan_reasons(const Sandbox *sb, Plan *plan)
{
	const char *why = idle_reason(sb);

	for (size_t k = 0; why && k < plan->n_actions; k++)
		if (plan->actions[k].type == ACTION_SUSPEND)
			plan->actions[k].reason = why; /* lives until its wake, past this pass */
}

const SandboxSpec *idle_wanted(const Sandbox *sb)
{
	return sb->asleep_generation && sb->asleep_generation == sb->generation && sb->asleep_spec
		       ? sb->asleep_spec
		       : sb->desired;
}

const char *idle_reason(const Sandbox *sb)
{
	return sb->asleep_generation == sb->generation ? sb->asleep_reason : NULL;
}

static uint64_t sample_interval(uint64_t idle_ms)
{
	uint64_t usec = MAX(idle_ms * 1000 / 10, SAMPLE_MIN_USEC);

	return MIN(usec, SAMPLE_MAX_USEC);
}

/* Whether its activity count moved since the last sample; one that cannot be read did. */
static bool active(Manager *m, Sandbox *sb)
{
	Backend *b = manager_backend_of(m, sb);
	uint64_t count = 0;
	bool moved;

	if (!b || !b->ops->activity || b->ops->activity(b, sb->name, &count) < 0)
		return true;
	moved = count != sb->idle_count;
	sb->idle_count = count;
	return moved;
}

static void fall_asleep(Manager *m, Sandbox *sb, uint64_t idle_ms)
{
	if (set_asleep(sb, sb->generation, idle_ms) < 0)
		return;
	/* Not kept: a restarted vmd would not keep it asleep, so it does not sleep (the
	 * next pass watches it again from now; save() said why). */
	if (save(m, sb) < 0) {
		clear_asleep(sb);
		manager_mark_dirty(m, sb);
		return;
	}
	log_fields(LOG_INFO,
		   &(LogFields){ .sandbox = sb->name,
				 .action = "suspend",
				 .message_id = LOG_MESSAGE_ACTION_DONE },
		   "%s (until vmd wake, or a change of its file)", sb->asleep_reason);
	manager_mark_dirty(m, sb);
}

/* Whether it is one to watch now: it runs, as its file wants, on a backend that can save it. */
static bool watched(Manager *m, Sandbox *sb)
{
	Backend *b = manager_backend_of(m, sb);

	return m->event && !m->read_only && sb->path && sb->desired &&
	       sb->desired->suspend_after_idle_ms > 0 && sb->desired->state == SANDBOX_RUNNING &&
	       sb->asleep_generation == 0 && sb->observed.state == VM_RUNNING &&
	       sb->observed.job == BACKEND_OP_NONE && b && b->ops->activity &&
	       (b->ops->caps & BACKEND_CAP_SUSPEND);
}

static int on_sample(sd_event_source *s, uint64_t usec _unused_, void *userdata)
{
	Sandbox *sb = userdata;
	Manager *m = sb->manager;
	uint64_t now = now_usec(CLOCK_MONOTONIC), idle_ms;

	/* Its file changed since the last pass (no suspendAfterIdle now): the next pass says. */
	if (!watched(m, sb)) {
		sb->idle_timer = sd_event_source_disable_unref(sb->idle_timer);
		return 0;
	}
	idle_ms = sb->desired->suspend_after_idle_ms;
	if (active(m, sb))
		sb->idle_active_at = now;
	if (now - sb->idle_active_at >= idle_ms * 1000) {
		sb->idle_timer = sd_event_source_disable_unref(sb->idle_timer);
		fall_asleep(m, sb, idle_ms);
		return 0;
	}
	(void)sd_event_source_set_time(s, now + sample_interval(idle_ms));
	(void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
	return 0;
}

static int on_connect(sd_event_source *s, int fd _unused_, uint32_t revents _unused_, void *userdata)
{
	Sandbox *sb = userdata;
	const char *port = NULL;
	char why[80];

	(void)sd_event_source_get_description(s, &port);
	snprintf(why, sizeof(why), "a connect to its forwarded port %s", port ?: "");
	wake(sb->manager, sb, why);
	return 0;
}

/* A listening socket on p's address and port: its fd, or -errno. */
static int listen_on(const PortSpec *p)
{
	_cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(p->host) };
	int one = 1;

	if (fd < 0)
		return -errno;
	if (inet_pton(AF_INET, p->address[0] ? p->address : "127.0.0.1", &sa.sin_addr) != 1)
		return -EINVAL;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0)
		return -errno;
	return TAKE_FD(fd);
}

/*
 * Asleep, its VMM gone: hold the TCP ports its user networks forward, as the snapshot
 * says (what the restored VMM binds again). One that cannot be held (taken meanwhile) is
 * said once, and tried again at the next pass.
 */
static void hold_ports(Manager *m, Sandbox *sb)
{
	const SandboxSpec *saved = sb->snapshot ? sb->snapshot->config : NULL;
	size_t want = 0;

	if (!saved || sb->asleep_ports)
		return;
	for (size_t i = 0; i < saved->n_networks; i++)
		want += saved->networks[i].type == NET_USER ? saved->networks[i].n_ports : 0;
	if (want == 0 || !(sb->asleep_ports = calloc(want, sizeof(sd_event_source *))))
		return;
	for (size_t i = 0; i < saved->n_networks; i++)
		for (size_t k = 0;
		     saved->networks[i].type == NET_USER && k < saved->networks[i].n_ports; k++) {
			const PortSpec *p = &saved->networks[i].ports[k];
			sd_event_source **s = &sb->asleep_ports[sb->n_asleep_ports];
			int fd = p->protocol == PORT_TCP ? listen_on(p) : -EPROTONOSUPPORT;
			int r = fd;

			if (p->protocol != PORT_TCP)
				continue; /* a datagram has no connect to wake it: docs */
			if (fd >= 0 &&
			    (r = sd_event_add_io(m->event, s, fd, EPOLLIN, on_connect, sb)) < 0)
				close(fd);
			if (r >= 0) {
				char desc[HOST_PORT_KEY_MAX + 16];

				snprintf(desc, sizeof(desc), "tcp %s:%u",
					 p->address[0] ? p->address : "127.0.0.1", p->host);
				(void)sd_event_source_set_description(*s, desc);
				(void)sd_event_source_set_io_fd_own(*s, true);
				sb->n_asleep_ports++;
				continue;
			}
			if (!sb->asleep_ports_said)
				log_fields(LOG_WARNING,
					   &(LogFields){ .sandbox = sb->name,
							 .error = -r,
							 .message_id = LOG_MESSAGE_DAEMON },
					   "cannot listen on its forwarded port tcp %s:%u while it sleeps: a connect there does not wake it; tried again",
					   p->address[0] ? p->address : "127.0.0.1", p->host);
			/* All or none: the next pass tries them all again. */
			release_ports(sb);
			sb->asleep_ports_said = true;
			return;
		}
}

void idle_update(Manager *m, Sandbox *sb)
{
	uint64_t now = now_usec(CLOCK_MONOTONIC);

	if (m->event && !m->read_only && sb->asleep_generation &&
	    sb->asleep_generation == sb->generation && sb->snapshot &&
	    IN_SET(sb->observed.state, VM_ABSENT, VM_EXITED) && sb->observed.job == BACKEND_OP_NONE)
		hold_ports(m, sb);

	if (!watched(m, sb)) {
		sb->idle_timer = sd_event_source_disable_unref(sb->idle_timer);
		return;
	}
	if (sb->idle_timer)
		return;
	/* Idle from now on, until its count says otherwise. */
	(void)active(m, sb);
	sb->idle_active_at = now;
	(void)sd_event_add_time(m->event, &sb->idle_timer, CLOCK_MONOTONIC,
				now + sample_interval(sb->desired->suspend_after_idle_ms), 1000,
				on_sample, sb);
}

void idle_take_wakes(Manager *m)
{
	_cleanup_free_ char *dir = NULL;
	struct dirent *e;
	DIR *d;

	if (m->read_only || asprintf(&dir, "%s/" IDLE_WAKE_DIR, m->config.run_dir) < 0)
		return;
	d = opendir(dir);
	while (d && (e = readdir(d))) {
		_cleanup_free_ char *path = NULL;
		Sandbox *sb;

		if (e->d_name[0] == '.' || asprintf(&path, "%s/%s", dir, e->d_name) < 0)
			continue;
		sb = manager_sandbox(m, e->d_name, false);
		if (sb)
			wake(m, sb, "vmd wake");
		(void)unlink(path); /* taken: vmd wake waits for that */
	}
	if (d)
		closedir(d);
}

void idle_forget(Manager *m, Sandbox *sb)
{
	clear_asleep(sb);
	if (!m->read_only)
		(void)save(m, sb);
}

void idle_free(Sandbox *sb)
{
	sb->idle_timer = sd_event_source_disable_unref(sb->idle_timer);
	clear_asleep(sb);
}
