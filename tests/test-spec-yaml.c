/* SPDX-License-Identifier: MIT */
/*
 * The sandbox file loader, driven by the corpus in tests/spec: every file in bad/ must
 * give exactly the errors tests/spec/bad/EXPECTED lists for it, at the line and column
 * it lists; every file in good/ and examples/ must load. Inputs that are too large to
 * keep in git (over 1 MiB, 100k nested brackets) are made here.
 */
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>

#include "backend.h"
#include "helpers.h"
#include "spec-json.h"
#include "spec-yaml.h"
#include "yaml-tree.h"

typedef struct Expect {
	char *file;
	unsigned line;
	unsigned column;
	char *message;
} Expect;

static Expect *expects;
static size_t n_expects;
/* As the daemon and vmd validate load files: with the backends' rules. */
static const SpecLoadOptions qemu_default = { .default_backend = BACKEND_QEMU,
					      .check = backend_validate_spec };

static void load_expected(void)
{
	_cleanup_free_ char *text = test_read_file(test_src("tests/spec/bad/EXPECTED"), NULL);
	char *save = NULL;

	assert_non_null(text);
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *f[5], *s2 = NULL;
		size_t k = 0;

		if (line[0] == '#')
			continue;
		for (char *t = strtok_r(line, "\t", &s2); t && k < 5; t = strtok_r(NULL, "\t", &s2))
			f[k++] = t;
		assert_int_equal(k, 5);
		expects = reallocarray(expects, n_expects + 1, sizeof(Expect));
		assert_non_null(expects);
		expects[n_expects++] = (Expect){ strdup(f[0]), (unsigned)atoi(f[1]),
						 (unsigned)atoi(f[2]), strdup(f[4]) };
	}
}

static void test_bad_file(void **state)
{
	const char *name = *state;
	_cleanup_(diag_list_done) DiagList diags = {};
	_cleanup_free_ char *path = NULL;
	SandboxSpec *spec = NULL;
	size_t k = 0;

	assert_true(asprintf(&path, "%s", test_src("tests/spec/bad/")) > 0);
	path = realloc(path, strlen(path) + strlen(name) + 1);
	strcat(path, name);

	assert_int_equal(spec_load_file(path, &qemu_default, &spec, &diags), -EINVAL);
	assert_null(spec);
	for (size_t i = 0; i < n_expects; i++) {
		if (!streq(expects[i].file, name))
			continue;
		assert_true(k < diags.n);
		if (!streq(diags.items[k].message, expects[i].message))
			print_error("got:      %s\nexpected: %s\n", diags.items[k].message,
				    expects[i].message);
		assert_string_equal(diags.items[k].message, expects[i].message);
		assert_int_equal(diags.items[k].line, expects[i].line);
		assert_int_equal(diags.items[k].column, expects[i].column);
		k++;
	}
	/* Every error is listed: no more, no fewer. */
	for (size_t i = k; i < diags.n; i++)
		print_error("unexpected: %u:%u: %s\n", diags.items[i].line, diags.items[i].column,
			    diags.items[i].message);
	assert_int_equal(diags.n, k);
	assert_int_equal(diags.n_dropped, 0);
	assert_true(k > 0);
}

static void test_good_file(void **state)
{
	const char *path = *state;
	_cleanup_(diag_list_done) DiagList diags = {};
	_cleanup_(sandbox_spec_freep) SandboxSpec *spec = NULL;
	SpecLoadOptions opts = qemu_default;
	int r;

	/* The examples name the images of the host they are for, not this one's. */
	opts.skip_images = strstr(path, "/examples/") != NULL;
	r = spec_load_file(path, &opts, &spec, &diags);
	for (size_t i = 0; i < diags.n; i++)
		print_error("%s:%u:%u: %s\n", path, diags.items[i].line, diags.items[i].column,
			    diags.items[i].message);
	assert_int_equal(r, 0);
	assert_non_null(spec);
	assert_true(diag_list_is_empty(&diags));
	/*
	 * An example that boots a kernel from a disk says which (vmd sets no root device for
	 * Firecracker or Cloud Hypervisor): without root= its guest panics at once.
	 */
	if (spec->n_disks > 0 && spec->kernel && spec->backend != BACKEND_QEMU &&
	    strstr(path, "/examples/"))
		assert_non_null(spec->cmdline && strstr(spec->cmdline, "root=") ? spec : NULL);
}

