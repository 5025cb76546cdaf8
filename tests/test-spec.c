/* SPDX-License-Identifier: MIT */
#include "helpers.h"
#include "spec.h"

static void test_names(void **state _unused_)
{
	static const struct {
		const char *s;
		bool name, id, ifname;
	} rows[] = {
		{ "web-1", true, true, true },
		{ "a", true, true, true },
		{ "0", true, true, true },
		{ "web-", false, true, true }, /* a name ends with a letter or digit, an id need not */
		{ "-web", false, false, true },
		{ "Web", false, false, true },
		{ "web_1", false, false, true },
		{ "web.1", false, false, true },
		{ "", false, false, false },
		{ "a23456789012345", true, true, true },   /* 15 */
		{ "a234567890123456", true, true, false }, /* 16: too long for an interface */
		{ "a234567890123456789012345678901", true, true, false },   /* 31 */
		{ "a2345678901234567890123456789012", true, false, false }, /* 32 */
		{ "a23456789012345678901234567890123456789012345678901234567890123", true, false,
		  false }, /* 63 */
		{ "a234567890123456789012345678901234567890123456789012345678901234", false, false,
		  false }, /* 64 */
		{ "tap:0", false, false, false },
		{ "tap/0", false, false, false },
		{ "tap 0", false, false, false },
		{ ".", false, false, false },
		{ "..", false, false, false },
		{ "Tap_0.x", false, false, true },
		{ "t\xc3\xa4p", false, false, false },
	};

	for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
		if (spec_name_is_valid(rows[i].s) != rows[i].name ||
		    spec_id_is_valid(rows[i].s) != rows[i].id ||
		    spec_ifname_is_valid(rows[i].s) != rows[i].ifname)
			fail_msg("row %zu: '%s'", i, rows[i].s);
	}
}

static void test_mac_parse(void **state _unused_)
{
	uint8_t mac[6] = {};

	assert_int_equal(spec_mac_parse("52:54:00:AB:cd:Ef", mac), 0);
	assert_memory_equal(mac, ((uint8_t[]){ 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef }), 6);
	assert_true(spec_mac_is_unicast(mac));
	assert_int_equal(spec_mac_parse("01:00:5e:00:00:01", mac), 0);
	assert_false(spec_mac_is_unicast(mac));
	assert_int_equal(spec_mac_parse("52:54:00:ab:cd", mac), -EINVAL);
	assert_int_equal(spec_mac_parse("52-54-00-ab-cd-ef", mac), -EINVAL);
	assert_int_equal(spec_mac_parse("52:54:00:ab:cd:eg", mac), -EINVAL);
	assert_int_equal(spec_mac_parse("52:54:00:ab:cd:ef:", mac), -EINVAL);
	/* A failed parse leaves the output alone. */
	assert_memory_equal(mac, ((uint8_t[]){ 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 }), 6);
}

/* The derived MAC is a documented contract: the same bytes in every release. */
static void test_mac_derive(void **state _unused_)
{
	uint8_t a[6], b[6], c[6];

	spec_mac_derive("web-1", "net0", a);
	spec_mac_derive("web-1", "net0", b);
	spec_mac_derive("web-1", "net1", c);
	assert_memory_equal(a, b, 6);
	assert_memory_not_equal(a, c, 6);
	/*
	 * FNV-1a 64 of "web-1/net0" is 0x2ac3be44bbfdf451 (computed apart from this code):
	 * its low 48 bits, with the first octet made unicast and locally administered.
	 */
	assert_memory_equal(a, ((uint8_t[]){ 0xbe, 0x44, 0xbb, 0xfd, 0xf4, 0x51 }), 6);
	for (int i = 0; i < 2; i++) {
		const uint8_t *m = i ? c : a;

		assert_true(spec_mac_is_unicast(m));
		assert_true(m[0] & 0x02); /* locally administered */
	}
	/* "a/bc" and "ab/c" must differ: the separator is hashed. */
	spec_mac_derive("a", "bc", a);
	spec_mac_derive("ab", "c", b);
	assert_memory_not_equal(a, b, 6);
}

static void test_name_from_path(void **state _unused_)
{
	static const struct {
		const char *path, *name;
	} rows[] = {
		{ "/etc/vmd/sandboxes/web-1.yaml", "web-1" },
		{ "web-1.yml", "web-1" },
		{ "dir.yaml/x.yaml", "x" },
		{ "a.b.yaml", "a.b" },
		{ ".yaml", NULL },
		{ "web-1.json", NULL },
		{ "web-1.yaml~", NULL },
	};

	for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
		_cleanup_free_ char *name = NULL;
		int r = spec_name_from_path(rows[i].path, &name);

		if (rows[i].name) {
			assert_int_equal(r, 0);
			assert_string_equal(name, rows[i].name);
		} else
			assert_int_equal(r, -EINVAL);
	}
}

static void test_string_tables(void **state _unused_)
{
	for (int i = 0; i < _BACKEND_KIND_MAX; i++)
		assert_int_equal(backend_kind_from_string(backend_kind_to_string(i)), i);
	for (int i = 0; i < _SANDBOX_STATE_MAX; i++)
		assert_int_equal(sandbox_state_from_string(sandbox_state_to_string(i)), i);
	for (int i = 0; i < _RESTART_POLICY_MAX; i++)
		assert_int_equal(restart_policy_from_string(restart_policy_to_string(i)), i);
	for (int i = 0; i < _UPDATE_POLICY_MAX; i++)
		assert_int_equal(update_policy_from_string(update_policy_to_string(i)), i);
	for (int i = 0; i < _DISK_FORMAT_MAX; i++)
		assert_int_equal(disk_format_from_string(disk_format_to_string(i)), i);
	for (int i = 0; i < _NET_TYPE_MAX; i++)
		assert_int_equal(net_type_from_string(net_type_to_string(i)), i);
	assert_string_equal(backend_kind_to_string(BACKEND_CLOUD_HYPERVISOR), "cloud-hypervisor");
	assert_int_equal(backend_kind_from_string("kvm"), _BACKEND_KIND_INVALID);
	assert_null(backend_kind_to_string(_BACKEND_KIND_MAX));
	assert_null(backend_kind_to_string(_BACKEND_KIND_INVALID));
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),	      cmocka_unit_test(test_mac_parse),
		cmocka_unit_test(test_mac_derive),    cmocka_unit_test(test_name_from_path),
		cmocka_unit_test(test_string_tables),
	};

	return cmocka_run_group_tests_name("spec", tests, NULL, NULL);
}
