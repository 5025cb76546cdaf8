/* SPDX-License-Identifier: MIT */
#pragma once

#include "spec.h"

/*
 * What is left of a removed sandbox's disks from images (docs/sandbox-file.md, "Disks from
 * images"): <state-dir>/disks/<name>/, the copies vmd made of their images. They are kept,
 * unless the sandbox's last spec says deleteDisksOnRemove (all of them go, and the
 * directory) or a disk is ephemeral (that disk's files go: <id>.qcow2 or <id>.raw, its
 * record <id>.json, the copies kept beside <id>.gen<N>.*, a partial <id>.*.part).
 */

/* Delete what spec says goes with it; how many files were deleted, or -errno. */
int image_copies_remove(const char *state_dir, const SandboxSpec *spec);