static SandboxSpec *load_good(const char *rel)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	SandboxSpec *spec = NULL;

	assert_int_equal(spec_load_file(test_src(rel), &qemu_default, &spec, &diags), 0);
	return spec;
}

/* Every field lands where it belongs. */
/* readiness and liveness as decoded, with their defaults. */
static void test_probes_decoded(void **state _unused_)
{
	_cleanup_(sandbox_spec_freep) SandboxSpec *s = load_good("tests/spec/good/probes.yaml");
	_cleanup_(sandbox_spec_freep) SandboxSpec *none = load_good("tests/spec/good/networks.yaml");

	assert_int_equal(s->readiness.kind, PROBE_CONSOLE);
	assert_string_equal(s->readiness.match, "^VMD-GUEST-READY$");
	assert_int_equal(s->readiness.timeout_ms, 120000);
	assert_int_equal(s->readiness.period_ms, PROBE_PERIOD_DEFAULT_MS);
	assert_int_equal(s->readiness.failure_threshold, PROBE_FAILURE_THRESHOLD_DEFAULT);
	assert_int_equal(s->liveness.kind, PROBE_HTTP);
	assert_int_equal(s->liveness.port, 22);
	assert_string_equal(s->liveness.path, "/alive");
	assert_int_equal(s->liveness.timeout_ms, PROBE_TIMEOUT_DEFAULT_MS);
	assert_int_equal(s->liveness.period_ms, 500);
	assert_int_equal(s->liveness.failure_threshold, 5);
	assert_int_equal(none->readiness.kind, PROBE_NONE);
	assert_int_equal(none->liveness.kind, PROBE_NONE);
}

static void test_everything_decoded(void **state _unused_)
{
	_cleanup_(sandbox_spec_freep) SandboxSpec *s = load_good("tests/spec/good/everything.yaml");

	assert_string_equal(s->name, "everything");
	assert_int_equal(s->n_labels, 2);
	assert_string_equal(s->labels[0].key, "team");
	assert_string_equal(s->labels[0].value, "edge");
	assert_string_equal(s->labels[1].value, "Zoë");
	assert_int_equal(s->backend, BACKEND_QEMU);
	assert_true(s->backend_explicit);
	assert_int_equal(s->state, SANDBOX_STOPPED);
	assert_int_equal(s->restart_policy, RESTART_ON_FAILURE);
	assert_int_equal(s->update_policy, UPDATE_RESTART);
	assert_int_equal(s->vcpus, 256);
	assert_true(s->memory == 1ull << 40);
	assert_string_equal(s->kernel, "/var/lib/vmd/images/vmlinux");
	assert_string_equal(s->initrd, "/var/lib/vmd/images/initrd.img");
	assert_string_equal(s->cmdline, "console=ttyS0 root=/dev/vda rw");
	assert_true(s->stop_timeout_ms == 24ull * 3600 * 1000);
	assert_int_equal(s->resources.cpu_weight, 10000);
	assert_int_equal(s->resources.cpu_quota, 10000);
	assert_int_equal(s->resources.io_weight, 1);
	assert_int_equal(s->n_disks, 2);
	assert_string_equal(s->disks[0].id, "root");
	assert_int_equal(s->disks[0].format, DISK_FORMAT_QCOW2);
	assert_false(s->disks[0].read_only);
	assert_string_equal(s->disks[1].path, "/var/lib/vmd/disks/data.raw");
	assert_true(s->disks[1].read_only);
	assert_int_equal(s->disks[1].format, DISK_FORMAT_RAW);
	assert_int_equal(s->n_networks, 2);
	assert_string_equal(s->networks[0].tap, "vmd-every0");
	assert_false(s->networks[0].mac_derived);
	assert_memory_equal(s->networks[0].mac, ((uint8_t[]){ 0x52, 0x54, 0, 0x12, 0x34, 0x56 }), 6);
	assert_int_equal(s->networks[1].type, NET_USER);
	assert_string_equal(s->networks[1].tap, "");
	assert_true(s->networks[1].mac_derived);
}

