/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "prioq.h"
#include "sandbox-dir.h"

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && streq(s + n - m, suffix);
}

bool sandbox_dir_name_is_candidate(const char *name)
{
	size_t stem;

	/* Hidden: .web.yaml.swp, .#web.yaml (Emacs locks), ..data, ..2024_01_01_00_00_00.1 */
	if (name[0] == '.')
		return false;
	/* Emacs auto-saves (#web.yaml#) and anything else starting so. */
	if (name[0] == '#')
		return false;
	if (has_suffix(name, ".yaml"))
		stem = strlen(name) - 5;
	else if (has_suffix(name, ".yml"))
		stem = strlen(name) - 4;
	else
		/* web.yaml~, web.yaml.dpkg-new, 4913 (vim's probe), web.yaml.swp, ... */
		return false;
	return stem > 0;
}

const char *sandbox_dir_relative(const char *dir, const char *path)
{
	size_t n = strlen(dir);

	while (n > 0 && dir[n - 1] == '/')
		n--;
	if (strncmp(path, dir, n) != 0 || path[n] != '/')
		return NULL;
	return path + n + strspn(path + n, "/");
}

bool sandbox_dir_subdir_is_searched(const char *name)
{
	return name[0] != '.';
}

/*
 * A directory is read RUN_MAX names at a time, each run sorted as it is read, and the runs
 * merged as the walk goes: no step of the walk reads or sorts a large directory whole.
 */
#define RUN_MAX 1024

typedef struct Run {
	char *text;   /* the names, each after the other: one allocation, not RUN_MAX */
	char **names; /* into text, sorted */
	size_t n, next;
	unsigned idx; /* in Frame.merge */
} Run;

typedef struct Frame {
	char *dir;
	int fd; /* the directory, for its entries (fstatat, openat) */
	DIR *d; /* while it is being read */
	Run *runs;
	size_t n_runs;
	Prioq *merge; /* the runs, by their next name, once it is read */
	unsigned depth;
} Frame;

struct SandboxDirIter {
	Frame frames[SANDBOX_DIR_MAX_DEPTH];
	unsigned n_frames; /* 0 before the first call and after the last */
	bool started;
	int root_fd; /* the caller's, dup'ed; or -EBADF: open root */
	char *root;
	char *path; /* the last candidate */
};

