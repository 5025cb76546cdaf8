/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <yaml.h>

#include "util.h"
#include "yaml-tree.h"

typedef struct Frame {
	YNode *node;
	YNode *pending_key; /* a map's key still waiting for its value */
} Frame;

typedef struct Builder {
	const char *buf;
	size_t len;
	DiagList *diags;
	Frame stack[YTREE_MAX_DEPTH];
	size_t depth;
	YNode *root;
	size_t n_nodes;
	unsigned n_documents;
	char **aliases; /* alias names reported so far */
	size_t n_aliases;
	bool fatal; /* stop reading events */
	int error;  /* -ENOMEM */
} Builder;

YNode *ynode_free(YNode *n)
{
	if (!n)
		return NULL;
	free(n->value);
	for (size_t i = 0; i < n->n_pairs; i++) {
		ynode_free(n->pairs[i].key);
		ynode_free(n->pairs[i].value);
	}
	free(n->pairs);
	for (size_t i = 0; i < n->n_items; i++)
		ynode_free(n->items[i]);
	free(n->items);
	free(n);
	return NULL;
}

const YNode *ynode_map_get(const YNode *map, const char *key)
{
	if (!map || map->type != YNODE_MAP)
		return NULL;
	for (size_t i = 0; i < map->n_pairs; i++)
		if (streq(map->pairs[i].key->value, key))
			return map->pairs[i].value;
	return NULL;
}

static void builder_error(Builder *b, yaml_mark_t m, const char *fmt, ...) _printf_(3, 4);
static void builder_error(Builder *b, yaml_mark_t m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_addv(b->diags, (unsigned)m.line + 1, (unsigned)m.column + 1, NULL, fmt, ap);
	va_end(ap);
}

static YNode *node_new(Builder *b, YNodeType type, yaml_mark_t m)
{
	YNode *n;

	if (++b->n_nodes > YTREE_MAX_NODES) {
		builder_error(b, m, "too many YAML nodes: a sandbox file holds at most %u",
			      YTREE_MAX_NODES);
		b->fatal = true;
		return NULL;
	}
	n = calloc(1, sizeof(*n));
	if (!n) {
		b->error = -ENOMEM;
		return NULL;
	}
	n->type = type;
	n->line = (unsigned)m.line + 1;
	n->column = (unsigned)m.column + 1;
	return n;
}

/* Attach n (owned) to the open collection, or make it the root. */
static void builder_attach(Builder *b, YNode *n)
{
	Frame *f;

	if (b->depth == 0) {
		ynode_free(b->root);
		b->root = n;
		return;
	}

	f = &b->stack[b->depth - 1];
	if (f->node->type == YNODE_SEQ) {
		YNode **items = reallocarray(f->node->items, f->node->n_items + 1, sizeof(YNode *));

		if (!items) {
			b->error = -ENOMEM;
			ynode_free(n);
			return;
		}
		f->node->items = items;
		items[f->node->n_items++] = n;
		return;
	}

	if (!f->pending_key) {
		f->pending_key = n;
		return;
	}

	YPair *pairs = reallocarray(f->node->pairs, f->node->n_pairs + 1, sizeof(YPair));
	if (!pairs) {
		b->error = -ENOMEM;
		ynode_free(n);
		return;
	}
	f->node->pairs = pairs;
	pairs[f->node->n_pairs++] = (YPair){ .key = TAKE_PTR(f->pending_key), .value = n };
}

static bool frame_wants_key(const Builder *b)
{
	return b->depth > 0 && b->stack[b->depth - 1].node->type == YNODE_MAP &&
	       !b->stack[b->depth - 1].pending_key;
}

static void check_anchor_and_tag(Builder *b, yaml_mark_t m, const yaml_char_t *anchor,
				 const yaml_char_t *tag, bool *ret_tagged)
{
	if (anchor)
		builder_error(b, m,
			      "anchors ('&%s') are not allowed in sandbox files; write the value out",
			      (const char *)anchor);
	if (tag) {
		/* Show the tag as written: libyaml expands !!str to tag:yaml.org,2002:str. */
		const char *t = (const char *)tag, *core = "tag:yaml.org,2002:";
		bool is_core = strncmp(t, core, strlen(core)) == 0;

		builder_error(b, m, "explicit tags ('%s%s') are not allowed in sandbox files",
			      is_core ? "!!" : "", is_core ? t + strlen(core) : t);
	}
	*ret_tagged = tag != NULL;
}

