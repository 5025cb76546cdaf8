/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * A sandbox's readiness: and liveness: probes as its file states them (docs/sandbox-file.md):
 * one of console (a line of the serial console matching a POSIX ERE), tcp (a connect to a
 * port of the guest), http (a GET answered 2xx) or agent (the guest agent answers a
 * guest-ping; guestAgent: true), with how long, how often, how many failures. The probing
 * itself is probe.c's.
 */

typedef enum ProbeKind {
	PROBE_NONE, /* no probe: Ready when the VMM runs the guest */
	PROBE_CONSOLE,
	PROBE_TCP,
	PROBE_HTTP,
	PROBE_AGENT,
	_PROBE_KIND_MAX,
} ProbeKind;

extern const char *const probe_kind_table[_PROBE_KIND_MAX];

#define PROBE_TIMEOUT_DEFAULT_MS (5ull * 60 * 1000)
#define PROBE_PERIOD_DEFAULT_MS (2ull * 1000)
#define PROBE_FAILURE_THRESHOLD_DEFAULT 3u
#define PROBE_DURATION_MAX_MS (24ull * 3600 * 1000)
#define PROBE_FAILURE_THRESHOLD_MAX 1000u
#define PROBE_MATCH_MAX 1024
#define PROBE_MATCH_REPEAT_MAX 1000u /* counted repetitions, multiplied */
#define PROBE_HTTP_PATH_MAX 1024

typedef struct ProbeSpec {
	ProbeKind kind;
	char *match;   /* console: a POSIX extended regular expression */
	uint16_t port; /* tcp, http: the guest's port */
	char *path;    /* http: "/healthz" unless given */
	uint64_t timeout_ms;
	uint64_t period_ms;
	unsigned failure_threshold;
} ProbeSpec;

void probe_spec_done(ProbeSpec *p);
/* The defaults of a probe the file gives, its kind apart. */
void probe_spec_defaults(ProbeSpec *p);

/* The JSON of a probe (NULL for PROBE_NONE: no key), and back; -EINVAL for a bad one. */
json_t *probe_spec_to_json(const ProbeSpec *p);
int probe_spec_from_json(const json_t *j, ProbeSpec *ret);

/*
 * A tcp or http probe needs a way to the guest: a network whose address vmd learns, or a
 * user network forwarding a host port to the probe's port. Every backend's rule.
 */
struct SandboxSpec;
struct SpecCheck;
void probe_spec_check(const struct SandboxSpec *spec, struct SpecCheck *check);

/* spec-yaml.c's decoder of readiness: and liveness: (a ProbeSpec at f->offset). */
struct Decoder;
struct YNode;
struct Field;
void decode_probe(struct Decoder *d, const struct YNode *n, const struct Field *f, void *obj);
