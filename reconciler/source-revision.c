/* SPDX-License-Identifier: MIT */
/*
 * The revision a sandbox file came from (source-revision.h). git's own layout is read as
 * git reads it, without running git: a work tree has .git, a folder (the git dir) or a
 * file "gitdir: PATH" (a worktree, a submodule); the git dir's HEAD is a commit (detached)
 * or "ref: refs/heads/NAME", which is a file under the git dir or its common dir (a
 * worktree's commondir file names it), or a line "<commit> <ref>" of the common dir's
 * packed-refs; a ref may be symbolic in turn (git's refs/files-backend.c, read_ref_internal;
 * setup.c, read_gitfile_gently). Every file is read only if it is a regular file, and only
 * its first GIT_FILE_MAX bytes.
 */
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

#include "source-revision.h"
#include "util.h"

#define GIT_FILE_MAX 4096
#define GIT_REF_DEPTH_MAX 5 /* git's SYMREF_MAXDEPTH */
#define GIT_REF_NAME_MAX 255

const char *const source_revision_kind_table[_SOURCE_REVISION_KIND_MAX] = {
	[SOURCE_REVISION_NONE] = "none",
	[SOURCE_REVISION_GIT] = "git",
	[SOURCE_REVISION_LINK] = "link",
};
DEFINE_STRING_TABLE(source_revision_kind, SourceRevisionKind, _SOURCE_REVISION_KIND_MAX)

/* dir/name, a regular file, without its trailing newline; NULL if it is not one. */
static char *read_small(const char *dir, const char *name)
{
	_cleanup_free_ char *path = NULL;
	char *buf = NULL;
	size_t len = 0;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return NULL;
	if (read_regular_file(path, GIT_FILE_MAX, &buf, &len) < 0)
		return NULL;
	if (strlen(buf) != len) {
		free(buf);
		return NULL; /* a NUL in it: not git's */
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	return buf;
}

/* A commit id as git writes it: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits. */
static bool is_commit(const char *s)
{
	size_t n = strspn(s, "0123456789abcdef");

	return s[n] == '\0' && (n == 40 || n == 64);
}

/* A ref name vmd follows: refs/..., of a plain alphabet, no "..", no empty or hidden part. */
static bool is_ref_name(const char *s)
{
	size_t n = strlen(s);

	return strncmp(s, "refs/", 5) == 0 && n <= GIT_REF_NAME_MAX &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/-") == n &&
	       !strstr(s, "..") && !strstr(s, "//") && !strstr(s, "/.") && s[n - 1] != '/';
}

/* path made absolute against base (a folder), unless it is. */
static char *path_against(const char *base, const char *path)
{
	char *p = NULL;

	if (path[0] == '/')
		return strdup(path);
	return asprintf(&p, "%s/%s", base, path) < 0 ? NULL : p;
}

/* The commit of ref in common's packed-refs ("<commit> <ref>" lines), or NULL. */
static char *packed_ref(const char *common, const char *ref)
{
	_cleanup_free_ char *path = NULL, *line = NULL;
	size_t size = 0;
	struct stat st;
	char *found = NULL;
	FILE *f;

	if (asprintf(&path, "%s/packed-refs", common) < 0)
		return NULL;
	f = fopen(path, "re");
	if (!f)
		return NULL;
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
		fclose(f);
		return NULL;
	}
	while (!found && getline(&line, &size, f) > 0) {
		char *sp = strchr(line, ' ');

		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '#' || line[0] == '^' || !sp)
			continue;
		*sp = '\0';
		if (streq(sp + 1, ref) && is_commit(line))
			found = strdup(line);
	}
	fclose(f);
	return found;
}

/* The commit ref names: a loose ref of the git dir or the common dir, or a packed one. */
static char *resolve_ref(const char *gitdir, const char *common, const char *ref, unsigned depth)
{
	const char *const dirs[] = { gitdir, common };

	if (depth > GIT_REF_DEPTH_MAX || !is_ref_name(ref))
		return NULL;
	for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
		_cleanup_free_ char *v = read_small(dirs[i], ref);

		if (!v)
			continue;
		if (strncmp(v, "ref: ", 5) == 0)
			return resolve_ref(gitdir, common, v + 5, depth + 1);
		return is_commit(v) ? TAKE_PTR(v) : NULL;
	}
	return packed_ref(common, ref);
}

/* HEAD's commit in gitdir; NULL if it cannot be read as one. */
static char *head_commit(const char *gitdir)
{
	_cleanup_free_ char *head = read_small(gitdir, "HEAD"), *commondir = NULL, *common = NULL;

	if (!head)
		return NULL;
	if (strncmp(head, "ref: ", 5) != 0)
		return is_commit(head) ? TAKE_PTR(head) : NULL;
	commondir = read_small(gitdir, "commondir");
	common = commondir ? path_against(gitdir, commondir) : strdup(gitdir);
	return common ? resolve_ref(gitdir, common, head + 5, 0) : NULL;
}

/*
 * The git dir of the work tree the absolute folder dir is in: 1 with it in *ret (NULL for a
 * .git that cannot be read), 0 if dir is in none.
 */
static int find_git_dir(const char *dir, char **ret)
{
	_cleanup_free_ char *d = strdup(dir);

	if (!d || d[0] != '/')
		return 0;
	for (;;) {
		_cleanup_free_ char *dotgit = NULL, *link = NULL;
		struct stat st;
		char *slash;

		if (asprintf(&dotgit, "%s/.git", streq(d, "/") ? "" : d) < 0)
			return 0;
		if (lstat(dotgit, &st) == 0 && S_ISDIR(st.st_mode)) {
			*ret = TAKE_PTR(dotgit);
			return 1;
		}
		if (lstat(dotgit, &st) == 0 && S_ISREG(st.st_mode)) {
			link = read_small(streq(d, "/") ? "" : d, ".git");
			*ret = link && strncmp(link, "gitdir: ", 8) == 0 ? path_against(d, link + 8)
									 : NULL;
			return 1;
		}
		if (streq(d, "/"))
			return 0;
		slash = strrchr(d, '/');
		slash[slash == d ? 1 : 0] = '\0';
	}
}

