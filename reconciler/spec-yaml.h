/* SPDX-License-Identifier: MIT */
#pragma once

#include "diag.h"
#include "spec.h"

/*
 * The strict loader of sandbox files. Every problem of a file becomes a Diag with the
 * line and column it points at, all of them, not just the first.
 */

typedef struct SpecLoadOptions {
	BackendKind default_backend; /* for files without spec.backend */
} SpecLoadOptions;

/*
 * Load the sandbox file at path. Returns 0 with *ret set; -EINVAL when the file is
 * invalid (the reasons are in diags); another -errno when it cannot be read (nothing is
 * added to diags): -EISDIR for a directory, -EBADFD for anything else that is not a
 * regular file.
 */
int spec_load_file(const char *path, const SpecLoadOptions *opts, SandboxSpec **ret, DiagList *diags);

/* The same for a file's contents; path gives the sandbox name and is not opened. */
int spec_load_buffer(const char *path, const char *buf, size_t len, const SpecLoadOptions *opts,
		     SandboxSpec **ret, DiagList *diags);
