/* SPDX-License-Identifier: MIT */
/*
 * The snapshot store (snapshot.h). A snapshot is complete or absent: the backend writes
 * into a fresh .new-XXXXXX, the daemon adds the manifest, syncs it all and renames it to
 * current in one step; what a kill leaves is a .new-* that the next vmd removes.
 */
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot.h"
#include "spec-json.h"
#include "status.h"
#include "util.h"

#define TREE_DEPTH_MAX 8

Snapshot *snapshot_free(Snapshot *s)
{
	if (!s)
		return NULL;
	sandbox_spec_free(s->config);
	return mfree(s);
}

uint64_t snapshot_boot_hash(const SandboxSpec *c)
{
	const char *parts[] = { c->kernel, c->initrd, c->cmdline };
	const uint64_t size[] = { c->vcpus, c->memory };
	uint64_t h = fnv1a64(FNV1A64_INIT, size, sizeof(size));

	for (size_t i = 0; i < ELEMENTSOF(parts); i++)
		h = fnv1a64(h, parts[i] ?: "", strlen(parts[i] ?: "") + 1);
	return h;
}

static char *name_dir(const char *state_dir, const char *name)
{
	char *p = NULL;

	return asprintf(&p, "%s/snapshots/%s", state_dir, name) < 0 ? NULL : p;
}

char *snapshot_current_path(const char *state_dir, const char *name)
{
	char *p = NULL;

	return asprintf(&p, "%s/snapshots/%s/" SNAPSHOT_CURRENT, state_dir, name) < 0 ? NULL : p;
}

/* Remove name under dfd, a file or a tree of them. */
static int remove_tree_at(int dfd, const char *name, unsigned depth)
{
	struct dirent *e;
	DIR *d;
	int fd, r = 0;

	if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (!IN_SET(errno, EISDIR, EPERM))
		return -errno;
	if (depth >= TREE_DEPTH_MAX)
		return -ELOOP;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((e = readdir(d)))
		if (!streq(e->d_name, ".") && !streq(e->d_name, ".."))
			r = remove_tree_at(dirfd(d), e->d_name, depth + 1) ?: r;
	closedir(d);
	if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return -errno;
	return r;
}

static int remove_tree(const char *path)
{
	return remove_tree_at(AT_FDCWD, path, 0);
}

/* The bytes of every file under dfd; each synced to disk first, if sync. */
static int tree_walk(int dfd, bool sync, unsigned depth, uint64_t *size)
{
	_cleanup_close_ int own = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
	struct dirent *e;
	DIR *d;
	int r = 0;

	if (own < 0)
		return -errno;
	if (depth >= TREE_DEPTH_MAX)
		return -ELOOP;
	d = fdopendir(own);
	if (!d)
		return -errno;
	TAKE_FD(own);
	while ((e = readdir(d)) && r >= 0) {
		struct stat st;
		int fd;

		if (streq(e->d_name, ".") || streq(e->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			break;
		}
		if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
			continue;
		/* What the VMM wrote: the daemon's files are not the snapshot's size. */
		if (S_ISREG(st.st_mode) && (depth > 0 || (!streq(e->d_name, SNAPSHOT_MANIFEST) &&
							  !streq(e->d_name, SNAPSHOT_COMPLETE))))
			*size += (uint64_t)st.st_size;
		if (!sync && S_ISREG(st.st_mode))
			continue;
		fd = openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			r = -errno;
			break;
		}
		if (S_ISDIR(st.st_mode))
			r = tree_walk(fd, sync, depth + 1, size);
		else if (fsync(fd) < 0)
			r = -errno;
		close(fd);
	}
	if (r >= 0 && sync && fsync(dirfd(d)) < 0)
		r = -errno;
	closedir(d);
	return r;
}

static int tree_size(const char *path, bool sync, uint64_t *ret)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	*ret = 0;
	if (fd < 0)
		return -errno;
	return tree_walk(fd, sync, 0, ret);
}

static int manifest_write_to(const char *path, BackendKind backend, uint64_t generation,
			     const SandboxSpec *config, bool paused, uint64_t size, uint64_t taken)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	_cleanup_free_ char *text = NULL;
	json_t *c = spec_to_json(config);
	char hash[32], at[32] = "";

	if (!c)
		return -ENOMEM;
	status_file_hash_format(snapshot_boot_hash(config), hash);
	if (taken)
		format_timestamp(taken, at);
	j = json_pack("{s:s, s:I, s:s, s:O?, s:o, s:b, s:I, s:s?, s:I}", "backend",
		      backend_kind_to_string(backend), "generation", (json_int_t)generation,
		      "bootConfigHash", hash, "disks", json_object_get(c, "disks"), "config", c,
		      "paused", paused, "size", (json_int_t)size, "takenAt", taken ? at : NULL,
		      "takenAtUsec", (json_int_t)taken);
	if (!j)
		return -ENOMEM;
	text = json_dumps(j, JSON_SORT_KEYS | JSON_INDENT(2));
	if (!text)
		return -ENOMEM;
	return write_file_atomic(path, text, strlen(text), 0600, true);
}

