/* SPDX-License-Identifier: MIT */
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include "macro.h"
#include "util.h"

/*
 * How a sandbox file is opened, and whether vmd trusts what it would run VMs from. The
 * daemon and `vmd validate` judge files with these functions alone, so that their
 * verdicts are the same.
 *
 * A file is read only if the path to it stays beneath the sandbox directory (a symlink may
 * lead anywhere inside it: a ConfigMap's web.yaml -> ..data/web.yaml), and only trusted
 * writers can change it: the file itself, every directory its path goes through up to and
 * including the sandbox directory, and the directories above that (sshd's StrictModes).
 * Trusted writers are root, vmd's own user and the --trusted-uid users; a --trusted-gid
 * group may have write access too. Nothing is read from a file that is refused, nor
 * opened when its path leads outside.
 */

#define TRUST_IDS_MAX 16

typedef struct Trust {
	uid_t uids[TRUST_IDS_MAX]; /* --trusted-uid, besides root and vmd's own user */
	size_t n_uids;
	gid_t gids[TRUST_IDS_MAX]; /* --trusted-gid: groups whose write access is trusted */
	size_t n_gids;
} Trust;

/* Add an id (once); -E2BIG when TRUST_IDS_MAX are there already. */
int trust_add_uid(Trust *t, uid_t uid);
int trust_add_gid(Trust *t, gid_t gid);
/* root, vmd's own user (the effective uid) or a --trusted-uid */
bool trust_has_uid(const Trust *t, uid_t uid);

typedef enum SandboxFileVerdict {
	SANDBOX_FILE_TRUSTED,
	SANDBOX_FILE_PATH_ESCAPE, /* its path leads outside the sandbox directory: not opened */
	SANDBOX_FILE_UNTRUSTED,	  /* someone other than a trusted writer can change it, or it is
				     not a regular file: not read */
	_SANDBOX_FILE_VERDICT_MAX,
	_SANDBOX_FILE_VERDICT_INVALID = -EINVAL,
} SandboxFileVerdict;

/* The condition reasons of docs/status.md: Valid, PathEscape, Untrusted. */
DECLARE_STRING_TABLE(sandbox_file_verdict, SandboxFileVerdict);

/* The sandbox directory, opened. */
typedef struct SandboxRoot SandboxRoot;

/*
 * Open the sandbox directory at path. With trust, every directory on the way to it is
 * judged as its path is resolved from / (symlinks and all): one writable by someone else
 * than a trusted writer makes every file in it untrusted; above the sandbox directory, a
 * sticky one (/tmp) is trusted for what trusted writers own in it. The directory itself
 * is judged strictly. Without trust (NULL), nothing is judged, escapes are still refused.
 * Returns -errno only if it cannot be opened; a directory that is not trusted is opened
 * all the same (sandbox_root_distrust() says why).
 */
int sandbox_root_open(const char *path, const Trust *trust, SandboxRoot **ret);
SandboxRoot *sandbox_root_free(SandboxRoot *r);
DEFINE_POINTER_CLEANUP(SandboxRoot, sandbox_root_free)
int sandbox_root_fd(const SandboxRoot *r);
const char *sandbox_root_path(const SandboxRoot *r);
/* Why the files in it are not trusted whatever they are, or NULL. */
const char *sandbox_root_distrust(const SandboxRoot *r);

typedef struct SandboxFile {
	SandboxFileVerdict verdict;
	char *why;	/* refused: why, naming no byte of what the file holds; else NULL */
	struct stat st; /* the file the path leads to (unless it escapes) */
	int fd;		/* sandbox_file_open() of a trusted file: open for reading; else -EBADF */
} SandboxFile;

#define SANDBOX_FILE_INIT                                                                          \
	{                                                                                          \
		.fd = -EBADF                                                                       \
	}
void sandbox_file_done(SandboxFile *f);

/*
 * Resolve rel (relative to the sandbox directory) and judge it, without opening it: for a
 * caller that skips a file whose identity (f->st) it read already. Returns 0 with a
 * verdict; -ENOENT if nothing is there (a dangling symlink too), -ELOOP, -ENOTDIR, or
 * another -errno of the lookup.
 */
int sandbox_file_resolve(SandboxRoot *root, const char *rel, SandboxFile *ret);

/*
 * The same, then open the file if it is trusted, with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS) from the sandbox directory's fd; where the kernel has no openat2
 * or a seccomp filter refuses it (ENOSYS, EPERM), from the directory the resolution
 * ended in, O_NOFOLLOW. The file is judged again on the open fd. Returns as
 * sandbox_file_resolve(), and -EAGAIN if the file kept changing while it was opened.
 */
int sandbox_file_open(SandboxRoot *root, const char *rel, SandboxFile *ret);
