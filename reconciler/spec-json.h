/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>

#include "spec.h"

/*
 * A SandboxSpec as JSON, in the sandbox file's own field names: for vmd's own state
 * files (the noop backend's VMs, status.json) and to compare two specs. Not a way to read
 * users' files: that is spec-yaml.c's job.
 */

/* A new JSON object, or NULL on allocation failure. Keys are sorted when dumped. */
json_t *spec_to_json(const SandboxSpec *s);

/* Back from spec_to_json()'s output; -EINVAL if it is not one. */
int spec_from_json(const json_t *j, SandboxSpec **ret);

/* A deep copy of s. */
int spec_copy(const SandboxSpec *s, SandboxSpec **ret);
/* Whether a and b describe the same sandbox (compared through their JSON). */
bool spec_equal(const SandboxSpec *a, const SandboxSpec *b);
