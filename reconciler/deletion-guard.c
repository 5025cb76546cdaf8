/* SPDX-License-Identifier: MIT */
/*
 * The mass deletion guard. A file that goes stops its VM after the grace period; a
 * directory that goes stops nothing. Between the two lies what an operator rarely means:
 * most of the files going at once (a bad checkout, a script emptying the directory, a
 * mount over it). vmd counts the sandboxes whose file is gone while their VM runs (the
 * removals: a stop would follow) against those that have a VM, and when the stop of one
 * comes due with more of them than --max-deletions allows, it stops none: the daemon and
 * each of them report Degraded (SuspiciousMassDeletion), and the stops wait until the files
 * are back (or the VMs gone) or an approval comes (vmd approve-deletions).
 *
 * "At once" is the grace period: every stop waits it out, so the removals that come within
 * it are counted together. A pass over every sandbox (resync, SIGHUP, a replaced directory)
 * finds files gone one by one: a stop that comes due while it does waits for the pass to
 * end, when all it found is counted. A directory replaced under vmd (another device or
 * inode at the same path: a mount over it) is suspect whatever the count: what the new one
 * lacks is held, as a vanished directory stops nothing.
 *
 * An approval is a copy of deletions-held.json in the run dir, with the trip's random id,
 * read at SIGHUP: it lets go the stops it names, of that trip alone; what goes after it is
 * judged anew. Nothing here plans: the planner's stops are only held back (plan.c stays pure).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <systemd/sd-id128.h>

#include "deletion-guard.h"
#include "log.h"
#include "manager.h"
#include "vmm.h"

int deletion_limit_from_string(const char *s, DeletionLimit *ret)
{
	DeletionLimit l = {};
	const char *p = s;

	if (streq(s, "off")) {
		*ret = (DeletionLimit){ .off = true };
		return 0;
	}
	/* One or two terms: N, P%, in either order, a comma between. */
	for (unsigned term = 0; term < 2; term++) {
		size_t digits = strspn(p, "0123456789");
		uint64_t v;

		if (parse_decimal_u64(p, digits, &v) < 0 || v > UINT32_MAX)
			return -EINVAL;
		p += digits;
		if (*p == '%') {
			if (l.has_percent || v > 100)
				return -EINVAL;
			l.has_percent = true;
			l.percent = (unsigned)v;
			p++;
		} else {
			if (l.has_count)
				return -EINVAL;
			l.has_count = true;
			l.count = (unsigned)v;
		}
		if (*p == '\0') {
			*ret = l;
			return 0;
		}
		if (*p++ != ',')
			return -EINVAL;
	}
	return -EINVAL;
}

void deletion_limit_format(const DeletionLimit *l, char buf[static 32])
{
	if (l->off)
		snprintf(buf, 32, "off");
	else if (l->has_count && l->has_percent)
		snprintf(buf, 32, "%u,%u%%", l->count, l->percent);
	else if (l->has_percent)
		snprintf(buf, 32, "%u%%", l->percent);
	else
		snprintf(buf, 32, "%u", l->count);
}

bool deletion_limit_exceeded(const DeletionLimit *l, size_t n, size_t total)
{
	if (l->off || n == 0)
		return false;
	if (l->has_count && n <= l->count)
		return false;
	if (l->has_percent && (uint64_t)n * 100 <= (uint64_t)l->percent * total)
		return false;
	return true;
}

bool deletions_file_names(json_t *file, const char *name)
{
	size_t i;
	json_t *v;

	json_array_foreach(json_object_get(file, "sandboxes"), i, v)
	{
		if (streq_ptr(json_string_value(v), name))
			return true;
	}
	return false;
}

/* The guard in the daemon */

/* A suspended one counts: its snapshot is its VM, which a removal would drop. */
static bool has_vm(const Sandbox *sb)
{
	return IN_SET(sb->observed.state, VM_STARTING, VM_RUNNING, VM_PAUSED, VM_STOPPING) ||
	       sb->snapshot;
}

/* Its file is gone and its VM is up, with no stop under way: the planner stops it. */
static bool stop_would_follow(const Sandbox *sb)
{
	return !sb->path && ((IN_SET(sb->observed.state, VM_STARTING, VM_RUNNING, VM_PAUSED) &&
			      sb->observed.job != BACKEND_OP_STOP) ||
			     sb->snapshot);
}

static char *held_path(const Manager *m, const char *file)
{
	char *p = NULL;

	return asprintf(&p, "%s/%s", m->config.run_dir, file) < 0 ? NULL : p;
}

