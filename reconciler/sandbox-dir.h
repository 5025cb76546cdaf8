/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * Which entries of the sandbox directory are sandbox files. The daemon's watcher and
 * `vmd validate` use the same rules, so that what validates is what runs.
 */

#define SANDBOX_DIR_MAX_DEPTH 8

/*
 * Whether a directory entry's name can be a sandbox file: NAME.yaml or NAME.yml, not
 * hidden (which also skips Kubernetes' ..data and ..TIMESTAMP entries) and not an
 * editor's or package manager's dropping (#x#, x~, .swp, 4913, .dpkg-new, ...).
 */
bool sandbox_dir_name_is_candidate(const char *name);

/* Whether a subdirectory with this name is searched: not hidden. */
bool sandbox_dir_subdir_is_searched(const char *name);

/*
 * Where path is in dir (both as written, dir with or without a trailing '/'): the rest of
 * path after dir and a '/', or NULL if path is not below dir. No file is looked at.
 */
const char *sandbox_dir_relative(const char *dir, const char *path);

/* error is 0 for a candidate file, or -errno for a subdirectory that could not be read. */
typedef int (*SandboxDirFn)(const char *path, int error, void *userdata);

/*
 * Call fn for every candidate under dir, in name order, depth first. Subfolders are
 * searched SANDBOX_DIR_MAX_DEPTH levels deep, each opened from its parent's fd without
 * following a symlink: a symlink to a directory is never searched, even one swapped in
 * during the walk. A candidate that is a symlink, or not a regular file, is passed on:
 * opening it (sandbox-file.h, beneath dir) says what is wrong, or follows it to a file of
 * the tree (a ConfigMap's web.yaml -> ..data/web.yaml). A negative return of fn stops the walk
 * and is returned. Returns -errno if dir itself cannot be read.
 */
int sandbox_dir_walk(const char *dir, SandboxDirFn fn, void *userdata);

/*
 * The same walk one candidate at a time, for a caller that stops between two (the
 * daemon's resync, in slices). No call reads or sorts a large directory whole.
 */
typedef struct SandboxDirIter SandboxDirIter;

/* dir_fd: dir, opened by the caller (it is dup'ed), or -EBADF to open dir by its path. */
int sandbox_dir_iter_new(const char *dir, int dir_fd, SandboxDirIter **ret);
SandboxDirIter *sandbox_dir_iter_free(SandboxDirIter *it);
DEFINE_POINTER_CLEANUP(SandboxDirIter, sandbox_dir_iter_free)
/*
 * The next candidate: 1, with its path in *ret_path (valid until the next call) and in
 * *ret_error 0, or -errno for a subdirectory that could not be read; -EAGAIN when it read
 * a part of a directory and has no candidate yet (call again); 0 at the end; -errno if
 * dir itself cannot be read, or -ENOMEM.
 */
int sandbox_dir_iter_next(SandboxDirIter *it, const char **ret_path, int *ret_error);
