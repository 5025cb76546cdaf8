/* SPDX-License-Identifier: MIT */
/*
 * SpecCheck: rules that name a field ("spec.disks[1].format") report at that field's line
 * and column, with the prefix the decoder gives; a missing field is reported only when the
 * file does not have it.
 */
#include "backend.h"
#include "helpers.h"
#include "spec-check.h"

/* Lines and columns below are of this text. */
static const char TEXT[] = "apiVersion: vmd/v1\n"      /* 1 */
			   "kind: Sandbox\n"	       /* 2 */
			   "spec:\n"		       /* 3 */
			   "  backend: firecracker\n"  /* 4 */
			   "  memory: 64Mi\n"	       /* 5 */
			   "  kernel: ~\n"	       /* 6 */
			   "  disks:\n"		       /* 7 */
			   "    - {id: a, path: /a}\n" /* 8 */
			   "    - id: b\n"	       /* 9 */
			   "      path: /b\n"	       /* 10 */
			   "      format: qcow2\n"     /* 11 */
			   "  networks:\n"	       /* 12 */
			   "    - id: n0\n"	       /* 13 */
			   "      type: user\n";       /* 14 */

typedef struct Fixture {
	YNode *root;
	DiagList diags;
	SpecCheck check;
} Fixture;

static int setup(void **state)
{
	Fixture *f = calloc(1, sizeof(*f));

	assert_int_equal(ytree_parse(TEXT, strlen(TEXT), &f->root, &f->diags), 0);
	assert_true(diag_list_is_empty(&f->diags));
	f->check = (SpecCheck){ .root = f->root, .diags = &f->diags };
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	Fixture *f = *state;

	ynode_free(f->root);
	diag_list_done(&f->diags);
	free(f);
	return 0;
}

static void assert_at(const YNode *n, unsigned line, unsigned column)
{
	assert_non_null(n);
	assert_int_equal(n->line, line);
	assert_int_equal(n->column, column);
}

static void assert_diag(const DiagList *l, size_t i, unsigned line, unsigned column,
			const char *message)
{
	assert_true(i < l->n);
	assert_string_equal(l->items[i].message, message);
	assert_int_equal(l->items[i].line, line);
	assert_int_equal(l->items[i].column, column);
}

static void test_find(void **state)
{
	Fixture *f = *state;
	const SpecCheck *c = &f->check;

	assert_at(spec_check_find(c, ""), 1, 1);
	assert_at(spec_check_find(c, "spec"), 4, 3);
	assert_at(spec_check_find(c, "spec.disks"), 8, 5);
	assert_at(spec_check_find(c, "spec.disks[0]"), 8, 7);
	assert_at(spec_check_find(c, "spec.disks[0].path"), 8, 21);
	assert_at(spec_check_find(c, "spec.disks[1].format"), 11, 15);
	assert_string_equal(spec_check_find(c, "spec.disks[1].format")->value, "qcow2");
	assert_at(spec_check_find(c, "spec.networks[0].type"), 14, 13);
	/* Present with a value the decoder refuses: still found. */
	assert_at(spec_check_find(c, "spec.kernel"), 6, 11);

	/* Not in the file: a field, an index past the end, a step into a scalar or a list. */
	assert_null(spec_check_find(c, "spec.vcpus"));
	assert_null(spec_check_find(c, "spec.disks[2]"));
	assert_null(spec_check_find(c, "spec.disks[2].format"));
	assert_null(spec_check_find(c, "spec.disks[0].format"));
	assert_null(spec_check_find(c, "spec.memory[0]"));
	assert_null(spec_check_find(c, "apiVersion.x"));
	assert_null(spec_check_find(c, "spec.disks.id"));
	assert_null(spec_check_find(c, "metadata.name"));

	/* A file without a document has no fields. */
	assert_null(spec_check_find(&(SpecCheck){ .diags = &f->diags }, "spec"));
}

