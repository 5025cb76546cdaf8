/* SPDX-License-Identifier: MIT */
/* The noop backend through its ops table, as the daemon drives it. */
#include <stdio.h>

#include "backend.h"
#include "helpers.h"
#include "spec-yaml.h"

typedef struct Exits {
	char name[64];
	int status;
	unsigned n;
} Exits;

static void on_exit_cb(void *userdata, const char *name, int status, const char *reason _unused_)
{
	Exits *e = userdata;

	snprintf(e->name, sizeof(e->name), "%s", name);
	e->status = status;
	e->n++;
}

static SandboxSpec *spec(const char *name, const char *extra)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	_cleanup_free_ char *text = NULL, *path = NULL;
	const SpecLoadOptions opts = { .default_backend = BACKEND_NOOP };
	SandboxSpec *s = NULL;

	assert_true(asprintf(&text, "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  memory: 64Mi\n%s",
			     extra) > 0);
	assert_true(asprintf(&path, "%s.yaml", name) > 0);
	assert_int_equal(spec_load_buffer(path, text, strlen(text), &opts, &s, &diags), 0);
	return s;
}

static void test_lifecycle_and_adoption(void **state _unused_)
{
	char *dir = test_tmpdir();
	_cleanup_(sandbox_spec_freep) SandboxSpec *s =
		spec("vm1", "  disks: [{id: root, path: /r.raw}]\n");
	Backend *b = NULL, *b2 = NULL;
	VmObserved o = {};
	DiskSpec data = { .id = "data", .path = (char *)"/d.raw" };
	char **names = NULL;
	size_t n = 0;

	assert_int_equal(backend_new(BACKEND_NOOP, NULL, dir, NULL, NULL, &b), 0);
	assert_int_equal(b->ops->observe(b, "vm1", &o), 0);
	assert_int_equal(o.state, VM_ABSENT);

	assert_int_equal(b->ops->start(b, s, 1), 0);
	assert_int_equal(b->ops->disk_add(b, "vm1", &data, 2), 0);
	assert_int_equal(b->ops->pause(b, "vm1"), 0);
	assert_int_equal(b->ops->observe(b, "vm1", &o), 0);
	assert_int_equal(o.state, VM_PAUSED);
	assert_int_equal(o.generation, 2);
	assert_int_equal(o.config->n_disks, 2);
	assert_string_equal(o.config->disks[1].path, "/d.raw");
	assert_true(o.started_at_usec > 0);
	vm_observed_done(&o);

	/* A second instance (a restarted vmd) finds it, adopts it, and it keeps running. */
	assert_int_equal(backend_new(BACKEND_NOOP, NULL, dir, NULL, NULL, &b2), 0);
	assert_int_equal(b2->ops->list(b2, &names, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(names[0], "vm1");
	free(names[0]);
	free(names);
	assert_int_equal(b2->ops->adopt(b2, "vm1"), 0);
	assert_int_equal(b2->ops->resume(b2, "vm1"), 0);
	assert_int_equal(b2->ops->disk_remove(b2, "vm1", "root", 3), 0);
	assert_int_equal(b2->ops->observe(b2, "vm1", &o), 0);
	assert_int_equal(o.state, VM_RUNNING);
	assert_int_equal(o.config->n_disks, 1);
	assert_string_equal(o.config->disks[0].id, "data");
	vm_observed_done(&o);

	assert_int_equal(b2->ops->stop(b2, "vm1", 1000, false), 0);
	assert_int_equal(b2->ops->observe(b2, "vm1", &o), 0);
	assert_int_equal(o.state, VM_EXITED);
	assert_int_equal(o.exit_status, 0);
	vm_observed_done(&o);
	assert_int_equal(b2->ops->cleanup(b2, "vm1"), 0);
	assert_int_equal(b2->ops->observe(b2, "vm1", &o), 0);
	assert_int_equal(o.state, VM_ABSENT);
	assert_int_equal(b2->ops->pause(b2, "vm1"), -ESRCH);

	backend_free(b);
	backend_free(b2);
	test_tmpdir_remove(dir);
}

/* A file it did not write, or written on another boot, is not adopted. */
static void test_adopt_refuses_strangers(void **state _unused_)
{
	char *dir = test_tmpdir();
	Backend *b = NULL;
	VmObserved o = {};

	test_write_str(
		dir, "vm2/noop.json",
		"{\"vmm\":\"noop\",\"bootId\":\"another-boot\",\"state\":\"running\",\"generation\":1,\"config\":{\"name\":\"vm2\",\"labels\":{},\"backend\":\"noop\",\"state\":\"running\",\"restartPolicy\":\"always\",\"updatePolicy\":\"restart\",\"vcpus\":1,\"memoryBytes\":67108864,\"stopTimeoutMs\":1,\"disks\":[],\"networks\":[]}}");
	assert_int_equal(backend_new(BACKEND_NOOP, NULL, dir, NULL, NULL, &b), 0);
	assert_int_equal(b->ops->adopt(b, "vm2"), -ESTALE);
	assert_int_equal(b->ops->observe(b, "vm2", &o), 0);
	assert_int_equal(o.state, VM_EXITED); /* the host rebooted since */
	vm_observed_done(&o);
	test_write_str(dir, "vm3/noop.json", "not json");
	assert_int_equal(b->ops->observe(b, "vm3", &o), -EBADMSG);
	backend_free(b);
	test_tmpdir_remove(dir);
}

/* Faults from labels: failing starts, and a VM that exits on its own through the loop. */
static void test_faults(void **state _unused_)
{
	char *dir = test_tmpdir();
	_cleanup_(sandbox_spec_freep) SandboxSpec *s = spec(
		"vm4",
		"metadata: {labels: {noop.vmd/fail-start: \"2\", noop.vmd/exit-after: 20ms, noop.vmd/exit-status: \"3\"}}\n");
	BackendCallbacks cb = { .vm_exited = on_exit_cb };
	Exits exits = {};
	sd_event *e = NULL;
	Backend *b = NULL;
	VmObserved o = {};

	/* metadata after spec is fine for YAML; the loader does not care about order. */
	cb.userdata = &exits;
	assert_int_equal(sd_event_new(&e), 0);
	assert_int_equal(backend_new(BACKEND_NOOP, e, dir, &cb, NULL, &b), 0);
	assert_int_equal(b->ops->start(b, s, 1), -EIO);
	assert_int_equal(b->ops->start(b, s, 1), -EIO);
	assert_int_equal(b->ops->start(b, s, 1), 0);
	assert_int_equal(b->ops->observe(b, "vm4", &o), 0);
	assert_int_equal(o.state, VM_RUNNING);
	vm_observed_done(&o);

	while (exits.n == 0)
		assert_true(sd_event_run(e, 5 * 1000 * 1000) >= 0);
	assert_string_equal(exits.name, "vm4");
	assert_int_equal(exits.status, 3);
	assert_int_equal(b->ops->observe(b, "vm4", &o), 0);
	assert_int_equal(o.state, VM_EXITED);
	assert_int_equal(o.exit_status, 3);
	vm_observed_done(&o);

	/* A new generation counts its faults afresh. */
	assert_int_equal(b->ops->start(b, s, 2), -EIO);
	backend_free(b);
	sd_event_unref(e);
	test_tmpdir_remove(dir);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lifecycle_and_adoption),
		cmocka_unit_test(test_adopt_refuses_strangers),
		cmocka_unit_test(test_faults),
	};

	return cmocka_run_group_tests_name("backend-noop", tests, NULL, NULL);
}