static int name_compare(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* deletions-held.json: what vmd approve-deletions shows and copies; gone once none is held. */
static void write_held(Manager *m)
{
	const DeletionGuard *g = &m->guard;
	_cleanup_free_ char *path = held_path(m, DELETIONS_HELD_FILE), *text = NULL;
	_cleanup_free_ const char **names = NULL;
	VmmIdentity self = {};
	char since[32], what[512];
	json_t *j, *list;
	size_t n = 0;
	int r;

	if (m->read_only || !path)
		return;
	if (g->write_event)
		(void)sd_event_source_set_enabled(g->write_event, SD_EVENT_OFF);
	if (!g->tripped) {
		(void)unlink(path);
		return;
	}
	names = calloc(g->removals.size + 1, sizeof(char *));
	list = json_array();
	if (!names || !list) {
		json_decref(list);
		return;
	}
	for (ListNode *i = g->removals.first; i; i = i->next)
		names[n++] = list_entry(i, Sandbox, removal_node)->name;
	qsort(names, n, sizeof(char *), name_compare);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, json_string(names[i]));
	/* The pid and its start time: vmd approve-deletions signals this daemon, no other. */
	(void)vmm_identity(getpid(), &self);
	format_timestamp(g->since, since);
	deletion_guard_describe(m, what, sizeof(what));
	j = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:o}", "id", g->id, "since", since,
		      "cause", g->replaced ? "directory-replaced" : "too-many", "message", what,
		      "pid", (int)getpid(), "startTime", (json_int_t)self.start_time,
		      "sandboxesWithVm", (json_int_t)g->n_vms, "sandboxes", list);
	text = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	r = text ? write_file_atomic(path, text, strlen(text), 0644, false) : -ENOMEM;
	if (r < 0)
		log_fields(LOG_ERR, &(LogFields){ .error = -r }, "cannot write %s", path);
}

static int write_fired(sd_event_source *s _unused_, void *userdata)
{
	write_held(userdata);
	return 0;
}

static void accept_dir(DeletionGuard *g, dev_t dev, ino_t ino)
{
	g->accepted.dev = dev;
	g->accepted.ino = ino;
	g->dir_replaced = false;
}

static void trip(Manager *m, bool replaced)
{
	DeletionGuard *g = &m->guard;
	char what[512];
	sd_id128_t id;

	g->tripped = true;
	g->replaced = replaced;
	g->since = now_usec(CLOCK_REALTIME);
	if (sd_id128_randomize(&id) >= 0)
		sd_id128_to_string(id, g->id);
	else
		snprintf(g->id, sizeof(g->id), "%016" PRIx64 "%016" PRIx64, g->since,
			 now_usec(CLOCK_MONOTONIC));
	deletion_guard_describe(m, what, sizeof(what));
	log_fields(LOG_ERR, &(LogFields){ .result = "held", .message_id = LOG_MESSAGE_DELETIONS },
		   "%s (%s/%s)", what, m->config.run_dir, DELETIONS_HELD_FILE);
	/* Each of them says so in its status. */
	for (ListNode *i = g->removals.first; i; i = i->next)
		manager_mark_dirty(m, list_entry(i, Sandbox, removal_node));
	write_held(m);
}

static void untrip(Manager *m, const char *why)
{
	DeletionGuard *g = &m->guard;

	g->tripped = false;
	g->replaced = false;
	/* The directory read now is the one: its files are back, or what it lacks approved. */
	if (g->dir_replaced)
		accept_dir(g, g->seen_dev, g->seen_ino);
	log_fields(LOG_INFO,
		   &(LogFields){ .result = "released", .message_id = LOG_MESSAGE_DELETIONS },
		   "no stop of a removed file is held any more: %s", why);
	write_held(m);
}

/* The set of held stops changed while the guard holds them. */
static void held_changed(Manager *m)
{
	DeletionGuard *g = &m->guard;

	if (g->removals.size == 0)
		untrip(m, "their files are back, or their VMs gone");
	else if (g->write_event)
		(void)sd_event_source_set_enabled(g->write_event, SD_EVENT_ONESHOT);
}

void deletion_guard_update(Manager *m, Sandbox *sb)
{
	DeletionGuard *g = &m->guard;
	bool vm = has_vm(sb), removal;

	if (vm != sb->has_vm) {
		sb->has_vm = vm;
		if (vm)
			g->n_vms++;
		else
			g->n_vms--;
	}
	/* An approval is for this removal: its file coming back, or its VM gone, ends it. */
	if (sb->path || !vm)
		sb->deletion_approved = false;
	removal = stop_would_follow(sb) && !sb->deletion_approved;
	if (removal == list_contains(&g->removals, &sb->removal_node))
		return;
	if (removal)
		list_append(&g->removals, &sb->removal_node);
	else
		list_remove(&g->removals, &sb->removal_node);
	if (g->tripped)
		held_changed(m);
}

