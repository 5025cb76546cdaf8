/* SPDX-License-Identifier: MIT */
#include "prioq.h"

typedef struct Entry {
	void *item;
	unsigned *idx; /* where the item keeps its place: its index + 1 */
} Entry;

struct Prioq {
	Entry *entries;
	size_t n, allocated;
	PrioqCompare compare;
};

Prioq *prioq_new(PrioqCompare compare)
{
	Prioq *q = calloc(1, sizeof(*q));

	if (q)
		q->compare = compare;
	return q;
}

Prioq *prioq_free(Prioq *q)
{
	if (q)
		free(q->entries);
	return mfree(q);
}

size_t prioq_size(const Prioq *q)
{
	return q ? q->n : 0;
}

static void place(Prioq *q, size_t i, Entry e)
{
	q->entries[i] = e;
	*e.idx = (unsigned)i + 1;
}

static void sift_up(Prioq *q, size_t i)
{
	Entry e = q->entries[i];

	while (i > 0 && q->compare(e.item, q->entries[(i - 1) / 2].item) < 0) {
		place(q, i, q->entries[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	place(q, i, e);
}

static void sift_down(Prioq *q, size_t i)
{
	Entry e = q->entries[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= q->n)
			break;
		if (c + 1 < q->n && q->compare(q->entries[c + 1].item, q->entries[c].item) < 0)
			c++;
		if (q->compare(q->entries[c].item, e.item) >= 0)
			break;
		place(q, i, q->entries[c]);
		i = c;
	}
	place(q, i, e);
}

int prioq_put(Prioq *q, void *item, unsigned *idx)
{
	if (*idx != 0)
		return 0;
	if (q->n == q->allocated) {
		size_t a = q->allocated ? q->allocated * 2 : 16;
		Entry *e = reallocarray(q->entries, a, sizeof(Entry));

		if (!e)
			return -ENOMEM;
		q->entries = e;
		q->allocated = a;
	}
	q->entries[q->n++] = (Entry){ item, idx };
	sift_up(q, q->n - 1);
	return 0;
}

void prioq_remove(Prioq *q, unsigned *idx)
{
	size_t i;

	if (*idx == 0)
		return;
	i = *idx - 1;
	*idx = 0;
	if (i == --q->n)
		return;
	/* The last one fills the hole, and moves up or down from there. */
	place(q, i, q->entries[q->n]);
	if (i > 0 && q->compare(q->entries[i].item, q->entries[(i - 1) / 2].item) < 0)
		sift_up(q, i);
	else
		sift_down(q, i);
}

void *prioq_peek(const Prioq *q)
{
	return q && q->n > 0 ? q->entries[0].item : NULL;
}
