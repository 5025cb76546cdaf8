/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the JSON records vmd reads back, which another vmd (or a crash, or an
 * operator's editor) left behind. The input is written as a file and read through the
 * public path; whatever it holds is refused or taken without a crash or a leak.
 *
 * The first byte picks:
 *   bits 0-2  the file: <run-dir>/fz/vm.json of QEMU, Cloud Hypervisor or Firecracker
 *             (list, observe and adopt, read-only and with an event loop), noop.json (the
 *             same for the noop backend), <state-dir>/sandboxes/fz.json (the last valid
 *             spec, through manager_new_read_only() and manager_load_persisted())
 *   bit 3     a record that parses as an object is made to name the fuzzer itself (pid,
 *             start time, binary, boot id), so that adoption takes it; nothing is run
 *   bits 4-5  the default backend of the spec in fz.json
 */
#include <stdio.h>

#include "fuzz-common.h"
#include "manager.h"
#include "util.h"

typedef enum Record {
	RECORD_QEMU,
	RECORD_CLOUD_HYPERVISOR,
	RECORD_FIRECRACKER,
	RECORD_NOOP,
	RECORD_PERSISTED,
	_RECORD_MAX,
} Record;

static const BackendKind kinds[] = {
	[RECORD_QEMU] = BACKEND_QEMU,
	[RECORD_CLOUD_HYPERVISOR] = BACKEND_CLOUD_HYPERVISOR,
	[RECORD_FIRECRACKER] = BACKEND_FIRECRACKER,
	[RECORD_NOOP] = BACKEND_NOOP,
};

static const BackendOptions options = {
	.qemu_binary = "/bin/true",
	.cloud_hypervisor_binary = "/bin/true",
	.firecracker_binary = "/bin/true",
};

static void on_op_done(void *userdata _unused_, const char *name _unused_, BackendOp op _unused_,
		       const char *device _unused_, int error _unused_, const char *message _unused_)
{
	fuzz_check(!"an operation ended, but the loop never ran");
}

static void on_vm_exited(void *userdata _unused_, const char *name _unused_, int status _unused_,
			 const char *reason _unused_)
{
	fuzz_check(!"a VM exited, but the loop never ran");
}

static void observe(Backend *b)
{
	VmObserved o = {};

	if (b->ops->observe(b, FUZZ_NAME, &o) < 0)
		return;
	fuzz_check(o.state >= 0 && o.state < _VM_STATE_MAX);
	vm_observed_done(&o);
}

/* What vmd plan and vmd status do: list, observe; adoption is refused without a loop. */
static void read_only(BackendKind kind, const char *run_dir)
{
	_cleanup_(backend_freep) Backend *b = NULL;
	char **names = NULL;
	size_t n = 0;

	fuzz_check(backend_new(kind, NULL, run_dir, NULL, &options, &b) == 0);
	if (b->ops->list(b, &names, &n) == 0) {
		fuzz_check(n <= 1);
		for (size_t i = 0; i < n; i++) {
			fuzz_check(streq(names[i], FUZZ_NAME));
			free(names[i]);
		}
		free(names);
	}
	observe(b);
	if (kind != BACKEND_NOOP)
		fuzz_check(b->ops->adopt(b, FUZZ_NAME) == -EROFS);
}

/* What the daemon does at its start: observe, adopt what runs unwatched; then it stops. */
static void daemon_start(BackendKind kind, const char *run_dir)
{
	const BackendCallbacks callbacks = { .op_done = on_op_done, .vm_exited = on_vm_exited };
	_cleanup_(backend_freep) Backend *b = NULL;
	sd_event *e = NULL;

	fuzz_check(sd_event_new(&e) >= 0);
	fuzz_check(backend_new(kind, e, run_dir, &callbacks, &options, &b) == 0);
	sd_event_unref(e);
	observe(b);
	if (b->ops->adopt(b, FUZZ_NAME) >= 0)
		observe(b); /* now a VM it drives, its job begun */
}

static void persisted(const char *dir, BackendKind default_backend)
{
	_cleanup_free_ char *run = NULL, *state = NULL, *sandboxes = NULL;
	_cleanup_(manager_freep) Manager *m = NULL;
	ManagerConfig config = {
		.default_backend = default_backend,
		.backend_override = _BACKEND_KIND_INVALID,
		.backend_options = options,
	};
	Sandbox *sb;

	fuzz_check(asprintf(&run, "%s/run", dir) > 0 && asprintf(&state, "%s/state", dir) > 0 &&
		   asprintf(&sandboxes, "%s/sandboxes", dir) > 0);
	config.run_dir = run;
	config.state_dir = state;
	config.sandbox_dir = sandboxes;
	fuzz_check(manager_new_read_only(&config, &m) == 0);
	manager_load_persisted(m);
	sb = manager_sandbox(m, FUZZ_NAME, false);
	fuzz_check(!sb || (sb->desired && streq(sb->desired->name, FUZZ_NAME)));
}

/* The input as the file, made to name the fuzzer if asked and if it can. */
static void write_input(const char *rel, const uint8_t *data, size_t size, bool ours)
{
	_cleanup_free_ char *text = NULL;
	json_t *j = ours ? json_loadb((const char *)data, size, 0, NULL) : NULL;

	if (!json_is_object(j)) {
		json_decref(j);
		fuzz_write(rel, data, size);
		return;
	}
	fuzz_record_identity(j, getpid());
	text = json_dumps(j, JSON_SORT_KEYS | JSON_INDENT(1));
	json_decref(j);
	fuzz_check(text);
	fuzz_write(rel, text, strlen(text));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const BackendKind defaults[] = { BACKEND_QEMU, BACKEND_CLOUD_HYPERVISOR,
						BACKEND_FIRECRACKER, BACKEND_NOOP };
	Record what;
	const char *dir;
	bool ours;

	if (size == 0)
		return 0;
	what = (Record)((data[0] & 7) % _RECORD_MAX);
	ours = data[0] & 0x8;
	fuzz_dir_reset();
	dir = fuzz_dir();

	if (what == RECORD_PERSISTED) {
		write_input("state/sandboxes/" FUZZ_NAME ".json", data + 1, size - 1, false);
		persisted(dir, defaults[(data[0] >> 4) & 3]);
		return 0;
	}
	write_input(what == RECORD_NOOP ? FUZZ_NAME "/noop.json" : FUZZ_NAME "/vm.json", data + 1,
		    size - 1, ours);
	read_only(kinds[what], dir);
	daemon_start(kinds[what], dir);
	return 0;
}
