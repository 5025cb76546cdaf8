/* SPDX-License-Identifier: MIT */
#pragma once

#include "diag.h"

/*
 * A strict reader of one YAML document into a small tree, on libyaml's event API.
 *
 * It refuses, with a position: input over YTREE_MAX_BYTES, NUL bytes, invalid UTF-8,
 * syntax errors, directives, anchors, aliases, explicit tags, merge keys, duplicate keys,
 * non-scalar keys, more than one document, nesting deeper than YTREE_MAX_DEPTH and more
 * than YTREE_MAX_NODES nodes. Aliases are never expanded, so hostile input is refused
 * in time linear in its size.
 */

#define YTREE_MAX_BYTES (1024u * 1024u)
#define YTREE_MAX_DEPTH 32u
#define YTREE_MAX_NODES 100000u

typedef enum YNodeType {
	YNODE_SCALAR,
	YNODE_MAP,
	YNODE_SEQ,
	YNODE_INVALID, /* stands where an error was already reported (an alias, a tagged scalar) */
} YNodeType;

typedef struct YNode YNode;

typedef struct YPair {
	YNode *key; /* always a YNODE_SCALAR */
	YNode *value;
} YPair;

struct YNode {
	YNodeType type;
	unsigned line;	 /* 1-based */
	unsigned column; /* 1-based, in characters */

	/* YNODE_SCALAR */
	char *value; /* NUL-terminated; may hold an escaped NUL before length */
	size_t length;
	bool plain; /* unquoted, so subject to YAML's implicit typing */

	/* YNODE_MAP */
	YPair *pairs;
	size_t n_pairs;

	/* YNODE_SEQ */
	YNode **items;
	size_t n_items;
};

YNode *ynode_free(YNode *n);
DEFINE_POINTER_CLEANUP(YNode, ynode_free)

/* The value for key in map, or NULL. */
const YNode *ynode_map_get(const YNode *map, const char *key);

/*
 * Parse buf. Returns 0 when the whole input was read: *ret_root is the document's root,
 * or NULL for a stream without a document (an empty or comments-only file). Errors that
 * leave the tree whole (an anchor, a tag, a duplicate key) are in diags, and the places
 * they concern hold YNODE_INVALID or are dropped, so that the caller can go on checking
 * the rest. Returns -EINVAL after an error that stops reading (a syntax error, the input's
 * bytes, a second document, the depth or node limit), -ENOMEM on allocation failure.
 */
int ytree_parse(const char *buf, size_t len, YNode **ret_root, DiagList *diags);

/*
 * What a plain (unquoted) scalar means to YAML parsers other than a string, under
 * YAML 1.2's core schema or YAML 1.1's types (which PyYAML, yq v3 and many others use).
 */
typedef enum YImplicit {
	YIMPLICIT_STRING,
	YIMPLICIT_NULL,	       /* "", ~, null */
	YIMPLICIT_BOOL,	       /* true, false */
	YIMPLICIT_BOOL_1_1,    /* yes, no, on, off, y, n, True, FALSE, ... */
	YIMPLICIT_INT,	       /* -?(0|[1-9][0-9]*) */
	YIMPLICIT_INT_ZERO,    /* leading zero: octal in YAML 1.1, decimal in 1.2 */
	YIMPLICIT_INT_OTHER,   /* 0x1f, 0o17, 0b101, 1_000, +5 */
	YIMPLICIT_SEXAGESIMAL, /* 1:20 is 80 in YAML 1.1 */
	YIMPLICIT_FLOAT,       /* 1.5, 1e3, .inf, .nan */
	YIMPLICIT_TIMESTAMP,   /* 2024-01-31 */
} YImplicit;

YImplicit yaml_implicit_type(const char *s);
