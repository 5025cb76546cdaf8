/* SPDX-License-Identifier: MIT */
#pragma once

#include "diag.h"
#include "spec-check.h"
#include "spec.h"

/*
 * The strict loader of sandbox files. Every problem of a file becomes a Diag with the
 * line and column it points at, all of them, not just the first.
 */

typedef struct SpecLoadOptions {
	BackendKind default_backend; /* for files without spec.backend */
	/*
	 * The rules of the sandbox's backend, run on the decoded spec whenever its backend was
	 * accepted, also when other fields were refused, so that a file's errors come out at
	 * once. Every real load sets backend_validate_spec (backend_spec_load_options() does);
	 * the loader itself knows no backend. NULL: none.
	 */
	int (*check)(const SandboxSpec *spec, SpecCheck *check);
	/*
	 * Do not open the disks' images (vmd validate --skip-images, on a host without
	 * them): whether they exist, are what imageFormat says and fit size, the daemon checks.
	 */
	bool skip_images;
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
