/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "helpers.h"
#include "yaml-tree.h"

static void test_implicit_types(void **state _unused_)
{
	static const struct {
		const char *s;
		YImplicit t;
	} rows[] = {
		{ "", YIMPLICIT_NULL },
		{ "~", YIMPLICIT_NULL },
		{ "null", YIMPLICIT_NULL },
		{ "NULL", YIMPLICIT_NULL },
		{ "true", YIMPLICIT_BOOL },
		{ "false", YIMPLICIT_BOOL },
		{ "yes", YIMPLICIT_BOOL_1_1 },
		{ "No", YIMPLICIT_BOOL_1_1 },
		{ "ON", YIMPLICIT_BOOL_1_1 },
		{ "off", YIMPLICIT_BOOL_1_1 },
		{ "y", YIMPLICIT_BOOL_1_1 },
		{ "True", YIMPLICIT_BOOL_1_1 },
		{ "0", YIMPLICIT_INT },
		{ "42", YIMPLICIT_INT },
		{ "-7", YIMPLICIT_INT },
		{ "+7", YIMPLICIT_INT_OTHER },
		{ "010", YIMPLICIT_INT_ZERO },
		{ "09", YIMPLICIT_INT_ZERO },
		{ "0x1F", YIMPLICIT_INT_OTHER },
		{ "0o17", YIMPLICIT_INT_OTHER },
		{ "0b101", YIMPLICIT_INT_OTHER },
		{ "1_000", YIMPLICIT_INT_OTHER },
		{ "1:20", YIMPLICIT_SEXAGESIMAL },
		{ "190:20:30", YIMPLICIT_SEXAGESIMAL },
		{ "52:54:00:12:34:56", YIMPLICIT_SEXAGESIMAL },
		{ "52:54:00:ab:cd:ef", YIMPLICIT_STRING },
		{ "00:11:22:33:44:55", YIMPLICIT_STRING },
		{ "1:60", YIMPLICIT_STRING },
		{ "1.5", YIMPLICIT_FLOAT },
		{ "1.", YIMPLICIT_FLOAT },
		{ ".5", YIMPLICIT_FLOAT },
		{ "1e3", YIMPLICIT_FLOAT },
		{ "-1.5E-3", YIMPLICIT_FLOAT },
		{ ".inf", YIMPLICIT_FLOAT },
		{ "-.Inf", YIMPLICIT_FLOAT },
		{ ".NaN", YIMPLICIT_FLOAT },
		{ "2024-01-31", YIMPLICIT_TIMESTAMP },
		{ "2024-1-3", YIMPLICIT_TIMESTAMP },
		{ "2024-01-31T10:00:00Z", YIMPLICIT_TIMESTAMP },
		{ "512Mi", YIMPLICIT_STRING },
		{ "30s", YIMPLICIT_STRING },
		{ "1.2.3", YIMPLICIT_STRING },
		{ "e3", YIMPLICIT_STRING },
		{ "web-1", YIMPLICIT_STRING },
		{ "nulls", YIMPLICIT_STRING },
		{ "yesterday", YIMPLICIT_STRING },
		{ "/var/lib", YIMPLICIT_STRING },
		{ "-", YIMPLICIT_STRING },
		{ ".", YIMPLICIT_STRING },
	};

	for (size_t i = 0; i < ELEMENTSOF(rows); i++)
		if (yaml_implicit_type(rows[i].s) != rows[i].t)
			fail_msg("'%s': got %d, expected %d", rows[i].s,
				 yaml_implicit_type(rows[i].s), rows[i].t);
}

static YNode *parse_ok(const char *text)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	YNode *root = NULL;

	assert_int_equal(ytree_parse(text, strlen(text), &root, &diags), 0);
	assert_true(diag_list_is_empty(&diags));
	return root;
}

/* Block and flow styles give the same tree; positions are 1-based. */
static void test_tree_shape(void **state _unused_)
{
	_cleanup_(ynode_freep) YNode *block = parse_ok("a: 1\nb:\n  - x\n  - 'y'\n");
	_cleanup_(ynode_freep) YNode *flow = parse_ok("{a: 1, b: [x, 'y']}");
	const YNode *b;

	for (int i = 0; i < 2; i++) {
		const YNode *root = i ? flow : block;

		assert_int_equal(root->type, YNODE_MAP);
		assert_int_equal(root->n_pairs, 2);
		assert_string_equal(ynode_map_get(root, "a")->value, "1");
		assert_true(ynode_map_get(root, "a")->plain);
		b = ynode_map_get(root, "b");
		assert_int_equal(b->type, YNODE_SEQ);
		assert_int_equal(b->n_items, 2);
		assert_string_equal(b->items[1]->value, "y");
		assert_false(b->items[1]->plain);
	}
	b = ynode_map_get(block, "b");
	assert_int_equal(b->items[1]->line, 4);
	assert_int_equal(b->items[1]->column, 5);
	assert_null(ynode_map_get(block, "c"));
}

