/* SPDX-License-Identifier: MIT */
/*
 * make install and make uninstall into a temporary DESTDIR: exactly the files they should
 * be, where they should be, and nothing left after. make builds only (a missing library
 * is named with its apt-get line); the bash completion agrees with the CLI.
 */
#include <glob.h>
#include <stdio.h>
#include <sys/stat.h>

#include "helpers.h"

static void expect(const char *haystack, const char *needle)
{
	if (!strstr(haystack, needle))
		fail_msg("no '%s' in:\n%s", needle, haystack);
}

static void append(char **list, const char *mode, const char *dir, const char *name)
{
	char *s = NULL;

	assert_true(asprintf(&s, "%s%s %s/%s\n", *list, mode, dir, name) > 0);
	free(*list);
	*list = s;
}

/* Lines "MODE PATH" sorted by PATH (the part after the first space). */
static int by_path(const void *a, const void *b)
{
	return strcmp(strchr(*(char *const *)a, ' '), strchr(*(char *const *)b, ' '));
}

static char *sort_lines(char *text)
{
	char *lines[256], *out = strdup(""), *save = NULL;
	size_t n = 0;

	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		assert_true(n < ELEMENTSOF(lines));
		lines[n++] = l;
	}
	qsort(lines, n, sizeof(*lines), by_path);
	for (size_t i = 0; i < n; i++) {
		char *s = NULL;

		assert_true(asprintf(&s, "%s%s\n", out, lines[i]) > 0);
		free(out);
		out = s;
	}
	free(text);
	return out;
}

/* Every file and symlink under dir, as sorted "MODE PATH" lines, PATH relative to dir. */
static char *tree(const char *dir)
{
	_cleanup_(test_run_done) TestRun r = {};
	char *argv[] = { (char *)"/usr/bin/find", (char *)dir,	      (char *)"(",
			 (char *)"-type",	  (char *)"f",	      (char *)"-o",
			 (char *)"-type",	  (char *)"l",	      (char *)")",
			 (char *)"-printf",	  (char *)"%m %P\\n", NULL };

	test_run(&r, argv);
	assert_int_equal(r.status, 0);
	return sort_lines(strdup(r.out));
}

/* What make install should put under PREFIX: each file of the tree matching pattern. */
static void add_glob(char **list, const char *mode, const char *pattern, const char *dir)
{
	glob_t g = {};

	if (glob(test_src(pattern), 0, NULL, &g) == 0)
		for (size_t i = 0; i < g.gl_pathc; i++)
			append(list, mode, dir, strrchr(g.gl_pathv[i], '/') + 1);
	globfree(&g);
}

/* Where each file goes, relative to DESTDIR: bin, unit and share directories. */
typedef struct Layout {
	const char *bin, *units, *share, *catalog, *sysusers;
	const char *execstart; /* what the installed unit runs */
} Layout;

static char *expected(const Layout *l)
{
	char *list = strdup(""), *d[4] = {};

	append(&list, "755", l->bin, "vmd");
	add_glob(&list, "644", "units/*.service", l->units);
	assert_true(asprintf(&d[0], "%s/man/man5", l->share) > 0);
	assert_true(asprintf(&d[1], "%s/man/man8", l->share) > 0);
	assert_true(asprintf(&d[2], "%s/vmd", l->share) > 0);
	assert_true(asprintf(&d[3], "%s/bash-completion/completions", l->share) > 0);
	add_glob(&list, "644", "docs/*.5", d[0]);
	add_glob(&list, "644", "docs/*.8", d[1]);
	add_glob(&list, "644", "schemas/*.json", d[2]);
	append(&list, "644", d[3], "vmd");
	append(&list, "644", l->catalog, "vmd.catalog");
	append(&list, "644", l->sysusers, "vmd.conf");
	for (size_t i = 0; i < ELEMENTSOF(d); i++)
		free(d[i]);
	return sort_lines(list);
}

/* make -C <the tree> ARGS..., its output in r. */
static void run_make(TestRun *r, char *const *args)
{
	char *argv[16] = { (char *)"/usr/bin/make", (char *)"-s", (char *)"--no-print-directory",
			   (char *)"-C", (char *)test_src(".") };
	size_t n = 5;

	for (; *args; args++) {
		assert_true(n < ELEMENTSOF(argv) - 1);
		argv[n++] = *args;
	}
	test_run(r, argv);
	if (r->status != 0)
		print_error("%s%s", r->out, r->err);
}

