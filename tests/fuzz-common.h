/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the libFuzzer targets that read another process's words share: a scratch dir on
 * tmpfs, made once per process and emptied per input; a VM record that names the fuzzer
 * itself, so that adoption's identity check passes and its pidfd never fires; a bounded
 * run of a private event loop; and a check that stops the fuzzer with a message.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "backend.h"

/* The name of the sandbox every target plays with. */
#define FUZZ_NAME "fz"

/* A broken invariant: say which, and crash so that libFuzzer keeps the input. */
#define fuzz_check(cond)                                                                           \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fuzz_fail(__FILE__, __LINE__, #cond);                                      \
	} while (0)
_Noreturn void fuzz_fail(const char *file, int line, const char *what);

/* The process's scratch dir under /dev/shm (made at the first call, removed at exit). */
const char *fuzz_dir(void);
/* Empty it for the next input. */
void fuzz_dir_reset(void);
/* fuzz_dir()/rel, with its parent dirs. */
char *fuzz_path(const char *rel);
void fuzz_write(const char *rel, const void *data, size_t len);

/* Append p[0..n) to the buffer *buf of *len bytes. */
void fuzz_append(char **buf, size_t *len, const void *p, size_t n);

/* A spec of backend kind with two disks and two networks, as the loader makes it. */
SandboxSpec *fuzz_spec(BackendKind kind);

/* Make record's identity (pid, startTime, exe, bootId) that of pid, on this boot. */
void fuzz_record_identity(json_t *record, pid_t pid);
/* A vm.json for vmm in state, naming process pid and running spec (spec_to_json). */
json_t *fuzz_record(const char *vmm, const char *state, const SandboxSpec *spec, pid_t pid);

/* Turn e until done(userdata) says so; more than limit_usec is a hang, and fails. */
void fuzz_run_until(sd_event *e, bool (*done)(void *userdata), void *userdata, uint64_t limit_usec);
