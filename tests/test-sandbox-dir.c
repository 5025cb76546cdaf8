/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "helpers.h"
#include "sandbox-dir.h"

static void test_candidates(void **state _unused_)
{
	static const struct {
		const char *name;
		bool candidate;
	} rows[] = {
		{ "web-1.yaml", true },
		{ "web-1.yml", true },
		{ "Web_1.yaml", true }, /* a candidate; loading it says the name is bad */
		{ ".yaml", false },
		{ "web-1.yaml~", false },     /* backup */
		{ ".web-1.yaml.swp", false }, /* vim swap */
		{ ".web-1.yaml.swx", false },
		{ "4913", false },	   /* vim's write probe */
		{ "#web-1.yaml#", false }, /* Emacs auto-save */
		{ ".#web-1.yaml", false }, /* Emacs lock */
		{ "web-1.yaml.dpkg-new", false },
		{ "web-1.yaml.dpkg-old", false },
		{ "web-1.yaml.rpmnew", false },
		{ "..data", false }, /* Kubernetes ConfigMap */
		{ "..2024_01_01_00_00_00.123", false },
		{ ".hidden.yaml", false },
		{ "web-1.json", false },
		{ "web-1.YAML", false },
		{ "web-1.yaml.tmp", false },
		{ "README", false },
	};

	for (size_t i = 0; i < ELEMENTSOF(rows); i++)
		if (sandbox_dir_name_is_candidate(rows[i].name) != rows[i].candidate)
			fail_msg("'%s'", rows[i].name);
	assert_true(sandbox_dir_subdir_is_searched("team-a"));
	assert_false(sandbox_dir_subdir_is_searched("..data"));
	assert_false(sandbox_dir_subdir_is_searched(".git"));
}

typedef struct Seen {
	FILE *m;
	char *dir;
} Seen;

static int record(const char *path, int error, void *userdata)
{
	Seen *s = userdata;

	fprintf(s->m, "%s %d\n", path + strlen(s->dir) + 1, error);
	return 0;
}

static char *walk(char *dir, int *ret)
{
	Seen s = { .dir = dir };
	char *out = NULL;
	size_t len;

	s.m = open_memstream(&out, &len);
	*ret = sandbox_dir_walk(dir, record, &s);
	fclose(s.m);
	return out;
}

static void symlink_at(const char *dir, const char *target, const char *name)
{
	_cleanup_free_ char *path = NULL;

	assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
	assert_int_equal(symlink(target, path), 0);
}

/*
 * Name order, subfolders, a ConfigMap layout (web.yaml -> ..data/web.yaml, ..data ->
 * ..2024_x), droppings skipped, a symlink to a directory not followed.
 */
static void test_walk(void **state _unused_)
{
	char *dir = test_tmpdir();
	_cleanup_free_ char *out = NULL, *lock = NULL;
	int r;

	test_write_str(dir, "b.yaml", "x");
	test_write_str(dir, "a.yml", "x");
	test_write_str(dir, "a.yaml~", "x");
	test_write_str(dir, ".a.yaml.swp", "x");
	test_write_str(dir, "4913", "x");
	test_write_str(dir, "team/c.yaml", "x");
	test_write_str(dir, "team/deeper/d.yaml", "x");
	test_write_str(dir, ".git/e.yaml", "x");
	test_write_str(dir, "..2024_01_01/cm.yaml", "x");
	symlink_at(dir, "..2024_01_01", "..data");
	symlink_at(dir, "..data/cm.yaml", "cm.yaml");
	symlink_at(dir, "team", "link-to-team");

	out = walk(dir, &r);
	assert_int_equal(r, 0);
	assert_string_equal(out,
			    "a.yml 0\nb.yaml 0\ncm.yaml 0\nteam/c.yaml 0\nteam/deeper/d.yaml 0\n");

	/* An unreadable subfolder is reported, and the walk goes on. */
	if (geteuid() != 0) {
		assert_true(asprintf(&lock, "%s/team/deeper", dir) > 0);
		assert_int_equal(chmod(lock, 0), 0);
		free(out);
		out = walk(dir, &r);
		assert_int_equal(r, 0);
		assert_non_null(strstr(out, "team/deeper -13\n"));
		assert_int_equal(chmod(lock, 0755), 0);
	}
	test_tmpdir_remove(dir);
}

static void test_walk_missing(void **state _unused_)
{
	int r;
	char *dir = strdup("/nonexistent-vmd-test");
	_cleanup_free_ char *out = walk(dir, &r);

	assert_int_equal(r, -ENOENT);
	assert_string_equal(out, "");
	free(dir);
}

