/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "hashmap.h"
#include "helpers.h"

/* Many keys, removals in the middle of probe chains, and every survivor still found. */
static void test_put_get_remove(void **state _unused_)
{
	Hashmap *h = hashmap_new();
	static char keys[5000][16];
	size_t i, n = 0;
	void *v;

	for (i = 0; i < ELEMENTSOF(keys); i++) {
		snprintf(keys[i], sizeof(keys[i]), "sb-%zu", i);
		assert_int_equal(hashmap_put(h, keys[i], keys[i]), 0);
	}
	assert_int_equal(hashmap_put(h, "sb-7", NULL), -EEXIST);
	assert_int_equal(hashmap_size(h), ELEMENTSOF(keys));
	for (i = 0; i < ELEMENTSOF(keys); i += 3)
		assert_ptr_equal(hashmap_remove(h, keys[i]), keys[i]);
	assert_null(hashmap_remove(h, "sb-0"));
	for (i = 0; i < ELEMENTSOF(keys); i++)
		assert_ptr_equal(hashmap_get(h, keys[i]), i % 3 ? keys[i] : NULL);
	for (i = 0; hashmap_next(h, &i, &v);)
		n++;
	assert_int_equal(n, hashmap_size(h));
	assert_int_equal(n, ELEMENTSOF(keys) - (ELEMENTSOF(keys) + 2) / 3);
	hashmap_free(h);
	assert_null(hashmap_get(NULL, "x"));
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_remove),
	};

	return cmocka_run_group_tests_name("hashmap", tests, NULL, NULL);
}
