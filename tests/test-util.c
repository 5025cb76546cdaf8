/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "helpers.h"
#include "util.h"

static void test_edit_distance(void **state _unused_)
{
	assert_int_equal(edit_distance("vcpus", "vcpus", 2), 0);
	assert_int_equal(edit_distance("vpcus", "vcpus", 2), 2);
	assert_int_equal(edit_distance("readonly", "readOnly", 2), 1);
	assert_int_equal(edit_distance("memry", "memory", 2), 1);
	assert_int_equal(edit_distance("", "abc", 5), 3);
	/* Beyond the limit: limit + 1, whatever the true distance. */
	assert_int_equal(edit_distance("kernel", "networks", 2), 3);
	assert_int_equal(edit_distance("a", "abcdefgh", 2), 3);
}

static void test_utf8(void **state _unused_)
{
	static const struct {
		const char *s;
		size_t bad;
	} rows[] = {
		{ "plain ascii", 11 },	   { "Zo\xc3\xab", 4 }, /* ë */
		{ "\xe2\x82\xac", 3 },				/* € */
		{ "\xf0\x9f\x98\x80", 4 },			/* U+1F600 */
		{ "ab\xff", 2 },				/* never valid */
		{ "\xc0\xaf", 0 },				/* overlong '/' */
		{ "\xe0\x80\xaf", 0 },				/* overlong, 3 bytes */
		{ "\xed\xa0\x80", 0 },				/* surrogate U+D800 */
		{ "\xf4\x90\x80\x80", 0 },			/* above U+10FFFF */
		{ "x\xe2\x82", 1 },				/* truncated */
		{ "x\xc3y", 1 },				/* bad continuation */
	};

	for (size_t i = 0; i < ELEMENTSOF(rows); i++)
		assert_int_equal(utf8_first_invalid(rows[i].s, strlen(rows[i].s)), rows[i].bad);
}

static void test_text_position(void **state _unused_)
{
	const char *t = "ab\nZo\xc3\xab x\n";
	unsigned line, col;

	text_position(t, 0, &line, &col);
	assert_int_equal(line, 1);
	assert_int_equal(col, 1);
	text_position(t, 3, &line, &col);
	assert_int_equal(line, 2);
	assert_int_equal(col, 1);
	/* Columns count characters: ë is two bytes, one column. */
	text_position(t, 8, &line, &col);
	assert_int_equal(line, 2);
	assert_int_equal(col, 5);
}

