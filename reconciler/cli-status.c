/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"
#include "status.h"

/* The one line that says most about what is wrong, or "". */
static const char *headline(json_t *s)
{
	static const char *const order[] = { "ConfigValid", "Degraded", "RestartRequired", "Ready" };

	for (size_t i = 0; i < ELEMENTSOF(order); i++) {
		const char *st = status_condition(s, order[i], "status");
		bool bad = streq(order[i], "ConfigValid") || streq(order[i], "Ready")
				   ? !streq(st, "True")
				   : streq(st, "True");

		if (bad && *status_condition(s, order[i], "message"))
			return status_condition(s, order[i], "message");
	}
	return "";
}

/* Ready's status as the table says it: yes, no, or ? while vmd cannot tell. */
static const char *ready_word(const char *status)
{
	return streq(status, "True") ? "yes" : streq(status, "Unknown") ? "?" : "no";
}

static void print_table(json_t *all)
{
	size_t i;
	json_t *s;

	printf("%-24s %-17s %-9s %-6s %-8s %s\n", "NAME", "BACKEND", "PHASE", "READY", "RESTARTS",
	       "MESSAGE");
	json_array_foreach(all, i, s)
		printf("%-24s %-17s %-9s %-6s %-8lld %s\n",
		       json_string_value(json_object_get(s, "name")) ?: "?",
		       json_string_value(json_object_get(s, "backend")) ?: "?",
		       json_string_value(json_object_get(s, "phase")) ?: "?",
		       ready_word(status_condition(s, "Ready", "status")),
		       (long long)json_integer_value(json_object_get(s, "restarts")), headline(s));
}

static void print_one(json_t *s)
{
	size_t i;
	json_t *c, *d;

	printf("Name:        %s\n", json_string_value(json_object_get(s, "name")) ?: "?");
	printf("File:        %s\n", json_string_value(json_object_get(s, "file")) ?: "(none)");
	printf("Backend:     %s\n", json_string_value(json_object_get(s, "backend")) ?: "?");
	if (json_string_value(json_object_get(s, "vmmVersion")))
		printf("VMM:         %s\n", json_string_value(json_object_get(s, "vmmVersion")));
	printf("Phase:       %s (wanted: %s)\n",
	       json_string_value(json_object_get(s, "phase")) ?: "?",
	       json_string_value(json_object_get(s, "desiredState")) ?: "?");
	printf("Generation:  %lld (observed %lld)\n",
	       (long long)json_integer_value(json_object_get(s, "generation")),
	       (long long)json_integer_value(json_object_get(s, "observedGeneration")));
	if (json_string_value(json_object_get(s, "startedAt")))
		printf("Started:     %s\n", json_string_value(json_object_get(s, "startedAt")));
	printf("Restarts:    %lld\n", (long long)json_integer_value(json_object_get(s, "restarts")));
	if (json_is_object(json_object_get(s, "job")))
		printf("Job:         %s, phase %s since %s\n",
		       json_string_value(json_object_get(json_object_get(s, "job"), "type")) ?: "?",
		       json_string_value(json_object_get(json_object_get(s, "job"), "phase")) ?: "?",
		       json_string_value(json_object_get(json_object_get(s, "job"), "since")) ?: "?");
	if (json_string_value(json_object_get(s, "lastError")))
		printf("Last error:  %s\n", json_string_value(json_object_get(s, "lastError")));
	if (json_string_value(json_object_get(s, "nextRetryAt")))
		printf("Next retry:  %s\n", json_string_value(json_object_get(s, "nextRetryAt")));
	printf("Conditions:\n");
	json_array_foreach(json_object_get(s, "conditions"), i, c)
	{
		const char *msg = json_string_value(json_object_get(c, "message"));

		printf("  %-16s %-7s %-22s %s\n", json_string_value(json_object_get(c, "type")),
		       json_string_value(json_object_get(c, "status")),
		       json_string_value(json_object_get(c, "reason")), msg ?: "");
	}
	json_array_foreach(json_object_get(s, "disks"), i, d)
		printf("Disk:        %s %s%s\n", json_string_value(json_object_get(d, "id")),
		       json_string_value(json_object_get(d, "path")),
		       json_is_true(json_object_get(d, "readOnly")) ? " (read-only)" : "");
	json_array_foreach(json_object_get(s, "networks"), i, d)
		printf("Network:     %s %s %s\n", json_string_value(json_object_get(d, "id")),
		       json_string_value(json_object_get(d, "tap")),
		       json_string_value(json_object_get(d, "mac")));
}

int verb_status(int argc, char **argv)
{
	static const struct option options[] = {
		{ "run-dir", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	const char *run_dir = "/run/vmd";
	bool json = false;
	json_t *out = NULL;
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		switch (c) {
		case 'r':
			run_dir = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			printf("Usage: vmd status [--run-dir DIR] [--json] [NAME]\n\nShow what the daemon reports about every sandbox, or one.\n");
			return EXIT_OK;
		default:
			return EXIT_USAGE;
		}
	}
	if (argc - optind > 1) {
		fprintf(stderr, "vmd status: at most one NAME\n");
		return EXIT_USAGE;
	}
	if (optind < argc) {
		r = status_read_one(run_dir, argv[optind], &out);
		if (r < 0) {
			fprintf(stderr, "vmd status: no status for sandbox '%s' in %s%s\n",
				argv[optind], run_dir, r == -ENOENT ? "" : ": unreadable");
			return EXIT_INVALID;
		}
	} else {
		r = status_read_all(run_dir, &out);
		if (r < 0) {
			fprintf(stderr,
				"vmd status: cannot read %s: %s (is the daemon running with this --run-dir?)\n",
				run_dir, strerror(-r));
			return EXIT_INVALID;
		}
	}
	if (json) {
		json_dumpf(out, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	} else if (json_is_array(out))
		print_table(out);
	else
		print_one(out);
	json_decref(out);
	return EXIT_OK;
}
