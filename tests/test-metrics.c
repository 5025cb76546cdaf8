/* SPDX-License-Identifier: MIT */
/*
 * --metrics-file: Prometheus' text exposition format, as node_exporter's textfile
 * collector reads it. A small parser of that format (HELP and TYPE before a family's
 * samples, label values unescaped, values numbers) reads what the real daemon writes as a
 * sandbox lives: started, failing and recovering, stopped, removed; and what telemetry.c
 * writes of a name that needs escaping.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "manager-fixture.h"
#include "telemetry.h"

/* One sample: its name, its labels as "k=v,k=v" (unescaped, in order) and its value. */
typedef struct Sample {
	char name[128];
	char labels[512];
	double value;
} Sample;

typedef struct Metrics {
	Sample *samples;
	size_t n;
} Metrics;

static void metrics_done(Metrics *m)
{
	free(m->samples);
	*m = (Metrics){};
}

/* A summary's or histogram's samples belong to the family without the suffix. */
static bool family_of(const char *sample, const char *family)
{
	size_t n = strlen(family);

	return strncmp(sample, family, n) == 0 &&
	       (!sample[n] || streq(sample + n, "_sum") || streq(sample + n, "_count") ||
		streq(sample + n, "_bucket"));
}

/* A label value after its opening quote: unescaped into out; returns past its closing one. */
static const char *parse_value(const char *p, char **out, const char *line)
{
	for (; *p != '"'; p++) {
		if (!*p || *p == '\n')
			fail_msg("unterminated label value: %s", line);
		if (*p == '\\') {
			p++;
			if (*p == 'n')
				*(*out)++ = '\n';
			else if (*p == '\\' || *p == '"')
				*(*out)++ = *p;
			else
				fail_msg("bad escape \\%c: %s", *p, line);
		} else
			*(*out)++ = *p;
	}
	return p + 1;
}

/* Parse the text, failing the test on anything the format does not allow. */
static void metrics_parse(const char *text, Metrics *ret)
{
	_cleanup_free_ char *copy = strdup(text);
	char help[128] = "", type[128] = "", *save = NULL;
	Metrics m = {};

	assert_non_null(copy);
	assert_true(*text && text[strlen(text) - 1] == '\n');
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[128], kind[32], *end, *out;
		const char *p = line;
		Sample *s;
		int n = 0;

		if (sscanf(line, "# HELP %127s %n", name, &n) == 1 && n > 0 && line[n]) {
			snprintf(help, sizeof(help), "%s", name);
			continue;
		}
		if (sscanf(line, "# TYPE %127s %31s", name, kind) == 2) {
			if (!streq(name, help))
				fail_msg("TYPE without HELP before it: %s", line);
			if (!streq(kind, "gauge") && !streq(kind, "counter") &&
			    !streq(kind, "summary") && !streq(kind, "histogram"))
				fail_msg("unknown type: %s", line);
			snprintf(type, sizeof(type), "%s", name);
			continue;
		}
		if (*line == '#')
			fail_msg("a comment that is neither HELP nor TYPE: %s", line);
		m.samples = realloc(m.samples, (m.n + 1) * sizeof(Sample));
		s = &m.samples[m.n++];
		*s = (Sample){};
		n = (int)strspn(p,
				"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:");
		if (n == 0 || n >= (int)sizeof(s->name))
			fail_msg("bad metric name: %s", line);
		memcpy(s->name, p, (size_t)n);
		p += n;
		if (!streq(type, "") && !family_of(s->name, type))
			fail_msg("sample of a family without HELP and TYPE: %s", line);
		out = s->labels;
		if (*p == '{') {
			p++;
			while (*p != '}') {
				n = (int)strspn(p, "abcdefghijklmnopqrstuvwxyz_");
				if (n == 0 || p[n] != '=' || p[n + 1] != '"')
					fail_msg("bad label: %s", line);
				if (out != s->labels)
					*out++ = ',';
				memcpy(out, p, (size_t)n + 1);
				out += n + 1;
				p = parse_value(p + n + 2, &out, line);
				if (*p == ',')
					p++;
				else if (*p != '}')
					fail_msg("bad label list: %s", line);
			}
			p++;
		}
		*out = '\0';
		if (*p++ != ' ')
			fail_msg("no space before the value: %s", line);
		s->value = strtod(p, &end);
		if (end == p || *end || isnan(s->value))
			fail_msg("bad value: %s", line);
	}
	*ret = m;
}

