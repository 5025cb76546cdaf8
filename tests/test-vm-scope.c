/* SPDX-License-Identifier: MIT */
/*
 * The limits of a VMM's scope (reconciler/vm-scope.c): the memory and tasks formulas, the
 * CPU and I/O settings of spec.resources, and which devices the scope allows, per backend.
 */
#include "helpers.h"
#include "vm-scope.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

static void test_memory_max(void **state _unused_)
{
	static const struct {
		uint64_t memory, max_memory, want;
	} rows[] = {
		/* 1 GiB for the VMM, and an eighth of the guest's on top */
		{ 192 * MiB, 0, 192 * MiB + GiB + 24 * MiB },
		{ 8 * GiB, 0, 8 * GiB + GiB + GiB },
		/* a guest that can grow: its most, not what it boots with */
		{ 1 * GiB, 4 * GiB, 4 * GiB + GiB + 512 * MiB },
		/* a max below the spec's (a resize shrank it since): the spec's */
		{ 2 * GiB, 1 * GiB, 2 * GiB + GiB + 256 * MiB },
	};

	for (size_t i = 0; i < ELEMENTSOF(rows); i++)
		assert_int_equal(vm_scope_memory_max(rows[i].memory, rows[i].max_memory),
				 rows[i].want);
}

static void test_tasks_max(void **state _unused_)
{
	assert_int_equal(vm_scope_tasks_max(1, 0), 128 + 4);
	assert_int_equal(vm_scope_tasks_max(2, 8), 128 + 32);
	assert_int_equal(vm_scope_tasks_max(16, 4), 128 + 64);
}

static bool is_block_fake(const char *path)
{
	return strncmp(path, "/dev/", 5) == 0;
}

static const ScopeDevice *device(const ScopeLimits *l, const char *path)
{
	for (size_t i = 0; i < l->n_devices; i++)
		if (streq(l->devices[i].path, path))
			return &l->devices[i];
	return NULL;
}

static void test_defaults(void **state _unused_)
{
	SandboxSpec s = { .backend = BACKEND_QEMU, .vcpus = 2, .memory = 512 * MiB };
	ScopeLimits l;

	vm_scope_limits(&s, 0, 0, is_block_fake, &l);
	assert_int_equal(l.memory_max, 512 * MiB + GiB + 64 * MiB);
	assert_int_equal(l.tasks_max, 136);
	assert_int_equal(l.cpu_weight, 100);
	assert_int_equal(l.cpu_quota_per_sec_usec, 0);
	assert_int_equal(l.io_weight, 0);
	assert_int_equal(l.n_devices, 1);
	assert_string_equal(l.devices[0].path, "/dev/kvm");
	assert_string_equal(l.devices[0].access, "rw");
}

static void test_resources(void **state _unused_)
{
	SandboxSpec s = { .backend = BACKEND_CLOUD_HYPERVISOR,
			  .vcpus = 1,
			  .memory = 256 * MiB,
			  .resources = { .cpu_weight = 500, .cpu_quota = 250, .io_weight = 20 } };
	ScopeLimits l;

	vm_scope_limits(&s, 1 * GiB, 4, NULL, &l);
	assert_int_equal(l.memory_max, GiB + GiB + 128 * MiB);
	assert_int_equal(l.tasks_max, 128 + 16);
	assert_int_equal(l.cpu_weight, 500);
	assert_int_equal(l.cpu_quota_per_sec_usec, 2500000);
	assert_int_equal(l.io_weight, 20);
}

static void test_devices(void **state _unused_)
{
	DiskSpec disks[] = {
		{ .id = "root", .path = (char *)"/var/lib/vmd/a.qcow2" },
		{ .id = "data", .path = (char *)"/dev/vg0/data" },
		{ .id = "ro", .path = (char *)"/dev/sdb", .read_only = true },
		{ .id = "again", .path = (char *)"/dev/vg0/data" },
		{ .id = "image" }, /* from an image, not made yet */
	};
	NetSpec nets[] = { { .type = NET_BRIDGE }, { .type = NET_TAP } };
	SandboxSpec s = { .vcpus = 1,
			  .memory = 64 * MiB,
			  .disks = disks,
			  .n_disks = ELEMENTSOF(disks),
			  .networks = nets,
			  .n_networks = ELEMENTSOF(nets) };
	ScopeLimits l;

	for (BackendKind k = 0; k < _BACKEND_KIND_MAX; k++) {
		s.backend = k;
		vm_scope_limits(&s, 0, 0, is_block_fake, &l);
		assert_string_equal(device(&l, "/dev/vg0/data")->access, "rw");
		assert_string_equal(device(&l, "/dev/sdb")->access, "r");
		assert_null(device(&l, "/var/lib/vmd/a.qcow2"));
		/*
		 * Firecracker alone opens its taps by name (vmd gives the others fds), and its
		 * jailer mknods the nodes in its jail.
		 */
		if (k == BACKEND_FIRECRACKER) {
			assert_string_equal(device(&l, "/dev/kvm")->access, "rwm");
			assert_string_equal(device(&l, "/dev/net/tun")->access, "rwm");
			assert_string_equal(device(&l, "/dev/userfaultfd")->access, "rwm");
			assert_int_equal(l.n_devices, 5);
		} else {
			assert_string_equal(device(&l, "/dev/kvm")->access, "rw");
			assert_null(device(&l, "/dev/net/tun"));
			assert_int_equal(l.n_devices, 3);
		}
	}
}

static void test_machine_name(void **state _unused_)
{
	char buf[VM_SCOPE_MACHINE_NAME_MAX + 1], name[SPEC_NAME_MAX + 1];

	assert_int_equal(vm_scope_machine_name("web-1", buf), 0);
	assert_string_equal(buf, "vmd-web-1");
	memset(name, 'a', 60);
	name[60] = '\0';
	assert_int_equal(vm_scope_machine_name(name, buf), 0);
	assert_int_equal(strlen(buf), 64);
	memset(name, 'a', 61);
	name[61] = '\0';
	assert_int_equal(vm_scope_machine_name(name, buf), -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memory_max), cmocka_unit_test(test_tasks_max),
		cmocka_unit_test(test_defaults),   cmocka_unit_test(test_resources),
		cmocka_unit_test(test_devices),	   cmocka_unit_test(test_machine_name),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
