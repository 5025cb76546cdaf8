/* SPDX-License-Identifier: MIT */
/*
 * The NoCloud seed and the credentials' copies (provision.h). The image is written with
 * libisofs (Debian's libisofs6, the library xorriso is built on), not by hand: ISO 9660
 * with Rock Ridge and Joliet names, since plain ISO 9660 names are 8.3 and upper case and
 * cloud-init looks for "user-data", "meta-data" and "network-config" as they are spelt.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
/* libisofs.h then has struct burn_source, through which its writer hands out the image. */
#define LIBISOFS_WITHOUT_LIBBURN 1
#include <libisofs/libisofs.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "provision.h"

void seed_files_done(SeedFiles *f)
{
	free(f->user_data);
	free(f->meta_data);
	free(f->network_config);
	*f = (SeedFiles){};
}

static int file_problem(int r, const char *field, const char *path, char *why, size_t why_size)
{
	if (r == -EFBIG)
		snprintf(why, why_size, "%s '%s' is larger than 1 MiB", field, path);
	else if (r == -EBADFD)
		snprintf(why, why_size, "%s '%s' is not a regular file", field, path);
	else
		snprintf(why, why_size, "%s '%s': %s", field, path, strerror(-r));
	return r;
}

/* Each line of an authorized_keys file that is a key (not blank, not a comment), into keys. */
static int keys_from_text(json_t *keys, char *text)
{
	char *save = NULL;

	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		l += strspn(l, " \t");
		l[strcspn(l, "\r")] = '\0';
		if (!*l || *l == '#')
			continue;
		if (json_array_append_new(keys, json_string(l)) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int collect_keys(const CloudInitSpec *c, json_t *keys, char *why, size_t why_size)
{
	for (size_t i = 0; c->ssh_keys && c->ssh_keys[i]; i++)
		if (json_array_append_new(keys, json_string(c->ssh_keys[i])) < 0)
			return -ENOMEM;
	for (size_t i = 0; c->ssh_key_files && c->ssh_key_files[i]; i++) {
		_cleanup_free_ char *text = NULL;
		size_t len;
		int r;

		r = read_regular_file(c->ssh_key_files[i], SPEC_USER_DATA_MAX, &text, &len);
		if (r < 0)
			return file_problem(r, "sshAuthorizedKeysFiles", c->ssh_key_files[i], why,
					    why_size);
		if (strlen(text) != len) {
			snprintf(why, why_size, "sshAuthorizedKeysFiles '%s' has a NUL byte",
				 c->ssh_key_files[i]);
			return -EINVAL;
		}
		r = keys_from_text(keys, text);
		if (r < 0)
			return r;
	}
	return 0;
}

/* What the instance-id says unless metaData does: a new one whenever the seed changes. */
static uint64_t seed_hash(const SeedFiles *f, const json_t *meta)
{
	_cleanup_free_ char *m = json_dumps(meta, JSON_SORT_KEYS | JSON_COMPACT);
	uint64_t h = FNV1A64_INIT;

	h = fnv1a64(h, f->user_data, f->user_data_len + 1);
	h = fnv1a64(h, f->network_config ?: "", strlen(f->network_config ?: "") + 1);
	return fnv1a64(h, m ?: "", strlen(m ?: ""));
}

static int meta_data_make(const SandboxSpec *s, SeedFiles *f, char *why, size_t why_size)
{
	const CloudInitSpec *c = s->cloud_init;
	_cleanup_(json_decrefp) json_t *meta = json_object(), *keys = json_array();
	char id[SPEC_NAME_MAX + 32];
	int r = 0;

	if (!meta || !keys)
		return -ENOMEM;
	r = collect_keys(c, keys, why, why_size);
	if (r < 0)
		return r;
	if (json_array_size(keys) > 0)
		r |= json_object_set(meta, "public-keys", keys);
	for (size_t i = 0; i < c->n_meta_data; i++)
		r |= json_object_set_new(meta, c->meta_data[i].key,
					 json_string(c->meta_data[i].value));
	/* Hashed before the defaults go in: the inputs, not what is derived from them. */
	snprintf(id, sizeof(id), "%s-%016" PRIx64, s->name, seed_hash(f, meta));
	if (!json_object_get(meta, "instance-id"))
		r |= json_object_set_new(meta, "instance-id", json_string(id));
	if (!json_object_get(meta, "local-hostname"))
		r |= json_object_set_new(meta, "local-hostname", json_string(s->name));
	if (r < 0)
		return -ENOMEM;
	f->meta_data = json_dumps(meta, JSON_SORT_KEYS | JSON_INDENT(2));
	return f->meta_data ? 0 : -ENOMEM;
}

int seed_files_make(const SandboxSpec *s, SeedFiles *ret, char *why, size_t why_size)
{
	const CloudInitSpec *c = s->cloud_init;
	_cleanup_(seed_files_done) SeedFiles f = {};
	int r;

	snprintf(why, why_size, "out of memory");
	if (c->user_data_file) {
		r = read_regular_file(c->user_data_file, SPEC_USER_DATA_MAX, &f.user_data,
				      &f.user_data_len);
		if (r < 0)
			return file_problem(r, "userDataFile", c->user_data_file, why, why_size);
	} else {
		f.user_data = strdup(c->user_data ?: "");
		if (!f.user_data)
			return -ENOMEM;
		f.user_data_len = strlen(f.user_data);
	}
	if (c->network_config) {
		f.network_config = strdup(c->network_config);
		if (!f.network_config)
			return -ENOMEM;
	}
	r = meta_data_make(s, &f, why, why_size);
	if (r < 0)
		return r;
	*ret = f;
	f = (SeedFiles){};
	return 0;
}

/* libisofs keeps its state process-wide: set up once, quiet (errors come back as codes). */
static int iso_setup(void)
{
	static int done;

	if (done == 0) {
		done = iso_init() == 1 ? 1 : -EIO;
		if (done == 1)
			(void)iso_set_msgs_severities("NEVER", "NEVER", "vmd");
	}
	return done < 0 ? done : 0;
}

static void iso_image_unrefp(IsoImage **i)
{
	if (*i)
		iso_image_unref(*i);
}

static void iso_write_opts_freep(IsoWriteOpts **o)
{
	if (*o)
		iso_write_opts_free(*o);
}

static int add_file(IsoImage *image, const char *name, const char *data, size_t len)
{
	unsigned char *copy = malloc(len ?: 1);
	IsoStream *stream = NULL;
	IsoFile *file = NULL;

	if (!copy)
		return -ENOMEM;
	memcpy(copy, data, len);
	/* The stream owns copy from here on, and the file the stream. */
	if (iso_memory_stream_new(copy, len, &stream) != 1) {
		free(copy);
		return -ENOMEM;
	}
	if (iso_tree_add_new_file(iso_image_get_root(image), name, stream, &file) < 0) {
		iso_stream_unref(stream);
		return -EIO;
	}
	iso_node_set_permissions((IsoNode *)file, 0444);
	return 0;
}

/* Everything the writer's thread makes, read from its burn_source. */
static int drain(struct burn_source *src, char **ret, size_t *ret_len)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, size = 0;
	int n;

	for (;;) {
		if (len + 2048 > size) {
			char *b;

			if (size >= PROVISION_SEED_MAX)
				return -EFBIG;
			size = size ? size * 2 : 256 * 1024;
			b = realloc(buf, size);
			if (!b)
				return -ENOMEM;
			buf = b;
		}
		n = src->read_xt(src, (unsigned char *)buf + len, 2048);
		if (n < 0)
			return -EIO;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	*ret_len = len;
	*ret = TAKE_PTR(buf);
	return 0;
}

int seed_image(const SeedFiles *f, char **ret, size_t *ret_len)
{
	_cleanup_(iso_image_unrefp) IsoImage *image = NULL;
	_cleanup_(iso_write_opts_freep) IsoWriteOpts *opts = NULL;
	struct burn_source *src = NULL;
	int r;

	r = iso_setup();
	if (r < 0)
		return r;
	if (iso_image_new(PROVISION_SEED_VOLUME, &image) != 1)
		return -ENOMEM;
	if ((r = add_file(image, "user-data", f->user_data, f->user_data_len)) < 0 ||
	    (r = add_file(image, "meta-data", f->meta_data, strlen(f->meta_data))) < 0 ||
	    (f->network_config && (r = add_file(image, "network-config", f->network_config,
						strlen(f->network_config))) < 0))
		return r;
	/* Profile 0: the basic ISO 9660 image; its names as written, in Rock Ridge and Joliet. */
	if (iso_write_opts_new(&opts, 0) != 1 || iso_write_opts_set_rockridge(opts, 1) != 1 ||
	    iso_write_opts_set_joliet(opts, 1) != 1 || iso_write_opts_set_always_gmt(opts, 1) != 1)
		return -ENOMEM;
	if (iso_image_create_burn_source(image, opts, &src) != 1)
		return -EIO;
	r = drain(src, ret, ret_len);
	if (r < 0 && src->cancel)
		src->cancel(src);
	src->free_data(src);
	free(src);
	return r;
}

int seed_write(const SandboxSpec *s, const char *path, char *why, size_t why_size)
{
	_cleanup_(seed_files_done) SeedFiles f = {};
	_cleanup_free_ char *image = NULL;
	size_t len;
	int r;

	r = seed_files_make(s, &f, why, why_size);
	if (r < 0)
		return r;
	r = seed_image(&f, &image, &len);
	if (r < 0) {
		snprintf(why, why_size, "cannot make the cloud-init seed: %s", strerror(-r));
		return r;
	}
	r = write_file_atomic(path, image, len, 0600, false);
	if (r < 0)
		snprintf(why, why_size, "cannot write the cloud-init seed '%s': %s", path,
			 strerror(-r));
	return r;
}

int credentials_remove(const char *dir)
{
	_cleanup_free_ char *p = NULL;
	_cleanup_close_ int fd = -EBADF;
	DIR *d;
	int r = 0;

	if (asprintf(&p, "%s/" PROVISION_CREDENTIALS, dir) < 0)
		return -ENOMEM;
	fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	d = fdopendir(fd);
	if (!d)
		return -errno;
	fd = -EBADF; /* the DIR's now */
	for (struct dirent *e; (e = readdir(d));)
		if (!streq(e->d_name, ".") && !streq(e->d_name, "..") &&
		    unlinkat(dirfd(d), e->d_name, 0) < 0 && errno != ENOENT)
			r = -errno;
	closedir(d);
	if (rmdir(p) < 0 && errno != ENOENT && r == 0)
		r = -errno;
	return r;
}

int provision_remove(const char *dir)
{
	_cleanup_free_ char *seed = NULL;
	int r;

	if (asprintf(&seed, "%s/" PROVISION_SEED, dir) < 0)
		return -ENOMEM;
	r = credentials_remove(dir);
	if (unlink(seed) < 0 && errno != ENOENT && r == 0)
		r = -errno;
	/* A seed half-written when vmd was killed (seed.iso.tmp-XXXXXX): never used, gone. */
	(void)remove_atomic_temporaries(AT_FDCWD, dir);
	return r;
}

int credentials_copy(const SandboxSpec *s, const char *dir, char *why, size_t why_size)
{
	_cleanup_free_ char *cdir = NULL;
	int r;

	snprintf(why, why_size, "out of memory");
	r = credentials_remove(dir);
	if (r < 0 && r != -ENOMEM)
		snprintf(why, why_size, "cannot remove the credentials of the last boot: %s",
			 strerror(-r));
	if (r < 0 || s->n_credentials == 0)
		return r;
	if (asprintf(&cdir, "%s/" PROVISION_CREDENTIALS, dir) < 0)
		return -ENOMEM;
	if (mkdir(cdir, 0700) < 0) {
		r = -errno;
		snprintf(why, why_size, "cannot make '%s': %s", cdir, strerror(-r));
		return r;
	}
	for (size_t i = 0; i < s->n_credentials; i++) {
		const CredentialSpec *c = &s->credentials[i];
		_cleanup_free_ char *value = NULL, *copy = NULL;
		size_t len = 0;
		char field[SPEC_CREDENTIAL_NAME_MAX + 32];

		snprintf(field, sizeof(field), "credential '%s': fromFile", c->name);
		r = read_regular_file(c->from_file, SPEC_CREDENTIAL_SIZE_MAX, &value, &len);
		if (r < 0)
			return file_problem(r, field, c->from_file, why, why_size);
		if (asprintf(&copy, "%s/%s", cdir, c->name) < 0)
			r = -ENOMEM;
		else
			r = write_file_atomic(copy, value, len, 0600, false);
		explicit_bzero(value, len);
		if (r < 0) {
			snprintf(why, why_size, "credential '%s': cannot copy it: %s", c->name,
				 strerror(-r));
			return r;
		}
	}
	return 0;
}
