/* SPDX-License-Identifier: MIT */
#pragma once

/* Exit codes of every verb. */
enum {
	EXIT_OK = 0,
	EXIT_INVALID = 1, /* a file is invalid or unreadable */
	EXIT_USAGE = 2,
};

/* vmd validate [--json] [--default-backend NAME] PATH... */
int verb_validate(int argc, char **argv);