char *source_revision_git(const char *dir)
{
	_cleanup_free_ char *gitdir = NULL;
	char *commit;

	if (find_git_dir(dir, &gitdir) == 0)
		return NULL;
	commit = gitdir ? head_commit(gitdir) : NULL;
	return commit ?: strdup(SOURCE_REVISION_UNKNOWN);
}

/* A name of a version: ..2026_12_01_10_00_00.123456789, rev-<hash>, <hash>. */
static bool is_version_name(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= SOURCE_REVISION_NAME_MAX && !streq(s, ".") && !streq(s, "..") &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* Whether path is below dir (both canonical; "" is /). */
static bool is_below(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 && path[n] == '/';
}

#define LINKS_MAX 40	/* the kernel's MAXSYMLINKS */
#define LINK_END '\001' /* a component that ends the target of link N: "\001N" */

/* cur with "/" and name after it ("" is /). */
static char *path_join(const char *cur, const char *name)
{
	char *p = NULL;

	return asprintf(&p, "%s/%s", cur, name) < 0 ? NULL : p;
}

/*
 * Each link on the way from path to its file, followed as the kernel follows them (the
 * file itself a link too: a ConfigMap's web.yaml -> ..data/web.yaml): the last one whose
 * target is a folder beside it or below its own folder (a version link: current ->
 * rev-<hash>, ..data -> ..<time>, link -> .worktrees/<hash>; not /var/run -> /run, nor a
 * link in /), and that real, the file read, is below: its target's name. NULL if none.
 */
char *source_revision_link(const char *path, const char *real)
{
	_cleanup_free_ char *rest = strdup(path), *cur = NULL, *best = NULL;
	char *parents[LINKS_MAX] = {};
	unsigned n_links = 0;

	cur = path[0] == '/' ? strdup("") : realpath(".", NULL);
	while (rest && cur && *rest) {
		size_t len = strcspn(rest, "/");
		_cleanup_free_ char *comp = strndup(rest, len), *next = strdup(rest + len);
		struct stat st;

		if (!comp || !next)
			break;
		free(rest);
		rest = TAKE_PTR(next);
		if (len == 0 || streq(comp, ".")) {
			memmove(rest, rest + 1, strlen(rest)); /* the '/' */
			continue;
		}
		if (comp[0] == LINK_END) {
			unsigned k = (unsigned)atoi(comp + 1);

			if (k < n_links && *parents[k] && stat(cur, &st) == 0 &&
			    S_ISDIR(st.st_mode) && is_below(cur, parents[k]) && is_below(real, cur)) {
				free(best);
				best = strdup(strrchr(cur, '/') + 1);
			}
			continue;
		}
		if (streq(comp, "..")) {
			*(strrchr(cur, '/') ?: cur) = '\0';
			continue;
		}
		_cleanup_free_ char *cand = path_join(cur, comp);
		char target[PATH_MAX];
		ssize_t n;

		if (!cand || lstat(cand, &st) < 0)
			break;
		if (!S_ISLNK(st.st_mode)) {
			free(cur);
			cur = TAKE_PTR(cand);
			continue;
		}
		n = readlink(cand, target, sizeof(target) - 1);
		if (n <= 0 || n_links == LINKS_MAX)
			break;
		target[n] = '\0';
		parents[n_links] = cur;
		cur = strdup(target[0] == '/' ? "" : parents[n_links]);
		next = NULL;
		if (asprintf(&next, "%s/%c%u%s", target, LINK_END, n_links, rest) < 0)
			next = NULL;
		n_links++;
		free(rest);
		rest = TAKE_PTR(next);
	}
	for (unsigned k = 0; k < n_links; k++)
		free(parents[k]);
	return best && is_version_name(best) ? TAKE_PTR(best) : NULL;
}

/* The revision of path's file, which is real (canonical). */
static void revision_of(const char *path, char *real, SourceRevisionKind *ret_kind,
			char **ret_revision)
{
	char *rev, *slash = strrchr(real, '/');

	*slash = '\0';
	rev = source_revision_git(*real ? real : "/");
	*slash = '/';
	if (rev) {
		*ret_kind = SOURCE_REVISION_GIT;
		*ret_revision = rev;
		return;
	}
	rev = source_revision_link(path, real);
	if (rev) {
		*ret_kind = SOURCE_REVISION_LINK;
		*ret_revision = rev;
	}
}

void source_revision(const char *path, int fd, SourceRevisionKind *ret_kind, char **ret_revision)
{
	char proc[64], real[PATH_MAX];
	ssize_t n;

	*ret_kind = SOURCE_REVISION_NONE;
	*ret_revision = NULL;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	n = readlink(proc, real, sizeof(real) - 1);
	if (n <= 0 || real[0] != '/')
		return; /* no /proc: no revision to tell */
	real[n] = '\0';
	revision_of(path, real, ret_kind, ret_revision);
}

void source_revision_of_path(const char *path, SourceRevisionKind *ret_kind, char **ret_revision)
{
	_cleanup_free_ char *real = realpath(path, NULL);

	*ret_kind = SOURCE_REVISION_NONE;
	*ret_revision = NULL;
	if (real && real[0] == '/')
		revision_of(path, real, ret_kind, ret_revision);
}
