/* SPDX-License-Identifier: MIT */
/*
 * schemas/sandbox.schema.json, checked with a real JSON Schema validator (Debian's
 * python3-jsonschema) by tests/schema-check.py: it must accept every good file and the
 * examples, and refuse every bad file that tests/spec/bad/EXPECTED marks "reject". This
 * test counts those files itself, so that a checker that checked nothing cannot pass.
 */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <unistd.h>

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

/*
 * Run python3 tests/SCRIPT with args (never a shell), fail with what it said unless it exits
 * 0, and return where its closing line (starting with marker) is.
 */
static const char *run_checker(TestRun *r, const char *script, const char *const *args,
			       const char *marker)
{
	const char *python = getenv("PYTHON") ?: "/usr/bin/python3";
	char path[4096], *argv[8] = { (char *)python, path };
	const char *last;
	size_t n = 2;

	snprintf(path, sizeof(path), "%s", test_src(script));
	for (; *args && n < ELEMENTSOF(argv) - 1; args++)
		argv[n++] = (char *)*args;
	argv[n] = NULL;
	test_run(r, argv);
	if (r->status != 0)
		print_error("%s%s", r->out, r->err);
	assert_int_equal(r->status, 0);
	last = strstr(r->out, marker);
	assert_non_null(last);
	return last;
}

static void test_schema_agrees_with_corpus(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r;
	char schema[4096], expected[4096], good[4096], examples[4096];
	unsigned n_good, n_bad;
	const char *last;

	snprintf(schema, sizeof(schema), "%s", test_src("schemas/sandbox.schema.json"));
	snprintf(expected, sizeof(expected), "%s", test_src("tests/spec/bad/EXPECTED"));
	snprintf(good, sizeof(good), "%s", test_src("tests/spec/good"));
	snprintf(examples, sizeof(examples), "%s", test_src("examples"));
	last = run_checker(&r, "tests/schema-check.py",
			   (const char *[]){ schema, expected, good, examples, NULL }, "schema: ");
	assert_int_equal(sscanf(last, "schema: %u good accepted, %u bad rejected, 0 failures",
				&n_good, &n_bad),
			 2);
	assert_int_equal(n_good, count_yaml("tests/spec/good") + count_yaml("examples"));
	assert_int_equal(n_bad, count_reject());
	assert_true(n_bad >= 40);
}

/*
 * tests/schema-probes/: each file with the verdict the loader and the schema must both
 * give it (or the loader alone, for what a JSON Schema cannot say, named in the file);
 * tests/schema-probes.py runs `vmd validate` and a real validator on each.
 */
static void test_schema_agrees_with_loader(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r;
	char schema[4096], probes[4096];
	const char *last;
	unsigned n;

	snprintf(schema, sizeof(schema), "%s", test_src("schemas/sandbox.schema.json"));
	snprintf(probes, sizeof(probes), "%s", test_src("tests/schema-probes"));
	last = run_checker(&r, "tests/schema-probes.py",
			   (const char *[]){ test_vmd(), schema, probes, NULL }, "probes: ");
	assert_int_equal(sscanf(last, "probes: %u checked, 0 failures", &n), 1);
	assert_int_equal(n, count_yaml("tests/schema-probes"));
	assert_true(n >= 80);
}

/*
 * An editor's view: yaml-language-server (from npm, under build/npm: make test installs
 * it) on a file whose modeline names the schema, with `vpcus` for `vcpus` and a
 * stopTimeout of 25h, reports both where they are, in words. Skipped, saying why, only
 * where npm's registry could not be reached.
 */
static void test_yaml_language_server(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r = {};
	char server[4096], schema[4096], *dir = test_tmpdir(), *unreachable;
	const char *last;

	snprintf(server, sizeof(server), "%s",
		 test_src("build/npm/node_modules/yaml-language-server/bin/yaml-language-server"));
	if (access(server, F_OK) < 0) {
		unreachable = test_read_file(test_src("build/npm/UNREACHABLE"), NULL);
		if (!unreachable)
			fail_msg("no %s: run scripts/install-yaml-language-server (make test does)",
				 server);
		print_message("[  SKIP    ] yaml-language-server not installed: %s\n", unreachable);
		free(unreachable); /* skip() leaves by longjmp: no cleanup runs */
		test_tmpdir_remove(dir);
		skip();
	}
	snprintf(schema, sizeof(schema), "%s", test_src("schemas/sandbox.schema.json"));
	last = run_checker(&r, "tests/yaml-ls-check.py",
			   (const char *[]){ server, schema, dir, NULL }, "diagnostics: ");
	assert_string_equal(last, "diagnostics: 2\n");
	assert_non_null(strstr(r.out, "6:3: Property vpcus is not allowed.\n"));
	assert_non_null(strstr(r.out, "9:16: Expected a duration with a unit, such as 30s or 2m "));
	test_tmpdir_remove(dir);
}

/* Where an editor shows a field's description and a pattern's message: every one has both. */
static void check_node(json_t *node, const char *where, bool fields)
{
	const char *key;
	json_t *v;

	if (json_is_array(node)) {
		size_t i;

		json_array_foreach(node, i, v) check_node(v, where, fields);
		return;
	}
	if (!json_is_object(node))
		return;
	if (json_object_get(node, "pattern") && !json_object_get(node, "patternErrorMessage") &&
	    !strstr(where, ".not"))
		fail_msg("%s: a pattern without a patternErrorMessage: an editor would show the regex",
			 where);
	json_object_foreach(node, key, v)
	{
		char sub[1024];

		snprintf(sub, sizeof(sub), "%s.%s", where, key);
		if (fields && (streq(key, "properties") || streq(key, "$defs"))) {
			const char *name;
			json_t *p;

			json_object_foreach(v, name, p)
			{
				json_t *ref = json_object_get(p, "$ref");

				/* A $ref without a description of its own shows the definition's. */
				if (!json_object_get(p, "description") && !ref)
					fail_msg("%s.%s has no description", sub, name);
			}
		}
		/* What conditions say of fields (allOf, if, then...) is no field of its own. */
		check_node(v, sub,
			   fields && !streq(key, "allOf") && !streq(key, "anyOf") &&
				   !streq(key, "if") && !streq(key, "then") &&
				   !streq(key, "else") && !streq(key, "not"));
	}
}

static void test_schema_describes_every_field(void **state _unused_)
{
	json_t *schema = json_load_file(test_src("schemas/sandbox.schema.json"), 0, NULL);

	assert_non_null(schema);
	assert_non_null(json_object_get(schema, "description"));
	check_node(schema, "schema", true);
	json_decref(schema);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_schema_agrees_with_corpus),
		cmocka_unit_test(test_schema_agrees_with_loader),
		cmocka_unit_test(test_schema_describes_every_field),
		cmocka_unit_test(test_yaml_language_server),
	};

	return cmocka_run_group_tests_name("schema", tests, NULL, NULL);
}
