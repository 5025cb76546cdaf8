/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <regex.h>
#include <stddef.h>
#include <stdio.h>

#include "probe-spec.h"
#include "spec-check.h"
#include "spec.h"
#include "yaml-decode.h"

const char *const probe_kind_table[_PROBE_KIND_MAX] = {
	[PROBE_NONE] = "none", [PROBE_CONSOLE] = "console", [PROBE_TCP] = "tcp",
	[PROBE_HTTP] = "http", [PROBE_AGENT] = "agent",
};

void probe_spec_done(ProbeSpec *p)
{
	free(p->match);
	free(p->path);
	*p = (ProbeSpec){};
}

void probe_spec_defaults(ProbeSpec *p)
{
	p->timeout_ms = PROBE_TIMEOUT_DEFAULT_MS;
	p->period_ms = PROBE_PERIOD_DEFAULT_MS;
	p->failure_threshold = PROBE_FAILURE_THRESHOLD_DEFAULT;
}

/*
 * How many times a pattern's counted repetitions ({n}, {n,}, {n,m}) repeat, multiplied:
 * glibc's regcomp unrolls them, so that ((a{255}){255}){255} takes seconds and gigabytes
 * to compile, in the daemon's loop. Escaped braces and those of bracket expressions are
 * characters, not counts. Saturates at UINT64_MAX.
 */
static uint64_t repetitions(const char *re)
{
	uint64_t total = 1;

	for (const char *c = re; *c; c++) {
		uint64_t lo = 0, hi = 0;
		char *end;

		if (*c == '\\' && c[1]) {
			c++;
			continue;
		}
		if (*c == '[') { /* to its ']', which may come first: []a] */
			c += c[1] == '^' ? 2 : 1;
			if (*c == ']')
				c++;
			while (*c && *c != ']')
				c++;
			if (!*c)
				break;
			continue;
		}
		if (*c != '{' || !isdigit((unsigned char)c[1]))
			continue;
		lo = strtoull(c + 1, &end, 10);
		hi = lo;
		if (*end == ',')
			hi = isdigit((unsigned char)end[1]) ? strtoull(end + 1, &end, 10) : lo + 1;
		hi = MAX(lo, hi);
		if (mul_u64(total, MAX(hi, 1ull), &total) < 0)
			return UINT64_MAX;
	}
	return total;
}

/* glibc takes \\1 in an ERE too: a back-reference, which regexec matches by backtracking. */
static bool has_backreference(const char *re)
{
	for (const char *c = re; *c; c++)
		if (*c == '\\' && c[1]) {
			if (c[1] >= '1' && c[1] <= '9')
				return true;
			c++;
		}
	return false;
}

/* A console match is compiled as the file is read: a bad one is the file's error. */
static void decode_match(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	ProbeSpec *p = obj;
	char err[160];
	regex_t re;
	int r;

	decode_string(d, n, f, obj);
	if (!p->match)
		return;
	if (has_backreference(p->match)) {
		decode_error(
			d, n,
			"a back-reference (\\1 to \\9) is not allowed: matching one can take exponential time on a line");
		free(p->match);
		p->match = NULL;
		return;
	}
	if (repetitions(p->match) > PROBE_MATCH_REPEAT_MAX) {
		decode_error(
			d, n,
			"its counted repetitions ({n}, {n,m}) repeat more than %u times together (their counts multiplied): it would take too long to compile; use fewer, or + and *",
			PROBE_MATCH_REPEAT_MAX);
		free(p->match);
		p->match = NULL;
		return;
	}
	r = regcomp(&re, p->match, REG_EXTENDED | REG_NOSUB);
	if (r != 0) {
		(void)regerror(r, &re, err, sizeof(err));
		decode_error(d, n, "not a POSIX extended regular expression: %s", err);
		free(p->match);
		p->match = NULL;
		return;
	}
	regfree(&re);
}

static void decode_probe_port(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	uint64_t v;

	if (decode_uint_value(d, n, f, &v))
		((ProbeSpec *)obj)->port = (uint16_t)v;
}

static void decode_http_path(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	ProbeSpec *p = obj;
	char buf[80];

	free(p->path);
	p->path = NULL;
	decode_string(d, n, f, obj);
	/* Into a request line as it is: no space, no control character, from the root. */
	if (p->path && (p->path[0] != '/' || strpbrk(p->path, " \t\r\n"))) {
		decode_error(
			d, n,
			"%s is not a path of a URL: expected one starting with '/', without spaces, such as /healthz",
			decode_show(n, buf));
		free(p->path);
		p->path = NULL;
	}
}