static void test_parse_decimal(void **state _unused_)
{
	uint64_t v;

	assert_int_equal(parse_decimal_u64("18446744073709551615", 20, &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(parse_decimal_u64("18446744073709551616", 20, &v), -ERANGE);
	assert_int_equal(parse_decimal_u64("99999999999999999999999", 23, &v), -ERANGE);
	assert_int_equal(parse_decimal_u64("12a", 3, &v), -EINVAL);
	assert_int_equal(parse_decimal_u64("", 0, &v), -EINVAL);
	assert_int_equal(parse_decimal_u64("007", 3, &v), 0);
	assert_true(v == 7);

	assert_int_equal(mul_u64(1ull << 32, 1ull << 31, &v), 0);
	assert_int_equal(mul_u64(1ull << 32, 1ull << 32, &v), -ERANGE);
	assert_int_equal(mul_u64(0, UINT64_MAX, &v), 0);
	assert_true(v == 0);
}

static void test_path_check(void **state _unused_)
{
	static const struct {
		const char *path;
		PathProblem p;
	} rows[] = {
		{ "/", PATH_OK },
		{ "/var/lib/vmd/disk.raw", PATH_OK },
		{ "/a,b/c=d,format=raw", PATH_OK },
		{ "/a/.hidden/..x/x..", PATH_OK },
		{ "relative", PATH_NOT_ABSOLUTE },
		{ "./x", PATH_NOT_ABSOLUTE },
		{ "", PATH_NOT_ABSOLUTE },
		{ "/a/./b", PATH_DOT_COMPONENT },
		{ "/a/.", PATH_DOT_COMPONENT },
		{ "/a/../b", PATH_DOTDOT_COMPONENT },
		{ "/..", PATH_DOTDOT_COMPONENT },
		{ "//a", PATH_EMPTY_COMPONENT },
		{ "/a//b", PATH_EMPTY_COMPONENT },
		{ "/a/", PATH_TRAILING_SLASH },
		{ "/a\tb", PATH_CONTROL_CHAR },
		{ "/a\x7f", PATH_CONTROL_CHAR },
		{ "/aaaaaaaaa", PATH_TOO_LONG }, /* with max 8 below */
	};

	for (size_t i = 0; i < ELEMENTSOF(rows); i++)
		assert_int_equal(path_check(rows[i].path, i == ELEMENTSOF(rows) - 1 ? 8 : 4095),
				 rows[i].p);
}

/* Escaped as shown: control characters and what is not UTF-8 as \xNN; twice is once. */
static void test_escape(void **state _unused_)
{
	static const struct {
		const char *s, *text, *json;
	} rows[] = {
		{ "web-1.yaml", "web-1.yaml", "web-1.yaml" },
		{ "", "", "" },
		{ "new\nline\t", "new\\x0Aline\\x09", "new\nline\t" },
		{ "esc\x1b[31m", "esc\\x1B[31m", "esc\x1b[31m" },
		{ "del\x7f", "del\\x7F", "del\x7f" },
		{ "Zo\xc3\xab \xe2\x82\xac", "Zo\xc3\xab \xe2\x82\xac", "Zo\xc3\xab \xe2\x82\xac" },
		{ "csi\xc2\x9b", "csi\\xC2\\x9B", "csi\xc2\x9b" }, /* C1: a control too */
		{ "bad\xff", "bad\\xFF", "bad\\xFF" },
		{ "cut\xe2\x82", "cut\\xE2\\x82", "cut\\xE2\\x82" },
		{ "over\xc0\xaf", "over\\xC0\\xAF", "over\\xC0\\xAF" },
		{ "back\\x41", "back\\x41", "back\\x41" }, /* shown as it is */
	};

	for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
		_cleanup_free_ char *t = text_escape(rows[i].s), *j = utf8_escape(rows[i].s),
				    *again = text_escape(t);

		assert_string_equal(t, rows[i].text);
		assert_string_equal(j, rows[i].json);
		assert_string_equal(again, t);
		assert_int_equal(utf8_first_invalid(j, strlen(j)), strlen(j));
	}
}

/* Appended within max bytes, never half a character or half an escape. */
static void test_escape_append(void **state _unused_)
{
	char buf[12] = "ab";

	text_escape_append(buf, sizeof(buf), "c\nd", 4);
	assert_string_equal(buf, "abc"); /* \x0A would make 5 */
	text_escape_append(buf, sizeof(buf), "\xc3\xab\xc3\xab", 3);
	assert_string_equal(buf, "abc\xc3\xab");
	text_escape_append(buf, sizeof(buf), "\x01\x02", 100);
	assert_string_equal(buf, "abc\xc3\xab\\x01"); /* no room left for \x02, nor a part of it */
}

static void test_string_table(void **state _unused_)
{
	static const char *const t[] = { "zero", NULL, "two" };

	assert_int_equal(string_table_lookup(t, 3, "zero"), 0);
	assert_int_equal(string_table_lookup(t, 3, "two"), 2);
	assert_int_equal(string_table_lookup(t, 3, "one"), -EINVAL);
	assert_int_equal(string_table_lookup(t, 3, NULL), -EINVAL);
	assert_int_equal(first_control_char("abc", 3), -1);
	assert_int_equal(first_control_char("a\x1b", 2), 0x1b);
	assert_true(IN_SET(3, 1, 2, 3));
	assert_false(IN_SET(4, 1, 2, 3));
}

/* Sizes as the sandbox file writes them; what is not a whole unit, to a tenth. */
static void test_format_size(void **state _unused_)
{
	static const struct {
		uint64_t bytes;
		const char *text;
	} rows[] = {
		{ 0, "0" },
		{ 1023, "1023" },
		{ 1024, "1Ki" },
		{ 512ull << 20, "512Mi" },
		{ 1ull << 40, "1Ti" },
		{ 1536ull << 20, "1.5Gi" },
		{ 25125986304ull, "23.4Gi" },
		{ UINT64_MAX, "16.0Ei" },
	};
	char buf[32];

	for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
		format_size(rows[i].bytes, buf);
		assert_string_equal(buf, rows[i].text);
	}
}