/* What a file leaves out takes the documented defaults. */
static void test_defaults(void **state _unused_)
{
	_cleanup_(sandbox_spec_freep) SandboxSpec *s = load_good("tests/spec/good/comments.yaml");
	uint8_t mac[6];

	assert_string_equal(s->name, "comments");
	assert_int_equal(s->backend, BACKEND_QEMU);
	assert_false(s->backend_explicit);
	assert_int_equal(s->state, SANDBOX_RUNNING);
	assert_int_equal(s->restart_policy, RESTART_ALWAYS);
	assert_int_equal(s->update_policy, UPDATE_ON_NEXT_BOOT);
	assert_int_equal(s->vcpus, 1);
	assert_true(s->stop_timeout_ms == 30000);
	assert_int_equal(s->resources.cpu_weight, 0); /* unset: 100 in the scope */
	assert_int_equal(s->resources.cpu_quota, 0);
	assert_int_equal(s->resources.io_weight, 0);
	assert_null(s->initrd);
	assert_null(s->cmdline);
	assert_int_equal(s->disks[0].format, DISK_FORMAT_RAW);
	assert_false(s->disks[0].read_only);

	sandbox_spec_free(s);
	s = load_good("examples/api-1.yaml");
	assert_int_equal(s->networks[0].type, NET_TAP);
	assert_true(s->networks[0].mac_derived);
	spec_mac_derive("api-1", "net0", mac);
	assert_memory_equal(s->networks[0].mac, mac, 6);
}

/* Styles: flow, quoting, folding, CRLF, a BOM, document markers give the same values. */
static void test_styles(void **state _unused_)
{
	SandboxSpec *s;

	s = load_good("tests/spec/good/quoted.yaml");
	assert_int_equal(s->state, SANDBOX_PAUSED);
	assert_string_equal(s->labels[1].value, "yes");
	assert_string_equal(s->labels[3].value, "8080");
	assert_true(s->stop_timeout_ms == 90000);
	sandbox_spec_free(s);

	s = load_good("tests/spec/good/folded-cmdline.yaml");
	assert_string_equal(s->cmdline, "console=ttyS0 root=/dev/vda rw quiet");
	sandbox_spec_free(s);

	s = load_good("tests/spec/good/crlf.yaml");
	assert_true(s->stop_timeout_ms == 500);
	sandbox_spec_free(s);

	s = load_good("tests/spec/good/flow-style.yaml");
	assert_int_equal(s->vcpus, 2);
	assert_int_equal(s->networks[0].type, NET_USER);
	sandbox_spec_free(s);

	s = load_good("tests/spec/good/document-markers.yaml");
	assert_true(s->stop_timeout_ms == 0);
	sandbox_spec_free(s);
}

/* A comma is kept as it is: escaping it for QEMU is the qemu backend's job. */
static void test_comma_path(void **state _unused_)
{
	_cleanup_(sandbox_spec_freep) SandboxSpec *s = load_good("tests/spec/good/comma-path.yaml");

	assert_string_equal(s->kernel, "/var/lib/vmd/images/vmlinux,v2");
	assert_string_equal(s->disks[0].path, "/var/lib/vmd/disks/root,format=qcow2.raw");
}

static int load_str(const char *path, const char *text, const SpecLoadOptions *opts, DiagList *diags)
{
	_cleanup_(sandbox_spec_freep) SandboxSpec *spec = NULL;

	return spec_load_buffer(path, text, strlen(text), opts, &spec, diags);
}

/* Backend rules use the daemon's default when the file names no backend, and say so. */
static void test_default_backend_rules(void **state _unused_)
{
	const SpecLoadOptions fc = backend_spec_load_options(BACKEND_FIRECRACKER);
	const SpecLoadOptions noop = backend_spec_load_options(BACKEND_NOOP);
	_cleanup_(diag_list_done) DiagList diags = {};
	const char *text = "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  memory: 64Mi\n"
			   "  kernel: /k\n  disks: [{id: a, path: /a.qcow2, format: qcow2}]\n";

	assert_int_equal(load_str("x.yaml", text, &fc, &diags), -EINVAL);
	assert_int_equal(diags.n, 1);
	assert_int_equal(diags.items[0].line, 6);
	assert_string_equal(
		diags.items[0].message,
		"spec.disks[0].format: qcow2 needs the qemu or cloud-hypervisor backend; this sandbox uses backend 'firecracker' (the default backend)");
	diag_list_done(&diags);

	assert_int_equal(load_str("x.yaml", text, &qemu_default, &diags), 0);
	/* noop accepts every field, so that tests can exercise any spec; kernel is optional. */
	assert_int_equal(load_str("x.yaml",
				  "apiVersion: vmd/v1\nkind: Sandbox\nspec: {memory: 64Mi}\n",
				  &noop, &diags),
			 0);
	assert_true(diag_list_is_empty(&diags));
}

