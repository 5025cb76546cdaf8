/* SPDX-License-Identifier: MIT */
/*
 * startFrom: snapshot, for the daemon: a sandbox's template snapshot, saved once its
 * first boot is Ready, and restored instead of a boot at its later starts while its boot
 * config and disks are what they were (docs/sandbox-file.md, "Start from a snapshot").
 * Templates are snapshots (snapshot.h) kept under <state-dir>/templates/: made by the
 * suspend path (suspend.c: the backend saves, its VMM exits) into that root instead of the
 * suspend one, then restored at once, so that the VM runs on from its template; a wake
 * never deletes one. A template that no longer matches is deleted at the next start and a
 * boot makes a new one; one whose restore fails is set aside (renamed, never deleted).
 */
#include <inttypes.h>
#include <stdio.h>

#include "log.h"
#include "manager.h"
#include "probe.h"

char *sandbox_template_root(const Manager *m)
{
	char *p = NULL;

	return asprintf(&p, "%s/templates", m->config.state_dir) < 0 ? NULL : p;
}

void manager_load_templates(Manager *m)
{
	_cleanup_free_ char *root = sandbox_template_root(m);
	_cleanup_(strv_freep) char **names = NULL;
	size_t n = 0;

	if (!root || snapshot_list(root, &names, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		Sandbox *sb = manager_sandbox(m, names[i], false);
		Snapshot *s = NULL;

		if (!sb || snapshot_load(root, sb->name, !m->read_only, &s) < 0)
			continue;
		snapshot_free(sb->template);
		sb->template = s;
	}
}

int sandbox_template_drop(Manager *m, Sandbox *sb, const char *why)
{
	_cleanup_free_ char *root = sandbox_template_root(m);
	int r;

	if (!sb->template)
		return 0;
	if (!root)
		return -ENOMEM;
	r = snapshot_remove(root, sb->name);
	if (r < 0 && r != -ENOENT)
		return r;
	log_fields(LOG_INFO, &(LogFields){ .sandbox = sb->name, .message_id = LOG_MESSAGE_DAEMON },
		   "its template snapshot is deleted: %s; the next boot makes a new one", why);
	sb->template = snapshot_free(sb->template);
	return 0;
}

/* Its template's restore failed: kept aside (never deleted silently), and it boots. */
static void set_aside(Manager *m, Sandbox *sb)
{
	_cleanup_free_ char *root = sandbox_template_root(m), *cur = NULL, *aside = NULL;

	if (!root || asprintf(&cur, "%s/snapshots/%s/" SNAPSHOT_CURRENT, root, sb->name) < 0 ||
	    asprintf(&aside, "%s/snapshots/%s/failed-%" PRIu64, root, sb->name,
		     now_usec(CLOCK_REALTIME) / 1000000) < 0)
		return;
	if (rename(cur, aside) < 0)
		return;
	log_fields(LOG_ERR,
		   &(LogFields){ .sandbox = sb->name,
				 .action = "start",
				 .message_id = LOG_MESSAGE_ACTION_FAILED },
		   "its template snapshot could not be restored: kept aside in %s; it boots instead",
		   aside);
	sb->template = snapshot_free(sb->template);
}

int sandbox_template_start(Manager *m, Sandbox *sb, Backend *b, const SandboxSpec *want,
			   uint64_t generation)
{
	_cleanup_free_ char *root = sandbox_template_root(m), *path = NULL;
	char at[64];
	int r;

	sb->template_restoring = false;
	if (!sb->template)
		return -ENOENT;
	if (want->start_from != START_FROM_SNAPSHOT || !b->ops->restore ||
	    !plan_template_matches(sb->template, want)) {
		(void)sandbox_template_drop(m, sb,
					    want->start_from != START_FROM_SNAPSHOT
						    ? "startFrom is no longer snapshot"
						    : "its boot config or disks changed");
		return -ENOENT;
	}
	if (!root || asprintf(&path, "%s/snapshots/%s/" SNAPSHOT_CURRENT, root, sb->name) < 0)
		return -ENOMEM;
	probe_vm_starting(m, sb);
	r = b->ops->restore(b, want, generation, path);
	if (r < 0) {
		set_aside(m, sb);
		return -ENOENT; /* it boots instead */
	}
	format_timestamp(sb->template->taken_at_usec, at);
	if (sb->template_resume)
		set_format(&sb->start_note, "booted; its template was saved at %s", at);
	else
		set_format(&sb->start_note, "restored from its template of %s", at);
	sb->template_restoring = r > 0;
	return r;
}

void sandbox_template_op_done(Manager *m, Sandbox *sb, BackendOp op, int error)
{
	if (op != BACKEND_OP_RESTORE || !sb->template_restoring)
		return;
	sb->template_restoring = false;
	if (error < 0 && error != -ECANCELED)
		set_aside(m, sb);
}

bool sandbox_template_due(const Sandbox *sb, const Backend *b)
{
	const SandboxSpec *want = sb->desired;
	const char *reason, *message;

	return want && want->start_from == START_FROM_SNAPSHOT && !sb->template && !sb->snapshot &&
	       !sb->snapshot_new && (b->ops->caps & BACKEND_CAP_SUSPEND) &&
	       sb->observed.state == VM_RUNNING && sb->observed.job == BACKEND_OP_NONE &&
	       !sb->observed.restoring && sb->observed.generation == sb->generation &&
	       !probe_holds_ready(sb, &reason, &message);
}

int sandbox_template_save(Manager *m, Sandbox *sb, Backend *b)
{
	int r;

	sb->template_saving = true;
	r = sandbox_suspend(m, sb, b);
	if (r < 0)
		sb->template_saving = false;
	return r;
}

void sandbox_template_done(Sandbox *sb)
{
	sb->template = snapshot_free(sb->template);
	sb->start_note = mfree(sb->start_note);
}