void deletion_guard_forget(Manager *m, Sandbox *sb)
{
	DeletionGuard *g = &m->guard;

	if (sb->has_vm)
		g->n_vms--;
	sb->has_vm = false;
	if (!list_contains(&g->removals, &sb->removal_node))
		return;
	list_remove(&g->removals, &sb->removal_node);
	if (g->tripped)
		held_changed(m);
}

bool deletion_guard_holds(const Manager *m, const Sandbox *sb)
{
	return m->guard.tripped && list_contains(&m->guard.removals, &sb->removal_node);
}

/* Whether the stop of sb, whose file is gone, may go ahead now. */
static bool allows_stop(Manager *m, Sandbox *sb)
{
	DeletionGuard *g = &m->guard;

	deletion_guard_update(m, sb);
	/* Approved, or no removal (a stop under way): nothing to hold. */
	if (m->config.max_deletions.off || !list_contains(&g->removals, &sb->removal_node))
		return true;
	if (g->tripped)
		return false;
	if (g->dir_replaced) {
		trip(m, true);
		return false;
	}
	/* A pass finds files gone one by one: every one it finds is counted before any stop. */
	if (m->scan_complete && m->resync_next) {
		g->deferred = true;
		return false;
	}
	if (deletion_limit_exceeded(&m->config.max_deletions, g->removals.size, g->n_vms)) {
		trip(m, false);
		return false;
	}
	return true;
}

void deletion_guard_filter(Manager *m, Sandbox *sb, Plan *plan)
{
	size_t k = 0;
	bool stop = false;

	/* A snapshot dropped loses a suspended guest as a stop loses a running one. */
	for (size_t i = 0; i < plan->n_actions; i++)
		stop |= IN_SET(plan->actions[i].type, ACTION_STOP, ACTION_DROP_SNAPSHOT);
	if (!stop || allows_stop(m, sb))
		return;
	for (size_t i = 0; i < plan->n_actions; i++)
		if (!IN_SET(plan->actions[i].type, ACTION_STOP, ACTION_DROP_SNAPSHOT))
			plan->actions[k++] = plan->actions[i];
	plan->n_actions = k;
	plan->held = true; /* the trip's end, an approval or the pass's end brings it back */
}

void deletion_guard_scanned(Manager *m, const char *real, const struct stat *st)
{
	DeletionGuard *g = &m->guard;
	bool again = g->dir_replaced && g->seen_dev == st->st_dev && g->seen_ino == st->st_ino;

	if (!g->accepted.real || !streq(g->accepted.real, real)) {
		/* The first, or elsewhere: a symlink swapped to another revision, as git-sync does. */
		char *copy = strdup(real);

		if (!copy)
			return;
		free(g->accepted.real);
		g->accepted.real = copy;
		accept_dir(g, st->st_dev, st->st_ino);
		return;
	}
	if (g->accepted.dev == st->st_dev && g->accepted.ino == st->st_ino) {
		if (g->dir_replaced)
			log_fields(LOG_INFO, &(LogFields){ .message_id = LOG_MESSAGE_DELETIONS },
				   "%s is the directory vmd read before again",
				   m->config.sandbox_dir);
		g->dir_replaced = false;
		return;
	}
	g->dir_replaced = true;
	g->seen_dev = st->st_dev;
	g->seen_ino = st->st_ino;
	if (!again)
		log_fields(LOG_WARNING, &(LogFields){ .message_id = LOG_MESSAGE_DELETIONS },
			   "%s is another directory now (device %u:%u, inode %ju; vmd read %u:%u, inode %ju): a mount over it, or replaced; what it lacks is not stopped without an approval",
			   m->config.sandbox_dir, major(st->st_dev), minor(st->st_dev),
			   (uintmax_t)st->st_ino, major(g->accepted.dev), minor(g->accepted.dev),
			   (uintmax_t)g->accepted.ino);
}

void deletion_guard_pass_done(Manager *m)
{
	DeletionGuard *g = &m->guard;
	bool deferred = g->deferred;

	g->deferred = false;
	if (m->config.max_deletions.off || g->tripped)
		return;
	if (g->dir_replaced && m->scan_complete) {
		if (g->removals.size > 0) {
			trip(m, true);
			return;
		}
		accept_dir(g, g->seen_dev, g->seen_ino);
		log_fields(LOG_INFO, &(LogFields){ .message_id = LOG_MESSAGE_DELETIONS },
			   "reading %s from the new directory: it lacks no file of a VM that runs",
			   m->config.sandbox_dir);
		return;
	}
	if (!deferred)
		return;
	if (deletion_limit_exceeded(&m->config.max_deletions, g->removals.size, g->n_vms)) {
		trip(m, false);
		return;
	}
	/* Not too many: the stops that came due go ahead. */
	for (ListNode *i = g->removals.first; i; i = i->next)
		manager_mark_dirty(m, list_entry(i, Sandbox, removal_node));
}