static void test_error(void **state)
{
	Fixture *f = *state;
	SpecCheck *c = &f->check;

	assert_false(c->refused);
	assert_int_equal(spec_check_result(c), 0);

	spec_check_error(c, "spec.disks[1].format", "no %s here", "qcow2");
	assert_true(c->refused);
	assert_int_equal(spec_check_result(c), -EINVAL);
	assert_diag(&f->diags, 0, 11, 15, "spec.disks[1].format: no qcow2 here");

	/* A field the file does not have: at the nearest node it has, with the field's prefix. */
	spec_check_error(c, "spec.vcpus", "1 is too few");
	assert_diag(&f->diags, 1, 4, 3, "spec.vcpus: 1 is too few");
	spec_check_error(c, "spec.disks[5].format", "past the end");
	assert_diag(&f->diags, 2, 8, 5, "spec.disks[5].format: past the end");
	spec_check_error(c, "spec.networks[0].tap", "none");
	assert_diag(&f->diags, 3, 13, 7, "spec.networks[0].tap: none");
	spec_check_error(&(SpecCheck){ .diags = &f->diags }, "spec.vcpus", "no document");
	assert_diag(&f->diags, 4, 1, 1, "spec.vcpus: no document");
	assert_int_equal(f->diags.n, 5);
}

static void test_missing(void **state)
{
	Fixture *f = *state;
	SpecCheck *c = &f->check;

	spec_check_missing(c, "spec.initrd", "%s needs one", "this");
	assert_true(c->refused);
	assert_diag(&f->diags, 0, 4, 3, "spec: missing field 'initrd': this needs one");
	spec_check_missing(c, "spec.networks[0].tap", "a tap needs a name");
	assert_diag(&f->diags, 1, 13, 7, "spec.networks[0]: missing field 'tap': a tap needs a name");
	spec_check_missing(c, "spec.disks[0].format", "say which");
	assert_diag(&f->diags, 2, 8, 7, "spec.disks[0]: missing field 'format': say which");
	/* A top-level field: no prefix, at the root. */
	spec_check_missing(c, "metadata", "give it");
	assert_diag(&f->diags, 3, 1, 1, "missing field 'metadata': give it");
	assert_int_equal(f->diags.n, 4);

	/*
	 * Quiet, but refused: the file has the field (kernel: ~, which the decoder reported),
	 * or it has no mapping to add it to (no metadata, no third disk, a scalar, a list).
	 */
	c->refused = false;
	spec_check_missing(c, "spec.kernel", "boots a kernel");
	assert_true(c->refused);
	spec_check_missing(c, "spec.disks[1].format", "say which");
	spec_check_missing(c, "metadata.name", "name it");
	spec_check_missing(c, "spec.disks[2].id", "past the end");
	spec_check_missing(c, "apiVersion.x", "a scalar");
	spec_check_missing(c, "spec.disks.id", "a list");
	spec_check_missing(&(SpecCheck){ .diags = &f->diags }, "spec.kernel", "no document");
	assert_int_equal(f->diags.n, 4);
	assert_int_equal(spec_check_result(c), -EINVAL);
}

static void test_backend_desc(void **state _unused_)
{
	SandboxSpec s = { .backend = BACKEND_FIRECRACKER, .backend_explicit = true };
	char buf[SPEC_CHECK_BACKEND_MAX];

	assert_string_equal(spec_check_backend(&s, buf), "backend 'firecracker'");
	s = (SandboxSpec){ .backend = BACKEND_CLOUD_HYPERVISOR };
	assert_string_equal(spec_check_backend(&s, buf),
			    "backend 'cloud-hypervisor' (the default backend)");
}

