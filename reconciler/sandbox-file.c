/* SPDX-License-Identifier: MIT */
/*
 * A sandbox file's path is resolved twice. First by hand (walk_path()): a component at a
 * time from a directory fd, each symlink read and followed only while it stays beneath
 * the sandbox directory, and each directory that a component is looked up in judged. This
 * tells which directories the path goes through, which the kernel does not say; and since
 * an absolute symlink or a '..' above the start ends it before anything is looked at
 * there, nothing outside is ever touched, let alone opened. Then by the kernel, for the fd
 * that is read: openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) from the sandbox
 * directory's fd, so that containment does not rest on this file's code alone, and both
 * must land on the same inode.
 *
 * Where openat2 is missing (Linux before 5.6) or a seccomp filter refuses it (ENOSYS, or
 * EPERM), the walk's last step opens the file: O_NOFOLLOW, from the fd of the directory it
 * ended in, which it holds. That refuses escapes just as well, with no race: every
 * directory on the way is held open, '..' goes back to the fd it came from, and a file
 * swapped for a symlink meanwhile fails to open (ELOOP).
 */
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <sys/syscall.h>

#include "sandbox-file.h"

const char *const sandbox_file_verdict_table[_SANDBOX_FILE_VERDICT_MAX] = {
	[SANDBOX_FILE_TRUSTED] = NULL, /* no refusal: the loader says whether it is Valid */
	[SANDBOX_FILE_PATH_ESCAPE] = "PathEscape",
	[SANDBOX_FILE_UNTRUSTED] = "Untrusted",
};
DEFINE_STRING_TABLE(sandbox_file_verdict, SandboxFileVerdict, _SANDBOX_FILE_VERDICT_MAX)

/* uid_t and gid_t are both unsigned int: one set of helpers for both lists. */
_Static_assert(sizeof(uid_t) == sizeof(unsigned) && sizeof(gid_t) == sizeof(unsigned), "ids");

static int add_id(unsigned *ids, size_t *n, unsigned id)
{
	for (size_t i = 0; i < *n; i++)
		if (ids[i] == id)
			return 0;
	if (*n >= TRUST_IDS_MAX)
		return -E2BIG;
	ids[(*n)++] = id;
	return 0;
}

static bool has_id(const unsigned *ids, size_t n, unsigned id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

int trust_add_uid(Trust *t, uid_t uid)
{
	return add_id(t->uids, &t->n_uids, uid);
}

int trust_add_gid(Trust *t, gid_t gid)
{
	return add_id(t->gids, &t->n_gids, gid);
}

bool trust_has_uid(const Trust *t, uid_t uid)
{
	return uid == 0 || uid == geteuid() || has_id(t->uids, t->n_uids, uid);
}

static bool trust_has_gid(const Trust *t, gid_t gid)
{
	return has_id(t->gids, t->n_gids, gid);
}

/*
 * Why someone other than a trusted writer can change what st is ("the file", "the folder
 * X"): *ret_why, or NULL. In a sticky directory (what is above the sandbox directory may
 * be /tmp), only its owner can rename or remove an entry: one that a trusted writer owns,
 * sticky_child, is safe there.
 */
static int judge(const Trust *t, const struct stat *st, const char *what,
		 const struct stat *sticky_child, char **ret_why)
{
	bool group = (st->st_mode & S_IWGRP) && !trust_has_gid(t, st->st_gid);
	bool sticky =
		(st->st_mode & S_ISVTX) && sticky_child && trust_has_uid(t, sticky_child->st_uid);
	int r = 0;

	*ret_why = NULL;
	if (!trust_has_uid(t, st->st_uid))
		r = asprintf(
			ret_why,
			"%s is owned by uid %u; vmd reads only files and folders owned by root, its own user or a --trusted-uid",
			what, (unsigned)st->st_uid);
	else if ((group || (st->st_mode & S_IWOTH)) && !sticky)
		r = asprintf(
			ret_why,
			"%s is writable by group or others (mode %04o); vmd reads only files and folders that no one but their owner (and a --trusted-gid group) can change",
			what, (unsigned)(st->st_mode & 07777));
	if (r < 0) {
		*ret_why = NULL;
		return -ENOMEM;
	}
	return 0;
}

#define SYMLINKS_MAX 40 /* the kernel's MAXSYMLINKS */
#define WALK_DEPTH_MAX 64

typedef struct Walk {
	const Trust *trust; /* NULL: judge nothing */
	bool beneath;	    /* nothing may lead above the start: the files of a sandbox directory */
	bool want_dir;	    /* the path names a directory: enter its last component too */
	const char *name;   /* the start, in messages (beneath) */
	int fds[WALK_DEPTH_MAX + 1]; /* [0]: the start, not owned; then each directory entered */
	struct stat sts[WALK_DEPTH_MAX + 1];
	size_t lens[WALK_DEPTH_MAX + 1]; /* strlen(where) before each directory was entered */
	size_t depth;
	char where[PATH_MAX]; /* the directories entered, from the start: "team/..2024_x" */
	const char *escape;   /* beneath: how the path leads outside */
	char *distrust;	      /* the first directory on the way that is not trusted, and why */
	/* Where it ends: the entry end_name of fds[depth] ("." for that directory), end_st. */
	char end_name[NAME_MAX + 1];
	struct stat end_st;
} Walk;

static void walk_pop(Walk *w)
{
	(void)close(w->fds[w->depth]);
	w->where[w->lens[w->depth]] = '\0';
	w->depth--;
}

static void walk_done(Walk *w)
{
	while (w->depth > 0)
		walk_pop(w);
	w->distrust = mfree(w->distrust);
}

static int walk_push(Walk *w, const char *name, const struct stat *st)
{
	size_t l = strlen(w->where);
	struct stat now;
	int fd;

	if (w->depth >= WALK_DEPTH_MAX)
		return -ENAMETOOLONG;
	/* O_NOFOLLOW: swapped for a symlink since it was looked at, it fails (ENOTDIR). */
	fd = openat(w->fds[w->depth], name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &now) < 0 || now.st_dev != st->st_dev || now.st_ino != st->st_ino) {
		(void)close(fd);
		return -EAGAIN; /* replaced meanwhile */
	}
	w->depth++;
	w->fds[w->depth] = fd;
	w->sts[w->depth] = now;
	w->lens[w->depth] = l;
	(void)snprintf(w->where + l, sizeof(w->where) - l, "%s%s", l ? "/" : "", name);
	return 0;
}

