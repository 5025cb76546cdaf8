/* SPDX-License-Identifier: MIT */
/*
 * desired.c on a manager whose loop never runs: the tests call what the loop would, in
 * the order they choose. The last valid specs written to the state dir, and the scan in
 * steps, with files that come and go between two of them.
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

static char *file_of(ManagerFixture *f, const char *name)
{
	char *path = NULL;

	assert_true(asprintf(&path, "%s/%s.yaml", f->sb, name) > 0);
	return path;
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

/* Step through a scan under way to its end. */
static void scan_to_end(Manager *m)
{
	int r;

	while ((r = manager_scan_step(m, 0)) > 0)
		;
	assert_int_equal(r, 0);
}

static void check_all_gone(Manager *m)
{
	for (ListNode *n = m->all.first; n; n = n->next)
		manager_scan_check_gone(m, list_entry(n, Sandbox, all_node));
}

/*
 * In steps (with no time, each does the least it can: read the directory, or take one
 * file): a file gone without a word is found gone at the end; one that an event brought
 * back meanwhile, or a new one, is not; nothing is gone after a scan that could not read
 * the directory, or before a scan is over.
 */
static void test_scan_in_steps(void **state)
{
	ManagerFixture *f = *state;
	_cleanup_free_ char *a = file_of(f, "a"), *b = file_of(f, "b"), *c = file_of(f, "c"),
			    *d = file_of(f, "d"), *moved = NULL;

	test_write_str(f->sb, "a.yaml", SPEC);
	test_write_str(f->sb, "b.yaml", SPEC);
	test_write_str(f->sb, "c.yaml", SPEC);
	(void)manager_scan(f->m);
	assert_int_equal(f->m->all.size, 3);

	/* a and b go without an event; b comes back in the middle of the scan, and d too. */
	assert_int_equal(unlink(a), 0);
	assert_int_equal(unlink(b), 0);
	assert_int_equal(manager_scan_start(f->m), 0);
	assert_int_equal(manager_scan_step(f->m, 0), 1); /* the directory read */
	assert_int_equal(manager_scan_step(f->m, 0), 1); /* c, the only file */
	check_all_gone(f->m);				 /* not over: nothing gone yet */
	assert_non_null(manager_sandbox(f->m, "a", false)->path);
	test_write_str(f->sb, "b.yaml", SPEC);
	manager_file_event(f->m, b);
	test_write_str(f->sb, "d.yaml", SPEC);
	manager_file_event(f->m, d);
	assert_int_equal(manager_scan_step(f->m, 0), 0);
	check_all_gone(f->m);
	assert_null(manager_sandbox(f->m, "a", false)->path);
	assert_string_equal(manager_sandbox(f->m, "b", false)->path, b);
	assert_string_equal(manager_sandbox(f->m, "c", false)->path, c);
	assert_string_equal(manager_sandbox(f->m, "d", false)->path, d);

	/* A scan that starts again is a new one: what the first saw does not count. */
	assert_int_equal(manager_scan_start(f->m), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(manager_scan_step(f->m, 0), 1); /* the directory, b, c */
	assert_int_equal(unlink(c), 0);
	assert_int_equal(manager_scan_start(f->m), 0);
	scan_to_end(f->m);
	check_all_gone(f->m);
	assert_null(manager_sandbox(f->m, "c", false)->path);
	assert_non_null(manager_sandbox(f->m, "d", false)->path);

	/* The directory gone: degraded, and nothing is taken for gone. */
	assert_true(asprintf(&moved, "%s/elsewhere", f->dir) > 0);
	assert_int_equal(rename(f->sb, moved), 0);
	assert_int_equal(manager_scan_start(f->m), 0);
	assert_true(manager_scan_step(f->m, 0) < 0);
	check_all_gone(f->m);
	assert_non_null(f->m->degraded);
	assert_non_null(manager_sandbox(f->m, "b", false)->path);
	assert_int_equal(rename(moved, f->sb), 0);
	assert_int_equal(manager_scan(f->m), 0);
	assert_null(f->m->degraded);
	assert_non_null(manager_sandbox(f->m, "b", false)->path);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_persist_queue, manager_fixture_setup,
						manager_fixture_teardown),
		cmocka_unit_test_setup_teardown(test_scan_in_steps, manager_fixture_setup,
						manager_fixture_teardown),
	};

	return cmocka_run_group_tests_name("desired", tests, NULL, NULL);
}
