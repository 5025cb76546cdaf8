/* SPDX-License-Identifier: MIT */
#include <stdarg.h>

#include "diag.h"

void diag_list_done(DiagList *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->items[i].message);
	free(l->items);
	*l = (DiagList){};
}

void diag_addv(DiagList *l, unsigned line, unsigned column, const char *prefix, const char *fmt,
	       va_list ap)
{
	_cleanup_free_ char *body = NULL;
	char *m = NULL;

	if (l->n >= DIAG_MAX) {
		l->n_dropped++;
		return;
	}
	if (l->n % 16 == 0) {
		Diag *items = reallocarray(l->items, l->n + 16, sizeof(Diag));

		if (!items)
			goto oom;
		l->items = items;
	}
	if (vasprintf(&body, fmt, ap) < 0)
		goto oom;
	if (prefix && prefix[0]) {
		if (asprintf(&m, "%s: %s", prefix, body) < 0)
			goto oom;
	} else
		m = TAKE_PTR(body);
	l->items[l->n++] = (Diag){ .line = line, .column = column, .message = m };
	return;
oom:
	l->error = -ENOMEM;
	l->n_dropped++;
}

void diag_add(DiagList *l, unsigned line, unsigned column, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_addv(l, line, column, NULL, fmt, ap);
	va_end(ap);
}

void diag_list_sort(DiagList *l)
{
	/* Insertion sort: stable, and lists are short (at most DIAG_MAX). */
	for (size_t i = 1; i < l->n; i++) {
		Diag d = l->items[i];
		size_t j = i;

		while (j > 0 &&
		       (l->items[j - 1].line > d.line ||
			(l->items[j - 1].line == d.line && l->items[j - 1].column > d.column))) {
			l->items[j] = l->items[j - 1];
			j--;
		}
		l->items[j] = d;
	}
}

void diag_list_print(const DiagList *l, const char *path, FILE *f)
{
	for (size_t i = 0; i < l->n; i++)
		fprintf(f, "%s:%u:%u: error: %s\n", path, l->items[i].line, l->items[i].column,
			l->items[i].message);
	if (l->n_dropped > 0)
		fprintf(f, "%s: error: %zu more errors not shown\n", path, l->n_dropped);
}
