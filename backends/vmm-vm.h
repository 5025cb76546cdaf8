/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A VM that is one VMM process vmd started, whatever the VMM: what the QEMU, Cloud
 * Hypervisor and Firecracker backends share above vmm.c. Its runtime dir,
 * <run-dir>/<name>/, holds vm.json, vmd's record of the process (pid, start time, binary,
 * boot id), the spec generation and config it runs, and what the backend adds; the VMM's
 * API socket; console.log (console.log.1: the boot before); the VMM's own log.
 *
 * This file does the record, observing from it, adoption by identity, the async start
 * (polling the backend until its VMM answers, killing it if it never does), the exit
 * (reaped through a pidfd, vmd being subreaper) and the kill timer of a forced stop. A
 * backend embeds a VmmVm at the start of its own VM struct and describes itself in a
 * const VmmVmType; its Backend.data starts with a VmmBackend.
 */

#include <jansson.h>

#include "backend.h"
#include "hashmap.h"
#include "http-unix.h"
#include "vmm.h"

#define VMM_START_TIMEOUT_USEC (30ull * 1000000) /* spawn to answering */
#define VMM_KILL_GRACE_USEC (3ull * 1000000)	 /* asked to quit, to SIGKILL */

typedef struct VmmVm VmmVm;

typedef struct VmmVmType {
	const char *vmm;		/* "qemu": in the record and the journal's VMD_BACKEND */
	const char *display;		/* "QEMU": in messages */
	const char *socket;		/* its API socket in the runtime dir */
	const char *log;		/* its stderr in the runtime dir */
	const char *const *extra_files; /* more of its files for cleanup, NULL-terminated */
	size_t size;			/* of the backend's VM struct, which starts with a VmmVm */

	void (*free)(VmmVm *v); /* its own parts */
	/* Its own fields into, and out of, vm.json. */
	int (*save)(VmmVm *v, json_t *record);
	int (*load)(VmmVm *v, const json_t *record);
	/* Before the VMM starts, beside the runtime dir's own preparation (NULL: nothing). */
	int (*prepare)(VmmVm *v);
	/* The argv to start v->config with (a NULL-terminated strv). */
	int (*argv)(VmmVm *v, char ***ret);
	/*
	 * A starting VM, every 2 ms until it answers: 1 when it is up (v->state set), 0 to
	 * look again, 2 when an answer is under way (the backend calls vmm_vm_start_done),
	 * -errno to give up (the VMM is killed; v->start_failure says why, if set).
	 */
	int (*poll_start)(VmmVm *v);
	/* Talk again to a VMM found running after a restart of vmd; -ESTALE if not ours. */
	int (*reconnect)(VmmVm *v);
	/* The VMM is gone: drop connections and anything in flight. */
	void (*exited)(VmmVm *v);
	/* Pause or resume the guest's vCPUs. */
	int (*set_paused)(VmmVm *v, bool paused);
	/* Press the guest's power button (or what stands for it); -ENOTCONN: cannot ask. */
	int (*power_button)(VmmVm *v);
	/* Ask the VMM to quit now (NULL: it cannot be asked; SIGKILL is all there is). */
	int (*quit)(VmmVm *v);
	/* Remove what prepare made outside the runtime dir (NULL: nothing). */
	int (*cleanup)(Backend *b, const char *name);
} VmmVmType;

struct VmmVm {
	Backend *b;
	const VmmVmType *type;
	char *name;
	char *dir;
	VmmIdentity id;
	char boot_id[64];
	bool child; /* started by this vmd: its exit status is ours to read */
	int pidfd;
	sd_event_source *pid_source, *kill_timer, *ready_timer;
	uint64_t ready_deadline; /* CLOCK_MONOTONIC: it must answer by then */
	char *start_failure;	 /* why a start was given up, for vm_exited */

	VmState state;
	int exit_status;
	bool stop_requested, guest_shutdown;
	uint64_t generation, started_at_usec;
	SandboxSpec *config;
};

/* The start of Backend.data for a backend built on VmmVm. */
typedef struct VmmBackend {
	const VmmVmType *type;
	Hashmap *vms;		 /* name -> VmmVm: the VMs this vmd drives */
	char *binary;		 /* absolute, NULL if not found */
	int binary_error;	 /* why not */
	const char *binary_name; /* as configured, for messages */
	char boot_id[64];
} VmmBackend;

#define VMM_BACKEND(b) ((VmmBackend *)(b)->data)

/*
 * Set up a backend of VMs of type t; binary is the configured binary, or default_binary
 * from $PATH. The vmm_vm_* functions below that take a Backend fit its BackendOps as is.
 */
int vmm_backend_init(Backend *b, const VmmVmType *t, const char *binary, const char *default_binary);
/* The VMs keep running: the next vmd adopts them. */
void vmm_backend_done(Backend *b);

VmmVm *vmm_vm_get(Backend *b, const char *name);
VmmVm *vmm_vm_free(VmmVm *v);
DEFINE_POINTER_CLEANUP(VmmVm, vmm_vm_free)
/* <run-dir>/<name>/<file> */
char *vmm_vm_path(const Backend *b, const char *name, const char *file);
int vmm_vm_save(VmmVm *v);
/* Tell the daemon that something changed on its own. */
void vmm_vm_changed(VmmVm *v);

/* The names of the VMs of this type with a record. */
int vmm_vm_list(Backend *b, char ***ret_names, size_t *ret_n);
/* State, pid, generation... of what runs under name; the config from the record if not driven. */
int vmm_vm_observe(Backend *b, const char *name, VmObserved *ret);
/* Take charge of a VM found running: the very process the record names, on this boot. */
int vmm_vm_adopt(Backend *b, const char *name);
/* Start a VM for spec: 1, it is VM_STARTING until poll_start says it is up. */
int vmm_vm_start(Backend *b, const SandboxSpec *spec, uint64_t generation);
/* An answer poll_start was waiting for came: 0 it is up, -errno it failed. */
void vmm_vm_start_done(VmmVm *v, int error);
/*
 * Stop: the power button, after resuming a paused guest, which cannot hear it otherwise;
 * forced (or when the VMM cannot be asked): quit, and SIGKILL if it does not go within
 * VMM_KILL_GRACE_USEC. The exit comes through vm_exited.
 */
int vmm_vm_stop(Backend *b, const char *name, uint64_t timeout_ms, bool force);
/* Pause or resume a VM that runs. */
int vmm_vm_pause(Backend *b, const char *name);
int vmm_vm_resume(Backend *b, const char *name);
/* Remove the runtime files of a VM that is not running. Never touches disk images. */
int vmm_vm_cleanup(Backend *b, const char *name);

/*
 * A copy of config without the disks and networks the VMM does not list: disks and nets
 * are JSON arrays of objects (NULL for none) whose member disk_key / net_key is the id.
 */
int vmm_vm_config_seen(const SandboxSpec *config, const json_t *disks, const char *disk_key,
		       const json_t *nets, const char *net_key, SandboxSpec **ret);

/*
 * A REST call to v's VMM (Cloud Hypervisor, Firecracker) through *http, connected to its
 * API socket on first use. On failure the VMM's own words become the operation's message
 * (backend_set_error): "vm.pause: <reason>" for /api/v1/vm.pause, else "PATCH /vm: <reason>".
 * ret_json (NULL to ignore) gets a 2xx reply's body.
 */
int vmm_vm_rest(VmmVm *v, Http **http, const char *method, const char *path, json_t *body,
		uint64_t timeout_usec, json_t **ret_json);