static void on_scalar(Builder *b, const yaml_event_t *e)
{
	bool tagged, is_key = frame_wants_key(b);
	YNode *n;

	check_anchor_and_tag(b, e->start_mark, e->data.scalar.anchor, e->data.scalar.tag, &tagged);
	n = node_new(b, tagged && !is_key ? YNODE_INVALID : YNODE_SCALAR, e->start_mark);
	if (!n)
		return;
	n->value = malloc(e->data.scalar.length + 1);
	if (!n->value) {
		b->error = -ENOMEM;
		ynode_free(n);
		return;
	}
	memcpy(n->value, e->data.scalar.value, e->data.scalar.length);
	n->value[e->data.scalar.length] = '\0';
	n->length = e->data.scalar.length;
	n->plain = e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	builder_attach(b, n);
}

/* A node that stands where an error was already reported; later stages skip it. */
static void attach_invalid(Builder *b, yaml_mark_t m)
{
	YNode *n = node_new(b, YNODE_INVALID, m);

	if (n)
		builder_attach(b, n);
}

/* Whether this alias name was reported before; remembers it if not. */
static bool alias_seen(Builder *b, const char *name)
{
	char **names;

	for (size_t k = 0; k < b->n_aliases; k++)
		if (streq(b->aliases[k], name))
			return true;
	if (b->n_aliases >= DIAG_MAX)
		return true; /* enough said */
	names = reallocarray(b->aliases, b->n_aliases + 1, sizeof(char *));
	if (!names) {
		b->error = -ENOMEM;
		return true;
	}
	b->aliases = names;
	names[b->n_aliases] = strdup(name);
	if (!names[b->n_aliases]) {
		b->error = -ENOMEM;
		return true;
	}
	b->n_aliases++;
	return false;
}

static void on_alias(Builder *b, const yaml_event_t *e)
{
	const char *name = (const char *)e->data.alias.anchor;

	/* Once per name: a billion-laughs file repeats one alias thousands of times. */
	if (!alias_seen(b, name))
		builder_error(b, e->start_mark,
			      "aliases ('*%s') are not allowed in sandbox files; write the value out",
			      name);
	attach_invalid(b, e->start_mark);
}

static void on_collection_start(Builder *b, const yaml_event_t *e, YNodeType type)
{
	const yaml_char_t *anchor, *tag;
	bool tagged;
	YNode *n;

	if (type == YNODE_MAP) {
		anchor = e->data.mapping_start.anchor;
		tag = e->data.mapping_start.tag;
	} else {
		anchor = e->data.sequence_start.anchor;
		tag = e->data.sequence_start.tag;
	}

	if (frame_wants_key(b))
		builder_error(b, e->start_mark, "mapping keys must be strings, not a %s",
			      type == YNODE_MAP ? "mapping" : "sequence");
	check_anchor_and_tag(b, e->start_mark, anchor, tag, &tagged);

	if (b->depth >= YTREE_MAX_DEPTH) {
		builder_error(b, e->start_mark, "nesting deeper than %u levels", YTREE_MAX_DEPTH);
		b->fatal = true;
		return;
	}
	n = node_new(b, type, e->start_mark);
	if (!n)
		return;
	b->stack[b->depth++] = (Frame){ .node = n };
}

static int pair_compare(const void *a, const void *b)
{
	const YPair *x = a, *y = b;
	int c = strcmp(x->key->value, y->key->value);

	if (c != 0)
		return c;
	if (x->key->line != y->key->line)
		return x->key->line < y->key->line ? -1 : 1;
	return x->key->column < y->key->column ? -1 : x->key->column > y->key->column;
}

/* Drop the pairs whose key was marked YNODE_INVALID. */
static void map_compact(YNode *map)
{
	size_t kept = 0;

	for (size_t i = 0; i < map->n_pairs; i++) {
		YPair p = map->pairs[i];

		if (p.key->type == YNODE_INVALID) {
			ynode_free(p.key);
			ynode_free(p.value);
			continue;
		}
		map->pairs[kept++] = p;
	}
	map->n_pairs = kept;
}

