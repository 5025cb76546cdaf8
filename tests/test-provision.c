/* SPDX-License-Identifier: MIT */
/*
 * The NoCloud seed and the credentials' copies (backends/provision.c): what goes into the
 * seed's files, the image read back from its bytes (the volume descriptor, as blkid reads
 * it) and through libisofs' own reader (the Rock Ridge names cloud-init opens), and the
 * errors for host files that are missing, too large or not regular files.
 */
#include <fcntl.h>
#include <stdint.h>
#include <jansson.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* As in provision.c: libisofs.h's own struct burn_source. */
#define LIBISOFS_WITHOUT_LIBBURN 1
#include <libisofs/libisofs.h>

#include "helpers.h"
#include "provision.h"
#include "spec-yaml.h"

static SandboxSpec *load(const char *dir, const char *body)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	const SpecLoadOptions opts = { .default_backend = BACKEND_QEMU };
	_cleanup_free_ char *text = NULL, *path = NULL;
	SandboxSpec *s = NULL;

	assert_true(asprintf(&text,
			     "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: qemu\n"
			     "  memory: 64Mi\n  kernel: /k\n%s",
			     body) > 0);
	assert_true(asprintf(&path, "%s/web-1.yaml", dir) > 0);
	if (spec_load_buffer(path, text, strlen(text), &opts, &s, &diags) < 0)
		for (size_t i = 0; i < diags.n; i++)
			print_error("%u:%u: %s\n", diags.items[i].line, diags.items[i].column,
				    diags.items[i].message);
	assert_non_null(s);
	return s;
}

/* A file of the image, through libisofs' reader: Rock Ridge names, as a Linux mount sees. */
static char *image_file(IsoImage *img, const char *path, size_t *ret_len)
{
	char *buf = calloc(1, 1 << 20);
	IsoNode *node = NULL;
	IsoStream *st;
	int n;

	assert_non_null(buf);
	if (iso_image_path_to_node(img, path, &node) != 1 || !node) {
		free(buf);
		return NULL;
	}
	assert_true(ISO_NODE_IS_FILE(node));
	st = iso_file_get_stream((IsoFile *)node);
	assert_int_equal(iso_stream_open(st), 1);
	n = iso_stream_read(st, buf, (1 << 20) - 1);
	assert_true(n >= 0);
	iso_stream_close(st);
	*ret_len = (size_t)n;
	return buf;
}

static IsoImage *import(const char *path)
{
	IsoDataSource *src = NULL;
	IsoReadOpts *ro = NULL;
	IsoImage *img = NULL;

	assert_int_equal(iso_image_new(NULL, &img), 1);
	assert_int_equal(iso_data_source_new_from_file(path, &src), 1);
	assert_int_equal(iso_read_opts_new(&ro, 0), 1);
	assert_true(iso_image_import(img, src, ro, NULL) >= 0);
	iso_read_opts_free(ro);
	iso_data_source_unref(src);
	return img;
}

