/* SPDX-License-Identifier: MIT */
#pragma once

#include <systemd/sd-event.h>
#include <sys/types.h>

#include "spec-yaml.h"
#include "spec.h"

/*
 * The one interface between the reconciler and a VMM. Each backend is one const
 * BackendOps table; a NULL operation means "not supported". The daemon never looks past
 * this header: a backend plugs in by filling backend_ops[] in backend.c.
 */

/* What a backend can change on a running VM; what it cannot needs a restart. */
typedef enum BackendCaps {
	BACKEND_CAP_PAUSE = 1u << 0,
	BACKEND_CAP_DISK_HOTPLUG = 1u << 1, /* add and remove */
	BACKEND_CAP_NET_HOTPLUG = 1u << 2,
	BACKEND_CAP_RESIZE = 1u << 3, /* vcpus and memory */
	/* A disk's backing path changed in place (disk_update), its other settings kept. */
	BACKEND_CAP_DISK_PATH = 1u << 4,
	/*
	 * state: suspended: the suspend op writes the VM's state into a snapshot dir and its
	 * VMM exits; restore brings it back from there (docs/backends.md, "Snapshots").
	 */
	BACKEND_CAP_SUSPEND = 1u << 5,
} BackendCaps;

typedef enum VmState {
	VM_ABSENT,   /* no VM, no runtime state */
	VM_STARTING, /* its VMM is coming up: vm_changed when it is, vm_exited if it gives up */
	VM_RUNNING,
	VM_PAUSED,
	VM_STOPPING, /* a stop was asked for; its exit is still to come */
	VM_EXITED,   /* its runtime state is there, its VMM is gone */
	_VM_STATE_MAX,
	_VM_STATE_INVALID = -EINVAL,
} VmState;

DECLARE_STRING_TABLE(vm_state, VmState);

/* An operation on a VM that a backend may complete later (its op_done callback). */
typedef enum BackendOp {
	BACKEND_OP_NONE,
	BACKEND_OP_START,
	BACKEND_OP_STOP,
	BACKEND_OP_PAUSE,
	BACKEND_OP_RESUME,
	BACKEND_OP_DISK_ADD,
	BACKEND_OP_DISK_REMOVE,
	BACKEND_OP_NET_ADD,
	BACKEND_OP_NET_REMOVE,
	BACKEND_OP_RESIZE,
	BACKEND_OP_DISK_UPDATE,
	BACKEND_OP_ADOPT,
	BACKEND_OP_OBSERVE, /* refresh: what the VMM itself reports */
	BACKEND_OP_SUSPEND, /* the VM's state saved into a snapshot dir, its VMM gone */
	BACKEND_OP_RESTORE, /* a start whose VM comes from a snapshot dir */
	_BACKEND_OP_MAX,
	_BACKEND_OP_INVALID = -EINVAL,
} BackendOp;

DECLARE_STRING_TABLE(backend_op, BackendOp);

/* A live VMM for a sandbox that vmd neither drives nor can take in charge. */
typedef enum VmStray {
	VM_STRAY_NONE,
	VM_STRAY_RECORD_LOST, /* vmd has no record of it (lost, or naming another process) */
	VM_STRAY_NOT_OURS,    /* the record names its pid, but it is not the process recorded */
} VmStray;

