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
		   "  daemon             watch the sandbox directory and keep the VMs as it says\n"
		   "  status [NAME]      what the daemon reports about each sandbox\n"
		   "  plan               what the daemon would do now, changing nothing\n"
		   "  validate PATH...   check sandbox files without touching any VM\n"
		   "  console NAME       attach the terminal to a VM's serial console (Ctrl-]\n"
		   "                     detaches); --log prints what vmd kept of it\n"
		   "  approve-deletions  let the daemon stop what it holds because too many\n"
		   "                     files went at once\n"
		   "  wait NAME...       wait until sandboxes are ready, running, stopped,\n"
		   "                     deleted or applied (--for)\n"
		   "  events             follow the daemon's events as they happen\n"
		   "  wake NAME...       wake sandboxes suspended for being idle\n"
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
	if (streq(argv[1], "daemon"))
		return verb_daemon(argc - 1, argv + 1);
	if (streq(argv[1], "status"))
		return verb_status(argc - 1, argv + 1);
	if (streq(argv[1], "plan"))
		return verb_plan(argc - 1, argv + 1);
	if (streq(argv[1], "console"))
		return verb_console(argc - 1, argv + 1);
	if (streq(argv[1], "approve-deletions"))
		return verb_approve_deletions(argc - 1, argv + 1);
	if (streq(argv[1], "wait"))
		return verb_wait(argc - 1, argv + 1);
	if (streq(argv[1], "events"))
		return verb_events(argc - 1, argv + 1);
	if (streq(argv[1], "wake"))
		return verb_wake(argc - 1, argv + 1);

	fprintf(stderr, "vmd: unknown command '%s'\n", argv[1]);
	help(stderr);
	return EXIT_USAGE;
}