/* The directory the walk is in, as messages name it. */
static char *walk_dir_name(const Walk *w)
{
	char *s = NULL;

	if (w->beneath)
		return asprintf(&s, "%s%s%s", w->name, w->depth ? "/" : "",
				w->depth ? w->where : "") < 0
			       ? NULL
			       : s;
	return asprintf(&s, "/%s", w->where) < 0 ? NULL : s;
}

/* The directory the walk is in is where child was looked up: can it be trusted with it? */
static int walk_judge(Walk *w, const struct stat *child)
{
	_cleanup_free_ char *dir = NULL, *what = NULL;

	/* The start of a walk beneath is the sandbox directory, judged as it was opened. */
	if (!w->trust || w->distrust || (w->beneath && w->depth == 0))
		return 0;
	dir = walk_dir_name(w);
	if (!dir ||
	    asprintf(&what,
		     w->beneath ? "the folder %s" : "the directory %s above the sandbox directory",
		     dir) < 0)
		return -ENOMEM;
	return judge(w->trust, &w->sts[w->depth], what, w->beneath ? NULL : child, &w->distrust);
}

static int walk_end(Walk *w, const char *name, const struct stat *st)
{
	(void)snprintf(w->end_name, sizeof(w->end_name), "%s", name);
	w->end_st = *st;
	return 0;
}

static int read_link(int dir_fd, const char *name, char **ret)
{
	char buf[PATH_MAX];
	ssize_t n = readlinkat(dir_fd, name, buf, sizeof(buf));

	if (n < 0)
		return -errno;
	if ((size_t)n >= sizeof(buf))
		return -ENAMETOOLONG;
	buf[n] = '\0';
	*ret = strdup(buf);
	return *ret ? 0 : -ENOMEM;
}

/*
 * Resolve path from w->fds[0] as the kernel would, judging each directory a component is
 * looked up in. Beneath, an absolute symlink or a '..' above the start is -EXDEV, found
 * before anything outside is looked at; otherwise an absolute symlink starts again from
 * fds[0], which is then "/".
 */
