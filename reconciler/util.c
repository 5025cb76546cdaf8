/* SPDX-License-Identifier: MIT */
#include "util.h"

ssize_t string_table_lookup(const char *const *table, size_t n, const char *s)
{
	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (table[i] && streq(table[i], s))
			return (ssize_t)i;
	return -EINVAL;
}

size_t edit_distance(const char *a, const char *b, size_t limit)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[64];

	/* Only short identifiers are compared; anything longer is simply "far". */
	if (lb >= ELEMENTSOF(row) || la >= 64)
		return limit + 1;
	if ((la > lb ? la - lb : lb - la) > limit)
		return limit + 1;

	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0], best;

		row[0] = i;
		best = row[0];
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t cost = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < cost)
				cost = up + 1;
			if (row[j - 1] + 1 < cost)
				cost = row[j - 1] + 1;
			diag = up;
			row[j] = cost;
			if (cost < best)
				best = cost;
		}
		if (best > limit)
			return limit + 1;
	}
	return row[lb] > limit ? limit + 1 : row[lb];
}

/* Length of the well-formed UTF-8 sequence at p (at most n bytes), or 0 if it is not one. */
static size_t utf8_sequence_length(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	size_t len;
	unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		if (c == 0xE0)
			lo = 0xA0; /* overlong */
		else if (c == 0xED)
			hi = 0x9F; /* surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		if (c == 0xF0)
			lo = 0x90; /* overlong */
		else if (c == 0xF4)
			hi = 0x8F; /* above U+10FFFF */
	} else
		return 0;

	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;
	return len;
}

size_t utf8_first_invalid(const char *buf, size_t len)
{
	const unsigned char *p = (const unsigned char *)buf;
	size_t i = 0;

	while (i < len) {
		size_t l = utf8_sequence_length(p + i, len - i);

		if (l == 0)
			return i;
		i += l;
	}
	return len;
}

void text_position(const char *buf, size_t off, unsigned *ret_line, unsigned *ret_column)
{
	unsigned line = 1, column = 1;

	for (size_t i = 0; i < off; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c == '\n') {
			line++;
			column = 1;
		} else if ((c & 0xC0) != 0x80)
			column++;
	}
	*ret_line = line;
	*ret_column = column;
}

int first_control_char(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7F)
			return c;
	}
	return -1;
}

int parse_decimal_u64(const char *s, size_t len, uint64_t *ret)
{
	uint64_t v = 0;

	if (len == 0)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*ret = v;
	return 0;
}

int mul_u64(uint64_t a, uint64_t b, uint64_t *ret)
{
	if (a != 0 && b > UINT64_MAX / a)
		return -ERANGE;
	*ret = a * b;
	return 0;
}

PathProblem path_check(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (first_control_char(s, n) >= 0)
		return PATH_CONTROL_CHAR;
	if (s[0] != '/')
		return PATH_NOT_ABSOLUTE;
	if (n > max)
		return PATH_TOO_LONG;
	if (n > 1 && s[n - 1] == '/')
		return PATH_TRAILING_SLASH;

	for (const char *p = s + 1; *p;) {
		size_t l = strcspn(p, "/");

		if (l == 0)
			return PATH_EMPTY_COMPONENT;
		if (l == 1 && p[0] == '.')
			return PATH_DOT_COMPONENT;
		if (l == 2 && p[0] == '.' && p[1] == '.')
			return PATH_DOTDOT_COMPONENT;
		p += l;
		if (*p == '/')
			p++;
	}
	return PATH_OK;
}
