/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdarg.h>
#include <stdio.h>

#include "macro.h"

/*
 * User-facing errors about one input file, each with the 1-based line and column it
 * points at. Lower layers fill a DiagList; the caller decides how to print it.
 */

#define DIAG_MAX 100 /* a hostile file cannot make us collect more than this */

typedef struct Diag {
	unsigned line;
	unsigned column;
	char *message;
} Diag;

typedef struct DiagList {
	Diag *items;
	size_t n;
	size_t n_dropped; /* errors past DIAG_MAX, counted but not kept */
	int error;	  /* -ENOMEM if a message could not be stored */
} DiagList;

void diag_list_done(DiagList *l);

/* Record an error. Never fails from the caller's view: a failed allocation sets l->error. */
void diag_add(DiagList *l, unsigned line, unsigned column, const char *fmt, ...) _printf_(4, 5);
/* The same with a va_list, and "PREFIX: " before the message when prefix is not empty. */
void diag_addv(DiagList *l, unsigned line, unsigned column, const char *prefix, const char *fmt,
	       va_list ap) _printf_(5, 0);

static inline bool diag_list_is_empty(const DiagList *l)
{
	return l->n == 0 && l->n_dropped == 0;
}

/* Order by position; errors at one place keep the order they were found in. */
void diag_list_sort(DiagList *l);

/* "PATH:LINE:COLUMN: error: MESSAGE" lines, then a count of dropped ones. */
void diag_list_print(const DiagList *l, const char *path, FILE *f);