static void assert_diags(const DiagList *l, const char *const *expect)
{
	size_t n = 0;

	for (; expect[n]; n++) {
		char got[512];

		assert_true(n < l->n);
		snprintf(got, sizeof(got), "%u:%u: %s", l->items[n].line, l->items[n].column,
			 l->items[n].message);
		assert_string_equal(got, expect[n]);
	}
	assert_int_equal(l->n, n);
}

/*
 * The backend's rules run beside the decoder's errors, so that all come out at once, in
 * order; a field that was refused keeps its default and is not refused again; a refused
 * backend has no rules.
 */
static void test_rules_with_other_errors(void **state _unused_)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	const char *fields =
		"  memory: 64\n  vcpus: 3\n  disks: [{id: a, path: /a, format: qcow2}]\n";
	char text[512];

	snprintf(text, sizeof(text), "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: %s\n%s",
		 "firecracker", fields);
	assert_int_equal(load_str("x.yaml", text, &qemu_default, &diags), -EINVAL);
	assert_diags(
		&diags,
		(const char *const[]){
			"4:3: spec: missing field 'kernel': backend 'firecracker' boots a kernel; give its absolute path",
			"5:11: spec.memory: expected a size with a unit, such as 512Mi (units Ki, Mi, Gi, Ti), got '64'",
			"6:10: spec.vcpus: 3 vCPUs do not fit backend 'firecracker': it takes 1 or an even number up to 32",
			"7:37: spec.disks[0].format: qcow2 needs the qemu or cloud-hypervisor backend; this sandbox uses backend 'firecracker'",
			NULL });
	diag_list_done(&diags);

	snprintf(text, sizeof(text), "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: %s\n%s",
		 "kvm", fields);
	assert_int_equal(load_str("x.yaml", text, &qemu_default, &diags), -EINVAL);
	assert_diags(
		&diags,
		(const char *const[]){
			"4:12: spec.backend: expected one of qemu, cloud-hypervisor, firecracker, noop; got 'kvm'",
			"5:11: spec.memory: expected a size with a unit, such as 512Mi (units Ki, Mi, Gi, Ti), got '64'",
			NULL });
	diag_list_done(&diags);

	assert_int_equal(
		load_str("x.yaml",
			 "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: firecracker\n  memory: 64Mi\n"
			 "  kernel: /k\n  vcpus: 300\n  disks: [{id: a, path: /a, format: qcow3}]\n",
			 &qemu_default, &diags),
		-EINVAL);
	assert_diags(
		&diags,
		(const char *const[]){
			"7:10: spec.vcpus: '300' is out of range: expected an integer from 1 to 256",
			"8:37: spec.disks[0].format: expected one of raw, qcow2; got 'qcow3'; did you mean 'qcow2'?",
			NULL });
}

/* Hostile inputs are refused at once, with a position, and without building much. */
static void test_too_large(void **state _unused_)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	size_t n = YTREE_MAX_BYTES + 1;
	_cleanup_free_ char *big = malloc(n + 1);

	memset(big, '#', n);
	big[n] = '\0';
	for (size_t i = 0; i < n; i += 100)
		big[i] = '\n';
	assert_int_equal(load_str("big.yaml", big, &qemu_default, &diags), -EINVAL);
	assert_int_equal(diags.n, 1);
	assert_string_equal(diags.items[0].message, "file is larger than 1048576 bytes (1 MiB)");
	assert_int_equal(diags.items[0].line, 10487); /* a newline every 100 bytes, from byte 0 */
	diag_list_done(&diags);

	/* Exactly 1 MiB is still read. */
	big[YTREE_MAX_BYTES] = '\0';
	assert_int_equal(load_str("big.yaml", big, &qemu_default, &diags), -EINVAL);
	assert_string_equal(diags.items[0].message,
			    "file is empty: expected a Sandbox with apiVersion, kind and spec");
}

