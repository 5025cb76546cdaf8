/* SPDX-License-Identifier: MIT */
#pragma once

#include "diag.h"
#include "spec.h"
#include "yaml-tree.h"

/*
 * Rules about a decoded SandboxSpec that know its fields, not its YAML: each backend's
 * validate op (backends/backend.h). A rule names the field it refuses the way messages do,
 * "spec.disks[0].format", "spec.vcpus", and SpecCheck finds that field's line and column in
 * the file, so that its error reads like the decoder's own.
 *
 * A field is names joined by '.', each name followed by any number of "[N]" (an item of a
 * list, from 0); the names are of the file format's fields, never user-supplied keys.
 */

typedef struct SpecCheck {
	const YNode *root; /* the file's tree; NULL for a file without a document */
	DiagList *diags;
	/* A rule refused the spec through this check, whether it said why now or the decoder had. */
	bool refused;
} SpecCheck;

/* The node of field in the file, or NULL when the file does not have it. */
const YNode *spec_check_find(const SpecCheck *c, const char *field);

/*
 * "FIELD: MESSAGE" at field's node; at the nearest enclosing node the file has when it does
 * not have field itself (a default that the backend refuses), at 1:1 when it has none.
 */
void spec_check_error(SpecCheck *c, const char *field, const char *fmt, ...) _printf_(3, 4);

/*
 * field is required: "PARENT: missing field 'NAME': MESSAGE" at PARENT's node when PARENT
 * is a mapping without NAME ("missing field 'NAME': MESSAGE" for a top-level field). Quiet
 * when the file has the field (what is wrong with its value, the decoder reported) or has
 * no mapping PARENT (reported too); the spec is refused either way.
 */
void spec_check_missing(SpecCheck *c, const char *field, const char *fmt, ...) _printf_(3, 4);

/* What a validate op returns: 0, or -EINVAL when a rule refused the spec. */
static inline int spec_check_result(const SpecCheck *c)
{
	return c->refused ? -EINVAL : 0;
}

#define SPEC_CHECK_BACKEND_MAX 64

/* "backend 'firecracker'", plus " (the default backend)" when the file does not name it. */
const char *spec_check_backend(const SandboxSpec *spec, char buf[static SPEC_CHECK_BACKEND_MAX]);
