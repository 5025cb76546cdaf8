/* SPDX-License-Identifier: MIT */
/*
 * desired.c on a manager whose loop never runs: the tests call what the loop would, in
 * the order they choose. The last valid specs written to the state dir.
 */
#include <stdio.h>
#include <sys/stat.h>

#include "helpers.h"
#include "manager-fixture.h"

static const char *SPEC =
	"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n";

static bool persisted(ManagerFixture *f, const char *name)
{
	_cleanup_free_ char *path = NULL;

	assert_true(asprintf(&path, "%s/sandboxes/%s.json", f->state, name) > 0);
	return access(path, F_OK) == 0;
}

/* Oldest first; a dropped sandbox leaves the queue from the middle; all are written. */
static void test_persist_queue(void **state)
{
	ManagerFixture *f = *state;
	const char *names[] = { "a", "b", "c", "d" };

	for (size_t i = 0; i < ELEMENTSOF(names); i++) {
		_cleanup_free_ char *name = NULL;

		assert_true(asprintf(&name, "%s.yaml", names[i]) > 0);
		test_write_str(f->sb, name, SPEC);
	}
	(void)manager_scan(f->m);
	assert_int_equal(f->m->persist_queue.size, 4);

	manager_drop_sandbox(f->m, manager_sandbox(f->m, "c", false));
	assert_int_equal(f->m->persist_queue.size, 3);
	{
		ListNode *n = f->m->persist_queue.first;

		assert_string_equal(list_entry(n, Sandbox, persist_node)->name, "a");
		assert_string_equal(list_entry(n->next, Sandbox, persist_node)->name, "b");
		assert_string_equal(list_entry(n->next->next, Sandbox, persist_node)->name, "d");
	}
	assert_int_equal(manager_write_persisted(f->m, 0), 3); /* no time: nothing written */
	assert_false(persisted(f, "a"));
	assert_int_equal(manager_write_persisted(f->m, UINT64_MAX), 0);
	assert_true(persisted(f, "a"));
	assert_true(persisted(f, "b"));
	assert_false(persisted(f, "c"));
	assert_true(persisted(f, "d"));
	assert_null(f->m->persist_queue.first);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_persist_queue, manager_fixture_setup,
						manager_fixture_teardown),
	};

	return cmocka_run_group_tests_name("desired", tests, NULL, NULL);
}