static void test_relative(void **state _unused_)
{
	assert_string_equal(sandbox_dir_relative("/etc/vmd/sandboxes", "/etc/vmd/sandboxes/web.yaml"),
			    "web.yaml");
	assert_string_equal(sandbox_dir_relative("/etc/vmd/sandboxes/", "/etc/vmd/sandboxes/t/x.yml"),
			    "t/x.yml");
	assert_string_equal(sandbox_dir_relative("sb", "sb//web.yaml"), "web.yaml");
	assert_string_equal(sandbox_dir_relative("/", "/web.yaml"), "web.yaml");
	assert_null(sandbox_dir_relative("/etc/vmd/sandboxes", "/etc/vmd/sandboxes2/web.yaml"));
	assert_null(sandbox_dir_relative("/etc/vmd/sandboxes", "/etc/vmd/sandboxes"));
	assert_null(sandbox_dir_relative("/etc/vmd/sandboxes", "/etc/web.yaml"));
}

/*
 * Given the directory's fd, the walk reads that directory, whatever its path names by now
 * (the daemon judged the one it opened): paths are still shown under the name given.
 */
static void test_iter_fd(void **state _unused_)
{
	_cleanup_(sandbox_dir_iter_freep) SandboxDirIter *it = NULL;
	char *top = test_tmpdir();
	_cleanup_free_ char *sb = NULL, *old = NULL, *want = NULL;
	const char *path;
	int fd, error, r;

	assert_true(asprintf(&sb, "%s/sb", top) > 0 && asprintf(&old, "%s/old", top) > 0);
	test_write_str(sb, "team/web.yaml", "x");
	fd = open(sb, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(sandbox_dir_iter_new(sb, fd, &it), 0);
	close(fd);
	assert_int_equal(rename(sb, old), 0);
	test_write_str(sb, "other.yaml", "x");

	assert_true(asprintf(&want, "%s/team/web.yaml", sb) > 0);
	while ((r = sandbox_dir_iter_next(it, &path, &error)) == -EAGAIN)
		;
	assert_int_equal(r, 1);
	assert_string_equal(path, want);
	assert_int_equal(error, 0);
	while ((r = sandbox_dir_iter_next(it, &path, &error)) == -EAGAIN)
		;
	assert_int_equal(r, 0); /* not the other.yaml of the directory now at that path */
	test_tmpdir_remove(top);
}

static int name_compare(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * More names than one read takes (the directory is read a part at a time, each part
 * sorted, the parts merged): still every candidate once, in name order, with a
 * subfolder's in its place; the iterator says when it read a part and has none yet.
 */
static void test_iter_large(void **state _unused_)
{
	_cleanup_(sandbox_dir_iter_freep) SandboxDirIter *it = NULL;
	enum {
		N = 10000
	};
	char *dir = test_tmpdir(), **names = calloc(N + 1, sizeof(char *));
	unsigned parts = 0;
	size_t i = 0;
	const char *path;
	int error, r;

	for (size_t k = 0; k < N; k++) {
		/* Unique, in no order: a counter scrambled by a bijection on 32 bits. */
		assert_true(asprintf(&names[k], "%08x.yaml", (unsigned)(k * 2654435761u)) > 0);
		test_write_str(dir, names[k], "x");
	}
	names[N] = strdup("80000000");
	test_write_str(dir, "80000000/inside.yaml", "x");
	test_write_str(dir, "80000000/README", "x");
	qsort(names, N + 1, sizeof(char *), name_compare);

	assert_int_equal(sandbox_dir_iter_new(dir, -EBADF, &it), 0);
	while ((r = sandbox_dir_iter_next(it, &path, &error)) != 0) {
		_cleanup_free_ char *want = NULL;

		if (r == -EAGAIN) {
			parts++;
			continue;
		}
		assert_int_equal(r, 1);
		assert_int_equal(error, 0);
		assert_true(i <= N);
		assert_true(asprintf(&want, "%s/%s%s", dir, names[i],
				     streq(names[i], "80000000") ? "/inside.yaml" : "") > 0);
		assert_string_equal(path, want);
		i++;
	}
	assert_int_equal(i, N + 1);
	assert_true(parts >= N / 1024 + 1);
	for (size_t k = 0; k <= N; k++)
		free(names[k]);
	free(names);
	test_tmpdir_remove(dir);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_candidates),   cmocka_unit_test(test_walk),
		cmocka_unit_test(test_walk_missing), cmocka_unit_test(test_relative),
		cmocka_unit_test(test_iter_fd),	     cmocka_unit_test(test_iter_large),
	};

	return cmocka_run_group_tests_name("sandbox-dir", tests, NULL, NULL);
}
