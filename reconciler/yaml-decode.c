/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "yaml-decode.h"

void decode_error(Decoder *d, const YNode *n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_addv(d->diags, n->line, n->column, d->where, fmt, ap);
	va_end(ap);
}

size_t decode_where_push(Decoder *d, const char *fmt, ...)
{
	size_t old = strlen(d->where);
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(d->where + old, sizeof(d->where) - old, fmt, ap);
	va_end(ap);
	return old;
}

void decode_where_pop(Decoder *d, size_t old)
{
	d->where[old] = '\0';
}

/* A user's value, quoted for a message: its first 58 bytes or so, control characters escaped. */
const char *decode_show(const YNode *n, char buf[static 80])
{
	size_t o = 0;

	switch (n->type) {
	case YNODE_MAP:
		return "a mapping";
	case YNODE_SEQ:
		return "a list";
	case YNODE_INVALID:
		return "an invalid value";
	case YNODE_SCALAR:
		break;
	}
	if (n->plain && n->length == 0)
		return "nothing";

	buf[o++] = '\'';
	for (size_t i = 0; i < n->length && o < 60; i++) {
		unsigned char c = (unsigned char)n->value[i];

		if (c < 0x20 || c == 0x7F)
			o += (size_t)snprintf(buf + o, 80 - o, "\\x%02X", c);
		else
			buf[o++] = (char)c;
	}
	if (o >= 60) {
		/* Do not leave half a UTF-8 sequence before the ellipsis. */
		while (o > 1 && ((unsigned char)buf[o - 1] & 0xC0) == 0x80)
			o--;
		if (o > 1 && ((unsigned char)buf[o - 1] & 0xC0) == 0xC0)
			o--;
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '\'';
	buf[o] = '\0';
	return buf;
}

static const char *implicit_meaning(YImplicit t)
{
	switch (t) {
	case YIMPLICIT_NULL:
		return "null";
	case YIMPLICIT_BOOL:
		return "a boolean";
	case YIMPLICIT_BOOL_1_1:
		return "a boolean in YAML 1.1";
	case YIMPLICIT_INT:
	case YIMPLICIT_INT_OTHER:
	case YIMPLICIT_FLOAT:
		return "a number";
	case YIMPLICIT_INT_ZERO:
		return "an octal number in YAML 1.1";
	case YIMPLICIT_SEXAGESIMAL:
		return "a base-60 number in YAML 1.1";
	case YIMPLICIT_TIMESTAMP:
		return "a date in YAML 1.1";
	case YIMPLICIT_STRING:
		break;
	}
	return "a string";
}

/*
 * The string value of a scalar. A plain scalar that any YAML parser reads as something
 * else (yes, 010, 1:20, 2024-01-01, ~) must be quoted: a tool that rewrites the file
 * would otherwise change it.
 */
bool decode_get_string(Decoder *d, const YNode *n, const char **ret)
{
	char buf[80];
	YImplicit t;
	int c;

	if (n->type == YNODE_INVALID)
		return false;
	if (n->type != YNODE_SCALAR) {
		decode_error(d, n, "expected a string, got %s", decode_show(n, buf));
		return false;
	}
	if (n->plain && n->length == 0) {
		decode_error(d, n, "expected a value, got nothing");
		return false;
	}
	if (strlen(n->value) != n->length) {
		decode_error(d, n, "contains a NUL character");
		return false;
	}
	c = first_control_char(n->value, n->length);
	if (c >= 0) {
		decode_error(d, n, "contains a control character (U+%04X)", (unsigned)c);
		return false;
	}
	t = n->plain ? yaml_implicit_type(n->value) : YIMPLICIT_STRING;
	if (t != YIMPLICIT_STRING) {
		decode_error(d, n, "%s is %s; quote it (\"%s\") if you mean the string",
			     decode_show(n, buf), implicit_meaning(t), n->value);
		return false;
	}
	*ret = n->value;
	return true;
}

bool decode_dup(Decoder *d, const char *s, char **ret)
{
	char *c = strdup(s);

	if (!c) {
		d->diags->error = -ENOMEM;
		return false;
	}
	free(*ret);
	*ret = c;
	return true;
}

/* "did you mean 'x'?" for a misspelt known name, or "". */
const char *decode_suggest(const char *s, const char *const *names, size_t n, char buf[static 80])
{
	size_t best = SIZE_MAX, limit = strlen(s) <= 3 ? 1 : 2;
	const char *pick = NULL;

	for (size_t i = 0; i < n; i++) {
		size_t dist = strcasecmp(s, names[i]) == 0 ? 0 : edit_distance(s, names[i], limit);

		if (dist <= limit && dist < best) {
			best = dist;
			pick = names[i];
		}
	}
	if (!pick)
		return "";
	snprintf(buf, 80, "; did you mean '%s'?", pick);
	return buf;
}

void decode_string(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	const char *s;

	if (!decode_get_string(d, n, &s))
		return;
	/* Characters, not bytes: as a JSON Schema's maxLength counts, so that both agree. */
	if (f->max && utf8_length(s) > f->max) {
		decode_error(d, n, "too long: %zu characters, at most %" PRIu64 " are allowed",
			     utf8_length(s), f->max);
		return;
	}
	(void)decode_dup(d, s, FIELD_AT(obj, f, char *));
}

void decode_exact(Decoder *d, const YNode *n, const Field *f, void *obj _unused_)
{
	char buf[80];
	const char *s;

	if (!decode_get_string(d, n, &s))
		return;
	if (!streq(s, f->table[0]))
		decode_error(d, n, "expected '%s', got %s", f->table[0], decode_show(n, buf));
}

bool decode_enum_value(Decoder *d, const YNode *n, const Field *f, int *ret)
{
	char buf[80], sbuf[80], list[160] = "";
	ssize_t i;

	if (n->type == YNODE_INVALID)
		return false;
	if (n->type == YNODE_SCALAR) {
		i = string_table_lookup(f->table, f->table_len, n->value);
		if (i >= 0 && strlen(n->value) == n->length) {
			*ret = (int)i;
			return true;
		}
	}
	for (size_t k = 0; k < f->table_len; k++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", k ? ", " : "",
			 f->table[k]);
	decode_error(d, n, "expected one of %s; got %s%s", list, decode_show(n, buf),
		     n->type == YNODE_SCALAR ? decode_suggest(n->value, f->table, f->table_len, sbuf)
					     : "");
	return false;
}

void decode_enum(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	int v;

	if (decode_enum_value(d, n, f, &v))
		*FIELD_AT(obj, f, int) = v;
}

void decode_bool(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	char buf[80];
	YImplicit t;

	if (n->type == YNODE_INVALID)
		return;
	if (n->type == YNODE_SCALAR && n->plain && streq(n->value, "true")) {
		*FIELD_AT(obj, f, bool) = true;
		return;
	}
	if (n->type == YNODE_SCALAR && n->plain && streq(n->value, "false")) {
		*FIELD_AT(obj, f, bool) = false;
		return;
	}
	t = n->type == YNODE_SCALAR && n->plain ? yaml_implicit_type(n->value) : YIMPLICIT_STRING;
	if (t == YIMPLICIT_BOOL_1_1)
		decode_error(
			d, n,
			"expected true or false; %s is a boolean only in YAML 1.1, write true or false",
			decode_show(n, buf));
	else if (n->type == YNODE_SCALAR && !n->plain)
		decode_error(d, n,
			     "expected true or false, got the quoted string %s; remove the quotes",
			     decode_show(n, buf));
	else
		decode_error(d, n, "expected true or false, got %s", decode_show(n, buf));
}

/*
 * An unsigned integer in [f->min, f->max], written as plain decimal digits. The YAML
 * 1.1 readings that differ between parsers (010, 1:20, 0x10, 1_000) are refused.
 */
bool decode_uint_value(Decoder *d, const YNode *n, const Field *f, uint64_t *ret)
{
	char buf[80];
	uint64_t v;
	YImplicit t;
	int r;

	if (n->type == YNODE_INVALID)
		return false;
	if (n->type != YNODE_SCALAR) {
		decode_error(d, n, "expected an integer from %" PRIu64 " to %" PRIu64 ", got %s",
			     f->min, f->max, decode_show(n, buf));
		return false;
	}
	if (!n->plain) {
		decode_error(
			d, n,
			"expected an integer, got the quoted string %s; write the number without quotes",
			decode_show(n, buf));
		return false;
	}

	t = yaml_implicit_type(n->value);
	switch (t) {
	case YIMPLICIT_INT:
		break;
	case YIMPLICIT_INT_ZERO:
		decode_error(
			d, n,
			"%s has a leading zero, which YAML 1.1 reads as octal; write the number without it",
			decode_show(n, buf));
		return false;
	case YIMPLICIT_SEXAGESIMAL:
		decode_error(d, n,
			     "%s is a base-60 number in YAML 1.1; expected a plain integer from %" PRIu64
			     " to %" PRIu64,
			     decode_show(n, buf), f->min, f->max);
		return false;
	case YIMPLICIT_INT_OTHER:
		decode_error(d, n, "expected a plain decimal integer, got %s", decode_show(n, buf));
		return false;
	default:
		decode_error(d, n, "expected an integer from %" PRIu64 " to %" PRIu64 ", got %s",
			     f->min, f->max, decode_show(n, buf));
		return false;
	}

	r = n->value[0] == '-' ? -ERANGE : parse_decimal_u64(n->value, n->length, &v);
	if (r < 0 || v < f->min || v > f->max) {
		decode_error(d, n,
			     "%s is out of range: expected an integer from %" PRIu64 " to %" PRIu64,
			     decode_show(n, buf), f->min, f->max);
		return false;
	}
	*ret = v;
	return true;
}

/* N followed by one of units[].suffix, into N * units[].factor, with overflow checked. */
typedef struct Unit {
	const char *suffix;
	uint64_t factor;
} Unit;

static int parse_with_unit(const char *s, const Unit *units, size_t n_units, uint64_t *ret)
{
	size_t digits = strspn(s, "0123456789");
	uint64_t v;
	int r;

	if (digits == 0 || (s[0] == '0' && digits > 1))
		return -EINVAL;
	for (size_t i = 0; i < n_units; i++) {
		if (!streq(s + digits, units[i].suffix))
			continue;
		r = parse_decimal_u64(s, digits, &v);
		if (r < 0)
			return r;
		return mul_u64(v, units[i].factor, ret);
	}
	return -EINVAL;
}

/*
 * A number with one of units, as "expected" describes it. Returns 0, -ERANGE on overflow
 * (for the caller to word), or -EINVAL once the error was reported.
 */
static int decode_unit_value(Decoder *d, const YNode *n, const Unit *units, size_t n_units,
			     const char *expected, uint64_t *ret)
{
	char buf[80];
	const char *s;
	int r;

	/* A bare number is the likeliest mistake: say what it lacks, not that it is a number. */
	if (n->type == YNODE_SCALAR && n->plain && yaml_implicit_type(n->value) == YIMPLICIT_INT) {
		decode_error(d, n, "expected %s, got %s", expected, decode_show(n, buf));
		return -EINVAL;
	}
	if (!decode_get_string(d, n, &s))
		return -EINVAL;
	r = parse_with_unit(s, units, n_units, ret);
	if (r == -EINVAL)
		decode_error(d, n, "expected %s, got %s", expected, decode_show(n, buf));
	return r;
}

void decode_size(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	static const Unit units[] = {
		{ "Ki", 1ull << 10 },
		{ "Mi", 1ull << 20 },
		{ "Gi", 1ull << 30 },
		{ "Ti", 1ull << 40 },
	};
	char buf[80];
	uint64_t v;
	int r;

	r = decode_unit_value(d, n, units, ELEMENTSOF(units),
			      "a size with a unit, such as 512Mi (units Ki, Mi, Gi, Ti)", &v);
	if (r == -ERANGE)
		decode_error(d, n, "%s is too large", decode_show(n, buf));
	if (r < 0)
		return;
	if (v < f->min) {
		decode_error(d, n, "%s is below the minimum of %" PRIu64 "Mi", decode_show(n, buf),
			     f->min >> 20);
		return;
	}
	if (v % (1ull << 20) != 0) {
		decode_error(d, n, "%s is not a whole number of mebibytes (a multiple of 1Mi)",
			     decode_show(n, buf));
		return;
	}
	*FIELD_AT(obj, f, uint64_t) = v;
}

void decode_duration(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	static const Unit units[] = {
		{ "ms", 1 },
		{ "s", 1000 },
		{ "m", 60 * 1000 },
		{ "h", 3600 * 1000 },
	};
	char buf[80];
	uint64_t v;
	int r;

	r = decode_unit_value(d, n, units, ELEMENTSOF(units),
			      "a duration with a unit, such as 30s (units ms, s, m, h)", &v);
	if (r == 0 && v > f->max)
		r = -ERANGE;
	if (r == -ERANGE && f->max % 3600000 == 0)
		decode_error(d, n, "%s is too long: at most %" PRIu64 "h", decode_show(n, buf),
			     f->max / 3600000);
	else if (r == -ERANGE)
		decode_error(d, n, "%s is too long: at most %" PRIu64 "ms", decode_show(n, buf),
			     f->max);
	if (r < 0)
		return;
	*FIELD_AT(obj, f, uint64_t) = v;
}

void decode_path(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	static const char *const problems[] = {
		[PATH_NOT_ABSOLUTE] = "is not an absolute path",
		[PATH_TOO_LONG] = "is too long",
		[PATH_DOT_COMPONENT] = "has a '.' component; write the path without it",
		[PATH_DOTDOT_COMPONENT] = "has a '..' component; write the path without it",
		[PATH_EMPTY_COMPONENT] = "has an empty component ('//')",
		[PATH_TRAILING_SLASH] = "ends in '/'; expected the path of a file",
		[PATH_CONTROL_CHAR] = "contains a control character",
	};
	char buf[80];
	const char *s;
	PathProblem p;

	if (!decode_get_string(d, n, &s))
		return;
	p = path_check(s, f->max);
	if (p != PATH_OK) {
		decode_error(d, n, "%s %s", decode_show(n, buf), problems[p]);
		return;
	}
	(void)decode_dup(d, s, FIELD_AT(obj, f, char *));
}

/* Decode the pairs of map with fields; where is what a missing field is reported at. */
void decode_fields(Decoder *d, const YNode *map, const YNode *where, const Field *fields,
		   size_t n_fields, void *obj)
{
	const char *names[32];
	uint32_t seen = 0;
	char buf[80];

	assert(n_fields <= ELEMENTSOF(names));
	if (map->type == YNODE_INVALID)
		return;
	if (map->type != YNODE_MAP) {
		decode_error(d, map, "expected a mapping, got %s", decode_show(map, buf));
		return;
	}

	for (size_t i = 0; i < n_fields; i++)
		names[i] = fields[i].name;

	for (size_t i = 0; i < map->n_pairs; i++) {
		const YNode *key = map->pairs[i].key;
		size_t k, old;

		for (k = 0; k < n_fields; k++)
			if (streq(key->value, fields[k].name))
				break;
		if (k == n_fields) {
			char sbuf[80];

			decode_error(d, key, "unknown field %s%s", decode_show(key, buf),
				     decode_suggest(key->value, names, n_fields, sbuf));
			continue;
		}
		seen |= 1u << k;
		old = decode_where_push(d, "%s%s", d->where[0] ? "." : "", fields[k].name);
		fields[k].decode(d, map->pairs[i].value, &fields[k], obj);
		decode_where_pop(d, old);
	}

	for (size_t k = 0; k < n_fields; k++)
		if (fields[k].required && !(seen & (1u << k)))
			decode_error(d, where, "missing required field '%s'", fields[k].name);
}

/* Report items[i].field when an earlier item has the same value. */
static void check_unique(Decoder *d, const YNode *list, size_t i, const char *what, const char *field)
{
	const YNode *a = ynode_map_get(list->items[i], field);

	if (!a || a->type != YNODE_SCALAR)
		return;
	for (size_t j = 0; j < i; j++) {
		const YNode *b = ynode_map_get(list->items[j], field);
		size_t old;

		if (!b || b->type != YNODE_SCALAR || !streq(a->value, b->value))
			continue;
		old = decode_where_push(d, ".%s", field);
		decode_error(d, a, "duplicate %s %s '%s' (first used at line %u)", what, field,
			     a->value, b->line);
		decode_where_pop(d, old);
		return;
	}
}

/* Returns the number of items decoded; the spec is dropped anyway if any had errors. */
size_t decode_list(Decoder *d, const YNode *n, const ListDesc *l, void *items)
{
	char buf[80];
	size_t i;

	if (n->type == YNODE_INVALID)
		return 0;
	if (n->type != YNODE_SEQ) {
		decode_error(d, n, "expected a list of %ss, got %s", l->what, decode_show(n, buf));
		return 0;
	}
	if (n->n_items > l->max)
		decode_error(d, n->items[l->max], "more than %zu %ss; at most %zu are allowed",
			     l->max, l->what, l->max);

	for (i = 0; i < n->n_items && i < l->max; i++) {
		const YNode *item = n->items[i];
		void *obj = (char *)items + i * l->item_size;
		size_t old = decode_where_push(d, "[%zu]", i);

		decode_fields(d, item, item, l->fields, l->n_fields, obj);
		if (item->type == YNODE_MAP) {
			if (l->check)
				l->check(d, item, obj);
			for (size_t k = 0; k < ELEMENTSOF(l->unique) && l->unique[k]; k++)
				check_unique(d, n, i, l->what, l->unique[k]);
		}
		decode_where_pop(d, old);
	}
	return i;
}