static void test_seed(void **state _unused_)
{
	char *dir = test_tmpdir(), why[256], *iso = NULL, pvd[2048];
	_cleanup_free_ char *ud = NULL, *keys = NULL, *body = NULL, *seed = NULL;
	_cleanup_(sandbox_spec_freep) SandboxSpec *s = NULL;
	_cleanup_(seed_files_done) SeedFiles f = {};
	json_auto_t *meta = NULL;
	IsoImage *img;
	size_t len;
	int fd;

	test_write_str(dir, "user-data", "#cloud-config\nruncmd: [[echo, hi]]\n");
	test_write_str(dir, "keys", "# a comment\n\nssh-ed25519 BBBB b@host\r\n  ssh-rsa CCCC c\n");
	assert_true(asprintf(&ud, "%s/user-data", dir) > 0);
	assert_true(asprintf(&keys, "%s/keys", dir) > 0);
	assert_true(asprintf(&body,
			     "  cloudInit:\n    userDataFile: %s\n"
			     "    sshAuthorizedKeys: [ssh-ed25519 AAAA a@host]\n"
			     "    sshAuthorizedKeysFiles: [%s]\n"
			     "    metaData: {zone: z1}\n"
			     "    networkConfig: {version: 2, ethernets: {eth0: {dhcp4: true}}}\n",
			     ud, keys) > 0);
	s = load(dir, body);

	assert_int_equal(seed_files_make(s, &f, why, sizeof(why)), 0);
	assert_string_equal(f.user_data, "#cloud-config\nruncmd: [[echo, hi]]\n");
	meta = json_loads(f.meta_data, 0, NULL);
	assert_non_null(meta);
	assert_string_equal(json_string_value(json_object_get(meta, "local-hostname")), "web-1");
	assert_string_equal(json_string_value(json_object_get(meta, "zone")), "z1");
	assert_true(strncmp(json_string_value(json_object_get(meta, "instance-id")), "web-1-", 6) ==
		    0);
	assert_int_equal(strlen(json_string_value(json_object_get(meta, "instance-id"))), 6 + 16);
	/* Inline keys first, then each file's key lines: no comments, blanks, CRs or indent. */
	assert_int_equal(json_array_size(json_object_get(meta, "public-keys")), 3);
	assert_string_equal(json_string_value(json_array_get(json_object_get(meta, "public-keys"), 0)),
			    "ssh-ed25519 AAAA a@host");
	assert_string_equal(json_string_value(json_array_get(json_object_get(meta, "public-keys"), 1)),
			    "ssh-ed25519 BBBB b@host");
	assert_string_equal(json_string_value(json_array_get(json_object_get(meta, "public-keys"), 2)),
			    "ssh-rsa CCCC c");
	assert_non_null(strstr(f.network_config, "\"dhcp4\": true"));

	assert_true(asprintf(&seed, "%s/" PROVISION_SEED, dir) > 0);
	assert_int_equal(seed_write(s, seed, why, sizeof(why)), 0);
	iso = test_read_file(seed, &len);
	assert_non_null(iso);
	/*
	 * The primary volume descriptor at sector 16: type 1, "CD001", the volume id at 40,
	 * in ISO 9660's upper-case d-characters; the Joliet one at 17 (type 2) says it as
	 * written, in UCS-2 big-endian. blkid reports either, and NoCloud looks for both.
	 */
	assert_true(len > 18 * 2048 && len % 2048 == 0);
	memcpy(pvd, iso + 16 * 2048, sizeof(pvd));
	assert_int_equal(pvd[0], 1);
	assert_memory_equal(pvd + 1, "CD001", 5);
	assert_memory_equal(pvd + 40, "CIDATA                          ", 32);
	memcpy(pvd, iso + 17 * 2048, sizeof(pvd));
	assert_int_equal(pvd[0], 2);
	assert_memory_equal(pvd + 1, "CD001", 5);
	assert_memory_equal(pvd + 40, "\0c\0i\0d\0a\0t\0a\0 ", 14);
	free(iso);

	img = import(seed);
	assert_string_equal(iso_image_get_volume_id(img), "CIDATA");
	iso = image_file(img, "/user-data", &len);
	assert_non_null(iso);
	assert_int_equal(len, f.user_data_len);
	assert_memory_equal(iso, f.user_data, len);
	free(iso);
	iso = image_file(img, "/meta-data", &len);
	assert_non_null(iso);
	assert_int_equal(len, strlen(f.meta_data));
	assert_memory_equal(iso, f.meta_data, len);
	free(iso);
	iso = image_file(img, "/network-config", &len);
	assert_non_null(iso);
	assert_string_equal(iso, f.network_config);
	free(iso);
	iso_image_unref(img);

	fd = open(seed, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	{
		struct stat st;

		assert_int_equal(fstat(fd, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0600);
	}
	close(fd);
	test_tmpdir_remove(dir);
}

/* instance-id is a hash of the inputs: the same for the same, new for a new user-data. */
static void test_instance_id(void **state _unused_)
{
	char *dir = test_tmpdir(), why[256];
	_cleanup_(sandbox_spec_freep) SandboxSpec
		*a = load(dir, "  cloudInit: {userData: a}\n"),
		*a2 = load(dir, "  cloudInit: {userData: a}\n"),
		*b = load(dir, "  cloudInit: {userData: b}\n"),
		*mine = load(dir,
			     "  cloudInit:\n    metaData: {instance-id: i-1, local-hostname: h}\n"),
		*none = load(dir, "  cloudInit:\n");
	SeedFiles fa = {}, fa2 = {}, fb = {}, fm = {}, fn = {};
	json_auto_t *ja = NULL, *ja2 = NULL, *jb = NULL, *jm = NULL;

	assert_int_equal(seed_files_make(a, &fa, why, sizeof(why)), 0);
	assert_int_equal(seed_files_make(a2, &fa2, why, sizeof(why)), 0);
	assert_int_equal(seed_files_make(b, &fb, why, sizeof(why)), 0);
	assert_int_equal(seed_files_make(mine, &fm, why, sizeof(why)), 0);
	assert_int_equal(seed_files_make(none, &fn, why, sizeof(why)), 0);
	ja = json_loads(fa.meta_data, 0, NULL);
	ja2 = json_loads(fa2.meta_data, 0, NULL);
	jb = json_loads(fb.meta_data, 0, NULL);
	jm = json_loads(fm.meta_data, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(ja, "instance-id")),
			    json_string_value(json_object_get(ja2, "instance-id")));
	assert_string_not_equal(json_string_value(json_object_get(ja, "instance-id")),
				json_string_value(json_object_get(jb, "instance-id")));
	assert_string_equal(json_string_value(json_object_get(jm, "instance-id")), "i-1");
	assert_string_equal(json_string_value(json_object_get(jm, "local-hostname")), "h");
	/* Neither userData nor a file: an empty user-data, which NoCloud requires to exist. */
	assert_string_equal(fn.user_data, "");
	assert_null(fn.network_config);
	assert_null(json_object_get(jm, "public-keys"));
	seed_files_done(&fa);
	seed_files_done(&fa2);
	seed_files_done(&fb);
	seed_files_done(&fm);
	seed_files_done(&fn);
	test_tmpdir_remove(dir);
}

static void expect_error(const char *dir, const char *body, int error, const char *message)
{
	_cleanup_(sandbox_spec_freep) SandboxSpec *s = load(dir, body);
	SeedFiles f = {};
	char why[512];

	assert_int_equal(seed_files_make(s, &f, why, sizeof(why)), error);
	if (!strstr(why, message))
		print_error("got: %s\nexpected: %s\n", why, message);
	assert_non_null(strstr(why, message));
	assert_null(f.user_data);
}

static void test_host_file_errors(void **state _unused_)
{
	char *dir = test_tmpdir(), body[512], fifo[256];
	int fd;

	snprintf(body, sizeof(body), "  cloudInit: {userDataFile: %s/missing}\n", dir);
	expect_error(dir, body, -ENOENT, "/missing': No such file or directory");

	/* One byte over 1 MiB: refused, not cut. */
	test_write_str(dir, "big", "");
	snprintf(fifo, sizeof(fifo), "%s/big", dir);
	fd = open(fifo, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, SPEC_USER_DATA_MAX + 1), 0);
	close(fd);
	snprintf(body, sizeof(body), "  cloudInit: {userDataFile: %s}\n", fifo);
	expect_error(dir, body, -EFBIG, "/big' is larger than 1 MiB");

	/* A FIFO would block the loop: refused without waiting for a writer. */
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	snprintf(body, sizeof(body), "  cloudInit: {sshAuthorizedKeysFiles: [%s]}\n", fifo);
	expect_error(dir, body, -EBADFD, "sshAuthorizedKeysFiles '");
	test_tmpdir_remove(dir);
}

