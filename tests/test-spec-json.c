/* SPDX-License-Identifier: MIT */
#include "helpers.h"
#include "spec-json.h"
#include "spec-yaml.h"

/* Every good file survives spec -> JSON -> spec unchanged. */
static void test_round_trip(void **state _unused_)
{
	const char *files[] = { "tests/spec/good/everything.yaml", "tests/spec/good/quoted.yaml",
				"tests/spec/good/comma-path.yaml", "examples/api-1.yaml",
				"tests/spec/good/networks.yaml",   "tests/spec/good/probes.yaml" };
	const SpecLoadOptions opts = { .default_backend = BACKEND_QEMU };

	for (size_t i = 0; i < ELEMENTSOF(files); i++) {
		_cleanup_(diag_list_done) DiagList diags = {};
		_cleanup_(sandbox_spec_freep) SandboxSpec *a = NULL, *b = NULL;
		json_auto_t *j = NULL;

		assert_int_equal(spec_load_file(test_src(files[i]), &opts, &a, &diags), 0);
		j = spec_to_json(a);
		assert_non_null(j);
		assert_int_equal(spec_from_json(j, &b), 0);
		assert_true(spec_equal(a, b));
		assert_string_equal(a->name, b->name);
		assert_int_equal(a->n_disks, b->n_disks);
		assert_int_equal(a->n_networks, b->n_networks);
		for (size_t k = 0; k < a->n_networks; k++) {
			/* mac_derived says where a MAC came from, not what runs: it is not kept. */
			assert_string_equal(a->networks[k].tap, b->networks[k].tap);
			assert_memory_equal(a->networks[k].mac, b->networks[k].mac, 6);
			assert_int_equal(a->networks[k].type, b->networks[k].type);
		}
		assert_int_equal(a->readiness.kind, b->readiness.kind);
		assert_string_equal(a->readiness.match ?: "", b->readiness.match ?: "");
		assert_string_equal(a->liveness.path ?: "", b->liveness.path ?: "");
		assert_int_equal(a->liveness.period_ms, b->liveness.period_ms);
		assert_int_equal(a->liveness.failure_threshold, b->liveness.failure_threshold);
		/* A change anywhere is seen, a probe's too. */
		b->liveness.failure_threshold++;
		assert_true(spec_equal(a, b) == (a->liveness.kind == PROBE_NONE));
		b->liveness.failure_threshold--;
		b->vcpus++;
		assert_false(spec_equal(a, b));
	}
}

static void test_refuses_garbage(void **state _unused_)
{
	json_auto_t *j = json_pack("{s:s, s:s}", "name", "x", "backend", "kvm");
	SandboxSpec *s = NULL;

	assert_int_equal(spec_from_json(j, &s), -EINVAL);
	assert_int_equal(spec_from_json(NULL, &s), -EINVAL);
	assert_null(s);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_refuses_garbage),
	};

	return cmocka_run_group_tests_name("spec-json", tests, NULL, NULL);
}
