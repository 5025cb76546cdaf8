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

/*
 * spec.cloudInit and spec.credentials (spec-provision.c): into j, beside the rest; back
 * into s. What the file says, paths and inline text, never a file's contents.
 */
int spec_provision_to_json(const SandboxSpec *s, json_t *j);
int spec_provision_from_json(const json_t *j, SandboxSpec *s);
/* Whether a and b provision their guests alike: a change is a boot-time change. */
bool spec_provision_equal(const SandboxSpec *a, const SandboxSpec *b);
/* A JSON object of at most max strings into labels (metadata.labels, metaData). */
int spec_labels_from_json(const json_t *o, size_t max, Label **ret, size_t *ret_n);

/*
 * Read the host files s's cloudInit names (regular files of at most 1 MiB, never waiting
 * on one) into cloud_init->files_hash; a file that cannot be read counts as its error.
 */
void spec_provision_hash_files(SandboxSpec *s);