/* What a backend says about one VM. */
typedef struct VmObserved {
	VmState state;
	pid_t pid;		  /* of its VMM, 0 if none */
	uint64_t started_at_usec; /* CLOCK_REALTIME */
	uint64_t generation;	  /* of the spec it was started with or last changed to */
	int exit_status;	  /* VM_EXITED: 0 for a clean exit */
	SandboxSpec *config; /* what it runs: boot config and attached devices; NULL if absent */
	/*
	 * A hot-unplug the guest has to agree to is in flight: plan no device changes until it
	 * settles (its op_done).
	 */
	bool busy;
	/* An operation is under way on the VM (its op_done is to come): only a stop may cut in. */
	BackendOp job;
	uint64_t job_since_usec; /* CLOCK_REALTIME: when its current phase began */
	const char *job_phase;	 /* static: "api-up", "shutdown"... */
	char *progress;		 /* what is in flight, in words; or NULL */
	/* It runs, but this vmd does not watch it yet: adopt it before anything else. */
	bool unwatched;
	/*
	 * Its VMM was started to restore a snapshot that it has not loaded to the end (a vmd
	 * died under the restore): no VM worth keeping; the snapshot is.
	 */
	bool restoring;
	/* Its VMM did not answer in time (why, in words), or NULL. */
	char *unresponsive;
	/*
	 * With state VM_ABSENT or VM_EXITED: a live VMM runs for this name all the same (pid is
	 * its pid; 0 when only its listening socket tells), and stray_message says which and why
	 * vmd cannot take it in charge. Nothing may be done to it, nothing started beside it.
	 */
	VmStray stray;
	char *stray_message;
	/* The VMM's name and version as it reports them ("cloud-hypervisor v52.0"), or NULL. */
	char *vmm_version;
	/*
	 * What the guest itself says of each NIC of config (its guest agent): the addresses
	 * of networks[i] ("a,b"), or NULL; net_addresses is NULL when nobody asked the guest.
	 */
	char **net_addresses;
	size_t n_net_addresses;
	/*
	 * How far this VM can be resized live (BACKEND_CAP_RESIZE), as it was started: vCPUs
	 * from min_vcpus up to max_vcpus, memory from min_memory to max_memory. 0: no limit
	 * known.
	 */
	unsigned min_vcpus, max_vcpus;
	uint64_t min_memory, max_memory;
	/*
	 * Memory grows live only by whole multiples of memory_step bytes, and at most
	 * memory_grows_left more times (Cloud Hypervisor's ACPI hot-add: 128 MiB, 8 per boot).
	 * 0: any growth within the room.
	 */
	uint64_t memory_step;
	unsigned memory_grows_left;
} VmObserved;

void vm_observed_done(VmObserved *o);

typedef struct Backend Backend;

/* How a backend tells the daemon about things that happen on their own. */
typedef struct BackendCallbacks {
	/* reason: what the backend knows of why (a VMM that gave up starting), or NULL */
	void (*vm_exited)(void *userdata, const char *name, int status, const char *reason);
	/* Something else changed on its own (paused, resumed, a device came or went). */
	void (*vm_changed)(void *userdata, const char *name);
	/*
	 * An operation that returned > 0 is over: error 0, or -errno and message (may be
	 * NULL); -ECANCELED when a newer one (a stop) took its place or the VM exited under
	 * it (vm_exited tells that). device: the disk or network id, or NULL. Exactly once
	 * per operation.
	 */
	void (*op_done)(void *userdata, const char *name, BackendOp op, const char *device,
			int error, const char *message);
	void *userdata;
} BackendCallbacks;

/* What the daemon's options say about the VMMs; NULL or 0 for the defaults. */
typedef struct BackendOptions {
	const char *qemu_binary;	     /* default qemu-system-x86_64, from $PATH */
	const char *qemu_accel;		     /* kvm, tcg or auto (default) */
	const char *cloud_hypervisor_binary; /* default cloud-hypervisor, from $PATH */
	const char *firecracker_binary;	     /* default firecracker, from $PATH */
	/* Start Firecracker through this jailer, as jailer_uid/gid, chrooted; NULL: no jailer. */
	const char *jailer_binary;
	uid_t jailer_uid; /* (uid_t)-1 unless set */
	gid_t jailer_gid;
	const char *jailer_chroot_base; /* default /srv/jailer */
	/* console.log and console.log.1 together, where vmd keeps the log (console.h) */
	uint64_t console_log_size; /* 0: CONSOLE_LOG_SIZE_DEFAULT */
	/* The daemon's --state-dir: disks/<name>/ holds the copies of images; NULL: none. */
	const char *state_dir;
	/*
	 * Who QEMU, Cloud Hypervisor and an unjailed Firecracker run as (the daemon's
	 * --vmm-user, vmm.h): the daemon always sets it; a backend made without it
	 * (vmm_user_set false, as in tests that set no options) keeps vmd's own ids.
	 */
	bool vmm_user_set;
	uid_t vmm_uid;
	gid_t vmm_gid;
} BackendOptions;

