/* SPDX-License-Identifier: MIT */
/*
 * What the daemon's STATUS= says (docs/daemon.md), kept as sandboxes change instead of
 * counted over all of them: the sandboxes per phase, how many are Ready, the first failing
 * one; status.c calls these as each sandbox's status is computed.
 */
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "deletion-guard.h"
#include "manager.h"
#include "status.h"

/* Manager.n_ready, for STATUS=, follows each sandbox's Ready. */
void manager_tally_ready(Manager *m, Sandbox *sb)
{
	bool ready = sb->status.conditions[CONDITION_READY].status == CONDITION_TRUE;

	if (ready != sb->counted_ready)
		m->n_ready += ready ? 1 : -1u;
	sb->counted_ready = ready;
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
	if (sb->counted_ready)
		m->n_ready--;
	sb->counted_ready = false;
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
	size_t total = hashmap_size(m->sandboxes), n_ignored;
	const char *ignored;
	char held[512];

	line[0] = '\0';
	if (m->degraded) {
		text_escape_append(line, size, "Degraded: ", 16);
		text_escape_append(line, size, m->degraded, 200);
		text_escape_append(line, size, "; ", 2);
	}
	deletion_guard_describe(m, held, sizeof(held));
	if (held[0]) {
		text_escape_append(line, size, "Degraded: ", 16);
		text_escape_append(line, size, held, 400);
		text_escape_append(line, size, "; ", 2);
	}
	if (m->watch_error) {
		text_escape_append(line, size, "Degraded (WatchUnavailable): ", 32);
		text_escape_append(line, size, m->watch_error, 200);
		text_escape_append(line, size, "; ", 2);
	}
	if (m->state_write_error) {
		text_escape_append(line, size, "Degraded (StateWriteFailed): ", 32);
		text_escape_append(line, size, m->state_write_error, 200);
		text_escape_append(line, size, "; ", 2);
	}
	snprintf(line + strlen(line), size - strlen(line), "%zu sandbox%s", total,
		 total == 1 ? "" : "es");
	if (m->n_ready)
		snprintf(line + strlen(line), size - strlen(line), ", %u ready", m->n_ready);
	for (int p = 0; p < _PHASE_MAX; p++)
		if (m->phase_tally[p])
			snprintf(line + strlen(line), size - strlen(line), ", %u %s",
				 m->phase_tally[p], phase_to_string(p));
	n_ignored = manager_ignored(m, &ignored);
	if (n_ignored > 0) {
		snprintf(line + strlen(line), size - strlen(line),
			 n_ignored == 1 ? "; %zu file ignored (invalid sandbox name): "
					: "; %zu files ignored (invalid sandbox names), first: ",
			 n_ignored);
		text_escape_append(line, size, ignored, 200);
	}
	if (failing) {
		text_escape_append(line, size, "; first failing: ", 20);
		text_escape_append(line, size, failing->name, 64);
		text_escape_append(line, size, ": ", 2);
		text_escape_append(line, size,
				   failing->config_error ?: failing->last_error ?: failing->refusal
											       ?: "failed",
				   300);
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
