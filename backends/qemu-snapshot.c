/* SPDX-License-Identifier: MIT */
/*
 * Suspend and restore for QEMU (docs/backends.md, "Snapshots"): the VM's state is one
 * migration stream into <snapshot-dir>/state, a file vmd opens and passes with getfd
 * (-sandbox spawn=deny forbids exec:), beside qemu-ports.json, the root port each device
 * was on: a restored QEMU needs the very same PCI layout, hot-plugged devices included.
 *
 *   suspend  freeze: stop (unless paused); save: getfd, migrate-set-parameters, migrate
 *            uri=fd:; saving: query-migrate until completed; quit. A failed save:
 *            migrate_cancel (one given up at its deadline may still run), cont.
 *   restore  QEMU started with -incoming defer, the same devices on the same ports;
 *            load: getfd, migrate-incoming uri=fd:; loading: query-migrate until
 *            completed (QEMU 7.2 exits when a load fails); boot: cont, unless paused.
 *
 * QEMU 7.2 has no capability that makes a local file faster (mapped-ram is 9.0's): with
 * the guest stopped before the save nothing gets dirty, and what sets the pace is the
 * bandwidth limit (128 MiB/s by default), raised here, and the downtime limit, raised so
 * that the whole of memory goes in the one final pass instead of rounds of it.
 */
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <unistd.h>

#include "qemu-vm.h"
#include "util.h"

#define SNAPSHOT_FD_NAME "vmd-snapshot"
#define SNAPSHOT_STATE "state"
#define SNAPSHOT_PORTS "qemu-ports.json"
#define SNAPSHOT_BANDWIDTH (1ull << 40) /* bytes/s: no limit a disk reaches */
#define SNAPSHOT_DOWNTIME_MS 60000	/* all of it in one pass */

/* What the migration is at: done (VMM_SKIP), not yet (VMM_AGAIN), or failed. */
static int check_migration(VmmVm *v _unused_, VmmJob *j, const VmmReply *r)
{
	const char *s = json_string_value(json_object_get(r->json, "status"));
	const char *why = json_string_value(json_object_get(r->json, "error-desc"));

	if (r->error < 0)
		return r->error;
	if (streq_ptr(s, "completed"))
		return VMM_SKIP;
	if (streq_ptr(s, "failed") || streq_ptr(s, "cancelled")) {
		vmm_job_fail_message(j, "the migration to the snapshot %s: %s", s,
				     why ?: "QEMU gives no reason");
		return -EIO;
	}
	return VMM_AGAIN;
}

static char *snapshot_path(const VmmJob *j, const char *file)
{
	char *p = NULL;

	return asprintf(&p, "%s/%s", j->snapshot_dir, file) < 0 ? NULL : p;
}

/* The root ports of the devices, as the record has them, for the restore to place them. */
static int save_ports(QemuVm *v, const VmmJob *j)
{
	_cleanup_(json_decrefp) json_t *ports = json_object();
	_cleanup_free_ char *path = snapshot_path(j, SNAPSHOT_PORTS), *text = NULL;
	int r;

	if (!ports || !path)
		return -ENOMEM;
	r = v->vm.type->save(&v->vm, ports);
	if (r < 0)
		return r;
	text = json_dumps(ports, JSON_SORT_KEYS);
	return text ? write_file_atomic(path, text, strlen(text), 0600, false) : -ENOMEM;
}

/* getfd of file in the snapshot dir, opened with flags, as SNAPSHOT_FD_NAME. */
static int add_getfd(VmmRequests *rq, const VmmJob *j, int flags, VmmVm *v)
{
	_cleanup_free_ char *path = snapshot_path(j, SNAPSHOT_STATE);
	int fd, r;

	if (!path)
		return -ENOMEM;
	fd = open(path, flags | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0) {
		r = -errno;
		vmm_job_fail_message(&v->job, "cannot open %s: %s", path, strerror(-r));
		return r;
	}
	r = vmm_request_add(rq, NULL, json_pack("{s:s}", "fdname", SNAPSHOT_FD_NAME), NULL, "getfd");
	if (r < 0) {
		close(fd);
		return r;
	}
	return vmm_request_pass_fd(rq, fd);
}

static int build_save(QemuVm *v, VmmJob *j, VmmRequests *rq)
{
	int r = save_ports(v, j);

	if (r < 0)
		return r;
	r = add_getfd(rq, j, O_WRONLY | O_CREAT | O_EXCL, &v->vm);
	if (r < 0)
		return r;
	r = vmm_request_add(rq, NULL,
			    json_pack("{s:I, s:I}", "max-bandwidth", (json_int_t)SNAPSHOT_BANDWIDTH,
				      "downtime-limit", (json_int_t)SNAPSHOT_DOWNTIME_MS),
			    NULL, "migrate-set-parameters");
	if (r < 0)
		return r;
	return vmm_request_add(rq, NULL, json_pack("{s:s}", "uri", "fd:" SNAPSHOT_FD_NAME), NULL,
			       "migrate");
}

static int build_load(QemuVm *v, VmmJob *j, VmmRequests *rq)
{
	int r = add_getfd(rq, j, O_RDONLY, &v->vm);

	if (r < 0)
		return r;
	return vmm_request_add(rq, NULL, json_pack("{s:s}", "uri", "fd:" SNAPSHOT_FD_NAME), NULL,
			       "migrate-incoming");
}

int qemu_build_snapshot(QemuVm *v, VmmJob *j, VmmRequests *rq)
{
	switch (j->phase) {
	case VMM_PHASE_FREEZE:
		return j->was_paused ? 0 : vmm_request_add(rq, NULL, NULL, NULL, "stop");
	case VMM_PHASE_SAVE:
		return build_save(v, j, rq);
	case VMM_PHASE_LOAD:
		return build_load(v, j, rq);
	case VMM_PHASE_SAVING:
	case VMM_PHASE_LOADING:
		rq->poll_usec = VMM_SAVE_POLL_USEC;
		return vmm_request_add(rq, NULL, NULL, check_migration, "query-migrate");
	case VMM_PHASE_THAW: {
		/* A save given up at its deadline may still run: it ends first (a no-op if not). */
		int r = vmm_request_add(rq, NULL, NULL, NULL, "migrate_cancel");

		if (r < 0 || j->was_paused)
			return r;
		return vmm_request_add(rq, NULL, NULL, NULL, "cont");
	}
	case VMM_PHASE_BOOT:
		/* Restored into a QEMU started -S: it runs once told, unless it is to stay paused. */
		return v->vm.config->state == SANDBOX_PAUSED
			       ? 0
			       : vmm_request_add(rq, NULL, NULL, NULL, "cont");
	default:
		return 0;
	}
}

int qemu_snapshot_ports(QemuVm *v, const char *snapshot_dir)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_(json_decrefp) json_t *j = NULL;

	if (asprintf(&path, "%s/" SNAPSHOT_PORTS, snapshot_dir) < 0)
		return -ENOMEM;
	j = json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
	if (!j)
		return access(path, F_OK) < 0 ? -ENOENT : -EBADMSG;
	return v->vm.type->load(&v->vm, j);
}