typedef struct BackendOps {
	const char *name;
	BackendCaps caps;
	size_t data_size; /* of Backend.data, zeroed */
	/*
	 * Its VMs take the host's memory and CPUs, so that a spec needing more than the host
	 * has is refused before a start (InsufficientResources). false: noop, whose VMs take
	 * nothing.
	 */
	bool takes_host_resources;

	/*
	 * What this backend's VMM cannot take in a spec the loader accepts otherwise: each
	 * refusal through spec_check_error() or spec_check_missing(), returning -EINVAL then
	 * (spec_check_result()), 0 when the spec fits. Runs without a Backend, on every load of
	 * a sandbox file (vmd validate, the daemon), also on a spec whose other fields had
	 * errors: those keep their defaults. NULL: no rules of its own.
	 */
	int (*validate)(const SandboxSpec *spec, SpecCheck *check);

	int (*init)(Backend *b);
	void (*done)(Backend *b);

	/* What runs under this name, read-only: safe while another vmd drives it. */
	int (*observe)(Backend *b, const char *name, VmObserved *ret);
	/* Names of every VM this backend has runtime state for. */
	int (*list)(Backend *b, char ***ret_names, size_t *ret_n);
	/*
	 * Take charge of a VM that observe() reports unwatched (found running after a restart
	 * of vmd): check it is ours (-ESTALE if not) and watch it again. Never restarts it.
	 * 0: adopted; > 0: op_done tells (-ESTALE: not ours; anything else: its VMM did not
	 * answer, and vmd leaves it alone and may try again).
	 */
	int (*adopt)(Backend *b, const char *name);
	/*
	 * Ask every VMM this backend drives what it runs now, without waiting for any of them:
	 * what changed comes through vm_changed; a VMM that does not answer in time is
	 * reported unresponsive. NULL: what observe() says is always current.
	 */
	void (*refresh)(Backend *b);
	/*
	 * SIGHUP: forget what was learnt of the host once and for all (the VMM processes found
	 * at the first look for strays), to look again when next needed. NULL: nothing kept.
	 */
	void (*reload)(Backend *b);

	/*
	 * The operations return 0 when done, > 0 when under way (op_done tells how it ended;
	 * observe() shows it as the VM's job meanwhile), -errno on failure, with a message for
	 * humans left by backend_set_error() when there is more to say than the errno.
	 */
	/* -EEXIST: a VMM runs for this name already, which vmd does not drive (a stray). */
	int (*start)(Backend *b, const SandboxSpec *spec, uint64_t generation);
	/*
	 * Stop: ask the guest to shut down and force it off if it is still up after timeout_ms
	 * (force: at once); a newer stop supersedes any other operation. Its exit comes
	 * through vm_exited.
	 */
	int (*stop)(Backend *b, const char *name, uint64_t timeout_ms, bool force);
	int (*pause)(Backend *b, const char *name);
	int (*resume)(Backend *b, const char *name);
	int (*disk_add)(Backend *b, const char *name, const DiskSpec *disk, uint64_t generation);
	int (*disk_remove)(Backend *b, const char *name, const char *id, uint64_t generation);
	/* BACKEND_CAP_DISK_PATH: disk (by its id) to take its new path. */
	int (*disk_update)(Backend *b, const char *name, const DiskSpec *disk, uint64_t generation);
	int (*net_add)(Backend *b, const char *name, const NetSpec *net, uint64_t generation);
	int (*net_remove)(Backend *b, const char *name, const char *id, uint64_t generation);
	int (*resize)(Backend *b, const char *name, unsigned vcpus, uint64_t memory,
		      uint64_t generation);
	/*
	 * BACKEND_CAP_SUSPEND. Suspend: pause the VM (if it runs), write its state into
	 * snapshot_dir, an empty dir the daemon made (owned by the VMM user when there is one,
	 * so that a VMM that writes it itself can), and end its VMM. op_done(0) only once the
	 * state is complete on disk AND the VMM has exited; the VM is then VM_EXITED, and no
	 * vm_exited follows. What the backend puts in the dir is its own business; the daemon
	 * adds its manifest.json afterwards and never reads the rest. A failure before the
	 * state is complete leaves the VM as it was (running again if it ran) and fails the op;
	 * a VMM that dies mid-save fails it too, and vm_exited tells of the exit. A backend
	 * whose VMM exits after the save puts SNAPSHOT_COMPLETE (snapshot.h) in the dir once
	 * the state is complete, before the exit: a vmd killed before op_done then commits the
	 * save at its next start instead of deleting it (vmm-job.c does for the VMM backends).
	 */
	int (*suspend)(Backend *b, const char *name, const char *snapshot_dir);
	/*
	 * Restore: a start (VM_STARTING until op_done, as start()) of spec, the config the VM
	 * had when it was saved into snapshot_dir (same disks and NICs), whose VM's state
	 * comes from the snapshot instead of a boot: running, or paused if spec->state says
	 * paused, afterwards. The dir is read-only to the backend and stays the daemon's: it
	 * deletes it once the op is done. A failure leaves no VMM (as a failed start); the
	 * snapshot is untouched and may be tried again.
	 */
	int (*restore)(Backend *b, const SandboxSpec *spec, uint64_t generation,
		       const char *snapshot_dir);
	/*
	 * Remove the runtime state of a VM that is not running. Never touches disk images.
	 * -EEXIST: a stray VMM uses it.
	 */
	int (*cleanup)(Backend *b, const char *name);
	/*
	 * A probe's guest-ping to the VM's guest agent (guestAgent: true): done(userdata,
	 * 0 or -errno, why) once, later, never from within the call; done NULL takes it back.
	 * -ENOTCONN while the agent's socket is not connected, -ENOENT without a VM.
	 */
	int (*agent_ping)(Backend *b, const char *name,
			  void (*done)(void *userdata, int error, const char *message),
			  void *userdata);
	/*
	 * suspendAfterIdle (reconciler/idle.c): a count that grows with every byte its VM's
	 * console took or gave and every packet on the taps of its NICs, which the daemon
	 * samples on a coarse timer: a change is activity. -errno (no VM): it cannot say.
	 * NULL: its VMs are never found idle.
	 */
	int (*activity)(Backend *b, const char *name, uint64_t *ret);
} BackendOps;

