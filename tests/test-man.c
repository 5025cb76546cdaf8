/* SPDX-License-Identifier: MIT */
/*
 * The manual pages, docs/vmd.8 and docs/vmd-sandbox.5: each renders with `man -l` (groff,
 * tbl) at 80 columns without a warning, and says what the build does: every option of
 * `vmd daemon --help` is in vmd(8), with every backend; every field of the JSON Schema is
 * in vmd-sandbox(5).
 */
#include <jansson.h>
#include <stdio.h>

#include "helpers.h"

/*
 * The page rendered by man at width columns in encoding, with roff options (MANROFFOPT=...);
 * fails on any warning groff or tbl gives.
 */
static char *render_as(const char *page, const char *width, const char *encoding, const char *roff)
{
	TestRun r = {};
	char path[4096], *out;

	snprintf(path, sizeof(path), "%s", test_src(page));
	test_run(&r, (char *[]){ "/usr/bin/env", (char *)width, (char *)roff, "man", "-l",
				 "--warnings=w", "-E", (char *)encoding, path, NULL });
	if (r.status != 0 || *r.err)
		fail_msg("man -l %s (%s, %s): status %d:\n%s", page, width, encoding, r.status,
			 r.err);
	out = r.out;
	r.out = NULL;
	test_run_done(&r);
	return out;
}

/*
 * As a terminal of 80 columns shows it, without a warning; and the text to search, in
 * ASCII and without hyphenation, so that no word is cut.
 */
static char *render(const char *page)
{
	free(render_as(page, "MANWIDTH=80", "UTF-8", "MANROFFOPT="));
	return render_as(page, "MANWIDTH=250", "ascii", "MANROFFOPT=-rHY=0");
}

static void expect(const char *text, const char *what, const char *page)
{
	if (!strstr(text, what))
		fail_msg("%s does not say '%s'", page, what);
}

static void test_vmd_8(void **state _unused_)
{
	_cleanup_free_ char *text = render("docs/vmd.8"), *source = NULL;
	TestRun r = {};
	char *save = NULL;
	unsigned n = 0;

	source = test_read_file(test_src("docs/vmd.8"), NULL);
	assert_non_null(source);
	expect(text, "NAME", "vmd(8)");
	expect(text, "SYNOPSIS", "vmd(8)");
	expect(text, "vmd-sandbox(5)", "vmd(8)");
	/* Every backend the build has (backends/backend.c's backend_ops). */
	for (const char *const *b = (const char *const[]){ "qemu", "cloud-hypervisor",
							   "firecracker", "noop", NULL };
	     *b; b++)
		expect(text, *b, "vmd(8)");

	/* Every option the daemon takes, as its --help lists them. */
	test_run(&r, (char *[]){ (char *)test_vmd(), "daemon", "--help", NULL });
	assert_int_equal(r.status, 0);
	for (char *l = strtok_r(r.out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char opt[64];

		if (sscanf(l, "  --%62[a-z-]", opt) != 1 || streq(opt, "help"))
			continue;
		expect(text, opt, "vmd(8)");
		n++;
	}
	test_run_done(&r);
	assert_true(n >= 20);
}

/* Every field name of the schema's properties (metadata.labels -> labels), recursively. */
static void expect_fields(json_t *node, const char *text, unsigned *n)
{
	const char *key;
	json_t *v;

	if (!json_is_object(node))
		return;
	json_object_foreach(node, key, v)
	{
		if (streq(key, "properties")) {
			const char *name;
			json_t *p;

			json_object_foreach(v, name, p)
			{
				expect(text, name, "vmd-sandbox(5)");
				(*n)++;
			}
		}
		if (!streq(key, "allOf"))
			expect_fields(v, text, n);
	}
}

static void test_vmd_sandbox_5(void **state _unused_)
{
	_cleanup_free_ char *text = render("docs/vmd-sandbox.5");
	json_t *schema = json_load_file(test_src("schemas/sandbox.schema.json"), 0, NULL);
	unsigned n = 0;

	expect(text, "vmd-sandbox - the file that describes one vmd sandbox", "vmd-sandbox(5)");
	expect(text, "# yaml-language-server: $schema=/usr/share/vmd/sandbox.schema.json",
	       "vmd-sandbox(5)");
	expect(text, "kernel required   yes", "vmd-sandbox(5)");
	assert_non_null(schema);
	expect_fields(schema, text, &n);
	expect_fields(json_object_get(schema, "$defs"), text, &n);
	json_decref(schema);
	assert_true(n >= 25);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vmd_8),
		cmocka_unit_test(test_vmd_sandbox_5),
	};

	return cmocka_run_group_tests_name("man", tests, NULL, NULL);
}