static void test_deep_brackets(void **state _unused_)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	size_t n = 100000;
	_cleanup_free_ char *deep = malloc(2 * n + 1);

	memset(deep, '[', n);
	memset(deep + n, ']', n);
	deep[2 * n] = '\0';
	assert_int_equal(load_str("deep.yaml", deep, &qemu_default, &diags), -EINVAL);
	assert_int_equal(diags.n, 1);
	assert_string_equal(diags.items[0].message, "nesting deeper than 32 levels");
	assert_int_equal(diags.items[0].line, 1);
	assert_int_equal(diags.items[0].column, 33);
}

/* Not a file: a directory, a FIFO (which must not hang the loader), a missing path. */
static void test_not_regular(void **state _unused_)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	char *dir = test_tmpdir();
	_cleanup_free_ char *fifo = NULL, *sub = NULL;
	SandboxSpec *spec = NULL;

	assert_true(asprintf(&fifo, "%s/f.yaml", dir) > 0);
	assert_true(asprintf(&sub, "%s/d.yaml", dir) > 0);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(mkdir(sub, 0700), 0);

	assert_int_equal(spec_load_file(fifo, &qemu_default, &spec, &diags), -EBADFD);
	assert_int_equal(spec_load_file(sub, &qemu_default, &spec, &diags), -EISDIR);
	assert_int_equal(spec_load_file("/nonexistent/x.yaml", &qemu_default, &spec, &diags),
			 -ENOENT);
	assert_null(spec);
	assert_true(diag_list_is_empty(&diags));
	test_tmpdir_remove(dir);
}

/* Load a sandbox file with one disk, whose YAML is disk; the spec, or NULL and diags. */
static SandboxSpec *load_disk(const char *disk, DiagList *diags)
{
	_cleanup_free_ char *text = NULL;
	SandboxSpec *spec = NULL;

	assert_true(asprintf(&text,
			     "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  kernel: /k\n"
			     "  memory: 64Mi\n  disks:\n    - %s\n",
			     disk) > 0);
	(void)spec_load_buffer("/x/vm.yaml", text, strlen(text), &qemu_default, &spec, diags);
	return spec;
}

static bool has_diag(const DiagList *l, const char *needle)
{
	for (size_t i = 0; i < l->n; i++)
		if (strstr(l->items[i].message, needle))
			return true;
	return false;
}

/*
 * A disk's path: the loader records the file it names (symlinks followed), which a copy of
 * the spec keeps; a block device only with device: block, and device: block only for one.
 */
static void test_disk_device(void **state _unused_)
{
	char *dir = test_tmpdir();
	_cleanup_free_ char *file = NULL, *link = NULL, *yaml = NULL;
	SandboxSpec *spec, *copy = NULL;
	struct stat st;

	assert_true(asprintf(&file, "%s/d.img", dir) > 0);
	assert_true(asprintf(&link, "%s/link", dir) > 0);
	test_write_str(dir, "d.img", "x");
	assert_int_equal(symlink(file, link), 0);
	assert_int_equal(stat(file, &st), 0);

	{
		_cleanup_(diag_list_done) DiagList diags = {};

		assert_true(asprintf(&yaml, "{id: d, path: %s}", link) > 0);
		spec = load_disk(yaml, &diags);
		assert_non_null(spec);
		assert_true(spec->disks[0].checked.set);
		assert_true(spec->disks[0].checked.ino == st.st_ino);
		assert_true(spec->disks[0].checked.dev == st.st_dev);
		assert_int_equal(spec->disks[0].device, DISK_DEVICE_FILE);
		assert_int_equal(spec_copy(spec, &copy), 0);
		assert_true(copy->disks[0].checked.set && copy->disks[0].checked.ino == st.st_ino);
		/* Not part of the spec's JSON: a copy compares equal, record or not. */
		assert_true(spec_equal(spec, copy));
		sandbox_spec_free(copy);
		sandbox_spec_free(spec);
		yaml = mfree(yaml);
	}
	{
		_cleanup_(diag_list_done) DiagList diags = {};

		assert_true(asprintf(&yaml, "{id: d, path: %s, device: block}", file) > 0);
		assert_null(load_disk(yaml, &diags));
		assert_true(has_diag(&diags, "is not a block device, and device: block says it is"));
	}
	{
		_cleanup_(diag_list_done) DiagList diags = {};

		assert_null(load_disk("{id: d, path: /dev/null}", &diags));
		assert_true(has_diag(&diags, "'/dev/null' is not a regular file"));
	}
	{
		_cleanup_(diag_list_done) DiagList diags = {};

		/* Not there yet: the start's to find, nothing recorded. */
		spec = load_disk("{id: d, path: /nonexistent/d.img}", &diags);
		assert_non_null(spec);
		assert_false(spec->disks[0].checked.set);
		sandbox_spec_free(spec);
	}
	{
		_cleanup_(diag_list_done) DiagList diags = {};

		assert_null(load_disk("{id: d, image: /nonexistent/i, device: block}", &diags));
		assert_true(has_diag(&diags, "a disk from an image is a file of vmd's"));
	}
	test_tmpdir_remove(dir);
}

