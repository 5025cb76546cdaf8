/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the tests that run the real `vmd daemon` on a real VMM (or a VMM simulator) share:
 * a directory per test, the daemon started and killed, sandbox files written as GitOps
 * tools write them, waits on the console and on status.json. Every VMM the daemon
 * started is killed by the pid vmd recorded in teardown, and by a guard process should
 * the test binary itself die. Waits are bounded: a failure, never a speed claim.
 *
 * The VMM simulators (tests/sim/) append every request the real VMM would refuse to
 * $VMD_SIM_VIOLATIONS, which the daemon passes on to them: fixture_setup points it into
 * the test's directory and fixture_teardown fails the test if anything landed there.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "helpers.h"
#include "macro.h"

#define FIXTURE_WAIT_MS 120000 /* a TCG guest on a loaded two-core machine */

typedef struct Fixture {
	char *dir, *sb, *run, *state, *log;
	pid_t pid;   /* the daemon */
	pid_t guard; /* kills what the daemon started if this binary dies */
	int guard_fd;
	const char *const *daemon_args; /* more options for vmd daemon, NULL-terminated */
	const char *notify_socket;	/* NOTIFY_SOCKET for the daemon, or NULL */
	uint64_t watchdog_usec;		/* WATCHDOG_USEC for the daemon (with notify_socket) */
	void (*before_exec)(void);	/* run in the daemon's process before its exec, or NULL */
	char *violations;		/* $VMD_SIM_VIOLATIONS */
	char *requests;			/* $VMD_SIM_REQUESTS: every request a simulator took */
	TestNotify notify;		/* fixture_listen_notify() */
	char *notify_path;		/* its socket, or NULL */
} Fixture;

/*
 * cmocka setup and teardown: one Fixture in *state. fixture_setup_notify also binds the
 * NOTIFY_SOCKET (fixture_listen_notify). Teardown unmounts what a test mounted on the
 * state dir (a small tmpfs in a mount namespace of the test's own), if it did.
 */
int fixture_setup(void **state);
int fixture_setup_notify(void **state);
int fixture_teardown(void **state);

/* Start vmd daemon on f's directories (--grace 0.3, logs to f->log), and stop it. */
void fixture_start_daemon(Fixture *f);
void fixture_stop_daemon(Fixture *f, int sig);

/*
 * Bind a NOTIFY_SOCKET in f's directory for the daemons started after this, and wait for
 * what they tell it: a message containing what, after the last one expected.
 */
void fixture_listen_notify(Fixture *f);
void fixture_expect_notify(Fixture *f, const char *what);
/* Let time pass (ms), reading what comes on the notify socket meanwhile, if there is one. */
void fixture_pass_time(Fixture *f, unsigned ms);

/* SIGKILL every VMM vmd recorded under run that still runs in it (checked by cmdline). */
void fixture_kill_vmms(const char *run);

/* dir/<printf> ; the caller frees it. */
char *path_in(const char *dir, const char *fmt, ...) _printf_(2, 3);
uint64_t ms_now(void);

/* Write sandbox name's file with text, the way GitOps tools do (rename over it). */
void fixture_put(Fixture *f, const char *name, const char *text);

/*
 * A sandbox file for a VMM simulator: backend, a stand-in kernel (<dir>/vmlinux, made if
 * missing: the simulators only check it exists), then the spec lines in extra.
 */
void fixture_put_sim(Fixture *f, const char *name, const char *backend, const char *extra);
/*
 * The forced stop every simulator test makes: a guest deaf to the graceful stop
 * (sim.deaf=1), whose file is removed, shows marker on its console and is forced off
 * after its 1 s stopTimeout.
 */
void fixture_forced_stop(Fixture *f, const char *backend, const char *marker);
/* The uid and gid the tests' jailed Firecrackers run as. */
#define FIXTURE_JAIL_UID "4242"
/*
 * The daemon runs the Firecracker (simulator) binary through jailer, as uid and gid
 * FIXTURE_JAIL_UID, jails under base. One fixture's at a time: the arguments are static.
 */
void fixture_jailed(Fixture *f, const char *firecracker, const char *jailer, const char *base);

/*
 * For daemons whose VMMs run as uid:uid (--vmm-user): the simulators append to
 * f->violations and f->requests as that uid, so those are its, in f->dir made 0711 (it
 * may go through, not list; every other file keeps its own mode).
 */
void fixture_vmm_user(Fixture *f, unsigned uid);

/* Type text into name's console, as vmd console does, through the daemon's console.sock. */
void fixture_console_type(Fixture *f, const char *name, const char *text);
/* name's console.log, "" if none; the caller frees it. */
char *fixture_console(Fixture *f, const char *name);
/* Wait until name's console shows needle after offset; returns where it ends. */
size_t fixture_wait_console(Fixture *f, const char *name, const char *needle, size_t offset);