/*
 * Report merge keys and duplicate keys of a finished map and drop them, so that later
 * stages see every key once, with its first value. Sorting keeps this O(n log n) even
 * for a hostile map with tens of thousands of keys.
 */
static void map_check_keys(Builder *b, YNode *map)
{
	_cleanup_free_ YPair *sorted = NULL;

	for (size_t i = 0; i < map->n_pairs; i++) {
		YNode *k = map->pairs[i].key;

		if (k->type == YNODE_SCALAR && k->plain && streq(k->value, "<<")) {
			diag_add(b->diags, k->line, k->column,
				 "merge keys ('<<') are not allowed in sandbox files; write the fields out");
			k->type = YNODE_INVALID;
		}
	}
	map_compact(map);
	if (map->n_pairs < 2)
		return;

	sorted = reallocarray(NULL, map->n_pairs, sizeof(YPair));
	if (!sorted) {
		b->error = -ENOMEM;
		return;
	}
	memcpy(sorted, map->pairs, map->n_pairs * sizeof(YPair));
	qsort(sorted, map->n_pairs, sizeof(YPair), pair_compare);

	for (size_t i = 1, first = 0; i < map->n_pairs; i++) {
		YNode *k = sorted[i].key;

		if (!streq(sorted[first].key->value, k->value)) {
			first = i;
			continue;
		}
		diag_add(b->diags, k->line, k->column,
			 "duplicate key '%s' (first defined at line %u, column %u)", k->value,
			 sorted[first].key->line, sorted[first].key->column);
		k->type = YNODE_INVALID;
	}
	map_compact(map);
}

static void on_collection_end(Builder *b)
{
	Frame f;

	assert(b->depth > 0);
	f = b->stack[--b->depth];
	if (f.node->type == YNODE_MAP) {
		/* A key without a value cannot be left here: libyaml emits an empty scalar. */
		ynode_free(f.pending_key);
		map_check_keys(b, f.node);
	}

	if (frame_wants_key(b)) {
		/* A collection used as a key was reported at its start. */
		yaml_mark_t m = { .line = f.node->line - 1, .column = f.node->column - 1 };

		ynode_free(f.node);
		attach_invalid(b, m);
		return;
	}
	builder_attach(b, f.node);
}

static void on_document_start(Builder *b, const yaml_event_t *e)
{
	if (++b->n_documents > 1) {
		builder_error(b, e->start_mark,
			      "more than one YAML document; a sandbox file holds exactly one sandbox");
		b->fatal = true;
		return;
	}
	if (e->data.document_start.version_directive ||
	    e->data.document_start.tag_directives.start != e->data.document_start.tag_directives.end)
		builder_error(b, e->start_mark,
			      "directives (%%YAML, %%TAG) are not allowed in sandbox files");
}

/* Byte offset of 0-based (line, column) in buf, columns counted in characters. */
static size_t offset_of(const char *buf, size_t len, size_t line, size_t column)
{
	size_t i = 0;

	for (; i < len && line > 0; i++)
		if (buf[i] == '\n')
			line--;
	for (; i < len && column > 0; i++)
		if (((unsigned char)buf[i] & 0xC0) != 0x80 && --column == 0)
			break;
	while (column == 0 && i < len && ((unsigned char)buf[i] & 0xC0) == 0x80)
		i++;
	return i;
}

/* The one place that turns libyaml's errors into ours. */
static void builder_parser_error(Builder *b, const yaml_parser_t *p)
{
	unsigned line, column;
	size_t off;

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		b->error = -ENOMEM;
		return;
	case YAML_READER_ERROR:
		/* The input was checked for UTF-8 already; what remains are unprintable characters. */
		text_position(b->buf, p->problem_offset, &line, &column);
		if (p->problem_value >= 0)
			diag_add(b->diags, line, column, "invalid character U+%04X: %s",
				 (unsigned)p->problem_value, p->problem);
		else
			diag_add(b->diags, line, column, "invalid input: %s", p->problem);
		return;
	default:
		break;
	}

	off = offset_of(b->buf, b->len, p->problem_mark.line, p->problem_mark.column);
	const char *hint = off < b->len && b->buf[off] == '\t' && !strstr(p->problem, "tab")
				   ? "; tabs cannot be used for indentation in YAML"
				   : "";

	if (p->context)
		diag_add(b->diags, (unsigned)p->problem_mark.line + 1,
			 (unsigned)p->problem_mark.column + 1,
			 "YAML syntax error: %s (%s at line %zu, column %zu)%s", p->problem,
			 p->context, p->context_mark.line + 1, p->context_mark.column + 1, hint);
	else
		diag_add(b->diags, (unsigned)p->problem_mark.line + 1,
			 (unsigned)p->problem_mark.column + 1, "YAML syntax error: %s%s",
			 p->problem ?: "unknown error", hint);
}

