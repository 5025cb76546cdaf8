/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include "macro.h"

/*
 * A priority queue of pointers, smallest first: a binary heap. Each item keeps its own
 * place in the queue in an unsigned of its own (0 while it is not queued), so that any
 * item leaves in O(log n) and whether it is queued is known in O(1). An item's key must
 * not change while it is queued.
 */

typedef struct Prioq Prioq;
typedef int (*PrioqCompare)(const void *a, const void *b);

Prioq *prioq_new(PrioqCompare compare);
Prioq *prioq_free(Prioq *q);
DEFINE_POINTER_CLEANUP(Prioq, prioq_free)
size_t prioq_size(const Prioq *q);
/* Queue item, which keeps its place in *idx; nothing if it is queued already. -ENOMEM. */
int prioq_put(Prioq *q, void *item, unsigned *idx);
/* Take the item whose place is in *idx out; nothing if it is not queued. */
void prioq_remove(Prioq *q, unsigned *idx);
/* The smallest item, NULL if there is none. */
void *prioq_peek(const Prioq *q);
