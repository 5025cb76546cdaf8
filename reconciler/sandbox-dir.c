/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

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

bool sandbox_dir_subdir_is_searched(const char *name)
{
	return name[0] != '.';
}

static int name_compare(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int walk(const char *dir, unsigned depth, SandboxDirFn fn, void *userdata)
{
	struct dirent **entries = NULL;
	int n, r = 0;

	n = scandir(dir, &entries, NULL, name_compare);
	if (n < 0 && depth > 1)
		return fn(dir, -errno, userdata);
	if (n < 0)
		return -errno;

	for (int i = 0; i < n; i++) {
		_cleanup_free_ char *path = NULL;
		const char *name = entries[i]->d_name;
		struct stat st;

		if (r < 0 || streq(name, ".") || streq(name, ".."))
			continue;
		if (asprintf(&path, "%s%s%s", dir, has_suffix(dir, "/") ? "" : "/", name) < 0) {
			r = -ENOMEM;
			continue;
		}
		if (lstat(path, &st) < 0)
			continue; /* gone since scandir: it was a hint, not a file */
		if (S_ISDIR(st.st_mode)) {
			if (sandbox_dir_subdir_is_searched(name) && depth < SANDBOX_DIR_MAX_DEPTH)
				r = walk(path, depth + 1, fn, userdata);
			continue;
		}
		if (sandbox_dir_name_is_candidate(name))
			r = fn(path, 0, userdata);
	}

	for (int i = 0; i < n; i++)
		free(entries[i]);
	free(entries);
	return r;
}

int sandbox_dir_walk(const char *dir, SandboxDirFn fn, void *userdata)
{
	return walk(dir, 1, fn, userdata);
}