static int string_compare(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_compare(const void *a, const void *b)
{
	const Run *x = a, *y = b;

	return strcmp(x->names[x->next], y->names[y->next]);
}

int sandbox_dir_iter_new(const char *dir, int dir_fd, SandboxDirIter **ret)
{
	SandboxDirIter *it = calloc(1, sizeof(*it));

	if (!it || !(it->root = strdup(dir))) {
		free(it);
		return -ENOMEM;
	}
	it->root_fd = dir_fd >= 0 ? fcntl(dir_fd, F_DUPFD_CLOEXEC, 3) : -EBADF;
	if (dir_fd >= 0 && it->root_fd < 0) {
		int r = -errno;

		sandbox_dir_iter_free(it);
		return r;
	}
	*ret = it;
	return 0;
}

static void frame_done(Frame *f)
{
	for (size_t i = 0; i < f->n_runs; i++) {
		free(f->runs[i].text);
		free(f->runs[i].names);
	}
	free(f->runs);
	prioq_free(f->merge);
	if (f->d)
		closedir(f->d);
	if (f->fd >= 0)
		(void)close(f->fd);
	free(f->dir);
	*f = (Frame){ .fd = -EBADF };
}

SandboxDirIter *sandbox_dir_iter_free(SandboxDirIter *it)
{
	if (!it)
		return NULL;
	while (it->n_frames > 0)
		frame_done(&it->frames[--it->n_frames]);
	if (it->root_fd >= 0)
		(void)close(it->root_fd);
	free(it->root);
	free(it->path);
	return mfree(it);
}

/*
 * Open the next level of the walk: name in the directory parent_fd, never through a
 * symlink (O_NOFOLLOW: one swapped in since it was looked at is not followed either), or
 * the root (name NULL). Its own DIR is a new open of it, whose offset nothing else moves.
 */
static int push(SandboxDirIter *it, int parent_fd, const char *name, const char *dir, unsigned depth)
{
	Frame *f = &it->frames[it->n_frames];
	int dfd, r;

	*f = (Frame){
		.fd = -EBADF, .depth = depth, .merge = prioq_new(run_compare), .dir = strdup(dir)
	};
	if (!f->merge || !f->dir) {
		frame_done(f);
		return -ENOMEM;
	}
	if (name)
		f->fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	else if (parent_fd >= 0)
		f->fd = openat(parent_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	else
		f->fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	dfd = f->fd < 0 ? -1 : openat(f->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	f->d = dfd < 0 ? NULL : fdopendir(dfd);
	if (!f->d) {
		r = -errno;
		if (dfd >= 0)
			(void)close(dfd);
		frame_done(f);
		return r;
	}
	it->n_frames++;
	return 0;
}

/* Append name to run's text; its offset in *ret. */
static int run_add(Run *run, size_t *used, size_t *size, const char *name, size_t *ret)
{
	size_t l = strlen(name) + 1;

	if (*used + l > *size) {
		size_t grown = MAX(*size * 2, (size_t)65536);
		char *text = realloc(run->text, grown);

		if (!text)
			return -ENOMEM;
		run->text = text;
		*size = grown;
	}
	memcpy(run->text + *used, name, l);
	*ret = *used;
	*used += l;
	return 0;
}

/* Read the next run of f's names, sorted; once all are read, merge the runs. */
static int frame_read(Frame *f)
{
	_cleanup_free_ size_t *offsets = malloc(RUN_MAX * sizeof(size_t));
	size_t used = 0, size = 0;
	Run *runs, *run;
	struct dirent *e;

	runs = reallocarray(f->runs, f->n_runs + 1, sizeof(Run));
	if (!offsets || !runs)
		return -ENOMEM;
	f->runs = runs;
	run = &f->runs[f->n_runs++];
	*run = (Run){};
	while (run->n < RUN_MAX) {
		errno = 0;
		e = readdir(f->d);
		if (!e && errno != 0)
			return -errno;
		if (!e) {
			closedir(TAKE_PTR(f->d));
			break;
		}
		if (streq(e->d_name, ".") || streq(e->d_name, ".."))
			continue;
		if (run_add(run, &used, &size, e->d_name, &offsets[run->n]) < 0)
			return -ENOMEM;
		run->n++;
	}
	run->names = malloc(MAX(run->n, (size_t)1) * sizeof(char *));
	if (!run->names)
		return -ENOMEM;
	for (size_t i = 0; i < run->n; i++)
		run->names[i] = run->text + offsets[i];
	qsort(run->names, run->n, sizeof(char *), string_compare);
	if (f->d)
		return 0;
	for (size_t i = 0; i < f->n_runs; i++)
		if (f->runs[i].n > 0 && prioq_put(f->merge, &f->runs[i], &f->runs[i].idx) < 0)
			return -ENOMEM;
	return 0;
}

/* The next name of f in order (valid while f is), or NULL once there is none. */
static const char *frame_take(Frame *f)
{
	Run *run = prioq_peek(f->merge);
	const char *name;

	if (!run)
		return NULL;
	prioq_remove(f->merge, &run->idx);
	name = run->names[run->next++];
	if (run->next < run->n)
		(void)prioq_put(f->merge, run, &run->idx); /* room is there: it just left */
	return name;
}

int sandbox_dir_iter_next(SandboxDirIter *it, const char **ret_path, int *ret_error)
{
	int r;

	if (!it->started) {
		it->started = true;
		r = push(it, it->root_fd, NULL, it->root, 1);
		if (r < 0)
			return r;
	}
	while (it->n_frames > 0) {
		Frame *f = &it->frames[it->n_frames - 1];
		const char *name;
		struct stat st;

		if (f->d) {
			r = frame_read(f);
			if (r == -ENOMEM || (r < 0 && it->n_frames == 1))
				return r;
			if (r < 0) {
				/* A subdirectory that cannot be read, as if it could not be opened. */
				it->path = mfree(it->path);
				it->path = TAKE_PTR(f->dir);
				frame_done(f);
				it->n_frames--;
				*ret_path = it->path;
				*ret_error = r;
				return 1;
			}
			return -EAGAIN;
		}
		name = frame_take(f);
		if (!name) {
			frame_done(f);
			it->n_frames--;
			continue;
		}
		it->path = mfree(it->path);
		if (asprintf(&it->path, "%s%s%s", f->dir, has_suffix(f->dir, "/") ? "" : "/", name) <
		    0) {
			it->path = NULL;
			return -ENOMEM;
		}
		if (fstatat(f->fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* gone since it was read: it was a hint, not a file */
		if (S_ISDIR(st.st_mode)) {
			if (!sandbox_dir_subdir_is_searched(name) || f->depth >= SANDBOX_DIR_MAX_DEPTH)
				continue;
			r = push(it, f->fd, name, it->path, f->depth + 1);
			if (r == -ENOMEM)
				return r;
			if (r == -ENOENT || r == -ELOOP || r == -ENOTDIR)
				continue; /* gone, or no directory any more: not followed */
			if (r < 0) {
				*ret_path = it->path;
				*ret_error = r;
				return 1;
			}
			continue;
		}
		if (sandbox_dir_name_is_candidate(name)) {
			*ret_path = it->path;
			*ret_error = 0;
			return 1;
		}
	}
	return 0;
}

int sandbox_dir_walk(const char *dir, SandboxDirFn fn, void *userdata)
{
	_cleanup_(sandbox_dir_iter_freep) SandboxDirIter *it = NULL;
	const char *path;
	int error, r;

	r = sandbox_dir_iter_new(dir, -EBADF, &it);
	while (r >= 0 && (r = sandbox_dir_iter_next(it, &path, &error)) != 0)
		if (r > 0)
			r = fn(path, error, userdata);
		else if (r == -EAGAIN)
			r = 0; /* a part of a directory read: go on */
	return r;
}
