/* SPDX-License-Identifier: MIT */
/*
 * schemas/sandbox.schema.json, checked with a real JSON Schema validator (Debian's
 * python3-jsonschema) by tests/schema-check.py: it must accept every good file and the
 * examples, and refuse every bad file that tests/spec/bad/EXPECTED marks "reject". This
 * test counts those files itself, so that a checker that checked nothing cannot pass.
 */
#include <dirent.h>
#include <stdio.h>

#include "helpers.h"

static unsigned count_yaml(const char *rel)
{
	DIR *d = opendir(test_src(rel));
	struct dirent *e;
	unsigned n = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);

		n += l > 5 && streq(e->d_name + l - 5, ".yaml");
	}
	closedir(d);
	return n;
}

static unsigned count_reject(void)
{
	_cleanup_free_ char *text = test_read_file(test_src("tests/spec/bad/EXPECTED"), NULL);
	char last[256] = "", *save = NULL;
	unsigned n = 0;

	assert_non_null(text);
	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char name[256];

		if (l[0] == '#' || !strstr(l, "\treject\t"))
			continue;
		assert_int_equal(sscanf(l, "%255[^\t]", name), 1);
		if (!streq(name, last))
			n++;
		snprintf(last, sizeof(last), "%s", name);
	}
	return n;
}

static void test_schema_agrees_with_corpus(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r;
	const char *python = getenv("PYTHON") ?: "/usr/bin/python3";
	char script[4096], schema[4096], expected[4096], good[4096], examples[4096];
	unsigned n_good, n_bad;
	char *last;

	snprintf(script, sizeof(script), "%s", test_src("tests/schema-check.py"));
	snprintf(schema, sizeof(schema), "%s", test_src("schemas/sandbox.schema.json"));
	snprintf(expected, sizeof(expected), "%s", test_src("tests/spec/bad/EXPECTED"));
	snprintf(good, sizeof(good), "%s", test_src("tests/spec/good"));
	snprintf(examples, sizeof(examples), "%s", test_src("examples"));
	char *argv[] = { (char *)python, script, schema, expected, good, examples, NULL };

	test_run(&r, argv);
	if (r.status != 0)
		print_error("%s%s", r.out, r.err);
	assert_int_equal(r.status, 0);

	last = strstr(r.out, "schema: ");
	assert_non_null(last);
	assert_int_equal(sscanf(last, "schema: %u good accepted, %u bad rejected, 0 failures",
				&n_good, &n_bad),
			 2);
	assert_int_equal(n_good, count_yaml("tests/spec/good") + count_yaml("examples"));
	assert_int_equal(n_bad, count_reject());
	assert_true(n_bad >= 40);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_schema_agrees_with_corpus),
	};

	return cmocka_run_group_tests_name("schema", tests, NULL, NULL);
}
