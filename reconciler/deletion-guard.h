/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "macro.h"

/*
 * The mass deletion guard's threshold, --max-deletions: how many stops of removed files one
 * pass may make without an approval. Pure: parsed, printed and compared here, applied by
 * deletion-guard.c (docs/daemon.md, "Many files gone at once").
 *
 *   N       more than N sandboxes
 *   P%      more than P percent of the sandboxes that have a VM
 *   N,P%    both at once (the default: 1,50%)
 *   off     never: every stop goes ahead after the grace period, as without a guard
 *
 * 0 is a number like any other: more than 0, so every stop of a removed file waits for an
 * approval. Turning the guard off takes the word.
 */
typedef struct DeletionLimit {
	bool off;
	bool has_count, has_percent;
	unsigned count;	  /* more than this many */
	unsigned percent; /* more than this share, 0 to 100, of the sandboxes with a VM */
} DeletionLimit;

#define DELETION_LIMIT_DEFAULT                                                                     \
	((DeletionLimit){ .has_count = true, .count = 1, .has_percent = true, .percent = 50 })

/* -EINVAL for anything but the forms above. */
int deletion_limit_from_string(const char *s, DeletionLimit *ret);
/* The form it was given in: "1,50%", "3", "off". */
void deletion_limit_format(const DeletionLimit *l, char buf[static 32]);
/* Whether n stops of removed files, out of total sandboxes with a VM, are too many. */
bool deletion_limit_exceeded(const DeletionLimit *l, size_t n, size_t total);

/* In the run dir: what the daemon holds, and an approval of it (a copy, maybe pared down). */
#define DELETIONS_HELD_FILE "deletions-held.json"
#define DELETIONS_APPROVED_FILE "deletions-approved.json"

/* Whether such a file (its JSON; NULL for none) names sandbox name. */
bool deletions_file_names(json_t *file, const char *name);
