/* SPDX-License-Identifier: MIT */
#include "helpers.h"
#include "spec-json.h"
#include "spec-yaml.h"

/* Every good file survives spec -> JSON -> spec unchanged. */
static void test_round_trip(void **state _unused_)
{
	const char *files[] = { "tests/spec/good/everything.yaml", "tests/spec/good/quoted.yaml",
				"tests/spec/good/comma-path.yaml", "examples/api-1.yaml",
				"tests/spec/good/networks.yaml",   "tests/spec/good/images.yaml" };
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
		for (size_t k = 0; k < a->n_disks; k++) {
			const DiskSpec *x = &a->disks[k], *y = &b->disks[k];

			assert_true(streq_ptr(x->path, y->path) && streq_ptr(x->image, y->image));
			assert_int_equal(x->image_format, y->image_format);
			assert_int_equal(x->size, y->size);
			assert_int_equal(x->ephemeral, y->ephemeral);
		}
		assert_int_equal(a->delete_disks_on_remove, b->delete_disks_on_remove);
		/* A change anywhere is seen. */
		b->vcpus++;
		assert_false(spec_equal(a, b));
	}
}

/* What a disk from an image says survives; its copy's path, once a backend named it, too. */
static void test_images(void **state _unused_)
{
	const SpecLoadOptions opts = { .default_backend = BACKEND_QEMU };
	_cleanup_(diag_list_done) DiagList diags = {};
	_cleanup_(sandbox_spec_freep) SandboxSpec *a = NULL, *b = NULL;
	json_auto_t *j = NULL;

	assert_int_equal(spec_load_file(test_src("tests/spec/good/images.yaml"), &opts, &a, &diags),
			 0);
	assert_true(a->delete_disks_on_remove);
	assert_string_equal(a->disks[0].image, "/etc/passwd");
	assert_null(a->disks[0].path);
	assert_int_equal(a->disks[0].image_format, DISK_FORMAT_RAW);
	assert_int_equal(a->disks[0].size, 10ull << 30);
	assert_int_equal(a->disks[1].size, 0);
	assert_true(a->disks[1].ephemeral);
	a->disks[0].path = strdup("/var/lib/vmd/disks/images/root.qcow2");
	j = spec_to_json(a);
	assert_int_equal(spec_from_json(j, &b), 0);
	assert_true(spec_equal(a, b));
	assert_string_equal(b->disks[0].path, "/var/lib/vmd/disks/images/root.qcow2");
	b->disks[1].ephemeral = false;
	assert_false(spec_equal(a, b));
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
		cmocka_unit_test(test_images),
		cmocka_unit_test(test_refuses_garbage),
	};

	return cmocka_run_group_tests_name("spec-json", tests, NULL, NULL);
}