/* The value of name{labels}, NAN if there is no such sample. */
static double value_of(const Metrics *m, const char *name, const char *labels)
{
	for (size_t i = 0; i < m->n; i++)
		if (streq(m->samples[i].name, name) && streq(m->samples[i].labels, labels))
			return m->samples[i].value;
	return NAN;
}

typedef struct Expect {
	const char *name, *labels;
	double want;
} Expect;

/* Every name{labels} of e (up to one without a name) has its value. */
static void expect_all(const Metrics *m, const Expect *e)
{
	for (; e->name; e++)
		if (value_of(m, e->name, e->labels) != e->want)
			fail_msg("%s{%s} is %g, not %g", e->name, e->labels,
				 value_of(m, e->name, e->labels), e->want);
}

static char *metrics_path(Fixture *f)
{
	return path_in(f->dir, "vmd.prom");
}

/* Wait until the metrics file at path has name{labels} == want (NAN: no such sample). */
static void wait_metric_at(const char *path, const char *name, const char *labels, double want)
{
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	for (;;) {
		_cleanup_free_ char *text = test_read_file(path, NULL);
		Metrics m = {};
		double v = NAN;

		if (text) {
			metrics_parse(text, &m);
			v = value_of(&m, name, labels);
			metrics_done(&m);
		}
		if ((isnan(want) && isnan(v)) || v == want)
			return;
		if (ms_now() > end)
			fail_msg("%s{%s} is %g, not %g; the file:\n%s", name, labels, v, want,
				 text ?: "(none)");
		usleep(50000);
	}
}

static void wait_metric(Fixture *f, const char *name, const char *labels, double want)
{
	_cleanup_free_ char *path = metrics_path(f);

	wait_metric_at(path, name, labels, want);
}

static Metrics read_metrics(Fixture *f)
{
	_cleanup_free_ char *path = metrics_path(f), *text = test_read_file(path, NULL);
	Metrics m = {};

	assert_non_null(text);
	metrics_parse(text, &m);
	return m;
}

static int setup(void **state)
{
	static const char *args[3] = { "--metrics-file" };
	Fixture *f;

	fixture_setup(state);
	f = *state;
	args[1] = metrics_path(f); /* leaked: one per test, for the daemon's argv */
	f->daemon_args = args;
	return 0;
}

static const char *WEB =
	"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n";
static const char *WEB_STOPPED =
	"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n  state: stopped\n";
static const char *FLAKY =
	"apiVersion: vmd/v1\nkind: Sandbox\nmetadata: {labels: {noop.vmd/fail-start: \"1\"}}\n"
	"spec:\n  backend: noop\n  memory: 64Mi\n";

/* The file's values follow a sandbox's life. */
static void test_metrics_follow_a_life(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *web = path_in(f->sb, "web.yaml");
	double passes, transition;
	Metrics m;

	fixture_put(f, "web", WEB);
	fixture_put(f, "flaky", FLAKY);
	fixture_start_daemon(f);

	wait_metric(f, "vmd_sandbox_phase", "sandbox=web,phase=Running", 1);
	wait_metric(f, "vmd_sandbox_ready", "sandbox=web", 1);
	/* A start that failed once, then went through after its backoff. */
	wait_metric(f, "vmd_sandbox_phase", "sandbox=flaky,phase=Running", 1);
	m = read_metrics(f);
	expect_all(&m, (const Expect[]){
			       { "vmd_sandbox_phase", "sandbox=web,phase=Pending", 0 },
			       { "vmd_actions_total", "action=start,result=failed", 1 },
			       { "vmd_actions_total", "action=start,result=done", 2 },
			       { "vmd_sandbox_action_duration_seconds_count",
				 "sandbox=flaky,action=start", 2 },
			       { "vmd_sandbox_restarts_total", "sandbox=web", 0 },
			       {},
		       });
	assert_true(value_of(&m, "vmd_sandbox_action_duration_seconds_sum",
			     "sandbox=web,action=start") >= 0);
	passes = value_of(&m, "vmd_passes_total", "kind=event");
	assert_true(passes >= 1);
	assert_true(value_of(&m, "vmd_pass_duration_seconds_count", "kind=event") == passes);
	assert_true(value_of(&m, "vmd_last_pass_timestamp_seconds", "") >=
		    value_of(&m, "vmd_start_time_seconds", ""));
	transition = value_of(&m, "vmd_sandbox_last_transition_timestamp_seconds", "sandbox=web");
	assert_true(transition >= value_of(&m, "vmd_start_time_seconds", ""));
	metrics_done(&m);

	/* Stopped by its file: the phase moves, a stop is counted and timed. */
	fixture_put(f, "web", WEB_STOPPED);
	wait_metric(f, "vmd_sandbox_phase", "sandbox=web,phase=Stopped", 1);
	m = read_metrics(f);
	expect_all(&m, (const Expect[]){
			       { "vmd_sandbox_phase", "sandbox=web,phase=Running", 0 },
			       { "vmd_sandbox_ready", "sandbox=web", 1 },
			       { "vmd_actions_total", "action=stop,result=done", 1 },
			       { "vmd_sandbox_action_duration_seconds_count",
				 "sandbox=web,action=stop", 1 },
			       {},
		       });
	assert_true(value_of(&m, "vmd_sandbox_last_transition_timestamp_seconds", "sandbox=web") >=
		    transition);
	assert_true(value_of(&m, "vmd_passes_total", "kind=event") > passes);
	metrics_done(&m);

	/* Its file removed: gone from the file once vmd forgets it. */
	assert_int_equal(unlink(web), 0);
	wait_metric(f, "vmd_sandbox_ready", "sandbox=web", NAN);
	m = read_metrics(f);
	assert_true(value_of(&m, "vmd_sandbox_ready", "sandbox=flaky") == 1);
	metrics_done(&m);
}