json_t *fixture_status(Fixture *f, const char *name);
typedef bool (*StatusPred)(json_t *s, const void *arg);
/* How many requests the simulators took that start with prefix ("PUT /api/v1/vm.boot"). */
unsigned fixture_count_requests(Fixture *f, const char *prefix);

/* The rest of the last console line of name that starts with prefix, "" if none. */
char *fixture_last_line(Fixture *f, const char *name, const char *prefix);
/* Wait until that line is want. */
void fixture_wait_line(Fixture *f, const char *name, const char *prefix, const char *want);

/* Wait until name's status.json satisfies pred; the caller json_decref()s it. */
json_t *fixture_wait_status(Fixture *f, const char *name, StatusPred pred, const void *arg);
/*
 * Wait for needle in the daemon's log. A restarted daemon finds the status.json of the one
 * before it: what it did itself since (re-adopted a VM) is told by its log.
 */
void fixture_wait_log(Fixture *f, const char *needle);
/* Wait until name's condition type has status, and reason and a part message (unless NULL). */
json_t *fixture_wait_cond(Fixture *f, const char *name, const char *type, const char *status,
			  const char *reason, const char *message);

/* A listener on 127.0.0.1, on a port the kernel picks (its port in *port), or on port. */
int fixture_listen_loopback(uint16_t *port);
int fixture_listen_loopback_on(uint16_t port);

/* Predicates: phase is arg; phase arg and Ready; no status; Running after arg restarts;
 * Failed with arg in lastError and a retry planned. */
bool phase_is(json_t *s, const void *arg);
bool ready(json_t *s, const void *arg);
bool absent(json_t *s, const void *arg);
/*
 * No status, and path gone too (arg: its run dir, its disks' dir). vmd removes status.json
 * first and the dir last (sandbox_remove_status): absent alone is a removal begun.
 */
bool gone_with(json_t *s, const void *path);
bool restarted(json_t *s, const void *arg);
bool failing(json_t *s, const void *arg);
pid_t pid_of(json_t *s);
/*
 * A qemu-img first on the PATH of the daemons started after this (f->before_exec): it
 * writes "torn" into its last argument (the file it would make), its pid into
 * <dir>/qemu-img.pid, and stops itself (SIGSTOP), never to do its work.
 */
void fixture_stall_qemu_img(Fixture *f);
/* The pid of the stalled qemu-img, once it wrote it (the pid file is removed for the next). */
pid_t fixture_wait_stalled(Fixture *f);
/* Wait until pid is gone (not even a zombie); killed, and the test failed, if it lingers. */
void fixture_wait_gone(pid_t pid);
/* Member key of disk i in status s ("path", "image"...), NULL if it has none. */
const char *status_disk(json_t *s, size_t i, const char *key);
/* Wait until name is Running and Ready; the pid of its VMM. */
pid_t fixture_running(Fixture *f, const char *name);

/* More predicates: ConfigValid False; ConfigValid True; arg disks, the generation observed;
 * generation and observedGeneration both arg. */
bool config_invalid(json_t *s, const void *arg);
bool config_valid(json_t *s, const void *arg);
bool disks_are(json_t *s, const void *arg);
bool generation_settled(json_t *s, const void *arg);

/* How often needle occurs in haystack. */
unsigned count_in(const char *haystack, const char *needle);

/* The tests of the daemon itself run it on the noop backend. */
#define FIXTURE_NOOP_SPEC                                                                          \
	"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n"
/* Valid YAML that the firecracker backend refuses (3 vCPUs, at line 7, column 10), and the
 * error vmd gives for it as the file web.yaml. */
extern const char FIXTURE_FC_3_VCPUS[], FIXTURE_FC_3_VCPUS_ERROR[];

/*
 * Write name's file with FIXTURE_NOOP_SPEC, start the daemon and wait until name runs (and,
 * with a notify socket, for READY=1); its startedAt, which the caller frees.
 */
char *fixture_start_noop(Fixture *f, const char *name);
/* The state the noop backend keeps for name's VM ("running", "paused"), NULL if none. */
char *fixture_noop_state(Fixture *f, const char *name);
/* What noop's state file says of the integer key for name's VM: -1 if none. */
long long fixture_noop_field(Fixture *f, const char *name, const char *key);

typedef struct SandboxSpec SandboxSpec;
/* A noop sandbox of 64 MiB with lines (under spec:) added, for a planner's row; fails the test if invalid. */
SandboxSpec *fixture_spec_of(const char *lines);