/* Errors in the bytes themselves, before libyaml sees them. */
static bool check_bytes(const char *buf, size_t len, DiagList *diags)
{
	const char *nul;
	unsigned line, column;
	size_t bad;

	if (len > YTREE_MAX_BYTES) {
		text_position(buf, utf8_first_invalid(buf, YTREE_MAX_BYTES), &line, &column);
		diag_add(diags, line, column, "file is larger than %u bytes (1 MiB)",
			 YTREE_MAX_BYTES);
		return false;
	}
	nul = memchr(buf, '\0', len);
	bad = utf8_first_invalid(buf, nul ? (size_t)(nul - buf) : len);
	if (nul && bad == (size_t)(nul - buf)) {
		text_position(buf, bad, &line, &column);
		diag_add(diags, line, column, "NUL byte in file: a sandbox file is UTF-8 text");
		return false;
	}
	if (bad < len) {
		text_position(buf, bad, &line, &column);
		diag_add(diags, line, column,
			 "invalid UTF-8 (byte 0x%02X at offset %zu): a sandbox file is UTF-8 text",
			 (unsigned char)buf[bad], bad);
		return false;
	}
	return true;
}

static void builder_done(Builder *b)
{
	while (b->depth > 0) {
		Frame *f = &b->stack[--b->depth];

		ynode_free(f->pending_key);
		ynode_free(f->node);
	}
	b->root = ynode_free(b->root);
}

static void builder_free_aliases(Builder *b)
{
	for (size_t i = 0; i < b->n_aliases; i++)
		free(b->aliases[i]);
	b->aliases = mfree(b->aliases);
	b->n_aliases = 0;
}

static void builder_event(Builder *b, const yaml_event_t *e)
{
	switch (e->type) {
	case YAML_DOCUMENT_START_EVENT:
		on_document_start(b, e);
		break;
	case YAML_SCALAR_EVENT:
		on_scalar(b, e);
		break;
	case YAML_ALIAS_EVENT:
		on_alias(b, e);
		break;
	case YAML_MAPPING_START_EVENT:
		on_collection_start(b, e, YNODE_MAP);
		break;
	case YAML_SEQUENCE_START_EVENT:
		on_collection_start(b, e, YNODE_SEQ);
		break;
	case YAML_MAPPING_END_EVENT:
	case YAML_SEQUENCE_END_EVENT:
		on_collection_end(b);
		break;
	default:
		break;
	}
}

int ytree_parse(const char *buf, size_t len, YNode **ret_root, DiagList *diags)
{
	Builder b = { .buf = buf, .len = len, .diags = diags };
	yaml_parser_t parser;
	bool done = false;

	/* A UTF-8 byte order mark, as some Windows editors write: invisible, so not counted. */
	if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) {
		buf += 3;
		len -= 3;
		b.buf = buf;
		b.len = len;
	}
	if (!check_bytes(buf, len, diags))
		return -EINVAL;

	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);

	while (!done && !b.fatal && b.error == 0) {
		yaml_event_t e;

		if (!yaml_parser_parse(&parser, &e)) {
			builder_parser_error(&b, &parser);
			break;
		}
		builder_event(&b, &e);
		done = e.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&e);
	}
	yaml_parser_delete(&parser);
	builder_free_aliases(&b);

	if (b.error == 0)
		b.error = diags->error;
	if (b.error < 0 || b.fatal || !done) {
		builder_done(&b);
		return b.error < 0 ? b.error : -EINVAL;
	}

	*ret_root = TAKE_PTR(b.root);
	return 0;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* s is [0-9][0-9_]* up to end; says whether it held an underscore. */