static void decode_threshold(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	uint64_t v;

	if (decode_uint_value(d, n, f, &v))
		((ProbeSpec *)obj)->failure_threshold = (unsigned)v;
}

static const Field console_fields[] = {
	{ "match", decode_match, offsetof(ProbeSpec, match), .required = true,
	  .max = PROBE_MATCH_MAX },
};

static const Field tcp_fields[] = {
	{ "port", decode_probe_port, 0, .required = true, .min = 1, .max = 65535 },
};

static const Field http_fields[] = {
	{ "port", decode_probe_port, 0, .required = true, .min = 1, .max = 65535 },
	{ "path", decode_http_path, offsetof(ProbeSpec, path), .max = PROBE_HTTP_PATH_MAX },
};

static const struct {
	const Field *fields;
	size_t n;
} kind_fields[_PROBE_KIND_MAX] = {
	[PROBE_CONSOLE] = { console_fields, ELEMENTSOF(console_fields) },
	[PROBE_TCP] = { tcp_fields, ELEMENTSOF(tcp_fields) },
	[PROBE_HTTP] = { http_fields, ELEMENTSOF(http_fields) },
	[PROBE_AGENT] = { NULL, 0 }, /* agent: {} */
};

/* console:, tcp:, http:, agent:: its kind, and its own fields. */
static void decode_kind(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	ProbeSpec *p = obj;
	ProbeKind k = (ProbeKind)f->min;

	p->kind = k;
	if (k == PROBE_HTTP && !p->path)
		p->path = strdup("/healthz");
	if (k == PROBE_HTTP && !p->path) {
		d->diags->error = -ENOMEM;
		return;
	}
	decode_fields(d, n, n, kind_fields[k].fields, kind_fields[k].n, obj);
}

static const Field probe_fields[] = {
	{ "console", decode_kind, 0, .min = PROBE_CONSOLE },
	{ "tcp", decode_kind, 0, .min = PROBE_TCP },
	{ "http", decode_kind, 0, .min = PROBE_HTTP },
	{ "agent", decode_kind, 0, .min = PROBE_AGENT },
	{ "timeout", decode_duration, offsetof(ProbeSpec, timeout_ms), .max = PROBE_DURATION_MAX_MS },
	{ "period", decode_duration, offsetof(ProbeSpec, period_ms), .max = PROBE_DURATION_MAX_MS },
	{ "failureThreshold", decode_threshold, 0, .min = 1, .max = PROBE_FAILURE_THRESHOLD_MAX },
};

static void refuse_zero(Decoder *d, const YNode *map, const char *field, uint64_t v)
{
	const YNode *n = ynode_map_get(map, field);
	size_t old;

	if (v > 0 || !n)
		return;
	old = decode_where_push(d, ".%s", field);
	decode_error(d, n, "must be more than 0, such as 2s");
	decode_where_pop(d, old);
}

void decode_probe(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	ProbeSpec *p = FIELD_AT(obj, f, ProbeSpec);
	const YNode *first = NULL;
	unsigned kinds = 0;
	char buf[80];

	if (n->type != YNODE_MAP) {
		decode_fields(d, n, n, probe_fields, ELEMENTSOF(probe_fields), p);
		return;
	}
	probe_spec_defaults(p);
	for (size_t i = 0; i < n->n_pairs; i++) {
		const YNode *key = n->pairs[i].key;

		if (!streq(key->value, "console") && !streq(key->value, "tcp") &&
		    !streq(key->value, "http") && !streq(key->value, "agent"))
			continue;
		if (kinds++ == 0) {
			first = key;
			continue;
		}
		decode_error(
			d, key,
			"a probe is one of console, tcp, http and agent: this one is %s already, remove %s",
			first->value, decode_show(key, buf));
	}
	if (kinds == 0)
		decode_error(
			d, n,
			"missing the kind of probe: one of console: {match: REGEX}, tcp: {port: N}, http: {port: N, path: /healthz}, agent: {}");
	decode_fields(d, n, n, probe_fields, ELEMENTSOF(probe_fields), p);
	refuse_zero(d, n, "timeout", p->timeout_ms);
	refuse_zero(d, n, "period", p->period_ms);
}

