/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the tests that drive a Manager themselves share: a sandbox dir, run dir and state
 * dir in a temporary directory, and a manager on them whose loop never runs (the tests
 * call what the loop would). Read-only (vmd plan's: no lock, no loop) or not.
 */

#include "manager.h"

typedef struct ManagerFixture {
	char *dir, *sb, *run, *state;
	Manager *m;
} ManagerFixture;

/* cmocka setups and teardown: one ManagerFixture in *state. */
int manager_fixture_setup(void **state);
int manager_fixture_setup_read_only(void **state);
int manager_fixture_teardown(void **state);
