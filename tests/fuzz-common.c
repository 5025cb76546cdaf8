/* SPDX-License-Identifier: MIT */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"
#include "spec-json.h"
#include "util.h"
#include "vmm.h"

static char *dir;

_Noreturn void fuzz_fail(const char *file, int line, const char *what)
{
	/* stdout too: a long run closes stderr (-close_fd_mask=2) to silence vmd's log. */
	printf("%s:%d: invariant broken: %s\n", file, line, what);
	fflush(stdout);
	fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what);
	abort();
}

static int remove_one(const char *path, const struct stat *st _unused_, int flag _unused_,
		      struct FTW *f)
{
	if (f->level > 0)
		(void)remove(path);
	return 0;
}

static void dir_remove(void)
{
	fuzz_dir_reset();
	(void)rmdir(dir);
	dir = mfree(dir);
}

const char *fuzz_dir(void)
{
	if (dir)
		return dir;
	dir = strdup("/dev/shm/vmd-fuzz-XXXXXX");
	fuzz_check(dir && mkdtemp(dir));
	atexit(dir_remove);
	return dir;
}

void fuzz_dir_reset(void)
{
	if (dir)
		(void)nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *fuzz_path(const char *rel)
{
	char *p = NULL;

	fuzz_check(asprintf(&p, "%s/%s", fuzz_dir(), rel) > 0);
	return p;
}

void fuzz_write(const char *rel, const void *data, size_t len)
{
	_cleanup_free_ char *path = fuzz_path(rel);
	char *slash = strrchr(path, '/');

	*slash = '\0';
	fuzz_check(mkdir_p(path, 0755) >= 0);
	*slash = '/';
	fuzz_check(write_file_atomic(path, data, len, 0600, false) >= 0);
}

void fuzz_append(char **buf, size_t *len, const void *p, size_t n)
{
	char *b;

	if (n == 0)
		return;
	b = realloc(*buf, *len + n);
	fuzz_check(b);
	memcpy(b + *len, p, n);
	*buf = b;
	*len += n;
}

SandboxSpec *fuzz_spec(BackendKind kind)
{
	static const char yaml[] = "apiVersion: vmd/v1\n"
				   "kind: Sandbox\n"
				   "spec:\n"
				   "  backend: %s\n"
				   "  vcpus: 2\n"
				   "  memory: 256Mi\n"
				   "  kernel: /boot/vmlinux\n"
				   "  disks:\n"
				   "    - id: root\n"
				   "      path: /var/lib/vmd/root.raw\n"
				   "    - id: data\n"
				   "      path: /var/lib/vmd/data.raw\n"
				   "      readOnly: true\n"
				   "  networks:\n"
				   "    - id: net0\n"
				   "      tap: vmd-fz0\n"
				   "    - id: net1\n"
				   "      tap: vmd-fz1\n";
	const SpecLoadOptions opts = { .default_backend = kind };
	_cleanup_free_ char *text = NULL;
	SandboxSpec *spec = NULL;
	DiagList diags = {};

	fuzz_check(asprintf(&text, yaml, backend_kind_to_string(kind)) > 0);
	fuzz_check(spec_load_buffer(FUZZ_NAME ".yaml", text, strlen(text), &opts, &spec, &diags) == 0);
	diag_list_done(&diags);
	return spec;
}

void fuzz_record_identity(json_t *record, pid_t pid)
{
	_cleanup_free_ char *boot = NULL;
	VmmIdentity id;

	fuzz_check(vmm_identity(pid, &id) == 0);
	fuzz_check(read_file("/proc/sys/kernel/random/boot_id", 64, &boot, NULL) >= 0);
	boot[strcspn(boot, "\n")] = '\0';
	json_object_set_new(record, "pid", json_integer(id.pid));
	json_object_set_new(record, "startTime", json_integer((json_int_t)id.start_time));
	json_object_set_new(record, "exe", json_string(id.exe));
	json_object_set_new(record, "bootId", json_string(boot));
}

json_t *fuzz_record(const char *vmm, const char *state, const SandboxSpec *spec, pid_t pid)
{
	json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:i, s:o}", "vmm", vmm, "state", state,
			      "generation", (json_int_t)3, "startedAtUsec",
			      (json_int_t)now_usec(CLOCK_REALTIME), "exitStatus", 0, "config",
			      spec_to_json(spec));

	fuzz_check(j);
	fuzz_record_identity(j, pid);
	return j;
}

void fuzz_run_until(sd_event *e, bool (*done)(void *userdata), void *userdata, uint64_t limit_usec)
{
	uint64_t end = now_usec(CLOCK_MONOTONIC) + limit_usec;

	while (!done(userdata)) {
		fuzz_check(now_usec(CLOCK_MONOTONIC) < end);
		fuzz_check(sd_event_run(e, 100000) >= 0);
	}
}
