/* SPDX-License-Identifier: MIT */
#pragma once

/* Exit codes of every verb. */
enum {
	EXIT_OK = 0,
	EXIT_INVALID = 1, /* a file is invalid or unreadable */
	EXIT_USAGE = 2,
};

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "sandbox-file.h"
#include "spec.h"

/* vmd validate [--json] [--default-backend NAME] [--sandboxes DIR] [TRUST OPTIONS] PATH... */
int verb_validate(int argc, char **argv);
int verb_daemon(int argc, char **argv);
int verb_status(int argc, char **argv);
int verb_plan(int argc, char **argv);
/* vmd console [--run-dir DIR] [--log] NAME */
int verb_console(int argc, char **argv);
/* vmd approve-deletions [--run-dir DIR] [NAME...] */
int verb_approve_deletions(int argc, char **argv);
/* vmd wait NAME... --for CONDITION [--timeout DURATION] [--run-dir DIR] [--sandboxes DIR] */
int verb_wait(int argc, char **argv);
/*
 * cli-approve.c, for the verbs that ask the daemon by a file and a SIGHUP: their options
 * (--run-dir DIR, --help) parsed into *run_dir; -1 to go on with argv + optind, or the
 * exit code (help shown). And the wait until the daemon took path (removed it), for
 * usec at most: whether it did.
 */
int cli_run_dir_options(int argc, char **argv, void (*help)(FILE *f), const char **run_dir);
bool cli_wait_taken(const char *path, uint64_t usec);
/* vmd wake [--run-dir DIR] NAME... */
int verb_wake(int argc, char **argv);
/* vmd events [--json] [--run-dir DIR] */
int verb_events(int argc, char **argv);

typedef struct json_t json_t;
/* Called for each event of the stream, then with NULL once a read's events are all given. */
typedef int (*EventsFn)(json_t *event, void *userdata);
/*
 * Follow the daemon's events.sock in run_dir until SIGINT or SIGTERM (EXIT_OK), or until
 * the daemon goes or cannot be reached (EXIT_INVALID, said on stderr as verb).
 */
int events_follow(const char *verb, const char *run_dir, EventsFn fn, void *userdata);

typedef struct ManagerConfig ManagerConfig;

/* The daemon's defaults: /etc/vmd/sandboxes, /run/vmd, /var/lib/vmd, qemu, 60 s, 2 s. */
void manager_config_defaults(ManagerConfig *c);

/*
 * The options vmd daemon and vmd plan share, by their getopt letters: s (--sandboxes),
 * r (--run-dir), S (--state-dir), b (--default-backend), o (--backend-override),
 * Q (--qemu-binary), A (--qemu-accel), C (--cloud-hypervisor-binary),
 * F (--firecracker-binary), J (--jailer), U (--jailer-uid), G (--jailer-gid),
 * B (--jailer-chroot-base), O (--allow-overcommit), and those of CLI_TRUST_OPTIONS.
 * 1 if c was one of them, 0 if not, -EINVAL (reported) for a bad value.
 */
int cli_manager_option(const char *verb, int c, const char *arg, ManagerConfig *config);
/*
 * Who may write the sandbox files, which vmd daemon, vmd plan and vmd validate judge
 * alike: u (--trusted-uid UID), w (--trusted-gid GID), each as often as needed.
 * 1 if c was one of them, 0 if not, -EINVAL (reported) for a bad value.
 */
int cli_trust_option(const char *verb, int c, const char *arg, Trust *trust);
/* After the options: what they say together (--jailer needs --jailer-uid and -gid). */
int cli_manager_options_check(const char *verb, const ManagerConfig *config);

/* Their getopt_long() entries, for the option tables of vmd daemon and vmd plan. */
/* One option a line, which clang-format would not leave alone. */
// clang-format off
#define CLI_TRUST_OPTIONS                                        \
	{ "trusted-uid", required_argument, NULL, 'u' },         \
	{ "trusted-gid", required_argument, NULL, 'w' }

#define CLI_MANAGER_OPTIONS                                      \
	{ "sandboxes", required_argument, NULL, 's' },           \
	{ "run-dir", required_argument, NULL, 'r' },             \
	{ "state-dir", required_argument, NULL, 'S' },           \
	{ "default-backend", required_argument, NULL, 'b' },     \
	{ "backend-override", required_argument, NULL, 'o' },    \
	{ "qemu-binary", required_argument, NULL, 'Q' },         \
	{ "qemu-accel", required_argument, NULL, 'A' },          \
	{ "cloud-hypervisor-binary", required_argument, NULL, 'C' }, \
	{ "firecracker-binary", required_argument, NULL, 'F' },  \
	{ "jailer", required_argument, NULL, 'J' },              \
	{ "jailer-uid", required_argument, NULL, 'U' },          \
	{ "jailer-gid", required_argument, NULL, 'G' },          \
	{ "jailer-chroot-base", required_argument, NULL, 'B' },  \
	{ "allow-overcommit", no_argument, NULL, 'O' },           \
	CLI_TRUST_OPTIONS
// clang-format on

/* A backend name from an option; prints the error for "vmd VERB". */
int parse_backend_arg(const char *verb, const char *arg, BackendKind *ret);
