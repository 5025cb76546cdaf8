/* SPDX-License-Identifier: MIT */
#include "helpers.h"
#include "spec-json.h"
#include "spec-yaml.h"

/* Every good file survives spec -> JSON -> spec unchanged. */
static void test_round_trip(void **state _unused_)
{
	const char *files[] = {
		"tests/spec/good/everything.yaml", "tests/spec/good/quoted.yaml",
		"tests/spec/good/comma-path.yaml", "examples/api-1.yaml",
		"tests/spec/good/networks.yaml",   "tests/spec/good/cloud-init-file.yaml",
		"tests/spec/good/images.yaml",	   "tests/spec/good/probes.yaml"
	};
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

/* cloudInit and credentials come back field by field, and a change to any is seen. */
static void test_provision_round_trip(void **state _unused_)
{
	const SpecLoadOptions opts = { .default_backend = BACKEND_QEMU };
	_cleanup_(diag_list_done) DiagList diags = {};
	_cleanup_(sandbox_spec_freep) SandboxSpec *a = NULL, *b = NULL, *e = NULL, *e2 = NULL;
	json_auto_t *j = NULL;
	const CloudInitSpec *c;

	assert_int_equal(
		spec_load_file(test_src("tests/spec/good/cloud-init.yaml"), &opts, &a, &diags), 0);
	j = spec_to_json(a);
	assert_non_null(j);
	assert_int_equal(spec_from_json(j, &b), 0);
	assert_true(spec_equal(a, b));
	assert_true(spec_provision_equal(a, b));
	c = b->cloud_init;
	assert_non_null(c);
	assert_string_equal(c->user_data, "#cloud-config\npackages: [htop]\n");
	assert_null(c->user_data_file);
	assert_int_equal(c->n_meta_data, 1);
	assert_string_equal(c->meta_data[0].key, "region");
	assert_string_equal(c->meta_data[0].value, "here");
	/* A mapping is kept as flow YAML: plain numbers and booleans as they were written. */
	assert_string_equal(
		c->network_config,
		"{\"version\": 2, \"ethernets\": {\"eth0\": {\"dhcp4\": true, \"match\": {\"name\": \"en*\"}, \"addresses\": [\"10.0.0.2/24\"]}}}\n");
	assert_int_equal(strv_length(c->ssh_keys), 1);
	assert_string_equal(c->ssh_keys[0], "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc user@host");
	assert_int_equal(strv_length(c->ssh_key_files), 1);
	assert_int_equal(b->n_credentials, 2);
	assert_string_equal(b->credentials[1].name, "with space;ok");
	assert_string_equal(b->credentials[1].from_file, "/etc/vmd/secrets/other");

	/* The planner's boot config: a changed user-data or credential is a change. */
	free(b->cloud_init->user_data);
	b->cloud_init->user_data = strdup("#cloud-config\n");
	assert_false(spec_provision_equal(a, b));
	assert_false(spec_equal(a, b));

	/* An empty cloudInit: still a seed, unlike none. */
	assert_int_equal(spec_load_file(test_src("tests/spec/good/cloud-init-empty.yaml"), &opts,
					&e, &diags),
			 0);
	assert_non_null(e->cloud_init);
	assert_int_equal(spec_copy(e, &e2), 0);
	assert_non_null(e2->cloud_init);
	e2->cloud_init = cloud_init_spec_free(e2->cloud_init);
	assert_false(spec_provision_equal(e, e2));
}

/* The hash of the files cloudInit names: the same for the same, new for a change, kept. */
static void test_files_hash(void **state _unused_)
{
	const SpecLoadOptions opts = { .default_backend = BACKEND_QEMU };
	char *dir = test_tmpdir(), text[1024], first[17];
	_cleanup_(sandbox_spec_freep) SandboxSpec *a = NULL, *b = NULL, *c = NULL, *d = NULL;
	_cleanup_(diag_list_done) DiagList diags = {};

	test_write_str(dir, "ud", "one");
	test_write_str(dir, "keys", "ssh-ed25519 AAAA");
	snprintf(text, sizeof(text),
		 "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  memory: 64Mi\n  kernel: /k\n"
		 "  cloudInit:\n    userDataFile: %s/ud\n    sshAuthorizedKeysFiles: [%s/keys]\n",
		 dir, dir);
	assert_int_equal(spec_load_buffer("/s/vm.yaml", text, strlen(text), &opts, &a, &diags), 0);
	assert_int_equal(spec_load_buffer("/s/vm.yaml", text, strlen(text), &opts, &b, &diags), 0);
	/* The loader reads no file: the daemon hashes them after it. */
	assert_string_equal(a->cloud_init->files_hash, "");
	spec_provision_hash_files(a);
	spec_provision_hash_files(b);
	assert_int_equal(strlen(a->cloud_init->files_hash), 16);
	assert_true(spec_equal(a, b));
	memcpy(first, a->cloud_init->files_hash, sizeof(first));

	test_write_str(dir, "keys", "ssh-ed25519 BBBB");
	spec_provision_hash_files(b);
	assert_string_not_equal(b->cloud_init->files_hash, first);
	assert_false(spec_provision_equal(a, b));

	/* A file gone counts as gone, not as what it was. */
	test_tmpdir_remove(dir);
	assert_int_equal(spec_copy(a, &c), 0);
	assert_string_equal(c->cloud_init->files_hash, first);
	spec_provision_hash_files(c);
	assert_string_not_equal(c->cloud_init->files_hash, first);
	/* Without such files: no hash. */
	assert_int_equal(spec_load_file(test_src("tests/spec/good/cloud-init-empty.yaml"), &opts,
					&d, &diags),
			 0);
	spec_provision_hash_files(d);
	assert_string_equal(d->cloud_init->files_hash, "");
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
		cmocka_unit_test(test_round_trip),	cmocka_unit_test(test_provision_round_trip),
		cmocka_unit_test(test_files_hash),	cmocka_unit_test(test_images),
		cmocka_unit_test(test_refuses_garbage),
	};

	return cmocka_run_group_tests_name("spec-json", tests, NULL, NULL);
}
