/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>

#include "diag.h"
#include "spec.h"

/*
 * spec.after: the sandboxes, by name, that are to be Ready before this one starts
 * (docs/sandbox-file.md, "Ordering"). What the file says and its JSON; the graph they make
 * across files (a cycle is an error); the daemon's side of it is ordering.c's.
 */

struct Decoder;
struct YNode;
struct Field;
/* spec-yaml.c's decoder of after: a list of sandbox names, no duplicates. */
void decode_after(struct Decoder *d, const struct YNode *n, const struct Field *f, void *obj);
/* Once the file's name gave the sandbox its name: it does not wait for itself. */
void spec_after_check_self(const SandboxSpec *s, DiagList *diags);

/* "after": [names] into j when s has any; back into s (-EINVAL for a bad one). */
int spec_after_to_json(const SandboxSpec *s, json_t *j);
int spec_after_from_json(const json_t *j, SandboxSpec *s);

/* Whether s names name in after:. */
bool spec_after_has(const SandboxSpec *s, const char *name);

/* The spec in force of the sandbox called name, and its file (for messages); NULL: none. */
typedef const SandboxSpec *(*AfterLookup)(void *userdata, const char *name, const char **ret_path);

/*
 * Whether start (from start_path) closes a cycle of after: with the specs lookup gives for
 * the other names: 1, the index of start's edge that leads around in *ret_edge, and the
 * cycle in *ret ("spec.after[0]: a cycle of after: ..." naming each edge's file:line:col,
 * from start's own); 0 if it does not; -ENOMEM.
 */
int after_find_cycle(const SandboxSpec *start, const char *start_path, AfterLookup lookup,
		     void *userdata, size_t *ret_edge, char **ret);

/*
 * The files of vmd validate DIR, across them: each spec with an after: (a node), and the
 * names every file gives, valid or not. Checked at the end: each node's diags say what is
 * wrong with its after: (a cycle it is in, from its own edge on; with names, a name no
 * file gives), and reason is "DependencyCycle" or "UnknownDependency" (NULL: none).
 */
typedef struct AfterNode {
	SandboxSpec *spec;
	char *path; /* as shown */
	void *userdata;
	DiagList diags;
	const char *reason;
} AfterNode;

typedef struct AfterGraph {
	AfterNode *nodes;
	size_t n;
	struct Hashmap *names; /* every name a file gives -> its node's index + 1, or 0 */
	char **name_keys;      /* the keys' storage */
} AfterGraph;

/* A file's name, whether or not it is valid (a name it gives is no unknown one). */
int after_graph_note_name(AfterGraph *g, const char *path);
/* Take spec (which has an after:), read from path. */
int after_graph_add(AfterGraph *g, SandboxSpec *spec, const char *path, void *userdata);
void after_graph_check(AfterGraph *g, bool check_names);
void after_graph_done(AfterGraph *g);
