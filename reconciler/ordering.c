/* SPDX-License-Identifier: MIT */
/*
 * spec.after in the daemon. A start (a first one, a restart after an exit, a restart for a
 * change) waits until every sandbox named is Ready, as the daemon's own status of it says;
 * a VM that runs is never stopped because one of them is not Ready any more. A name no file
 * gives is waited for (a GitOps tool may add its file a second later), and the status says
 * so. A file whose after: would close a cycle is refused, as a port another sandbox holds
 * is: its sandbox keeps its last valid spec, and its VM runs on as it does.
 *
 * Stops go the other way when several go at once: the stop of a sandbox waits while one
 * naming it in after: is being stopped too (its file removed as well, state: stopped, the
 * host's shutdown); a stop never waits for one that is not being stopped.
 *
 * The sandboxes whose spec names any are kept in Manager.ordered, and how many name each
 * name in Manager.named, so that a change of one sandbox's Ready looks at nothing when no
 * spec names it, and at those that name any otherwise, not at every sandbox.
 */
#include <stdio.h>

#include "log.h"
#include "manager.h"
#include "ordering.h"

/* One spec in force more (delta 1) or less (-1) names name. */
typedef struct Named {
	size_t n;
	char name[]; /* the key */
} Named;

static void count_name(Manager *m, const char *name, int delta)
{
	Named *c = m->named ? hashmap_get(m->named, name) : NULL;

	if (!c && delta > 0) {
		if (!m->named && !(m->named = hashmap_new()))
			return;
		c = calloc(1, sizeof(Named) + strlen(name) + 1);
		if (!c)
			return;
		strcpy(c->name, name);
		if (hashmap_put(m->named, c->name, c) < 0) {
			free(c);
			return;
		}
	}
	if (!c)
		return;
	c->n += (size_t)(ssize_t)delta;
	if (c->n == 0) {
		hashmap_remove(m->named, c->name);
		free(c);
	}
}

/* Count what sb's spec in force names now, instead of what it named before. */
static void count_after(Manager *m, Sandbox *sb)
{
	char **names = NULL;

	for (size_t i = 0; sb->desired && i < sb->desired->n_after; i++) {
		if (strv_extendf(&names, "%s", sb->desired->after[i].name) < 0) {
			names = strv_free(names);
			break; /* a name left counted costs a look at Manager.ordered, no more */
		}
		count_name(m, sb->desired->after[i].name, 1);
	}
	for (size_t i = 0; sb->after_counted && sb->after_counted[i]; i++)
		count_name(m, sb->after_counted[i], -1);
	strv_free(sb->after_counted);
	sb->after_counted = names;
}

void ordering_done(Manager *m)
{
	void *v;

	for (size_t i = 0; hashmap_next(m->named, &i, &v);)
		free(v);
	m->named = hashmap_free(m->named);
}

void ordering_update(Manager *m, Sandbox *sb)
{
	bool names = sb->desired && sb->desired->n_after > 0;

	count_after(m, sb);
	if (names && !list_contains(&m->ordered, &sb->ordered_node))
		list_append(&m->ordered, &sb->ordered_node);
	else if (!names)
		list_remove(&m->ordered, &sb->ordered_node);
}

/* Those that name sb in after: (they wait for its Ready, their stops go before its). */
static void mark_dependants(Manager *m, const Sandbox *sb)
{
	if (!m->named || !hashmap_get(m->named, sb->name))
		return; /* no spec names it */
	for (ListNode *n = m->ordered.first; n; n = n->next) {
		Sandbox *x = list_entry(n, Sandbox, ordered_node);

		if (x != sb && spec_after_has(x->desired, sb->name))
			manager_mark_dirty(m, x);
	}
}

/* Those sb names in after: (their stops may have waited for sb's). */
static void mark_dependencies(Manager *m, const Sandbox *sb)
{
	for (size_t i = 0; sb->desired && i < sb->desired->n_after; i++) {
		Sandbox *x = manager_sandbox(m, sb->desired->after[i].name, false);

		if (x && x != sb)
			manager_mark_dirty(m, x);
	}
}

void ordering_forget(Manager *m, Sandbox *sb)
{
	list_remove(&m->ordered, &sb->ordered_node);
	mark_dependants(m, sb);
	mark_dependencies(m, sb);
	for (size_t i = 0; sb->after_counted && sb->after_counted[i]; i++)
		count_name(m, sb->after_counted[i], -1);
	sb->after_counted = strv_free(sb->after_counted);
}

typedef struct CycleLookup {
	Manager *m;
	const Sandbox *sb;
} CycleLookup;

/*
 * The specs in force of the others; sb's own is the one being judged. Those of removed
 * files count while their sandboxes are there: their stops are ordered by them, and a
 * cycle among stops would never end.
 */