/* make install with these variables: the files expected and no other; make uninstall: none. */
static void install_uninstall(const Layout *l, char *var1, char *var2)
{
	_cleanup_(test_run_done) TestRun r = {}, u = {};
	_cleanup_free_ char *destdir = NULL, *bin = NULL, *want = expected(l), *got = NULL,
			    *left = NULL, *unit_path = NULL, *unit = NULL;
	char *dir = test_tmpdir();

	assert_true(asprintf(&destdir, "DESTDIR=%s", dir) > 0);
	assert_true(asprintf(&bin, "VMD_BINARY=%s", test_vmd()) > 0);
	char *args[] = { (char *)"install", destdir, bin, var1, var2, NULL };
	run_make(&r, args);
	assert_int_equal(r.status, 0);
	got = tree(dir);
	assert_string_equal(got, want);

	assert_true(asprintf(&unit_path, "%s/%s/vmd.service", dir, l->units) > 0);
	unit = test_read_file(unit_path, NULL);
	assert_non_null(unit);
	expect(unit, l->execstart);

	char *uargs[] = { (char *)"uninstall", destdir, var1, var2, NULL };
	run_make(&u, uargs);
	assert_int_equal(u.status, 0);
	left = tree(dir);
	assert_string_equal(left, "");
	/* vmd's own directory too; the shared ones (bin, man8...) stay. */
	_cleanup_free_ char *own = NULL;
	assert_true(asprintf(&own, "%s/%s/vmd", dir, l->share) > 0);
	assert_int_equal(access(own, F_OK), -1);
	test_tmpdir_remove(dir);
}

static void test_install_default(void **state _unused_)
{
	static const Layout l = {
		.bin = "usr/local/bin",
		.units = "usr/local/lib/systemd/system",
		.share = "usr/local/share",
		.catalog = "usr/local/lib/systemd/catalog",
		.sysusers = "usr/local/lib/sysusers.d",
		.execstart = "\nExecStart=/usr/local/bin/vmd daemon ",
	};

	install_uninstall(&l, NULL, NULL);
}

/* As the Debian package installs it (debian/rules). */
static void test_install_debian(void **state _unused_)
{
	static const Layout l = {
		.bin = "usr/bin",
		.units = "lib/systemd/system",
		.share = "usr/share",
		.catalog = "usr/lib/systemd/catalog",
		.sysusers = "usr/lib/sysusers.d",
		.execstart = "\nExecStart=/usr/bin/vmd daemon ",
	};

	install_uninstall(&l, (char *)"PREFIX=/usr", (char *)"UNITDIR=/lib/systemd/system");
}

/*
 * make installs nothing: with libyaml-dev missing (a dpkg-query that says so), the build
 * stops at scripts/install-deps --check, which prints the apt-get line and runs no apt-get.
 */