static void test_empty_stream(void **state _unused_)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	YNode *root = (YNode *)1;

	assert_int_equal(ytree_parse("", 0, &root, &diags), 0);
	assert_null(root);
	assert_int_equal(ytree_parse("# only\n\n# comments\n", strlen("# only\n\n# comments\n"),
				     &root, &diags),
			 0);
	assert_null(root);
	assert_true(diag_list_is_empty(&diags));
}

/* Non-fatal errors keep the tree, so that later checks still run; the bad parts go. */
static void test_nonfatal_errors_keep_tree(void **state _unused_)
{
	const char *t = "a: &x 1\nb: *x\nc: !!str 3\na: 2\n? [k]\n: v\n<<: {m: 1}\nd: ok\n";
	_cleanup_(diag_list_done) DiagList diags = {};
	_cleanup_(ynode_freep) YNode *root = NULL;

	assert_int_equal(ytree_parse(t, strlen(t), &root, &diags), 0);
	assert_non_null(root);
	assert_int_equal(diags.n, 6);
	/* kept: a (first value), b and c as invalid placeholders, d; dropped: dup a, [k], << */
	assert_int_equal(root->n_pairs, 4);
	assert_string_equal(ynode_map_get(root, "a")->value, "1");
	assert_int_equal(ynode_map_get(root, "b")->type, YNODE_INVALID);
	assert_int_equal(ynode_map_get(root, "c")->type, YNODE_INVALID);
	assert_string_equal(ynode_map_get(root, "d")->value, "ok");
}

/* Fatal errors return no tree and one error at the place. */
static void test_fatal_errors(void **state _unused_)
{
	static const struct {
		const char *text;
		unsigned line, column;
		const char *message;
	} rows[] = {
		{ "a: [1, 2\n", 2, 1,
		  "YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence at line 1, column 4)" },
		{ "a: 1\n---\nb: 2\n", 2, 1,
		  "more than one YAML document; a sandbox file holds exactly one sandbox" },
		{ "a: \"\\x01\"\nb: \x01\n", 2, 4,
		  "invalid character U+0001: control characters are not allowed" },
	};

	for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
		_cleanup_(diag_list_done) DiagList diags = {};
		YNode *root = NULL;

		assert_int_equal(ytree_parse(rows[i].text, strlen(rows[i].text), &root, &diags),
				 -EINVAL);
		assert_null(root);
		assert_int_equal(diags.n, 1);
		assert_string_equal(diags.items[0].message, rows[i].message);
		assert_int_equal(diags.items[0].line, rows[i].line);
		assert_int_equal(diags.items[0].column, rows[i].column);
	}
}

/* More nodes than YTREE_MAX_NODES is refused, without building them all. */
static void test_node_limit(void **state _unused_)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	_cleanup_free_ char *text = NULL;
	YNode *root = NULL;
	size_t len;
	FILE *m = open_memstream(&text, &len);

	fputc('[', m);
	for (unsigned i = 0; i <= YTREE_MAX_NODES; i++)
		fputs("1,", m);
	fputc(']', m);
	fclose(m);
	assert_true(len <= YTREE_MAX_BYTES);
	assert_int_equal(ytree_parse(text, len, &root, &diags), -EINVAL);
	assert_int_equal(diags.n, 1);
	assert_string_equal(diags.items[0].message,
			    "too many YAML nodes: a sandbox file holds at most 100000");
}

/* A map with tens of thousands of keys and one duplicate at the end: found, and quickly. */
static void test_many_keys_one_duplicate(void **state _unused_)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	_cleanup_(ynode_freep) YNode *root = NULL;
	_cleanup_free_ char *text = NULL;
	size_t len;
	FILE *m = open_memstream(&text, &len);

	for (unsigned i = 0; i < 40000; i++)
		fprintf(m, "k%u: 1\n", i);
	fputs("k7: 2\n", m);
	fclose(m);
	assert_int_equal(ytree_parse(text, len, &root, &diags), 0);
	assert_int_equal(diags.n, 1);
	assert_string_equal(diags.items[0].message,
			    "duplicate key 'k7' (first defined at line 8, column 1)");
	assert_int_equal(diags.items[0].line, 40001);
	assert_int_equal(root->n_pairs, 40000);
	assert_string_equal(ynode_map_get(root, "k7")->value, "1");
}

/* Escaped NULs survive as data (length > strlen) for the decoder to refuse. */
static void test_escaped_nul(void **state _unused_)
{
	_cleanup_(ynode_freep) YNode *root = parse_ok("a: \"x\\0y\"\n");
	const YNode *a = ynode_map_get(root, "a");

	assert_int_equal(a->length, 3);
	assert_int_equal(strlen(a->value), 1);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_implicit_types),
		cmocka_unit_test(test_tree_shape),
		cmocka_unit_test(test_empty_stream),
		cmocka_unit_test(test_nonfatal_errors_keep_tree),
		cmocka_unit_test(test_fatal_errors),
		cmocka_unit_test(test_node_limit),
		cmocka_unit_test(test_many_keys_one_duplicate),
		cmocka_unit_test(test_escaped_nul),
	};

	return cmocka_run_group_tests_name("yaml-tree", tests, NULL, NULL);
}