struct Backend {
	const BackendOps *ops;
	sd_event *event; /* NULL for read-only use (vmd plan, vmd status) */
	char *run_dir;
	BackendCallbacks callbacks;
	BackendOptions options;
	char *error; /* what the last failed operation said, for the status; or NULL */
	void *data;
};

/* The names of the runtime dirs (<run-dir>/<name>/) that hold file: a backend's list(). */
int backend_list_runtime_dirs(Backend *b, const char *file, char ***ret_names, size_t *ret_n);

/* Say why the operation at hand fails, in words for the status and the journal. */
void backend_set_error(Backend *b, const char *fmt, ...) _printf_(2, 3);
/* Take the message of the last failure (the caller frees it), NULL if none. */
char *backend_take_error(Backend *b);

/* The ops of each backend; NULL where this build has none. */
extern const BackendOps *const backend_ops[_BACKEND_KIND_MAX];
extern const BackendOps backend_noop_ops;
extern const BackendOps backend_qemu_ops;
extern const BackendOps backend_cloud_hypervisor_ops;
extern const BackendOps backend_firecracker_ops;

/* The rules of spec's backend (its validate op): 0, or -EINVAL with the reasons in check. */
int backend_validate_spec(const SandboxSpec *spec, SpecCheck *check);
/* How a sandbox file is loaded for real: with the rules of its backend. */
SpecLoadOptions backend_spec_load_options(BackendKind default_backend);

/* Rules that more than one backend's validate op has. */
void backend_require_kernel(const SandboxSpec *spec, SpecCheck *check);
void backend_refuse_qcow2(const SandboxSpec *spec, SpecCheck *check);
/* spec.credentials, which only the qemu backend takes. */
void backend_refuse_credentials(const SandboxSpec *spec, SpecCheck *check);
/* User-mode networking: QEMU's alone. */
void backend_refuse_user_net(const SandboxSpec *spec, SpecCheck *check);
/* spec.guestAgent, for a backend that has no virtio-serial port to give it. */
void backend_refuse_guest_agent(const SandboxSpec *spec, SpecCheck *check);

int backend_new(BackendKind kind, sd_event *event, const char *run_dir,
		const BackendCallbacks *callbacks, const BackendOptions *options, Backend **ret);
Backend *backend_free(Backend *b);
DEFINE_POINTER_CLEANUP(Backend, backend_free)