static int walk_path(Walk *w, const char *path)
{
	_cleanup_free_ char *todo = strdup(path);
	unsigned links = 0;
	char *p = todo;
	int r;

	if (!todo)
		return -ENOMEM;
	for (;;) {
		char *name, *end;
		struct stat st;
		bool last;

		p += strspn(p, "/");
		if (!*p)
			return walk_end(w, ".", &w->sts[w->depth]);
		name = p;
		end = p + strcspn(p, "/");
		p = end + strspn(end, "/");
		last = !*p;
		*end = '\0';

		if (streq(name, ".") || streq(name, "..")) {
			if (streq(name, "..") && w->depth > 0)
				walk_pop(w);
			else if (streq(name, "..") && w->beneath) {
				w->escape = "through '..' above it";
				return -EXDEV;
			}
			if (last)
				return walk_end(w, ".", &w->sts[w->depth]);
			continue;
		}
		if (fstatat(w->fds[w->depth], name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		r = walk_judge(w, &st);
		if (r < 0)
			return r;
		if (S_ISLNK(st.st_mode)) {
			_cleanup_free_ char *target = NULL;
			char *next = NULL;

			if (++links > SYMLINKS_MAX)
				return -ELOOP;
			r = read_link(w->fds[w->depth], name, &target);
			if (r < 0)
				return r;
			if (target[0] == '/' && w->beneath) {
				w->escape = "through a symlink to an absolute path";
				return -EXDEV;
			}
			while (target[0] == '/' && w->depth > 0)
				walk_pop(w);
			if (asprintf(&next, "%s/%s", target, p) < 0)
				return -ENOMEM;
			free(todo);
			p = todo = next;
			continue;
		}
		if (last && !w->want_dir)
			return walk_end(w, name, &st);
		if (!S_ISDIR(st.st_mode))
			return -ENOTDIR;
		r = walk_push(w, name, &st);
		if (r < 0)
			return r;
		if (last)
			return walk_end(w, ".", &w->sts[w->depth]);
	}
}

struct SandboxRoot {
	int fd;
	char *path; /* as given, without a trailing '/' */
	struct stat st;
	bool judged; /* opened with a Trust: its files are judged too */
	Trust trust;
	char *distrust;
};

SandboxRoot *sandbox_root_free(SandboxRoot *r)
{
	if (!r)
		return NULL;
	if (r->fd >= 0)
		(void)close(r->fd);
	free(r->path);
	free(r->distrust);
	return mfree(r);
}

int sandbox_root_fd(const SandboxRoot *r)
{
	return r->fd;
}

const char *sandbox_root_path(const SandboxRoot *r)
{
	return r->path;
}

const char *sandbox_root_distrust(const SandboxRoot *r)
{
	return r->distrust;
}

/* Resolve r->path from /, judging every directory on the way, and open it. */
static int root_open_judged(SandboxRoot *r)
{
	_cleanup_free_ char *abs = NULL, *cwd = NULL, *what = NULL;
	Walk w = { .trust = &r->trust, .want_dir = true };
	int k;

	if (r->path[0] != '/' && !(cwd = getcwd(NULL, 0)))
		return -errno;
	if (asprintf(&abs, "%s/%s", cwd ?: "", r->path) < 0 ||
	    asprintf(&what, "the sandbox directory %s", r->path) < 0)
		return -ENOMEM;
	w.fds[0] = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (w.fds[0] < 0)
		return -errno;
	k = fstat(w.fds[0], &w.sts[0]) < 0 ? -errno : walk_path(&w, abs);
	if (k >= 0) {
		r->fd = openat(w.fds[w.depth], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		k = r->fd < 0 || fstat(r->fd, &r->st) < 0 ? -errno : 0;
	}
	if (k >= 0 && (r->st.st_dev != w.end_st.st_dev || r->st.st_ino != w.end_st.st_ino))
		k = -EAGAIN;
	if (k >= 0) {
		r->distrust = TAKE_PTR(w.distrust);
		if (!r->distrust)
			k = judge(&r->trust, &r->st, what, NULL, &r->distrust);
	}
	walk_done(&w);
	(void)close(w.fds[0]);
	return k;
}

int sandbox_root_open(const char *path, const Trust *trust, SandboxRoot **ret)
{
	_cleanup_(sandbox_root_freep) SandboxRoot *r = calloc(1, sizeof(*r));
	size_t l;
	int k;

	if (!r)
		return -ENOMEM;
	r->fd = -EBADF;
	r->path = strdup(path);
	if (!r->path)
		return -ENOMEM;
	for (l = strlen(r->path); l > 1 && r->path[l - 1] == '/'; l--)
		r->path[l - 1] = '\0';
	if (trust) {
		r->trust = *trust;
		r->judged = true;
		k = root_open_judged(r);
	} else {
		r->fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		k = r->fd < 0 || fstat(r->fd, &r->st) < 0 ? -errno : 0;
	}
	if (k < 0)
		return k;
	*ret = TAKE_PTR(r);
	return 0;
}

void sandbox_file_done(SandboxFile *f)
{
	free(f->why);
	if (f->fd >= 0)
		(void)close(f->fd);
	*f = (SandboxFile)SANDBOX_FILE_INIT;
}

static int refuse(SandboxFile *f, SandboxFileVerdict verdict, char *why)
{
	f->verdict = verdict;
	f->why = why;
	return why ? 0 : -ENOMEM;
}

/* The file's own verdict, on what st says of it. */
static int judge_file(const SandboxRoot *root, const struct stat *st, SandboxFile *f)
{
	char *why = NULL;
	int r;

	if (!S_ISREG(st->st_mode))
		return refuse(f, SANDBOX_FILE_UNTRUSTED, strdup("the file is not a regular file"));
	if (!root->judged)
		return 0;
	r = judge(&root->trust, st, "the file", NULL, &why);
	if (r < 0)
		return r;
	return why ? refuse(f, SANDBOX_FILE_UNTRUSTED, why) : 0;
}

/* Walk rel beneath root and judge it; w holds the directories until walk_done(w). */
static int resolve(SandboxRoot *root, const char *rel, Walk *w, SandboxFile *f)
{
	char *why = NULL;
	int r;

	sandbox_file_done(f);
	*w = (Walk){ .trust = root->judged ? &root->trust : NULL, .beneath = true, .name = root->path };
	w->fds[0] = root->fd;
	w->sts[0] = root->st;
	r = walk_path(w, rel);
	if (r == -EXDEV) {
		if (asprintf(&why,
			     "the file leads outside the sandbox directory (%s); vmd reads only files beneath %s",
			     w->escape, root->path) < 0)
			why = NULL;
		return refuse(f, SANDBOX_FILE_PATH_ESCAPE, why);
	}
	if (r < 0)
		return r;
	f->st = w->end_st;
	if (root->distrust)
		return refuse(f, SANDBOX_FILE_UNTRUSTED, strdup(root->distrust));
	if (w->distrust)
		return refuse(f, SANDBOX_FILE_UNTRUSTED, TAKE_PTR(w->distrust));
	return judge_file(root, &f->st, f);
}

int sandbox_file_resolve(SandboxRoot *root, const char *rel, SandboxFile *ret)
{
	Walk w;
	int r = resolve(root, rel, &w, ret);

	walk_done(&w);
	return r;
}

static int open_beneath(int dir_fd, const char *rel)
{
	struct open_how how = {
		.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	long fd = syscall(SYS_openat2, dir_fd, rel, &how, sizeof(how));

	return fd < 0 ? -errno : (int)fd;
}

/* Open what the walk w ended on, as openat2 would have; -errno. */
static int open_walked(SandboxRoot *root, const char *rel, const Walk *w)
{
	int fd = open_beneath(root->fd, rel);

	if (fd != -ENOSYS && fd != -EPERM)
		return fd;
	fd = openat(w->fds[w->depth], w->end_name,
		    O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
	return fd < 0 ? -errno : fd;
}

int sandbox_file_open(SandboxRoot *root, const char *rel, SandboxFile *ret)
{
	for (unsigned tries = 0;; tries++) {
		struct stat st;
		Walk w;
		int fd, r;

		r = resolve(root, rel, &w, ret);
		fd = r < 0 || ret->verdict != SANDBOX_FILE_TRUSTED ? r : open_walked(root, rel, &w);
		walk_done(&w);
		if (r < 0 || ret->verdict != SANDBOX_FILE_TRUSTED)
			return r;
		if (fd == -EXDEV) /* it changed since the walk, and now it leads outside */
			return refuse(ret, SANDBOX_FILE_PATH_ESCAPE,
				      strdup("the file leads outside the sandbox directory"));
		if (fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == ret->st.st_dev &&
		    st.st_ino == ret->st.st_ino) {
			/* Judged again on what was opened: a chmod since the walk counts. */
			ret->st = st;
			ret->fd = fd;
			r = judge_file(root, &st, ret);
			if (r < 0 || ret->verdict != SANDBOX_FILE_TRUSTED) {
				(void)close(ret->fd);
				ret->fd = -EBADF;
			}
			return r;
		}
		if (fd >= 0)
			(void)close(fd);
		else if (fd != -ELOOP) /* ELOOP: O_NOFOLLOW, swapped for a symlink meanwhile */
			return fd;
		if (tries >= 2)
			return -EAGAIN;
	}
}
