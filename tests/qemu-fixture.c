/* SPDX-License-Identifier: MIT */
/* What the tests that boot the test guest (tests/guest) under real QEMU share. */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qemu-fixture.h"

/* A file of the test guest; the caller frees it. */
char *qemu_guest_file(const char *file)
{
	const char *dir = getenv("VMD_GUEST");
	char *p = NULL;

	assert_true(asprintf(&p, "%s/%s", dir ? dir : "build/guest", file) > 0);
	return p;
}

int qemu_setup(void **state)
{
	static const char *const args[] = { "--qemu-accel", "tcg", NULL };
	int r = fixture_setup(state);

	((Fixture *)*state)->daemon_args = args;
	return r;
}

int qemu_sim_setup(void **state)
{
	static char sim[4096];
	static const char *const args[] = { "--qemu-binary", sim, NULL };
	int r = fixture_setup(state);

	snprintf(sim, sizeof(sim), "%s", test_src("tests/sim/qemu"));
	((Fixture *)*state)->daemon_args = args;
	return r;
}

/* A sandbox file for the test guest, written the way GitOps tools do (rename over). */
void qemu_put(Fixture *f, const char *name, const char *extra_spec)
{
	_cleanup_free_ char *text = NULL, *kernel = qemu_guest_file("vmlinux"),
			    *initrd = qemu_guest_file("initramfs.cpio");

	assert_true(asprintf(&text,
			     "apiVersion: vmd/v1\n"
			     "kind: Sandbox\n"
			     "spec:\n"
			     "  backend: qemu\n"
			     "  memory: 192Mi\n"
			     "  kernel: %s\n"
			     "  initrd: %s\n"
			     "%s",
			     kernel, initrd, extra_spec) > 0);
	fixture_put(f, name, text);
}

/* The guest's last VMD-GUEST-DEVICES line, from "blk=" on. */
char *qemu_last_devices(Fixture *f, const char *name)
{
	_cleanup_free_ char *c = fixture_console(f, name);
	char *last = NULL, *p = c, *nl;

	while ((p = strstr(p, "VMD-GUEST-DEVICES ")))
		last = p += strlen("VMD-GUEST-DEVICES ");
	if (!last)
		return strdup("");
	nl = strpbrk(last, "\r\n");
	return strndup(last, nl ? (size_t)(nl - last) : strlen(last));
}

void qemu_wait_devices(Fixture *f, const char *name, const char *blk, const char *net_prefix)
{
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	for (;;) {
		_cleanup_free_ char *d = qemu_last_devices(f, name);
		char want[128];

		snprintf(want, sizeof(want), "blk=%s net=%s", blk, net_prefix);
		if (strncmp(d, want, strlen(want)) == 0 &&
		    (net_prefix[0] || strlen(d) == strlen(want)))
			return;
		if (ms_now() > end)
			fail_msg("%s: the guest sees '%s', not '%s...'", name, d, want);
		usleep(50000);
	}
}

/* How many disks or networks (kind) status s lists. */
size_t qemu_n_devices(json_t *s, const char *kind)
{
	return json_array_size(json_object_get(s, kind));
}

/* The inode of pid's memfd named name ("/memfd:kernel (deleted)"), 0 if it has none. */
ino_t qemu_memfd_of(pid_t pid, const char *name)
{
	_cleanup_free_ char *dir = NULL, *want = NULL;
	struct dirent *e;
	ino_t ino = 0;
	DIR *d;

	assert_true(asprintf(&dir, "/proc/%d/fd", (int)pid) > 0);
	assert_true(asprintf(&want, "/memfd:%s (deleted)", name) > 0);
	d = opendir(dir);
	assert_non_null(d);
	while ((e = readdir(d))) {
		_cleanup_free_ char *p = path_in(dir, "%s", e->d_name);
		char link[256];
		ssize_t n = readlink(p, link, sizeof(link) - 1);
		struct stat st;

		if (n > 0 && (link[n] = '\0', streq(link, want)) && stat(p, &st) == 0)
			ino = st.st_ino;
	}
	closedir(d);
	return ino;
}