/* A file with more errors than are kept says how many it dropped. */
static void test_many_errors_capped(void **state _unused_)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	_cleanup_free_ char *text = NULL;
	FILE *m;
	size_t len;

	m = open_memstream(&text, &len);
	fputs("apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  memory: 64Mi\n", m);
	for (int i = 0; i < 150; i++)
		fprintf(m, "  unknown%d: 1\n", i);
	fclose(m);
	assert_int_equal(load_str("x.yaml", text, &qemu_default, &diags), -EINVAL);
	assert_int_equal(diags.n, DIAG_MAX);
	assert_int_equal(diags.n + diags.n_dropped, 151); /* 150 unknown fields, no kernel */
}

static int add_dir_tests(struct CMUnitTest **tests, size_t *n, const char *rel, void (*fn)(void **),
			 bool full_path)
{
	struct dirent **entries;
	int k = scandir(test_src(rel), &entries, NULL, alphasort);

	assert_true(k >= 0);
	for (int i = 0; i < k; i++) {
		const char *name = entries[i]->d_name;
		size_t l = strlen(name);
		char *arg = NULL, *label = NULL;

		if (l < 6 || !streq(name + l - 5, ".yaml")) {
			free(entries[i]);
			continue;
		}
		if (full_path)
			assert_true(asprintf(&arg, "%s/%s", test_src(rel), name) > 0);
		else
			arg = strdup(name);
		assert_true(asprintf(&label, "%s/%s", rel, name) > 0);
		*tests = reallocarray(*tests, *n + 1, sizeof(struct CMUnitTest));
		(*tests)[(*n)++] =
			(struct CMUnitTest){ .name = label, .test_func = fn, .initial_state = arg };
		free(entries[i]);
	}
	free(entries);
	return 0;
}

/* Every file in bad/ has rows in EXPECTED, and every row a file. */
static void test_expected_complete(void **state _unused_)
{
	for (size_t i = 0; i < n_expects; i++) {
		_cleanup_free_ char *path = NULL;
		struct stat st;

		assert_true(asprintf(&path, "%s/%s", test_src("tests/spec/bad"), expects[i].file) > 0);
		if (stat(path, &st) < 0)
			fail_msg("EXPECTED names '%s', which does not exist", expects[i].file);
	}
}

int main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_expected_complete),
		cmocka_unit_test(test_everything_decoded),
		cmocka_unit_test(test_probes_decoded),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_styles),
		cmocka_unit_test(test_comma_path),
		cmocka_unit_test(test_default_backend_rules),
		cmocka_unit_test(test_rules_with_other_errors),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_deep_brackets),
		cmocka_unit_test(test_not_regular),
		cmocka_unit_test(test_disk_device),
		cmocka_unit_test(test_many_errors_capped),
	};
	struct CMUnitTest *tests = NULL;
	size_t n = 0;
	int r;

	load_expected();
	for (size_t i = 0; i < ELEMENTSOF(fixed); i++) {
		tests = reallocarray(tests, n + 1, sizeof(*tests));
		tests[n++] = fixed[i];
	}
	add_dir_tests(&tests, &n, "tests/spec/bad", test_bad_file, false);
	add_dir_tests(&tests, &n, "tests/spec/good", test_good_file, true);
	add_dir_tests(&tests, &n, "examples", test_good_file, true);

	r = _cmocka_run_group_tests("spec-yaml", tests, n, NULL, NULL);

	for (size_t i = ELEMENTSOF(fixed); i < n; i++) {
		free((void *)tests[i].name);
		free(tests[i].initial_state);
	}
	free(tests);
	for (size_t i = 0; i < n_expects; i++) {
		free(expects[i].file);
		free(expects[i].message);
	}
	free(expects);
	return r;
}