static void test_make_installs_nothing(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r = {}, n = {};
	_cleanup_free_ char *path = NULL, *fake = NULL, *old_path = strdup(getenv("PATH"));
	char *dir = test_tmpdir();

	assert_true(asprintf(&fake, "#!/bin/sh\n[ \"$3\" = libyaml-dev ] && exit 1\n"
				    "printf installed\n") > 0);
	test_write_str(dir, "dpkg-query", fake);
	free(fake);
	assert_true(asprintf(&fake, "#!/bin/sh\ntouch %s/ran\n", dir) > 0);
	test_write_str(dir, "apt-get", fake);
	test_write_str(dir, "sudo", fake);
	for (const char *const *f = (const char *const[]){ "dpkg-query", "apt-get", "sudo", NULL };
	     *f; f++) {
		_cleanup_free_ char *p = NULL;

		assert_true(asprintf(&p, "%s/%s", dir, *f) > 0);
		assert_int_equal(chmod(p, 0755), 0);
	}
	assert_true(asprintf(&path, "%s:%s", dir, old_path) > 0);
	assert_int_equal(setenv("PATH", path, 1), 0);

	char *argv[] = { (char *)test_src("scripts/install-deps"), (char *)"--check", NULL };
	test_run(&r, argv);
	assert_int_equal(setenv("PATH", old_path, 1), 0);
	assert_int_equal(r.status, 1);
	expect(r.err, "\n  apt-get install libyaml-dev\n");
	_cleanup_free_ char *ran = NULL;
	assert_true(asprintf(&ran, "%s/ran", dir) > 0);
	assert_int_equal(access(ran, F_OK), -1);

	/* And make's recipes for build/vmd only ever check (a dry run of all of them). */
	char *args[] = { (char *)"-n", (char *)"-B", (char *)"build/vmd", NULL };
	run_make(&n, args);
	assert_int_equal(n.status, 0);
	expect(n.out, "scripts/install-deps --check\n");
	for (char *save = NULL, *l = strtok_r(n.out, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		if (strstr(l, "install-deps") && !strstr(l, "--check"))
			fail_msg("make build/vmd would run: %s", l);
		else if (strstr(l, "apt-get"))
			fail_msg("make build/vmd would run: %s", l);
	test_tmpdir_remove(dir);
}

/*
 * debian/control's Build-Depends are what scripts/install-deps installs, and the build's
 * list is in Build-Depends (gcc and make come with build-essential).
 */
static void test_build_depends(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun b = {}, a = {};
	_cleanup_free_ char *control = test_read_file(test_src("debian/control"), NULL);
	_cleanup_free_ char *deps = strdup(test_src("scripts/install-deps")), *field = NULL;
	char *build[] = { deps, (char *)"--list", (char *)"build", NULL };
	char *all[] = { deps, (char *)"--list", (char *)"all", NULL };
	const char *at, *end;

	test_run(&b, build);
	test_run(&a, all);
	assert_int_equal(b.status, 0);
	assert_int_equal(a.status, 0);
	assert_non_null(control);
	at = strstr(control, "\nBuild-Depends:");
	assert_non_null(at);
	at += strlen("\nBuild-Depends:");
	for (end = strchr(at, '\n'); end && end[1] == ' ';)
		end = strchr(end + 1, '\n');
	field = strndup(at, end - at);
	_cleanup_free_ char *names = strdup("\n");
	for (char *save = NULL, *d = strtok_r(field, ",", &save); d; d = strtok_r(NULL, ",", &save)) {
		_cleanup_free_ char *name = NULL, *nl = NULL, *more = NULL;

		d += strspn(d, " \n");
		if (!*d)
			continue;
		name = strndup(d, strcspn(d, " \n("));
		if (streq(name, "debhelper-compat"))
			name[strlen("debhelper")] = 0;
		assert_true(asprintf(&nl, "\n%s\n", name) > 0);
		if (!strstr(a.out, nl) && strncmp(a.out, nl + 1, strlen(nl + 1)) != 0)
			fail_msg("Build-Depends has %s, which scripts/install-deps does not install",
				 name);
		assert_true(asprintf(&more, "%s%s\n", names, name) > 0);
		free(names);
		names = TAKE_PTR(more);
	}
	for (char *save = NULL, *p = strtok_r(b.out, "\n", &save); p;
	     p = strtok_r(NULL, "\n", &save)) {
		_cleanup_free_ char *nl = NULL;

		assert_true(asprintf(&nl, "\n%s\n", p) > 0);
		if (!streq(p, "gcc") && !streq(p, "make") && !strstr(names, nl))
			fail_msg("the build needs %s, which Build-Depends lacks:%s", p, names);
	}
}

/* What the completion offers after "vmd WORD -" (or for the first word, with WORD ""). */
static char *complete(const char *verb)
{
	_cleanup_(test_run_done) TestRun r = {};
	char *argv[] = { (char *)"/bin/bash",
			 (char *)"-c",
			 (char *)". \"$1\"; if [ -n \"$2\" ]; then COMP_WORDS=(vmd \"$2\" -); "
				 "COMP_CWORD=2; else COMP_WORDS=(vmd ''); COMP_CWORD=1; fi; "
				 "_vmd; printf '%s\\n' \"${COMPREPLY[@]}\"",
			 (char *)"bash",
			 (char *)test_src("completions/vmd.bash"),
			 (char *)verb,
			 NULL };

	test_run(&r, argv);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, ""); /* no syntax error, no failing command */
	return strdup(r.out);
}

/* Whether word is one of the lines of list. */
static bool has_word(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; (p = strstr(p, word)); p += n)
		if ((p == list || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

/* Each --option of `vmd VERB --help` is offered; vmd VERB takes each one offered. */
static void check_verb(const char *verb)
{
	_cleanup_(test_run_done) TestRun h = {};
	_cleanup_free_ char *offered = complete(verb);
	char *argv[] = { (char *)test_vmd(), (char *)verb, (char *)"--help", NULL };

	test_run(&h, argv);
	assert_int_equal(h.status, 0);
	for (const char *p = h.out; (p = strstr(p, "--"));) {
		size_t n = 2 + strspn(p + 2, "abcdefghijklmnopqrstuvwxyz-");
		_cleanup_free_ char *opt = strndup(p, n);

		if (!has_word(offered, opt))
			fail_msg("vmd %s: %s is not completed; offered:\n%s", verb, opt, offered);
		p += n;
	}
	for (char *save = NULL, *o = strtok_r(offered, "\n", &save); o;
	     o = strtok_r(NULL, "\n", &save)) {
		_cleanup_(test_run_done) TestRun r = {};
		char *a[] = { (char *)test_vmd(), (char *)verb,	    o,
			      (char *)"1",	  (char *)"--help", NULL };

		test_run(&r, a);
		if (strstr(r.err, "unrecognized option"))
			fail_msg("vmd %s: completes %s, which vmd does not take: %s", verb, o, r.err);
	}
}

static void test_completion(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun h = {};
	_cleanup_free_ char *verbs = complete("");
	char *argv[] = { (char *)test_vmd(), (char *)"--help", NULL };

	/* Every command of vmd --help ("  daemon   watch..."). */
	test_run(&h, argv);
	assert_int_equal(h.status, 0);
	const char *cmds = strstr(h.out, "Commands:\n");
	assert_non_null(cmds);
	for (const char *l = strchr(cmds, '\n') + 1; l && strncmp(l, "  ", 2) == 0 && l[2] != ' ';
	     l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		_cleanup_free_ char *verb = strndup(l + 2, strcspn(l + 2, " \n"));

		if (!has_word(verbs, verb))
			fail_msg("command %s is not completed; offered:\n%s", verb, verbs);
		check_verb(verb);
	}
	expect(verbs, "\n--version\n");
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_install_default),
		cmocka_unit_test(test_install_debian),
		cmocka_unit_test(test_make_installs_nothing),
		cmocka_unit_test(test_build_depends),
		cmocka_unit_test(test_completion),
	};

	return cmocka_run_group_tests_name("install", tests, NULL, NULL);
}