/* The backends' validate ops on one spec: what each refuses, and where. */
static void test_backend_rules(void **state)
{
	Fixture *f = *state;
	DiskSpec disks[] = { { .id = "a" }, { .id = "b", .format = DISK_FORMAT_QCOW2 } };
	NetSpec nets[] = { { .id = "n0", .type = NET_USER } };
	SandboxSpec s = { .backend_explicit = true,
			  .vcpus = 3,
			  .disks = disks,
			  .n_disks = 2,
			  .networks = nets,
			  .n_networks = 1 };
	SpecCheck c;

	/* noop takes everything; qemu wants a kernel, and the file has one (a refused one). */
	s.backend = BACKEND_NOOP;
	c = (SpecCheck){ .root = f->root, .diags = &f->diags };
	assert_int_equal(backend_validate_spec(&s, &c), 0);
	assert_false(c.refused);
	s.backend = BACKEND_QEMU;
	assert_int_equal(backend_validate_spec(&s, &c), -EINVAL);
	assert_true(diag_list_is_empty(&f->diags));
	s.kernel = (char *)"/k";
	c = (SpecCheck){ .root = f->root, .diags = &f->diags };
	assert_int_equal(backend_validate_spec(&s, &c), 0);

	s.backend = BACKEND_FIRECRACKER;
	assert_int_equal(backend_validate_spec(&s, &c), -EINVAL);
	diag_list_sort(&f->diags);
	/* vcpus is not in the file: at spec. */
	assert_diag(
		&f->diags, 0, 4, 3,
		"spec.vcpus: 3 vCPUs do not fit backend 'firecracker': it takes 1 or an even number up to 32");
	assert_diag(
		&f->diags, 1, 11, 15,
		"spec.disks[1].format: qcow2 needs the qemu or cloud-hypervisor backend; this sandbox uses backend 'firecracker'");
	assert_diag(
		&f->diags, 2, 14, 13,
		"spec.networks[0].type: user-mode networking needs the qemu backend; this sandbox uses backend 'firecracker'");
	assert_int_equal(f->diags.n, 3);
	diag_list_done(&f->diags);

	/* Cloud Hypervisor: only the user-mode network (qcow2 it takes, any vCPU count). */
	s.backend = BACKEND_CLOUD_HYPERVISOR;
	c = (SpecCheck){ .root = f->root, .diags = &f->diags };
	assert_int_equal(backend_validate_spec(&s, &c), -EINVAL);
	assert_diag(
		&f->diags, 0, 14, 13,
		"spec.networks[0].type: user-mode networking needs the qemu backend; this sandbox uses backend 'cloud-hypervisor'");
	assert_int_equal(f->diags.n, 1);
	diag_list_done(&f->diags);

	/* Firecracker's vCPUs: 1, even ones up to 32. */
	s.backend = BACKEND_FIRECRACKER;
	s.n_disks = s.n_networks = 0;
	for (unsigned v = 1; v <= 40; v++) {
		s.vcpus = v;
		c = (SpecCheck){ .root = f->root, .diags = &f->diags };
		assert_int_equal(backend_validate_spec(&s, &c),
				 v == 1 || (v % 2 == 0 && v <= 32) ? 0 : -EINVAL);
	}
	diag_list_done(&f->diags);

	/*
	 * The devices vmd makes: a bridge's tap for all three VMMs (Firecracker's a persistent
	 * one), a macvtap for QEMU and Cloud Hypervisor, which take descriptors, only.
	 */
	s.vcpus = 1;
	s.n_networks = 1;
	nets[0].type = NET_BRIDGE;
	for (BackendKind k = 0; k < _BACKEND_KIND_MAX; k++) {
		s.backend = k;
		c = (SpecCheck){ .root = f->root, .diags = &f->diags };
		assert_int_equal(backend_validate_spec(&s, &c), 0);
	}
	nets[0].type = NET_MACVTAP;
	s.backend = BACKEND_CLOUD_HYPERVISOR;
	c = (SpecCheck){ .root = f->root, .diags = &f->diags };
	assert_int_equal(backend_validate_spec(&s, &c), 0);
	s.backend = BACKEND_FIRECRACKER;
	c = (SpecCheck){ .root = f->root, .diags = &f->diags };
	assert_int_equal(backend_validate_spec(&s, &c), -EINVAL);
	assert_int_equal(f->diags.n, 1);
	assert_diag(
		&f->diags, 0, 14, 13,
		"spec.networks[0].type: a macvtap network needs the qemu or cloud-hypervisor backend: Firecracker opens its tap by name through /dev/net/tun, which a macvtap is not reached by; use type bridge");
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_find, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing, setup, teardown),
		cmocka_unit_test(test_backend_desc),
		cmocka_unit_test_setup_teardown(test_backend_rules, setup, teardown),
	};

	return cmocka_run_group_tests_name("spec-check", tests, NULL, NULL);
}
