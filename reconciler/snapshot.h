/* SPDX-License-Identifier: MIT */
#pragma once

#include <sys/types.h>

#include "spec.h"

/*
 * The snapshots of suspended sandboxes (state: suspended), which the daemon owns:
 * <state-dir>/snapshots/<name>/current/ is a complete one, its manifest.json written by
 * the daemon beside what the backend's VMM wrote; .new-XXXXXX/ beside it is a save under
 * way, renamed to current once it is complete, or removed. docs/backends.md, "Snapshots".
 */

#define SNAPSHOT_MANIFEST "manifest.json"
#define SNAPSHOT_CURRENT "current"
#define SNAPSHOT_NEW_PREFIX ".new-"
/*
 * In a .new-XXXXXX: what a backend leaves there once the state is complete and before its
 * VMM exits (vmm-job.c does for every VMM backend), so that a vmd killed before op_done
 * commits the save at its next start instead of deleting it.
 */
#define SNAPSHOT_COMPLETE ".vmd-complete"

/* What the manifest of a complete snapshot says. */
typedef struct Snapshot {
	BackendKind backend;
	uint64_t generation;	/* of the spec the VM ran */
	uint64_t boot_hash;	/* of what only a boot changes (snapshot_boot_hash) */
	SandboxSpec *config;	/* what the VM ran: its disks, NICs, size */
	bool paused;		/* the guest was paused before the save */
	uint64_t size;		/* bytes, of what the backend wrote */
	uint64_t taken_at_usec; /* CLOCK_REALTIME: when the save completed */
} Snapshot;

Snapshot *snapshot_free(Snapshot *s);
DEFINE_POINTER_CLEANUP(Snapshot, snapshot_free)

/* The fingerprint of what only a boot changes in config: kernel, initrd, cmdline, size. */
uint64_t snapshot_boot_hash(const SandboxSpec *config);

/*
 * A save begins: make <state-dir>/snapshots/<name>/.new-XXXXXX, empty, owned by uid/gid
 * (-1: vmd's) so that a VMM that writes it itself can, and beside it .new-XXXXXX.json,
 * the manifest to be of what (backend, generation, config, paused); its path in *ret_path.
 */
int snapshot_begin(const char *state_dir, const char *name, const Snapshot *what, uid_t uid,
		   gid_t gid, char **ret_path);
/*
 * The save in new_path is complete: the manifest of what (backend, generation, config,
 * paused) goes beside it with its size and the time, every file and the dir are synced
 * (unless synced says they are), and it becomes current (an older current removed after). *ret: the
 * snapshot now current.
 */
int snapshot_commit(const char *state_dir, const char *name, const char *new_path,
		    const Snapshot *what, bool synced, Snapshot **ret);
/*
 * Sync every file under new_path to disk, and the dirs: what snapshot_commit() does first
 * unless synced, which a child of the daemon does instead, so that the loop never waits on
 * it (the state of a big guest can take seconds to reach a disk).
 */
int snapshot_sync(const char *new_path);
/* A save that did not complete: its dir goes. */
void snapshot_abort(const char *new_path);

/*
 * The current snapshot of name: 0 and *ret, -ENOENT if there is none, -EBADMSG if its
 * manifest cannot be read. clean: first, what saves left behind: one marked complete
 * (SNAPSHOT_COMPLETE) is committed, as its op_done would have; any other goes.
 */
int snapshot_load(const char *state_dir, const char *name, bool clean, Snapshot **ret);
/* The path of name's current snapshot (to free). */
char *snapshot_current_path(const char *state_dir, const char *name);
/* Every snapshot of name, and its dir: gone. Never a disk. */
int snapshot_remove(const char *state_dir, const char *name);
/* The names that have a snapshot dir. */
int snapshot_list(const char *state_dir, char ***ret_names, size_t *ret_n);
