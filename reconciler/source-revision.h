/* SPDX-License-Identifier: MIT */
#pragma once

#include <errno.h>

#include "macro.h"
#include "util.h"

/*
 * Which revision a sandbox file's content came from, as GitOps tools lay files out
 * (docs/status.md, sourceRevision): a git work tree's HEAD commit, read from the .git
 * files without running git; or the target a version link resolves to (git-sync's
 * <root>/<link> -> rev-<hash> or .worktrees/<hash>, a Kubernetes ConfigMap volume's
 * ..data -> ..2026_12_01_10_00_00.123456789). What is read is checked before it is shown:
 * 40 or 64 hex digits for a commit ("unknown" if not), a short name of a conservative
 * alphabet for a link (none if not).
 */

typedef enum SourceRevisionKind {
	SOURCE_REVISION_NONE,
	SOURCE_REVISION_GIT,
	SOURCE_REVISION_LINK,
	_SOURCE_REVISION_KIND_MAX,
	_SOURCE_REVISION_KIND_INVALID = -EINVAL,
} SourceRevisionKind;

DECLARE_STRING_TABLE(source_revision_kind, SourceRevisionKind);

#define SOURCE_REVISION_UNKNOWN "unknown"
#define SOURCE_REVISION_NAME_MAX 128

/*
 * The revision of the file at path (as written: under the sandbox directory, symlinks and
 * all), whose content vmd read from fd. SOURCE_REVISION_NONE (and NULL) when it is in no
 * git work tree and comes through no version link, or that cannot be told (no /proc).
 */
void source_revision(const char *path, int fd, SourceRevisionKind *ret_kind, char **ret_revision);
/* The same by path alone, for a file read before and found unchanged (HEAD may have moved). */
void source_revision_of_path(const char *path, SourceRevisionKind *ret_kind, char **ret_revision);

/* A git work tree's HEAD commit, from its .git (dir: a folder of the work tree): the
 * commit, SOURCE_REVISION_UNKNOWN if its HEAD cannot be read as one, or NULL if dir is in
 * no work tree. */
char *source_revision_git(const char *dir);
/* The name of the version a link on path leads to (path's content read from real), or NULL. */
char *source_revision_link(const char *path, const char *real);