/* What a kill left of write_file_atomic(), and only that, is taken for a leftover. */
static void test_atomic_temporaries(void **state _unused_)
{
	_cleanup_free_ char *p = NULL, *left = NULL;
	char *dir = test_tmpdir();

	assert_true(asprintf(&p, "%s/status.json", dir) > 0);
	assert_int_equal(write_file_atomic(p, "{}", 2, 0644, false), 0);
	assert_true(is_atomic_temporary("status.json.tmp-AbC123"));
	assert_true(is_atomic_temporary("vm.json.tmp-000000"));
	assert_false(is_atomic_temporary(".tmp-AbC123"));
	assert_false(is_atomic_temporary("status.json.tmp-AbC12"));
	assert_false(is_atomic_temporary("status.json.tmp-AbC1234"));
	assert_false(is_atomic_temporary("status.json.tmp-AbC1_3"));
	assert_false(is_atomic_temporary("notes.tmp-1"));
	assert_false(is_atomic_temporary("status.json"));

	test_write_str(dir, "status.json.tmp-AbC123", "{");
	test_write_str(dir, "noop.json.tmp-z9Y8x7", "");
	test_write_str(dir, "notes.tmp-1", "");
	assert_int_equal(remove_atomic_temporaries(AT_FDCWD, dir), 2);
	assert_int_equal(remove_atomic_temporaries(AT_FDCWD, dir), 0);
	left = test_read_file(p, NULL);
	assert_string_equal(left, "{}");
	free(p);
	assert_true(asprintf(&p, "%s/notes.tmp-1", dir) > 0);
	assert_int_equal(access(p, F_OK), 0);
	assert_int_equal(remove_atomic_temporaries(AT_FDCWD, p), -ENOTDIR);
	test_tmpdir_remove(dir);
}

/* unix_connect() never waits: taken, refused, or the backlog full (-EAGAIN). */
static void test_unix_connect(void **state _unused_)
{
	char *dir = test_tmpdir();
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int l, fds[8], n = 0, r;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/s.sock", dir);
	assert_int_equal(unix_connect(sa.sun_path), -ENOENT);
	l = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(unix_connect(sa.sun_path), -ECONNREFUSED);
	assert_int_equal(listen(l, 0), 0);
	/* Nobody accepts: the backlog fills, and the next connect says so at once. */
	while ((r = unix_connect(sa.sun_path)) >= 0 && n < (int)ELEMENTSOF(fds))
		fds[n++] = r;
	assert_int_equal(r, -EAGAIN);
	assert_true(n >= 1);
	while (n > 0)
		close(fds[--n]);
	close(l);
	test_tmpdir_remove(dir);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_edit_distance), cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_text_position), cmocka_unit_test(test_parse_decimal),
		cmocka_unit_test(test_path_check),    cmocka_unit_test(test_string_table),
		cmocka_unit_test(test_escape),	      cmocka_unit_test(test_escape_append),
		cmocka_unit_test(test_format_size),   cmocka_unit_test(test_atomic_temporaries),
		cmocka_unit_test(test_unix_connect),
	};

	return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