static void test_credentials(void **state _unused_)
{
	char *dir = test_tmpdir(), why[512], body[1024];
	_cleanup_free_ char *copy = NULL, *text = NULL, *cdir = NULL;
	_cleanup_(sandbox_spec_freep) SandboxSpec *s = NULL, *missing = NULL;
	struct stat st;
	size_t len;

	test_write(dir, "secrets/pw", "s3cret\0bin", 10);
	test_write_str(dir, "run/old/x", "");
	snprintf(body, sizeof(body),
		 "  credentials:\n    - {name: web.password, fromFile: %s/secrets/pw}\n", dir);
	s = load(dir, body);
	assert_true(asprintf(&cdir, "%s/run", dir) > 0);
	assert_int_equal(credentials_copy(s, cdir, why, sizeof(why)), 0);
	assert_true(asprintf(&copy, "%s/run/" PROVISION_CREDENTIALS "/web.password", dir) > 0);
	text = test_read_file(copy, &len);
	assert_int_equal(len, 10);
	assert_memory_equal(text, "s3cret\0bin", 10);
	assert_int_equal(stat(copy, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	free(cdir);
	assert_true(asprintf(&cdir, "%s/run/" PROVISION_CREDENTIALS, dir) > 0);
	assert_int_equal(stat(cdir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(credentials_remove(cdir), 0); /* not a runtime dir: nothing in it */
	free(cdir);
	assert_true(asprintf(&cdir, "%s/run", dir) > 0);

	/* A missing file: the error names the credential and the path, never a value. */
	snprintf(body, sizeof(body),
		 "  credentials:\n    - {name: db, fromFile: %s/secrets/none}\n", dir);
	missing = load(dir, body);
	assert_int_equal(credentials_copy(missing, cdir, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, "credential 'db': fromFile '"));
	/* The last boot's copies went first. */
	assert_int_equal(access(copy, F_OK), -1);

	assert_int_equal(credentials_copy(s, cdir, why, sizeof(why)), 0);
	test_write_str(dir, "run/" PROVISION_SEED, "x");
	test_write_str(dir, "run/" PROVISION_SEED ".tmp-a1B2c3", "torn");
	assert_int_equal(provision_remove(cdir), 0);
	assert_int_equal(access(copy, F_OK), -1);
	free(copy);
	assert_true(asprintf(&copy, "%s/run/" PROVISION_SEED ".tmp-a1B2c3", dir) > 0);
	assert_int_equal(access(copy, F_OK), -1);
	free(copy);
	assert_true(asprintf(&copy, "%s/run/" PROVISION_SEED, dir) > 0);
	assert_int_equal(access(copy, F_OK), -1);
	assert_int_equal(provision_remove(cdir), 0); /* nothing: not an error */
	test_tmpdir_remove(dir);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed),
		cmocka_unit_test(test_instance_id),
		cmocka_unit_test(test_host_file_errors),
		cmocka_unit_test(test_credentials),
	};

	return cmocka_run_group_tests_name("provision", tests, NULL, NULL);
}