json_t *probe_spec_to_json(const ProbeSpec *p)
{
	json_t *j;

	if (p->kind == PROBE_NONE)
		return NULL;
	j = json_pack("{s:s, s:I, s:I, s:i}", "kind", probe_kind_table[p->kind], "timeoutMs",
		      (json_int_t)p->timeout_ms, "periodMs", (json_int_t)p->period_ms,
		      "failureThreshold", (int)p->failure_threshold);
	if (j && p->match && json_object_set_new(j, "match", json_string(p->match)) < 0)
		goto fail;
	if (j && p->port && json_object_set_new(j, "port", json_integer(p->port)) < 0)
		goto fail;
	if (j && p->path && json_object_set_new(j, "path", json_string(p->path)) < 0)
		goto fail;
	return j;
fail:
	json_decref(j);
	return NULL;
}

int probe_spec_from_json(const json_t *j, ProbeSpec *ret)
{
	ProbeSpec p = {};
	ssize_t k;
	json_int_t port;

	if (!j)
		return 0;
	k = string_table_lookup(probe_kind_table, _PROBE_KIND_MAX,
				json_string_value(json_object_get(j, "kind")));
	if (k <= PROBE_NONE)
		return -EINVAL;
	p.kind = (ProbeKind)k;
	p.timeout_ms = (uint64_t)json_integer_value(json_object_get(j, "timeoutMs"));
	p.period_ms = (uint64_t)json_integer_value(json_object_get(j, "periodMs"));
	p.failure_threshold = (unsigned)json_integer_value(json_object_get(j, "failureThreshold"));
	port = json_integer_value(json_object_get(j, "port"));
	if (port < 0 || port > 65535 || p.period_ms == 0 || p.failure_threshold == 0)
		return -EINVAL;
	p.port = (uint16_t)port;
	if ((p.kind == PROBE_CONSOLE) != !!json_is_string(json_object_get(j, "match")) ||
	    (IN_SET(p.kind, PROBE_TCP, PROBE_HTTP) && p.port == 0))
		return -EINVAL;
	if (json_object_get(j, "match"))
		p.match = strdup(json_string_value(json_object_get(j, "match")));
	if (json_is_string(json_object_get(j, "path")))
		p.path = strdup(json_string_value(json_object_get(j, "path")));
	if ((json_object_get(j, "match") && !p.match) || (json_object_get(j, "path") && !p.path)) {
		probe_spec_done(&p);
		return -ENOMEM;
	}
	*ret = p;
	return 0;
}

/* Whether a probe of port can reach the guest through net: its address, or a forward. */
static bool net_reaches(const NetSpec *net, uint16_t port)
{
	if (net->type != NET_USER)
		return true;
	for (size_t i = 0; i < net->n_ports; i++)
		if (net->ports[i].guest == port && net->ports[i].protocol == PORT_TCP)
			return true;
	return false;
}

void probe_spec_check(const SandboxSpec *spec, SpecCheck *check)
{
	const struct {
		const char *field;
		const ProbeSpec *p;
	} probes[] = { { "spec.readiness", &spec->readiness }, { "spec.liveness", &spec->liveness } };

	for (size_t i = 0; i < ELEMENTSOF(probes); i++) {
		const ProbeSpec *p = probes[i].p;
		char field[64];
		bool reached = false;

		if (p->kind == PROBE_AGENT && !spec->guest_agent) {
			snprintf(field, sizeof(field), "%s.agent", probes[i].field);
			spec_check_error(
				check, field,
				"asks the guest agent, which the sandbox has only with spec.guestAgent: true (qemu)");
			continue;
		}
		if (!IN_SET(p->kind, PROBE_TCP, PROBE_HTTP))
			continue;
		for (size_t k = 0; k < spec->n_networks && !reached; k++)
			reached = net_reaches(&spec->networks[k], p->port);
		if (reached)
			continue;
		snprintf(field, sizeof(field), "%s.%s.port", probes[i].field,
			 probe_kind_table[p->kind]);
		spec_check_error(
			check, field,
			"no network reaches guest port %u: give the sandbox a network, or forward a host port to guest port %u/tcp on its user network",
			(unsigned)p->port, (unsigned)p->port);
	}
}
