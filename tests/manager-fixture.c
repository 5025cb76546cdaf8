/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <sys/stat.h>

#include "helpers.h"
#include "manager-fixture.h"

static int setup(void **state, bool read_only)
{
	ManagerFixture *f = calloc(1, sizeof(*f));
	ManagerConfig c = {
		.default_backend = BACKEND_NOOP,
		.backend_override = _BACKEND_KIND_INVALID,
		.resync_usec = 3600ull * 1000000,
		.grace_usec = 1000000,
		.max_deletions = DELETION_LIMIT_DEFAULT,
	};

	f->dir = test_tmpdir();
	assert_true(asprintf(&f->sb, "%s/sandboxes", f->dir) > 0);
	assert_true(asprintf(&f->run, "%s/run", f->dir) > 0);
	assert_true(asprintf(&f->state, "%s/state", f->dir) > 0);
	assert_int_equal(mkdir(f->sb, 0755), 0);
	c.sandbox_dir = f->sb;
	c.run_dir = f->run;
	c.state_dir = f->state;
	if (read_only)
		assert_int_equal(manager_new_read_only(&c, &f->m), 0);
	else
		assert_int_equal(manager_new(&c, &f->m), 0);
	*state = f;
	return 0;
}

int manager_fixture_setup(void **state)
{
	return setup(state, false);
}

int manager_fixture_setup_read_only(void **state)
{
	return setup(state, true);
}

int manager_fixture_teardown(void **state)
{
	ManagerFixture *f = *state;

	manager_free(f->m);
	test_tmpdir_remove(f->dir);
	free(f->sb);
	free(f->run);
	free(f->state);
	free(f);
	return 0;
}