/* An approval is vmd's own kind of file: owned by root or vmd's user, and only by them. */
static bool approval_trusted(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	       (st.st_uid == 0 || st.st_uid == geteuid()) && !(st.st_mode & (S_IWGRP | S_IWOTH));
}

/* Let go the stops that approval (of the trip under way) names; how many. */
static size_t approve_names(Manager *m, json_t *approval)
{
	DeletionGuard *g = &m->guard;
	size_t i, n = 0;
	json_t *v;

	json_array_foreach(json_object_get(approval, "sandboxes"), i, v)
	{
		const char *name = json_string_value(v);
		Sandbox *sb = name ? manager_sandbox(m, name, false) : NULL;

		if (!sb || !list_contains(&g->removals, &sb->removal_node))
			continue;
		sb->deletion_approved = true;
		list_remove(&g->removals, &sb->removal_node);
		manager_mark_dirty(m, sb);
		n++;
	}
	return n;
}

void deletion_guard_approve(Manager *m)
{
	DeletionGuard *g = &m->guard;
	_cleanup_free_ char *path = held_path(m, DELETIONS_APPROVED_FILE);
	_cleanup_close_ int fd = -EBADF;
	const char *id;
	json_t *j = NULL;
	size_t n;

	if (!path)
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		if (errno != ENOENT)
			log_fields(LOG_ERR,
				   &(LogFields){ .error = errno, .message_id = LOG_MESSAGE_DELETIONS },
				   "cannot read %s", path);
		return;
	}
	if (approval_trusted(fd))
		j = json_loadfd(fd, 0, NULL);
	id = json_string_value(json_object_get(j, "id"));
	if (!j)
		log_fields(LOG_ERR,
			   &(LogFields){ .result = "refused", .message_id = LOG_MESSAGE_DELETIONS },
			   "ignoring %s: not a JSON file that only root or vmd's user can write",
			   path);
	else if (!g->tripped || !streq_ptr(id, g->id))
		/* Another trip's, over by now: it approves nothing of this one, or of a later one. */
		log_fields(LOG_WARNING,
			   &(LogFields){ .result = "refused", .message_id = LOG_MESSAGE_DELETIONS },
			   "ignoring %s: it approves stops vmd no longer holds", path);
	else {
		n = approve_names(m, j);
		log_fields(LOG_WARNING,
			   &(LogFields){ .result = "approved", .message_id = LOG_MESSAGE_DELETIONS },
			   "approved: stopping %zu sandboxes whose file is gone; %zu stay held", n,
			   g->removals.size);
		if (g->removals.size == 0)
			untrip(m, "approved");
		else
			write_held(m);
	}
	json_decref(j);
	/* Taken, whatever it said: vmd approve-deletions waits for it to go. */
	(void)unlink(path);
}

void deletion_guard_describe(const Manager *m, char *buf, size_t size)
{
	const DeletionGuard *g = &m->guard;
	char limit[32];

	buf[0] = '\0';
	if (!g->tripped)
		return;
	deletion_limit_format(&m->config.max_deletions, limit);
	if (g->replaced)
		snprintf(buf, size,
			 "SuspiciousMassDeletion: %s was replaced under vmd (a mount over it?) and lacks the files of %zu of the %zu sandboxes with a VM; stopping none of them until their files are back or vmd approve-deletions",
			 m->config.sandbox_dir, g->removals.size, g->n_vms);
	else
		snprintf(buf, size,
			 "SuspiciousMassDeletion: the files of %zu of the %zu sandboxes with a VM went at once (more than --max-deletions %s); stopping none of them until their files are back or vmd approve-deletions",
			 g->removals.size, g->n_vms, limit);
}

int deletion_guard_init(Manager *m)
{
	DeletionGuard *g = &m->guard;
	_cleanup_free_ char *held = held_path(m, DELETIONS_HELD_FILE),
			    *approved = held_path(m, DELETIONS_APPROVED_FILE);
	int r;

	if (!held || !approved)
		return -ENOMEM;
	/* A previous vmd's: what it held is judged again, and no approval of it carries over. */
	(void)unlink(held);
	(void)unlink(approved);
	r = sd_event_add_defer(m->event, &g->write_event, write_fired, m);
	if (r < 0)
		return r;
	(void)sd_event_source_set_priority(g->write_event, SD_EVENT_PRIORITY_IDLE);
	(void)sd_event_source_set_enabled(g->write_event, SD_EVENT_OFF);
	return 0;
}

void deletion_guard_done(Manager *m)
{
	m->guard.write_event = sd_event_source_disable_unref(m->guard.write_event);
	m->guard.accepted.real = mfree(m->guard.accepted.real);
}
