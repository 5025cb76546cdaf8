/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>

#include "diag.h"
#include "util.h"
#include "yaml-tree.h"

/*
 * Typed, table-driven decoding of a YAML tree into C structs, conf-parser style: a
 * mapping is described by a table of Fields, and the table is also the list of known
 * keys, so that an unknown key is an error with a "did you mean" suggestion. Decoders
 * report every problem through decode_error() and go on, so that a file's errors come
 * out all at once; the caller drops the half-built struct when there were any.
 */

typedef struct Decoder {
	DiagList *diags;
	char where[128]; /* the field being decoded, as "spec.disks[1].id" */
	void *userdata;	 /* what the decoders of one file format share */
} Decoder;

typedef struct Field Field;
typedef void (*FieldDecode)(Decoder *d, const YNode *n, const Field *f, void *obj);

struct Field {
	const char *name;
	FieldDecode decode;
	size_t offset; /* where in obj the value goes */
	bool required;
	uint64_t min, max;	  /* integers; sizes; max length of strings; max duration */
	const char *const *table; /* enums: the names; decode_exact: the one value */
	size_t table_len;
};

#define FIELD_AT(obj, f, type) ((type *)((char *)(obj) + (f)->offset))

/* A list of mappings, each decoded with fields into an item of item_size. */
typedef struct ListDesc {
	const char *what; /* "disk", "network" */
	const Field *fields;
	size_t n_fields;
	size_t item_size;
	size_t max;
	const char *unique[2]; /* fields whose values must differ between items */
	void (*check)(Decoder *d, const YNode *item, void *obj);
} ListDesc;

/* An error at n, prefixed with the field path being decoded. */
void decode_error(Decoder *d, const YNode *n, const char *fmt, ...) _printf_(3, 4);
/* Append to the field path; returns what decode_where_pop() restores. */
size_t decode_where_push(Decoder *d, const char *fmt, ...) _printf_(2, 3);
void decode_where_pop(Decoder *d, size_t old);

/* A user's value quoted for a message: its first 58 bytes or so, control characters escaped. */
const char *decode_show(const YNode *n, char buf[static 80]);
/* "; did you mean 'x'?" for a near miss of one of names, or "". */
const char *decode_suggest(const char *s, const char *const *names, size_t n, char buf[static 80]);

/*
 * The string value of a scalar. A plain scalar that a YAML parser reads as something else
 * (yes, 010, 1:20, 2024-01-01, ~) must be quoted, and control characters are refused.
 */
bool decode_get_string(Decoder *d, const YNode *n, const char **ret);
bool decode_dup(Decoder *d, const char *s, char **ret);
bool decode_enum_value(Decoder *d, const YNode *n, const Field *f, int *ret);
/* A plain decimal integer in [f->min, f->max]. */
bool decode_uint_value(Decoder *d, const YNode *n, const Field *f, uint64_t *ret);

/* FieldDecode functions for the common types. */
void decode_string(Decoder *d, const YNode *n, const Field *f, void *obj);   /* char * */
void decode_exact(Decoder *d, const YNode *n, const Field *f, void *obj);    /* no storage */
void decode_enum(Decoder *d, const YNode *n, const Field *f, void *obj);     /* int */
void decode_bool(Decoder *d, const YNode *n, const Field *f, void *obj);     /* bool */
void decode_size(Decoder *d, const YNode *n, const Field *f, void *obj);     /* uint64_t bytes */
void decode_duration(Decoder *d, const YNode *n, const Field *f, void *obj); /* uint64_t ms */
void decode_path(Decoder *d, const YNode *n, const Field *f, void *obj);     /* char * */

/* Decode map with fields into obj; where is what a missing required field is reported at. */
void decode_fields(Decoder *d, const YNode *map, const YNode *where, const Field *fields,
		   size_t n_fields, void *obj);
/* Decode a list into items; returns the number of items decoded. */
size_t decode_list(Decoder *d, const YNode *n, const ListDesc *l, void *items);