static const SandboxSpec *lookup_in_force(void *userdata, const char *name, const char **ret_path)
{
	CycleLookup *l = userdata;
	const Sandbox *x = manager_sandbox(l->m, name, false);

	if (!x || x == l->sb || !x->desired)
		return NULL;
	*ret_path = x->path; /* NULL: "its last valid spec" */
	return x->desired;
}

char *ordering_cycle(Manager *m, const Sandbox *sb, const SandboxSpec *spec, const char *path)
{
	CycleLookup l = { m, sb };
	_cleanup_free_ char *cycle = NULL;
	size_t edge = 0;
	char *s = NULL;

	if (after_find_cycle(spec, path, lookup_in_force, &l, &edge, &cycle) <= 0)
		return NULL;
	if (asprintf(&s, "%s:%u:%u: %s", path, spec->after[edge].line, spec->after[edge].column,
		     cycle) < 0)
		return NULL;
	return s;
}

/* Whether the sandbox called name is Ready, as the daemon says (vmd plan: its status.json). */
static bool is_ready(Manager *m, const char *name, char *why, size_t size)
{
	_cleanup_(json_decrefp) json_t *status = NULL;
	const Sandbox *x = manager_sandbox(m, name, false);
	const Condition *c;

	if (m->read_only) {
		if (status_read_one(m->config.run_dir, name, &status) < 0) {
			snprintf(why, size, "%s (%s)", name,
				 x ? "no status: is the daemon running?" : "no such sandbox");
			return false;
		}
		snprintf(why, size, "%s (Ready=%s: %s)", name,
			 status_condition(status, "Ready", "status"),
			 status_condition(status, "Ready", "reason"));
		return streq(status_condition(status, "Ready", "status"), "True");
	}
	if (!x) {
		snprintf(why, size, "%s (no such sandbox)", name);
		return false;
	}
	c = &x->status.conditions[CONDITION_READY];
	snprintf(why, size, "%s (Ready=%s: %s)", name,
		 c->status == CONDITION_UNKNOWN ? "Unknown" : "False", c->reason ?: "NotYet");
	return c->status == CONDITION_TRUE;
}

void ordering_ready(Manager *m, const Sandbox *sb, const char *ready[static SPEC_AFTER_MAX + 1])
{
	size_t n = 0;
	char why[256];

	for (size_t i = 0; sb->desired && i < sb->desired->n_after; i++)
		if (is_ready(m, sb->desired->after[i].name, why, sizeof(why)))
			ready[n++] = sb->desired->after[i].name;
	ready[n] = NULL;
}

/* Whether x's VM is being stopped, or about to be, as part of what goes at once. */
static bool going_down(const Manager *m, const Sandbox *x)
{
	if (!IN_SET(x->observed.state, VM_STARTING, VM_RUNNING, VM_PAUSED, VM_STOPPING))
		return false;
	if (m->host_stopping)
		return x->host_stop;
	if (deletion_guard_holds(m, x))
		return false; /* its stop is held: it is not stopping */
	return !x->path || (x->desired && x->desired->state == SANDBOX_STOPPED);
}

bool ordering_stop_waits(Manager *m, const Sandbox *sb)
{
	if (!m->named || !hashmap_get(m->named, sb->name))
		return false; /* no spec names it */
	for (ListNode *n = m->ordered.first; n; n = n->next) {
		const Sandbox *x = list_entry(n, Sandbox, ordered_node);

		if (x != sb && spec_after_has(x->desired, sb->name) && going_down(m, x))
			return true;
	}
	return false;
}

void ordering_update_waiting(Manager *m, Sandbox *sb, bool waits)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	FILE *f;
	char why[256];
	bool first = true;

	if (!waits || !sb->desired) {
		sb->waiting = mfree(sb->waiting);
		return;
	}
	f = open_memstream(&text, &len);
	if (!f)
		return;
	fputs("waiting for ", f);
	for (size_t i = 0; i < sb->desired->n_after; i++) {
		if (is_ready(m, sb->desired->after[i].name, why, sizeof(why)))
			continue;
		fprintf(f, "%s%s", first ? "" : ", ", why);
		first = false;
	}
	fputs(" to be Ready before it starts (spec.after)", f);
	if (fclose(f) != 0)
		return;
	if (!sb->waiting && !m->read_only)
		log_fields(LOG_INFO,
			   &(LogFields){ .sandbox = sb->name,
					 .action = "start",
					 .result = "waiting",
					 .message_id = LOG_MESSAGE_ACTION_DONE },
			   "%s", text);
	free(sb->waiting);
	sb->waiting = TAKE_PTR(text);
}

void ordering_status_changed(Manager *m, Sandbox *sb, Phase old_phase, ConditionStatus old_ready,
			     const char *old_reason)
{
	const Condition *c = &sb->status.conditions[CONDITION_READY];

	/* Its Ready, or why not (the waiting ones' messages say it). */
	if (c->status != old_ready || !streq_ptr(c->reason, old_reason))
		mark_dependants(m, sb);
	if (sb->status.phase != old_phase)
		mark_dependencies(m, sb);
}