static bool digits_underscores(const char *s, const char *end, bool *ret_underscore)
{
	bool u = false;

	if (s == end || !is_digit(*s))
		return false;
	for (; s < end; s++) {
		if (*s == '_')
			u = true;
		else if (!is_digit(*s))
			return false;
	}
	*ret_underscore = u;
	return true;
}

static bool all_in(const char *s, const char *set)
{
	return *s && strspn(s, set) == strlen(s);
}

/* [-+]?[1-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)? */
static bool is_sexagesimal(const char *s)
{
	if (*s == '-' || *s == '+')
		s++;
	if (*s < '1' || *s > '9')
		return false;
	s += strspn(s, "0123456789_");
	if (*s != ':')
		return false;
	while (*s == ':') {
		s++;
		if (s[0] >= '0' && s[0] <= '5' && is_digit(s[1]))
			s += 2;
		else if (is_digit(s[0]))
			s++;
		else
			return false;
	}
	if (*s == '.')
		s += 1 + strspn(s + 1, "0123456789_");
	return *s == '\0';
}

/* [-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)? with a '.' or an exponent */
static bool is_float(const char *s)
{
	bool dot = false, exp = false;

	if (*s == '-' || *s == '+')
		s++;
	if (streq(s, ".inf") || streq(s, ".Inf") || streq(s, ".INF") || streq(s, ".nan") ||
	    streq(s, ".NaN") || streq(s, ".NAN"))
		return true;
	if (*s == '.') {
		if (!is_digit(s[1]))
			return false;
	} else if (!is_digit(*s))
		return false;
	s += strspn(s, "0123456789_");
	if (*s == '.') {
		dot = true;
		s += 1 + strspn(s + 1, "0123456789_");
	}
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '-' || *s == '+')
			s++;
		if (!is_digit(*s))
			return false;
		s += strspn(s, "0123456789");
		exp = true;
	}
	return *s == '\0' && (dot || exp);
}

/* [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}, optionally followed by a time */
static bool is_timestamp(const char *s)
{
	size_t n;

	if (strspn(s, "0123456789") != 4 || s[4] != '-')
		return false;
	s += 5;
	n = strspn(s, "0123456789");
	if (n < 1 || n > 2 || s[n] != '-')
		return false;
	s += n + 1;
	n = strspn(s, "0123456789");
	return n >= 1 && n <= 2 && (s[n] == '\0' || s[n] == 'T' || s[n] == 't' || s[n] == ' ');
}

YImplicit yaml_implicit_type(const char *s)
{
	static const char *const bool_1_1[] = { "y",  "Y",  "yes", "Yes",  "YES",  "n",	    "N",
						"no", "No", "NO",  "True", "TRUE", "False", "FALSE",
						"on", "On", "ON",  "off",  "Off",  "OFF" };
	const char *p = s;
	bool underscore = false;

	if (streq(s, "") || streq(s, "~") || streq(s, "null") || streq(s, "Null") || streq(s, "NULL"))
		return YIMPLICIT_NULL;
	if (streq(s, "true") || streq(s, "false"))
		return YIMPLICIT_BOOL;
	for (size_t i = 0; i < ELEMENTSOF(bool_1_1); i++)
		if (streq(s, bool_1_1[i]))
			return YIMPLICIT_BOOL_1_1;

	if (*p == '-' || *p == '+')
		p++;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && all_in(p + 2, "0123456789abcdefABCDEF_"))
		return YIMPLICIT_INT_OTHER;
	if (p[0] == '0' && p[1] == 'o' && all_in(p + 2, "01234567"))
		return YIMPLICIT_INT_OTHER;
	if (p[0] == '0' && p[1] == 'b' && all_in(p + 2, "01_"))
		return YIMPLICIT_INT_OTHER;
	if (digits_underscores(p, p + strlen(p), &underscore)) {
		if (p[0] == '0' && p[1] != '\0')
			return YIMPLICIT_INT_ZERO;
		if (underscore || s[0] == '+')
			return YIMPLICIT_INT_OTHER;
		return YIMPLICIT_INT;
	}
	if (is_sexagesimal(s))
		return YIMPLICIT_SEXAGESIMAL;
	if (is_float(s))
		return YIMPLICIT_FLOAT;
	if (is_timestamp(s))
		return YIMPLICIT_TIMESTAMP;
	return YIMPLICIT_STRING;
}