static unsigned count(const char *haystack, const char *needle)
{
	unsigned n = 0;

	for (const char *p = haystack; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static bool ready_status(json_t *s, const void *arg _unused_)
{
	return s && streq(status_condition(s, "Ready", "status"), "True");
}

/*
 * Wait until <run>/daemon.json was written twice: the first write is in the first pass
 * (it counts 1), any later one counts more.
 */
static void wait_rewritten(Fixture *f)
{
	_cleanup_free_ char *path = path_in(f->run, "daemon.json");
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	for (;;) {
		json_t *j = json_load_file(path, 0, NULL);
		json_int_t passes = json_integer_value(json_object_get(j, "eventPasses"));

		json_decref(j);
		if (passes >= 2)
			return;
		if (ms_now() > end)
			fail_msg("%s was not written again", path);
		usleep(50000);
	}
}

/*
 * A metrics file that cannot be written (its folder missing) is said once, however many
 * writes fail; and once it can, that it is written again.
 */
static void test_metrics_unwritable(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *dir = path_in(f->dir, "textfile"), *file = path_in(dir, "vmd.prom"),
			    *log = NULL;
	const char *args[] = { "--metrics-file", file, NULL };

	f->daemon_args = args;
	fixture_put(f, "flaky", FLAKY);
	fixture_start_daemon(f);
	/*
	 * Its failed start and the one after its 1 s backoff: passes more than 1 s apart, so
	 * two writes at least, which daemon.json (written with the metrics) shows.
	 */
	json_decref(fixture_wait_status(f, "flaky", ready_status, NULL));
	wait_rewritten(f);
	log = test_read_file(f->log, NULL);
	assert_non_null(log);
	assert_int_equal(count(log, "cannot write "), 1);
	assert_non_null(strstr(log, "/textfile/vmd.prom; trying again after the next passes: "
				    "No such file or directory"));

	assert_int_equal(mkdir(dir, 0755), 0);
	fixture_put(f, "web", WEB);
	wait_metric_at(file, "vmd_sandbox_ready", "sandbox=web", 1);
	free(log);
	log = test_read_file(f->log, NULL);
	assert_non_null(strstr(log, "/textfile/vmd.prom is written again"));
}

/* A name that needs the format's escapes comes back whole from the parser. */
static void test_metrics_escaping(void **state)
{
	ManagerFixture *f = *state;
	const char *odd = "a\"b\\c\nd";
	_cleanup_free_ char *text = NULL, *labels = NULL;
	size_t len;
	Metrics m;

	assert_non_null(manager_sandbox(f->m, odd, true));
	assert_int_equal(telemetry_metrics(f->m, &text, &len), 0);
	assert_int_equal(strlen(text), len);
	assert_non_null(strstr(text, "vmd_sandbox_ready{sandbox=\"a\\\"b\\\\c\\nd\"} 0\n"));
	metrics_parse(text, &m);
	assert_true(asprintf(&labels, "sandbox=%s", odd) > 0);
	assert_true(value_of(&m, "vmd_sandbox_ready", labels) == 0);
	metrics_done(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_metrics_escaping, manager_fixture_setup_read_only,
						manager_fixture_teardown),
		cmocka_unit_test_setup_teardown(test_metrics_follow_a_life, setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_metrics_unwritable, fixture_setup,
						fixture_teardown),
	};

	return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
