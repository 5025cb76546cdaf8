/* SPDX-License-Identifier: MIT */
#include "helpers.h"
#include "list.h"

typedef struct Item {
	int value;
	ListNode node;
} Item;

/* l holds these values in this order, linked both ways. */
static void expect(const List *l, const int *values, size_t n)
{
	ListNode *prev = NULL;
	size_t i = 0;

	assert_int_equal(l->size, n);
	for (ListNode *p = l->first; p; prev = p, p = p->next, i++) {
		assert_true(i < n);
		assert_int_equal(list_entry(p, Item, node)->value, values[i]);
		assert_ptr_equal(p->prev, prev);
	}
	assert_int_equal(i, n);
	assert_ptr_equal(l->last, prev);
}

/* First in, first out; leaving from the front, the middle or the back; zeroed is empty. */
static void test_fifo(void **state _unused_)
{
	Item items[4] = { { .value = 0 }, { .value = 1 }, { .value = 2 }, { .value = 3 } };
	List l = {};

	assert_null(list_pop_first(&l));
	assert_null(list_entry(l.first, Item, node));
	for (size_t i = 0; i < ELEMENTSOF(items); i++) {
		assert_false(list_contains(&l, &items[i].node));
		list_append(&l, &items[i].node);
		assert_true(list_contains(&l, &items[i].node));
	}
	expect(&l, (int[]){ 0, 1, 2, 3 }, 4);
	list_remove(&l, &items[2].node); /* the middle */
	assert_false(list_contains(&l, &items[2].node));
	list_remove(&l, &items[2].node); /* not there: nothing */
	expect(&l, (int[]){ 0, 1, 3 }, 3);
	list_remove(&l, &items[3].node); /* the back */
	assert_ptr_equal(l.last, &items[1].node);
	list_append(&l, &items[2].node);
	expect(&l, (int[]){ 0, 1, 2 }, 3);
	assert_ptr_equal(list_entry(list_pop_first(&l), Item, node), &items[0]); /* the front */
	assert_false(list_contains(&l, &items[0].node));
	expect(&l, (int[]){ 1, 2 }, 2);
	list_remove(&l, &items[1].node);
	list_remove(&l, &items[2].node);
	expect(&l, NULL, 0);
	assert_null(l.first);
	assert_null(l.last);
	/* A single node, whose prev and next are both NULL, is still known to be in. */
	list_append(&l, &items[3].node);
	assert_true(list_contains(&l, &items[3].node));
	assert_false(list_contains(&l, &items[0].node));
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fifo),
	};

	return cmocka_run_group_tests_name("list", tests, NULL, NULL);
}
