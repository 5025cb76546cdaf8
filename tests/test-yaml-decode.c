/* SPDX-License-Identifier: MIT */
/* The generic decoders, through a small format of their own. */
#include <stddef.h>

#include "helpers.h"
#include "yaml-decode.h"

typedef struct Item {
	char *name;
	bool flag;
} Item;

typedef struct Obj {
	char *label;
	int color;
	bool on;
	uint64_t count, size, wait;
	char *file;
	Item items[3];
	size_t n_items;
} Obj;

static const char *const colors[] = { "red", "green", "blue" };

static const Field item_fields[] = {
	{ "name", decode_string, offsetof(Item, name), .required = true },
	{ "flag", decode_bool, offsetof(Item, flag) },
};

static const ListDesc item_list = {
	.what = "item",
	.fields = item_fields,
	.n_fields = ELEMENTSOF(item_fields),
	.item_size = sizeof(Item),
	.max = 3,
	.unique = { "name" },
};

static void decode_count(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	decode_uint_value(d, n, f, FIELD_AT(obj, f, uint64_t));
}

static void decode_items(Decoder *d, const YNode *n, const Field *f _unused_, void *obj)
{
	Obj *o = obj;

	o->n_items = decode_list(d, n, &item_list, o->items);
}

static const Field obj_fields[] = {
	{ "label", decode_string, offsetof(Obj, label), .max = 5 },
	{ "color", decode_enum, offsetof(Obj, color), .table = colors, .table_len = 3 },
	{ "on", decode_bool, offsetof(Obj, on) },
	{ "count", decode_count, offsetof(Obj, count), .required = true, .min = 2, .max = 9 },
	{ "size", decode_size, offsetof(Obj, size), .min = 1 << 20 },
	{ "wait", decode_duration, offsetof(Obj, wait), .max = 60000 },
	{ "file", decode_path, offsetof(Obj, file), .max = 64 },
	{ "items", decode_items, 0 },
};

static void obj_done(Obj *o)
{
	free(o->label);
	free(o->file);
	for (size_t i = 0; i < ELEMENTSOF(o->items); i++)
		free(o->items[i].name);
}

/* Decode text; the diags are returned as "L:C: message" lines. */
static char *decode(const char *text, Obj *o)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	_cleanup_(ynode_freep) YNode *root = NULL;
	Decoder d = { .diags = &diags };
	char *out = NULL;
	size_t len = 0;
	FILE *m;

	assert_int_equal(ytree_parse(text, strlen(text), &root, &diags), 0);
	*o = (Obj){};
	decode_fields(&d, root, root, obj_fields, ELEMENTSOF(obj_fields), o);
	diag_list_sort(&diags);
	m = open_memstream(&out, &len);
	for (size_t i = 0; i < diags.n; i++)
		fprintf(m, "%u:%u: %s\n", diags.items[i].line, diags.items[i].column,
			diags.items[i].message);
	fclose(m);
	return out;
}

static void test_all_fields(void **state _unused_)
{
	Obj o;
	_cleanup_free_ char *errs =
		decode("label: abc\ncolor: blue\non: true\ncount: 9\nsize: 2Gi\n"
		       "wait: 1m\nfile: /a,b\nitems: [{name: p}, {name: q, flag: true}]\n",
		       &o);

	assert_string_equal(errs, "");
	assert_string_equal(o.label, "abc");
	assert_int_equal(o.color, 2);
	assert_true(o.on);
	assert_int_equal(o.count, 9);
	assert_true(o.size == 2ull << 30);
	assert_int_equal(o.wait, 60000);
	assert_string_equal(o.file, "/a,b");
	assert_int_equal(o.n_items, 2);
	assert_string_equal(o.items[1].name, "q");
	assert_true(o.items[1].flag);
	obj_done(&o);
}

static void test_errors(void **state _unused_)
{
	static const struct {
		const char *text, *errors;
	} rows[] = {
		{ "count: 5\ncolour: red\n", "2:1: unknown field 'colour'; did you mean 'color'?\n" },
		{ "count: 5\nxyz: 1\n", "2:1: unknown field 'xyz'\n" },
		{ "on: true\n", "1:1: missing required field 'count'\n" },
		{ "count: 10\n",
		  "1:8: count: '10' is out of range: expected an integer from 2 to 9\n" },
		{ "count: 5\nlabel: abcdef\n",
		  "2:8: label: too long: 6 characters, at most 5 are allowed\n" },
		{ "count: 5\ncolor: gren\n",
		  "2:8: color: expected one of red, green, blue; got 'gren'; did you mean 'green'?\n" },
		{ "count: 5\ncolor: [red]\n",
		  "2:8: color: expected one of red, green, blue; got a list\n" },
		{ "count: 5\nsize: 1Ki\n", "2:7: size: '1Ki' is below the minimum of 1Mi\n" },
		{ "count: 5\nsize: 0512Mi\n",
		  "2:7: size: expected a size with a unit, such as 512Mi (units Ki, Mi, Gi, Ti), got '0512Mi'\n" },
		{ "count: 5\nwait: 2m\n", "2:7: wait: '2m' is too long: at most 60000ms\n" },
		{ "count: 5\nwait: 18446744073709551615h\n",
		  "2:7: wait: '18446744073709551615h' is too long: at most 60000ms\n" },
		{ "count: 5\nfile: /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
		  "2:7: file: '/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' is too long\n" },
		{ "count: 5\nlabel: ~\n",
		  "2:8: label: '~' is null; quote it (\"~\") if you mean the string\n" },
		{ "count: 5\nlabel: 2024-01-01\n",
		  "2:8: label: '2024-01-01' is a date in YAML 1.1; quote it (\"2024-01-01\") if you mean the string\n" },
		{ "count: 5\nlabel: \"a\\eb\"\n",
		  "2:8: label: contains a control character (U+001B)\n" },
		{ "count: 5\nitems: [{name: a}, {name: a}, {flag: true}]\n",
		  "2:27: items[1].name: duplicate item name 'a' (first used at line 2)\n2:31: items[2]: missing required field 'name'\n" },
		{ "count: 5\nitems: [{name: a}, {name: b}, {name: c}, {name: d}]\n",
		  "2:42: items: more than 3 items; at most 3 are allowed\n" },
		{ "count: 5\nitems: {name: a}\n",
		  "2:8: items: expected a list of items, got a mapping\n" },
		{ "[1]\n", "1:1: expected a mapping, got a list\n" },
	};

	for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
		Obj o;
		_cleanup_free_ char *errs = decode(rows[i].text, &o);

		if (!streq(errs, rows[i].errors))
			fail_msg("row %zu:\n got:      %s expected: %s", i, errs, rows[i].errors);
		obj_done(&o);
	}
}

static void test_show(void **state _unused_)
{
	YNode n = { .type = YNODE_SCALAR, .value = "a\tb", .length = 3 };
	char buf[80];

	assert_string_equal(decode_show(&n, buf), "'a\\x09b'");
	n.value = "";
	n.length = 0;
	n.plain = true;
	assert_string_equal(decode_show(&n, buf), "nothing");
	/* Truncation never splits a UTF-8 sequence. */
	n.value = "ééééééééééééééééééééééééééééééééééééééééééééé";
	n.length = strlen(n.value);
	decode_show(&n, buf);
	assert_int_equal(utf8_first_invalid(buf, strlen(buf)), strlen(buf));
	assert_non_null(strstr(buf, "...'"));
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_fields),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_show),
	};

	return cmocka_run_group_tests_name("yaml-decode", tests, NULL, NULL);
}
