/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "cli.h"
#include "macro.h"

#define VMD_VERSION "0.1.0"

static void help(FILE *f)
{
	fprintf(f, "Usage: vmd COMMAND [OPTIONS]\n"
		   "\n"
		   "Declarative VM sandboxes for one Linux host.\n"
		   "\n"
		   "Commands:\n"
		   "  validate PATH...   check sandbox files without touching any VM\n"
		   "\n"
		   "  vmd COMMAND --help shows a command's options; see vmd(8).\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		help(stderr);
		return EXIT_USAGE;
	}
	if (streq(argv[1], "--help") || streq(argv[1], "-h") || streq(argv[1], "help")) {
		help(stdout);
		return EXIT_OK;
	}
	if (streq(argv[1], "--version")) {
		printf("vmd %s\n", VMD_VERSION);
		return EXIT_OK;
	}
	if (streq(argv[1], "validate"))
		return verb_validate(argc - 1, argv + 1);

	fprintf(stderr, "vmd: unknown command '%s'\n", argv[1]);
	help(stderr);
	return EXIT_USAGE;
}
