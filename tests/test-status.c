/* SPDX-License-Identifier: MIT */
/*
 * status.c on its own, on a read-only manager (no loop, no lock) over temporary
 * directories: the STATUS= line kept up to date as sandboxes change phase, fail, come
 * and go.
 */
#include <stdio.h>
#include <sys/stat.h>

#include "helpers.h"
#include "manager-fixture.h"
#include "spec-yaml.h"

static SandboxSpec *spec_of(const char *name, const char *yaml)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	_cleanup_free_ char *path = NULL;
	const SpecLoadOptions opts = { .default_backend = BACKEND_NOOP };
	SandboxSpec *s = NULL;

	assert_true(asprintf(&path, "/etc/vmd/sandboxes/%s.yaml", name) > 0);
	assert_int_equal(spec_load_buffer(path, yaml, strlen(yaml), &opts, &s, &diags), 0);
	return s;
}

/*
 * What STATUS= must say, counted over every sandbox as vmd once did after each pass: the
 * sandboxes per phase, and the failing one (Failed, or its file refused) with the
 * smallest name. Messages here are short and printable: the line shows them as they are.
 */
static void expected_line(Manager *m, char *line, size_t size)
{
	unsigned counts[_PHASE_MAX] = {};
	const Sandbox *first = NULL;
	size_t o;
	void *v;

	for (size_t i = 0; hashmap_next(m->sandboxes, &i, &v);) {
		const Sandbox *sb = v;
		bool is_failing = sb->status.phase == PHASE_FAILED || sb->config_error;

		counts[sb->status.phase]++;
		if (is_failing && (!first || strcmp(sb->name, first->name) < 0))
			first = sb;
	}
	o = (size_t)snprintf(line, size, "%zu sandbox%s", hashmap_size(m->sandboxes),
			     hashmap_size(m->sandboxes) == 1 ? "" : "es");
	for (Phase p = 0; p < _PHASE_MAX; p++)
		if (counts[p] > 0)
			o += (size_t)snprintf(line + o, size - o, ", %u %s", counts[p],
					      phase_to_string(p));
	if (first)
		snprintf(line + o, size - o, "; first failing: %s: %s", first->name,
			 first->config_error ?: first->last_error ?: "failed");
}

/* Put sb in one of a few situations, each giving a phase, and update its status. */
static void set_situation(ManagerFixture *f, Sandbox *sb, unsigned k)
{
	const Plan plan = {};

	sb->observe_failed = false;
	sb->failures = 0;
	sb->observed = (VmObserved){};
	free(sb->path);
	sb->path = k == 2 ? NULL : strdup("/etc/vmd/sandboxes/x.yaml");
	if (!sb->desired)
		sb->desired = spec_of(sb->name,
				      "apiVersion: vmd/v1\nkind: Sandbox\nspec: {memory: 64Mi}\n");
	switch (k) {
	case 0:
		sb->observed.state = VM_RUNNING; /* Running */
		break;
	case 1:
		sb->observed.state = VM_PAUSED; /* Paused */
		break;
	case 3:
		sb->failures = 1; /* Failed */
		break;
	case 4:
		sb->observed.state = VM_EXITED; /* Failed: it exited with 1 */
		sb->observed.exit_status = 1;
		break;
	case 5:
		sb->observe_failed = true; /* Unknown */
		break;
	default:
		break; /* 2: Stopped, its file gone; 6: Pending */
	}
	sandbox_update_status(f->m, sb, &plan);
}

/*
 * STATUS= kept up to date without counting over all sandboxes: after each of many random
 * changes (a phase, a refused file, an error, a sandbox dropped, created or renamed) it
 * says what a count over every sandbox says.
 */
static void test_status_line(void **state)
{
	ManagerFixture *f = *state;
	char want[1024], name[32];
	unsigned seed = 7;

	for (int i = 0; i < 3000; i++) {
		unsigned r = rand_r(&seed), op = r % 8, k = (r / 8) % 40;
		Sandbox *sb;

		snprintf(name, sizeof(name), "sb-%02u", k);
		sb = manager_sandbox(f->m, name, op < 2);
		if (!sb)
			continue;
		switch (op) {
		case 0: /* created (or there already): its first status, or none yet */
		case 1:
		case 2:
			if (r % 3)
				set_situation(f, sb, (r / 320) % 7);
			break;
		case 3: /* its file refused, or valid again */
			free(sb->config_error);
			sb->config_error = (r / 320) % 2 ? NULL : strdup("refused");
			sb->config_reason = sb->config_error ? "InvalidConfig" : NULL;
			set_situation(f, sb, (r / 640) % 7);
			break;
		case 4: /* an error, shown once it is failing */
			free(sb->last_error);
			sb->last_error = (r / 320) % 2 ? NULL : strdup("start failed: boom");
			set_situation(f, sb, (r / 640) % 7);
			break;
		case 5: /* dropped */
			manager_drop_sandbox(f->m, sb);
			break;
		default: { /* renamed: gone under its name, back under another */
			unsigned situation = (r / 320) % 7;

			manager_drop_sandbox(f->m, sb);
			snprintf(name, sizeof(name), "sb-%02u", (k + 17) % 40);
			sb = manager_sandbox(f->m, name, true);
			assert_non_null(sb);
			set_situation(f, sb, situation);
			break;
		}
		}
		manager_notify_status(f->m);
		expected_line(f->m, want, sizeof(want));
		if (!streq(f->m->notified_status, want))
			fail_msg("after change %d: STATUS=%s, not %s", i, f->m->notified_status,
				 want);
	}
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_status_line, manager_fixture_setup_read_only,
						manager_fixture_teardown),
	};

	return cmocka_run_group_tests_name("status", tests, NULL, NULL);
}