static int manifest_write(const char *dir, BackendKind backend, uint64_t generation,
			  const SandboxSpec *config, bool paused, uint64_t size, uint64_t taken)
{
	_cleanup_free_ char *path = NULL;

	if (asprintf(&path, "%s/" SNAPSHOT_MANIFEST, dir) < 0)
		return -ENOMEM;
	return manifest_write_to(path, backend, generation, config, paused, size, taken);
}

/* A dir the VMM user may pass through to its own (0711), listing nothing. */
static int make_passable(const char *path, bool for_other)
{
	struct stat st;
	int r = mkdir_p(path, for_other ? 0711 : 0700);

	if (r < 0)
		return r;
	if (for_other && stat(path, &st) == 0 && (st.st_mode & 0011) != 0011 &&
	    chmod(path, (st.st_mode & 07777) | 0011) < 0)
		return -errno;
	return 0;
}

static char *pending_path(const char *new_path)
{
	char *p = NULL;

	return asprintf(&p, "%s.json", new_path) < 0 ? NULL : p;
}

int snapshot_begin(const char *state_dir, const char *name, const Snapshot *what, uid_t uid,
		   gid_t gid, char **ret_path)
{
	_cleanup_free_ char *top = NULL, *dir = name_dir(state_dir, name), *tmpl = NULL,
			    *pending = NULL;
	bool other = uid != (uid_t)-1;
	int r;

	if (!dir || asprintf(&top, "%s/snapshots", state_dir) < 0 ||
	    asprintf(&tmpl, "%s/" SNAPSHOT_NEW_PREFIX "XXXXXX", dir) < 0)
		return -ENOMEM;
	if ((other && (r = make_passable(state_dir, true)) < 0) ||
	    (r = make_passable(top, other)) < 0 || (r = make_passable(dir, other)) < 0)
		return r;
	if (!mkdtemp(tmpl))
		return -errno;
	pending = pending_path(tmpl);
	r = pending ? 0 : -ENOMEM;
	if (r >= 0 && other && chown(tmpl, uid, gid) < 0)
		r = -errno;
	/* The manifest to be, beside the dir: the dir is the backend's, empty. */
	if (r >= 0)
		r = manifest_write_to(pending, what->backend, what->generation, what->config,
				      what->paused, 0, 0);
	if (r < 0) {
		snapshot_abort(tmpl);
		return r;
	}
	*ret_path = TAKE_PTR(tmpl);
	return 0;
}

void snapshot_abort(const char *new_path)
{
	_cleanup_free_ char *pending = new_path ? pending_path(new_path) : NULL;

	if (new_path)
		(void)remove_tree(new_path);
	if (pending)
		(void)unlink(pending);
}

static int manifest_read_from(const char *path, Snapshot **ret)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	_cleanup_(snapshot_freep) Snapshot *s = calloc(1, sizeof(Snapshot));
	const char *backend;
	int r;

	if (!s)
		return -ENOMEM;
	j = json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
	if (!j)
		return access(path, F_OK) < 0 && errno == ENOENT ? -ENOENT : -EBADMSG;
	backend = json_string_value(json_object_get(j, "backend"));
	s->backend = backend ? backend_kind_from_string(backend) : _BACKEND_KIND_INVALID;
	if (s->backend < 0)
		return -EBADMSG;
	r = spec_from_json(json_object_get(j, "config"), &s->config);
	if (r < 0)
		return -EBADMSG;
	s->generation = (uint64_t)json_integer_value(json_object_get(j, "generation"));
	s->boot_hash = snapshot_boot_hash(s->config);
	s->paused = json_is_true(json_object_get(j, "paused"));
	s->taken_at_usec = (uint64_t)json_integer_value(json_object_get(j, "takenAtUsec"));
	s->size = (uint64_t)json_integer_value(json_object_get(j, "size"));
	*ret = TAKE_PTR(s);
	return 0;
}

static int manifest_read(const char *dir, Snapshot **ret)
{
	_cleanup_free_ char *path = NULL;

	if (asprintf(&path, "%s/" SNAPSHOT_MANIFEST, dir) < 0)
		return -ENOMEM;
	return manifest_read_from(path, ret);
}

int snapshot_sync(const char *new_path)
{
	uint64_t size;

	return tree_size(new_path, true, &size);
}

