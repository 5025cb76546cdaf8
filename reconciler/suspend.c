/* SPDX-License-Identifier: MIT */
/*
 * state: suspended, for the daemon: the snapshots of its sandboxes (snapshot.h) found at
 * its start, and the actions that make, wake and drop them through the backends' suspend
 * and restore ops. A save goes into a fresh .new-XXXXXX and becomes current only once the
 * backend says its state is complete and its VMM gone; a wake deletes the snapshot once
 * the VM runs. Whatever fails, the VM keeps running or the complete snapshot is kept.
 */
#include <inttypes.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "manager.h"
#include "probe.h"
#include "spec-json.h"
#include "vmm.h"

/*
 * Wakes that fail in a row (a VMM upgraded since the save, whose format it no longer
 * reads; a snapshot damaged) before the snapshot is set aside, renamed into
 * <state-dir>/snapshots-failed/ (never deleted), and the sandbox boots afresh.
 */
#define WAKE_FAILURES_MAX 3

void manager_load_snapshots(Manager *m)
{
	_cleanup_(strv_freep) char **names = NULL;
	size_t n = 0;

	if (snapshot_list(m->config.state_dir, &names, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		Sandbox *sb = manager_sandbox(m, names[i], true);
		Snapshot *s = NULL;
		int r;

		if (!sb)
			continue;
		/* A save that vmd did not see through is no snapshot: it goes. */
		r = snapshot_load(m->config.state_dir, sb->name, !m->read_only, &s);
		if (r == -EBADMSG)
			log_fields(LOG_ERR,
				   &(LogFields){ .sandbox = sb->name,
						 .error = EBADMSG,
						 .message_id = LOG_MESSAGE_DAEMON },
				   "cannot read the manifest of its snapshot in %s/snapshots; ignoring it",
				   m->config.state_dir);
		if (r < 0)
			continue;
		snapshot_free(sb->snapshot);
		sb->snapshot = s;
		/* Its file may be gone: the snapshot says which backend it belongs to. */
		if (sb->vm_backend < 0)
			sb->vm_backend = s->backend;
	}
}

void sandbox_suspend_done(Sandbox *sb)
{
	sb->snapshot_sync = sd_event_source_disable_unref(sb->snapshot_sync);
	sb->snapshot = snapshot_free(sb->snapshot);
	sb->snapshot_saving = snapshot_free(sb->snapshot_saving);
	sb->snapshot_new = mfree(sb->snapshot_new);
	sb->wake_failed = mfree(sb->wake_failed);
}

bool sandbox_has_snapshot(const Sandbox *sb)
{
	return sb->snapshot || sb->snapshot_new;
}

/* Where a save of sb goes: the state dir, or its templates (to free). */
static char *save_root(const Manager *m, const Sandbox *sb)
{
	return sb->template_saving ? sandbox_template_root(m) : strdup(m->config.state_dir);
}

/* The save is on disk: it becomes its template (template.c), which it is started from. */
static void commit_template(Manager *m, Sandbox *sb, Snapshot *s)
{
	char size[32];

	snapshot_free(sb->template);
	sb->template = s;
	sb->template_saving = false;
	sb->template_resume = true;
	format_size(s->size, size);
	log_fields(LOG_INFO,
		   &(LogFields){ .sandbox = sb->name,
				 .action = "save-template",
				 .message_id = LOG_MESSAGE_ACTION_DONE },
		   "its template snapshot (%s) is in %s/templates/snapshots/%s: later starts restore it",
		   size, m->config.state_dir, sb->name);
}

/* The save is on disk: it becomes its snapshot. */
static int commit(Manager *m, Sandbox *sb, bool synced)
{
	_cleanup_free_ char *root = save_root(m, sb);
	Snapshot *s = NULL;
	char size[32];
	int r;

	if (!root)
		return -ENOMEM;
	r = snapshot_commit(root, sb->name, sb->snapshot_new, sb->snapshot_saving, synced, &s);
	if (r < 0) {
		set_format(&sb->last_error,
			   "suspend: cannot make the save in %s its snapshot: %s; tried again",
			   sb->snapshot_new, strerror(-r));
		return r;
	}
	sb->snapshot_new = mfree(sb->snapshot_new);
	sb->snapshot_saving = snapshot_free(sb->snapshot_saving);
	if (sb->template_saving) {
		commit_template(m, sb, s);
		return 0;
	}
	snapshot_free(sb->snapshot);
	sb->snapshot = s;
	format_size(s->size, size);
	log_fields(LOG_INFO,
		   &(LogFields){ .sandbox = sb->name,
				 .action = "suspend",
				 .message_id = LOG_MESSAGE_ACTION_DONE },
		   "suspended: its snapshot (%s) is in %s/snapshots/%s", size, m->config.state_dir,
		   sb->name);
	return 0;
}

static int on_synced(sd_event_source *s, int fd, uint32_t revents _unused_, void *userdata)
{
	Sandbox *sb = userdata;
	int status = -1, r = vmm_reap(fd, &status);

	if (r == 0)
		return 0; /* not yet */
	(void)s;
	sb->snapshot_sync = sd_event_source_disable_unref(sb->snapshot_sync);
	if (status != 0)
		set_format(&sb->last_error,
			   "suspend: cannot sync the save in %s to disk; tried again",
			   sb->snapshot_new);
	else
		(void)commit(sb->manager, sb, true);
	manager_mark_dirty(sb->manager, sb);
	return 0;
}

/* Sync the save in a child: the loop goes on meanwhile. 0: it runs; -errno: it cannot. */
static int sync_in_child(Manager *m, Sandbox *sb)
{
	_cleanup_close_ int pidfd = -EBADF;
	pid_t pid = fork();
	int r;

	if (pid < 0)
		return -errno;
	if (pid == 0)
		_exit(snapshot_sync(sb->snapshot_new) < 0 ? 1 : 0);
	pidfd = vmm_pidfd_open(pid);
	if (pidfd < 0) {
		(void)waitpid(pid, NULL, 0);
		return pidfd;
	}
	r = sd_event_add_io(m->event, &sb->snapshot_sync, pidfd, EPOLLIN, on_synced, sb);
	if (r < 0) {
		(void)waitpid(pid, NULL, 0);
		return r;
	}
	(void)sd_event_source_set_io_fd_own(sb->snapshot_sync, true);
	TAKE_FD(pidfd);
	return 0;
}

/*
 * The backend saved it, and its VMM is gone: the save becomes its snapshot once a child
 * has synced it (at once without a loop). -errno if the commit failed: the save is kept
 * where it is and committed again at the next pass.
 */
int sandbox_suspend_commit(Manager *m, Sandbox *sb)
{
	if (!sb->snapshot_new || !sb->snapshot_saving || sb->snapshot_sync)
		return 0;
	if (m->event && sync_in_child(m, sb) >= 0)
		return 0;
	return commit(m, sb, false);
}

/* A save that did not get through: the VM runs on (or never stopped), nothing is kept. */
void sandbox_suspend_abort(Sandbox *sb)
{
	sb->snapshot_sync = sd_event_source_disable_unref(sb->snapshot_sync);
	snapshot_abort(sb->snapshot_new);
	sb->snapshot_new = mfree(sb->snapshot_new);
	sb->snapshot_saving = snapshot_free(sb->snapshot_saving);
	sb->template_saving = false;
}

int sandbox_suspend(Manager *m, Sandbox *sb, Backend *b)
{
	const BackendOptions *o = &m->config.backend_options;
	const SandboxSpec *have = sb->observed.config ?: sb->desired;
	bool template = sb->template_saving;
	_cleanup_free_ char *root = NULL;
	int r;

	if (!b->ops->suspend || !have)
		return -EOPNOTSUPP;
	sandbox_suspend_abort(sb);
	sb->template_saving = template;
	root = save_root(m, sb);
	if (!root)
		return -ENOMEM;
	/* What its manifest says once the save is complete: the VM as it runs now. */
	sb->snapshot_saving = calloc(1, sizeof(Snapshot));
	if (!sb->snapshot_saving)
		return -ENOMEM;
	sb->snapshot_saving->backend = manager_backend_kind(m, sb);
	sb->snapshot_saving->generation = sb->observed.generation;
	sb->snapshot_saving->paused = sb->observed.state == VM_PAUSED;
	r = spec_copy(have, &sb->snapshot_saving->config);
	if (r >= 0)
		r = snapshot_begin(root, sb->name, sb->snapshot_saving,
				   o->vmm_user_set ? o->vmm_uid : (uid_t)-1,
				   o->vmm_user_set ? o->vmm_gid : (gid_t)-1, &sb->snapshot_new);
	if (r < 0) {
		sandbox_suspend_abort(sb);
		backend_set_error(b, "cannot make its snapshot dir in %s/snapshots: %s",
				  m->config.state_dir, strerror(-r));
		return r;
	}
	r = b->ops->suspend(b, sb->name, sb->snapshot_new);
	if (r < 0)
		sandbox_suspend_abort(sb);
	else if (r == 0)
		r = sandbox_suspend_commit(m, sb);
	return r;
}

/* The VM runs from its snapshot again: the snapshot goes. */
static int drop(Manager *m, Sandbox *sb)
{
	int r = snapshot_remove(m->config.state_dir, sb->name);

	if (r < 0)
		return r;
	sb->snapshot = snapshot_free(sb->snapshot);
	return 0;
}

/* Its snapshot could not be woken, WAKE_FAILURES_MAX times in a row: kept aside, it boots. */
static void wake_failed(Manager *m, Sandbox *sb, int error)
{
	_cleanup_free_ char *cur = snapshot_current_path(m->config.state_dir, sb->name),
			    *top = NULL, *aside = NULL;
	int r;

	if (error == -ECANCELED || ++sb->wake_failures < WAKE_FAILURES_MAX)
		return;
	if (!cur || asprintf(&top, "%s/snapshots-failed", m->config.state_dir) < 0 ||
	    asprintf(&aside, "%s/%s-%" PRIu64, top, sb->name, now_usec(CLOCK_REALTIME) / 1000000) < 0)
		return;
	r = mkdir_p(top, 0700);
	if (r >= 0 && rename(cur, aside) < 0)
		r = -errno;
	if (r >= 0)
		r = snapshot_remove(m->config.state_dir, sb->name);
	if (r < 0) {
		log_fields(LOG_ERR,
			   &(LogFields){ .sandbox = sb->name,
					 .error = -r,
					 .message_id = LOG_MESSAGE_DAEMON },
			   "cannot set its snapshot aside in %s; the wake is tried again", top);
		return;
	}
	log_fields(LOG_ERR,
		   &(LogFields){ .sandbox = sb->name,
				 .action = "wake",
				 .error = -error,
				 .message_id = LOG_MESSAGE_ACTION_FAILED },
		   "WakeFailed: its snapshot could not be woken %u times in a row; kept in %s, it boots afresh (the guest's memory state is lost; the snapshot is there to recover by hand)",
		   sb->wake_failures, aside);
	set_format(&sb->last_error,
		   "WakeFailed: its snapshot could not be woken %u times in a row (last: %s); kept in %s, it booted afresh",
		   sb->wake_failures, strerror(-error), aside);
	set_format(&sb->wake_failed,
		   "its snapshot could not be woken %u times in a row (last: %s); it is kept in %s and the sandbox booted afresh: the guest's memory state is lost (the snapshot is there to recover by hand)",
		   sb->wake_failures, strerror(-error), aside);
	sb->wake_failed_generation = sb->generation;
	sb->wake_failures = 0;
	sb->boot_afresh = true;
	sb->snapshot = snapshot_free(sb->snapshot);
}

int sandbox_wake(Manager *m, Sandbox *sb, Backend *b)
{
	_cleanup_(sandbox_spec_freep) SandboxSpec *spec = NULL;
	_cleanup_free_ char *path = NULL;
	int r;

	if (!b->ops->restore || !sb->snapshot || !sb->desired)
		return -EOPNOTSUPP;
	path = snapshot_current_path(m->config.state_dir, sb->name);
	if (!path)
		return -ENOMEM;
	/* As it was saved, devices and all; running or paused as the file says now. */
	r = spec_copy(sb->snapshot->config, &spec);
	if (r < 0)
		return r;
	spec->state = sb->desired->state;
	probe_vm_starting(m, sb);
	r = b->ops->restore(b, spec, sb->snapshot->generation, path);
	if (r == 0)
		sb->wake_failures = 0;
	if (r == 0)
		r = drop(m, sb);
	else if (r < 0)
		wake_failed(m, sb, r);
	return r;
}

/*
 * Told until the user can be taken to have seen it: the sandbox suspends again (a new
 * snapshot: that of before is of no more use) or its file changes (a new generation).
 */
void sandbox_wake_condition(Sandbox *sb, uint64_t now)
{
	if (sb->wake_failed && (sb->snapshot || sb->generation != sb->wake_failed_generation))
		sb->wake_failed = mfree(sb->wake_failed);
	if (sb->wake_failed)
		condition_set(&sb->status, CONDITION_WAKE_FAILED, CONDITION_TRUE,
			      "SnapshotSetAside", sb->wake_failed, now);
	else
		condition_set(&sb->status, CONDITION_WAKE_FAILED, CONDITION_FALSE, "NoWakeFailure",
			      "", now);
}

int sandbox_drop_snapshot(Manager *m, Sandbox *sb)
{
	return drop(m, sb);
}

void sandbox_suspend_op_done(Manager *m, Sandbox *sb, BackendOp op, int error)
{
	int r;

	if (op == BACKEND_OP_SUSPEND && error == 0)
		(void)sandbox_suspend_commit(m, sb);
	else if (op == BACKEND_OP_SUSPEND)
		sandbox_suspend_abort(sb);
	else if (op == BACKEND_OP_RESTORE && error < 0 && sb->snapshot)
		wake_failed(m, sb, error);
	else if (op == BACKEND_OP_RESTORE && error == 0 && sb->snapshot &&
		 (sb->wake_failures = 0, (r = drop(m, sb)) < 0))
		/* It runs: the next pass drops the stale snapshot again. */
		log_fields(LOG_ERR,
			   &(LogFields){ .sandbox = sb->name,
					 .action = "wake",
					 .error = -r,
					 .message_id = LOG_MESSAGE_ACTION_FAILED },
			   "cannot remove its snapshot in %s/snapshots after the wake; tried again",
			   m->config.state_dir);
}
