/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "helpers.h"
#include "prioq.h"

typedef struct Item {
	char name[16];
	unsigned idx;
	bool queued; /* what the test expects */
} Item;

static int item_compare(const void *a, const void *b)
{
	return strcmp(((const Item *)a)->name, ((const Item *)b)->name);
}

/* The smallest of what the test thinks is queued, found the slow way. */
static Item *smallest(Item *items, size_t n)
{
	Item *min = NULL;

	for (size_t i = 0; i < n; i++)
		if (items[i].queued && (!min || item_compare(&items[i], min) < 0))
			min = &items[i];
	return min;
}

/* Random puts and removals from anywhere: the smallest is always at the top. */
static void test_random(void **state _unused_)
{
	_cleanup_(prioq_freep) Prioq *q = prioq_new(item_compare);
	static Item items[300];
	unsigned seed = 11;
	size_t n = 0;

	for (size_t i = 0; i < ELEMENTSOF(items); i++)
		snprintf(items[i].name, sizeof(items[i].name), "i-%u", (unsigned)rand_r(&seed));
	assert_null(prioq_peek(q));
	for (int step = 0; step < 20000; step++) {
		Item *it = &items[(unsigned)rand_r(&seed) % ELEMENTSOF(items)];

		if (rand_r(&seed) % 2) {
			assert_int_equal(prioq_put(q, it, &it->idx), 0);
			n += !it->queued;
			it->queued = true;
		} else {
			prioq_remove(q, &it->idx);
			n -= it->queued;
			it->queued = false;
		}
		assert_int_equal(it->idx != 0, it->queued);
		assert_int_equal(prioq_size(q), n);
		assert_ptr_equal(prioq_peek(q), smallest(items, ELEMENTSOF(items)));
	}
	/* Taking the smallest out each time gives them all in order. */
	for (Item *prev = NULL, *it; (it = prioq_peek(q)); prev = it) {
		if (prev)
			assert_true(item_compare(prev, it) <= 0);
		prioq_remove(q, &it->idx);
		it->queued = false;
	}
	assert_int_equal(prioq_size(q), 0);
	assert_null(smallest(items, ELEMENTSOF(items)));
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests_name("prioq", tests, NULL, NULL);
}