int snapshot_commit(const char *state_dir, const char *name, const char *new_path,
		    const Snapshot *what, bool synced, Snapshot **ret)
{
	_cleanup_free_ char *dir = name_dir(state_dir, name);
	_cleanup_(snapshot_freep) Snapshot *s = calloc(1, sizeof(Snapshot));
	_cleanup_free_ char *pending = NULL;
	_cleanup_close_ int dfd = -EBADF;
	const char *base = new_path ? strrchr(new_path, '/') : NULL;
	uint64_t size = 0;
	int r;

	if (!dir || !base || !s)
		return -ENOMEM;
	base++;
	*s = (Snapshot){ .backend = what->backend,
			 .generation = what->generation,
			 .paused = what->paused,
			 .taken_at_usec = now_usec(CLOCK_REALTIME) };
	r = spec_copy(what->config, &s->config);
	if (r < 0)
		return r;
	s->boot_hash = snapshot_boot_hash(s->config);
	r = tree_size(new_path, false, &size);
	if (r < 0)
		return r;
	s->size = size;
	r = manifest_write(new_path, s->backend, s->generation, s->config, s->paused, size,
			   s->taken_at_usec);
	if (r < 0)
		return r;
	/* The manifest was synced as it was written; the rest, unless a child did it. */
	if (!synced && (r = snapshot_sync(new_path)) < 0)
		return r;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	/* One step from absent (or the one before) to complete: the older one goes after. */
	if (renameat2(dfd, base, dfd, SNAPSHOT_CURRENT, RENAME_EXCHANGE) == 0)
		(void)remove_tree_at(dfd, base, 0);
	else if (errno != ENOENT || renameat(dfd, base, dfd, SNAPSHOT_CURRENT) < 0)
		return -errno;
	if (fsync(dfd) < 0)
		return -errno;
	pending = pending_path(new_path);
	if (pending)
		(void)unlink(pending);
	if (ret)
		*ret = TAKE_PTR(s);
	return 0;
}

static bool endswith(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && streq(s + n - m, suffix);
}

/* Whether "X.json"'s X is a dir under dfd. */
static bool sibling_dir(int dfd, const char *json_name)
{
	_cleanup_free_ char *base = strndup(json_name, strlen(json_name) - 5);
	struct stat st;

	return base && fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* A .new-XXXXXX found at load: its backend marked it complete, and its manifest is there? */
static void leftover(const char *state_dir, const char *name, const char *dir, const char *entry)
{
	_cleanup_free_ char *path = NULL, *marker = NULL, *pending = NULL;
	_cleanup_(snapshot_freep) Snapshot *what = NULL;

	if (asprintf(&path, "%s/%s", dir, entry) < 0 ||
	    asprintf(&marker, "%s/" SNAPSHOT_COMPLETE, path) < 0 || !(pending = pending_path(path)))
		return;
	if (access(marker, F_OK) == 0 && manifest_read_from(pending, &what) == 0 &&
	    snapshot_commit(state_dir, name, path, what, false, NULL) == 0)
		return;
	snapshot_abort(path);
}

int snapshot_load(const char *state_dir, const char *name, bool clean, Snapshot **ret)
{
	_cleanup_free_ char *dir = name_dir(state_dir, name), *cur = NULL;
	_cleanup_(snapshot_freep) Snapshot *s = NULL;
	struct dirent *e;
	DIR *d;
	int r;

	if (!dir || asprintf(&cur, "%s/" SNAPSHOT_CURRENT, dir) < 0)
		return -ENOMEM;
	if (clean && (d = opendir(dir))) {
		/* A save that a kill (or a crash) cut short: committed if complete, else gone. */
		while ((e = readdir(d)))
			if (strncmp(e->d_name, SNAPSHOT_NEW_PREFIX, strlen(SNAPSHOT_NEW_PREFIX)) == 0 &&
			    !endswith(e->d_name, ".json"))
				leftover(state_dir, name, dir, e->d_name);
		closedir(d);
		/* Manifests to be whose dir is gone. */
		d = opendir(dir);
		while (d && (e = readdir(d)))
			if (strncmp(e->d_name, SNAPSHOT_NEW_PREFIX, strlen(SNAPSHOT_NEW_PREFIX)) == 0 &&
			    endswith(e->d_name, ".json") && !sibling_dir(dirfd(d), e->d_name))
				(void)unlinkat(dirfd(d), e->d_name, 0);
		if (d)
			closedir(d);
	}
	r = manifest_read(cur, &s);
	if (r < 0)
		return r;
	/* What is on disk, whatever the manifest says. */
	if (tree_size(cur, false, &s->size) < 0)
		return -EBADMSG;
	*ret = TAKE_PTR(s);
	return 0;
}

int snapshot_remove(const char *state_dir, const char *name)
{
	_cleanup_free_ char *dir = name_dir(state_dir, name);

	return dir ? remove_tree(dir) : -ENOMEM;
}

int snapshot_list(const char *state_dir, char ***ret_names, size_t *ret_n)
{
	_cleanup_free_ char *top = NULL;
	_cleanup_(strv_freep) char **names = NULL;
	struct dirent *e;
	size_t n = 0;
	DIR *d;

	if (asprintf(&top, "%s/snapshots", state_dir) < 0)
		return -ENOMEM;
	d = opendir(top);
	if (!d) {
		*ret_names = NULL;
		*ret_n = 0;
		return errno == ENOENT ? 0 : -errno;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || e->d_type != DT_DIR)
			continue;
		if (strv_extendf(&names, "%s", e->d_name) < 0) {
			closedir(d);
			return -ENOMEM;
		}
		n++;
	}
	closedir(d);
	*ret_names = TAKE_PTR(names);
	*ret_n = n;
	return 0;
}
