/* SPDX-License-Identifier: MIT */
/*
 * Firecracker's suspend and wake (firecracker.c has the rest of the backend): the requests
 * of the suspend's and the restore's phases, and the snapshot's files in and out of a jail.
 */
#include <signal.h>
#include <stdio.h>

#include "firecracker.h"
#include "util.h"

/*
 * Snapshots: vm.state and vm.mem in the daemon's snapshot dir. Jailed, Firecracker sees only
 * its root: it writes /snapshot.state and /snapshot.mem there, which vmd then hard-links
 * into the dir (and before a load, from it), as it links the disks in.
 */
#define FC_SNAPSHOT_STATE "vm.state"
#define FC_SNAPSHOT_MEMORY "vm.mem"

static const struct {
	const char *dir_file, *jail_file;
} fc_snapshot_files[] = {
	{ FC_SNAPSHOT_STATE, JAIL_SNAPSHOT_STATE },
	{ FC_SNAPSHOT_MEMORY, JAIL_SNAPSHOT_MEMORY },
};

/* The path Firecracker is given for file i of the snapshot in dir. */
static char *snapshot_path(const VmmVm *v, const char *dir, size_t i)
{
	_cleanup_free_ char *host = NULL;

	if (asprintf(&host, "%s/%s", dir, fc_snapshot_files[i].dir_file) < 0)
		return NULL;
	return fc_vm_path(v->b, host, fc_snapshot_files[i].jail_file);
}

/* Jailed: the files Firecracker wrote in the jail, into the snapshot dir. */
static int saved(VmmVm *v, VmmJob *j, const VmmReply *r)
{
	if (r->error < 0 || !fc_jailed(v->b))
		return r->error < 0 ? r->error : VMM_NEXT;
	for (size_t i = 0; i < ELEMENTSOF(fc_snapshot_files); i++) {
		_cleanup_free_ char *host = NULL;
		int k;

		if (asprintf(&host, "%s/%s", j->snapshot_dir, fc_snapshot_files[i].dir_file) < 0)
			return -ENOMEM;
		k = fc_jail_take(v, fc_snapshot_files[i].jail_file, host);
		if (k < 0) {
			vmm_job_fail_message(
				j, "cannot link the snapshot's %s out of the jail into %s: %s%s",
				fc_snapshot_files[i].jail_file, j->snapshot_dir, strerror(-k),
				k == -EXDEV ? "; keep --state-dir on the filesystem of --jailer-chroot-base"
					    : "");
			return k;
		}
	}
	return VMM_NEXT;
}

/* persist.rs, create_snapshot(): of a paused microVM only (the vCPUs refuse otherwise). */
static int snapshot_create(VmmVm *v, VmmJob *j, VmmRequests *rq)
{
	_cleanup_free_ char *state = snapshot_path(v, j->snapshot_dir, 0),
			    *mem = snapshot_path(v, j->snapshot_dir, 1);

	if (!state || !mem)
		return -ENOMEM;
	for (size_t i = 0; fc_jailed(v->b) && i < ELEMENTSOF(fc_snapshot_files); i++)
		fc_jail_drop(v, fc_snapshot_files[i].jail_file); /* a save's before, killed */
	return vmm_request_add(rq, "PUT",
			       json_pack("{s:s, s:s, s:s}", "snapshot_type", "Full",
					 "snapshot_path", state, "mem_file_path", mem),
			       saved, "/snapshot/create");
}

/* Jailed: the jail's links to the snapshot go once it is loaded (or not). */
static int loaded(VmmVm *v, VmmJob *j _unused_, const VmmReply *r)
{
	for (size_t i = 0; fc_jailed(v->b) && i < ELEMENTSOF(fc_snapshot_files); i++)
		fc_jail_drop(v, fc_snapshot_files[i].jail_file);
	return r->error < 0 ? r->error : VMM_NEXT;
}

/*
 * The serial first (allowed before a load: it is no boot resource), then the load, with
 * mem_backend (mem_file_path is deprecated), resumed unless the VM is to stay paused.
 */
static int snapshot_load(VmmVm *v, VmmJob *j, VmmRequests *rq)
{
	_cleanup_free_ char *state = snapshot_path(v, j->snapshot_dir, 0),
			    *mem = snapshot_path(v, j->snapshot_dir, 1);
	int r = 0;

	if (!state || !mem)
		return -ENOMEM;
	for (size_t i = 0; r >= 0 && fc_jailed(v->b) && i < ELEMENTSOF(fc_snapshot_files); i++) {
		_cleanup_free_ char *host = NULL;

		if (asprintf(&host, "%s/%s", j->snapshot_dir, fc_snapshot_files[i].dir_file) < 0)
			return -ENOMEM;
		r = fc_jail_relink(v, host, fc_snapshot_files[i].jail_file);
		if (r < 0)
			vmm_job_fail_message(j, "cannot link the snapshot's %s into the jail: %s",
					     host, strerror(-r));
	}
	if (r >= 0)
		r = fc_put_console(v, rq);
	if (r < 0)
		return r;
	return vmm_request_add(rq, "PUT",
			       json_pack("{s:s, s:{s:s, s:s}, s:b}", "snapshot_path", state,
					 "mem_backend", "backend_type", "File", "backend_path", mem,
					 "resume_vm", v->config->state != SANDBOX_PAUSED),
			       loaded, "/snapshot/load");
}

int fc_build_snapshot(VmmVm *v, VmmJob *j, VmmRequests *rq)
{
	switch (j->phase) {
	case VMM_PHASE_FREEZE:
		return j->was_paused ? 0 : fc_patch_vm(rq, "Paused");
	case VMM_PHASE_SAVE:
		return snapshot_create(v, j, rq);
	case VMM_PHASE_THAW:
		return j->was_paused ? 0 : fc_patch_vm(rq, "Resumed");
	case VMM_PHASE_QUIT:
		/* Saved, and no API to quit: its exit ends the job. */
		return vmm_kill(v->pidfd, SIGKILL);
	case VMM_PHASE_LOAD:
		return snapshot_load(v, j, rq);
	default:
		return 0; /* boot: the load resumed it (resume_vm) */
	}
}
