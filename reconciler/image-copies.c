/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "image-copies.h"
#include "log.h"
#include "util.h"

/* Whether file name is one of disk d's: "<id>." begins it, ids having no '.'. */
static bool is_disk_file(const char *name, const DiskSpec *d)
{
	size_t n = strlen(d->id);

	return strncmp(name, d->id, n) == 0 && name[n] == '.';
}

/* Whether spec says file name goes with the sandbox. */
static bool goes(const char *name, const SandboxSpec *spec)
{
	if (spec->delete_disks_on_remove)
		return true;
	for (size_t i = 0; i < spec->n_disks; i++)
		if (spec->disks[i].image && spec->disks[i].ephemeral &&
		    is_disk_file(name, &spec->disks[i]))
			return true;
	return false;
}

int image_copies_remove(const char *state_dir, const SandboxSpec *spec)
{
	_cleanup_free_ char *dir = spec_disks_dir(state_dir, spec->name);
	int n = 0, fd;
	struct dirent *e;
	DIR *d;

	if (!dir)
		return -ENOMEM;
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	fd = dirfd(d);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || !goes(e->d_name, spec))
			continue;
		if (unlinkat(fd, e->d_name, 0) < 0) {
			log_warning("%s: cannot delete %s/%s: %m", spec->name, dir, e->d_name);
			continue;
		}
		log_info("%s: deleted %s/%s (%s)", spec->name, dir, e->d_name,
			 spec->delete_disks_on_remove ? "deleteDisksOnRemove" : "an ephemeral disk");
		n++;
	}
	closedir(d);
	(void)rmdir(dir); /* when nothing is kept */
	return n;
}
