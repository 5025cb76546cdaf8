/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A VM that is one VMM process vmd started, whatever the VMM: what the QEMU, Cloud
 * Hypervisor and Firecracker backends share above vmm.c. Its runtime dir,
 * <run-dir>/<name>/, holds vm.json, vmd's record of the process (pid, start time, binary,
 * boot id), the spec generation and config it runs, and what the backend adds; the VMM's
 * API socket; console.log (console.log.1: the part before, or the boot before); the VMM's own
 * log; for a VMM whose serial port is a socket vmd owns, serial.sock and console.sock
 * (console.c); image.log, what the image workers of its last start said (vmm-image.c).
 *
 * vmm-vm.c does the record, observing from it, adoption by identity and the exit;
 * vmm-start.c the start and the watch on the exit (reaped through a pidfd, vmd being
 * subreaper), the console and the guest agent; vmm-boot.c the start's files step (what the
 * VMM gets, opened and copied by a worker, vmm-worker.c); vmm-ops.c the operations on a VM
 * that runs; vmm-stray.c finds strays: live VMMs for a name that vmd has no record of (its
 * argv names the runtime dir, or something listens on its socket), which are left alone
 * and never get a second VMM beside them. vmm-job.c runs every
 * operation on a VM as a job: a type (start, stop, adopt, pause, a hot-plug...), a phase
 * (VmmPhase), one timer for the phase's deadline, the phase's requests sent one after the
 * other over the VMM's API (vmm-api.c: QMP, or REST through one libcurl multi handle), and
 * exactly one completion. Nothing waits: every reply and every deadline comes from the
 * event loop.
 *
 * A backend embeds a VmmVm at the start of its own VM struct and describes its VMM in a
 * const VmmVmType: how to start it (argv), and for each job and phase the requests to send
 * (build) and what their replies mean. It supplies no control flow.
 */

#include <jansson.h>

#include "backend.h"
#include "console.h"
#include "guest-agent.h"
#include "hashmap.h"
#include "http-unix.h"
#include "qmp.h"
#include "vmm-files.h"
#include "vmm-worker.h"
#include "vmm.h"

#define VMM_START_TIMEOUT_USEC (30ull * 1000000)   /* spawn to answering */
#define VMM_REQUEST_TIMEOUT_USEC (5ull * 1000000)  /* a phase of requests */
#define VMM_KILL_GRACE_USEC (3ull * 1000000)	   /* asked to quit, to SIGKILL */
#define VMM_RELEASE_TIMEOUT_USEC (30ull * 1000000) /* asked to unplug, to released */
#define VMM_REQUESTS_MAX (8 + SPEC_DISKS_MAX + SPEC_NETWORKS_MAX)
/* Making the copies of a start's images (vmm-image.c): a long copy may take this long. */
#define VMM_IMAGE_TIMEOUT_USEC (3600ull * 1000000)
#define VMM_IMAGE_LOG "image.log" /* the image workers' stderr, in the runtime dir */
/* The files step (vmm-boot.c): the copies of kernel and initrd, the opens of the disks. */
#define VMM_FILES_TIMEOUT_USEC (300ull * 1000000)
/* A save (suspend: save, saving) or a load (restore: load, loading): each phase at most. */
#define VMM_SAVE_TIMEOUT_USEC (600ull * 1000000)
#define VMM_SAVE_POLL_USEC (50ull * 1000) /* saving, loading: asked this often */

typedef struct VmmVm VmmVm;
typedef struct VmmJob VmmJob;

typedef enum VmmApi {
	VMM_API_QMP,
	VMM_API_REST,
} VmmApi;

typedef enum VmmPhase {
	VMM_PHASE_NONE,
	VMM_PHASE_IMAGE,     /* start: the copies of the disks' images are made (vmm-image.c) */
	VMM_PHASE_SPAWN,     /* start: the process is started */
	VMM_PHASE_API_UP,    /* start: until its API answers, as the VMM vmd started */
	VMM_PHASE_CONFIGURE, /* start: the VM's config is sent */
	VMM_PHASE_BOOT,	     /* start: its vCPUs run */
	VMM_PHASE_IDENTITY,  /* adopt: the record's very process, on this boot */
	VMM_PHASE_HANDSHAKE, /* adopt: its API answers, as the VM the record names */
	VMM_PHASE_OBSERVE,   /* adopt, observe: what it runs */
	VMM_PHASE_GRACEFUL,  /* stop: the guest is asked to shut down (resumed first) */
	VMM_PHASE_SHUTDOWN,  /* stop: until it is gone, for stopTimeout */
	VMM_PHASE_QUIT,	     /* stop: the VMM is asked to quit, for VMM_KILL_GRACE_USEC */
	VMM_PHASE_KILL,	     /* stop, a start given up: SIGKILL sent, until it is gone */
	VMM_PHASE_REQUEST,   /* pause, resume, add, resize: the change; remove: the ask */
	VMM_PHASE_RELEASE,   /* remove: until the guest lets the device go */
	VMM_PHASE_CLEANUP,   /* remove: what backed the device is freed */
	VMM_PHASE_ROLLBACK,  /* add: what a failed add did is undone */
	/*
	 * suspend: freeze -> save -> saving -> quit -> kill; a failure in the first three:
	 * thaw, and the job fails. The job is done once the VMM is gone after saving.
	 */
	VMM_PHASE_FREEZE, /* suspend: the guest is paused (nothing if it was: j->was_paused) */
	VMM_PHASE_SAVE,	  /* suspend: the save into j->snapshot_dir is asked for */
	VMM_PHASE_SAVING, /* suspend: polls until the state is complete (none: done with save) */
	VMM_PHASE_THAW,	  /* suspend failed: the guest runs again, unless j->was_paused */
	/*
	 * restore: [image ->] spawn (argv() sees v->job.snapshot_dir set: it restores from
	 * there) -> api-up -> load -> loading -> boot (the guest runs, unless
	 * v->config->state is paused); a failure or a deadline: kill, as a start.
	 */
	VMM_PHASE_LOAD,	   /* restore: the state in j->snapshot_dir is asked to be loaded */
	VMM_PHASE_LOADING, /* restore: polls until it is in (none: done with load) */
	/*
	 * start, restore: after image, before spawn, what the VMM gets is opened and copied
	 * by a worker (vmm-boot.c); disk-add, disk-update: before the request, whether the
	 * VMM user may open the disk (a VMM that opens it by path itself).
	 */
	VMM_PHASE_FILES,
	_VMM_PHASE_MAX,
} VmmPhase;

extern const char *const vmm_phase_table[_VMM_PHASE_MAX];

/* What a reply handler tells the job. */
enum {
	VMM_NEXT,   /* go on: the phase's next request */
	VMM_SKIP,   /* this phase is done: skip its other requests */
	VMM_AGAIN,  /* not yet: ask again (a phase that polls) */
	VMM_FINISH, /* the job's work was done already: it completes now */
};

/* What came back for a request. */
typedef struct VmmReply {
	int error;	     /* 0, or -errno */
	bool answered;	     /* the VMM answered (a QMP error, an HTTP status), even if no */
	const json_t *json;  /* a QMP "return" or a REST 2xx body, or NULL */
	const char *message; /* the VMM's words (or the transport's) for an error, or NULL */
} VmmReply;

/* One request to a VMM: a QMP command, or a REST call. */
typedef struct VmmRequest {
	const char *method; /* REST: "GET", "PUT", "PATCH"; NULL for QMP */
	char *path;	    /* the REST path ("/api/v1/vm.boot", "/actions"), or the QMP command */
	json_t *body;	    /* its body or arguments, or NULL */
	/*
	 * What the reply means: a VMM_* above, or -errno to fail the phase (with r->message,
	 * or a message the handler left with vmm_job_fail_message()). NULL: an error fails
	 * the phase, anything else goes on.
	 */
	int (*reply)(VmmVm *v, VmmJob *j, const VmmReply *r);
	bool best_effort; /* a failure is no failure (undoing, cleaning up) */
	int fd; /* sent with it, if has_fd (QMP getfd; REST: SCM_RIGHTS); closed with it */
	bool has_fd;
} VmmRequest;

/* The requests of one phase, filled by VmmVmType.build. */
typedef struct VmmRequests {
	VmmRequest items[VMM_REQUESTS_MAX];
	size_t n;
	uint64_t poll_usec; /* a phase that waits: send them again this often (0: only once) */
} VmmRequests;

/* Add a request; path is formatted; body is consumed (NULL: none). -ENOMEM, -E2BIG. */
int vmm_request_add(VmmRequests *rq, const char *method, json_t *body,
		    int (*reply)(VmmVm *v, VmmJob *j, const VmmReply *r), const char *path_fmt, ...)
	_printf_(5, 6);
/* Send fd (taken: closed with the requests, or now on failure) with the last request added. */
int vmm_request_pass_fd(VmmRequests *rq, int fd);

/* A start's image phase: the worker that makes the copy of one disk's image. */
typedef struct VmmImageWork {
	size_t disk; /* the disk at work, an index into the VM's config */
	VmmWorker worker;
	int task;	/* vmm-image.c's ImageTask */
	unsigned stage; /* 0: its first process (qemu-img, or the copy); 1: the sync after */
	char *part;	/* what it writes, renamed into place once it is done; or NULL */
	bool copying;	/* a full copy (for the progress), not an overlay */
	bool task_grow; /* the copy is grown in place */
	bool spawn;	/* the VMM is spawned once the images are done */
} VmmImageWork;

struct VmmJob {
	VmmVm *vm;
	BackendOp type; /* BACKEND_OP_NONE: no job */
	VmmPhase phase;
	uint64_t phase_since; /* CLOCK_MONOTONIC */
	uint64_t deadline;    /* of the phase */
	sd_event_source *timer;
	VmmRequests requests;
	size_t next;		  /* the request in flight, or the next to send */
	bool in_flight;		  /* requests.items[next] is out */
	uint64_t serial;	  /* of the request in flight: a reply to another is dropped */
	uint64_t qmp_id;	  /* its QMP id */
	HttpRequest *http;	  /* or its REST request */
	HttpFdsRequest *http_fds; /* or its REST request with a descriptor */
	unsigned attempts;	  /* of the phase's requests (polls, retries) */
	bool kick;	 /* begun: its first phase runs from the loop, not from the caller */
	bool early_done; /* what the phase that comes next waits for happened already */

	/* How it fails: kept while a failed start is killed or a failed add undone. */
	int error;
	char *message;
	size_t undo; /* rollback: how many requests of the failed phase had gone through */

	/* What it is about. */
	uint64_t generation;
	DiskSpec disk; /* disk-add: a copy, path and image owned */
	NetSpec net;   /* net-add */
	char device[SPEC_ID_MAX + 1];
	unsigned vcpus; /* resize */
	uint64_t memory;
	uint64_t stop_deadline; /* stop: CLOCK_MONOTONIC, the end of its stopTimeout */
	bool was_paused; /* stop: the guest must be resumed to hear the button; suspend: it stays paused */
	char *snapshot_dir; /* suspend: where its state goes; restore: where it comes from */
	VmmImageWork image; /* start: its image phase */
	VmmFiles *files;    /* its files phase (vmm-boot.c), until the spawn or the request */
};

typedef struct VmmVmType {
	const char *vmm;		/* "qemu": in the record and the journal's VMD_BACKEND */
	const char *display;		/* "QEMU": in messages */
	VmmApi api;			/* how its requests go */
	const char *socket;		/* its API socket in the runtime dir */
	const char *log;		/* its stderr in the runtime dir */
	const char *out;		/* its stdout in the runtime dir (NULL: /dev/null) */
	const char *const *extra_files; /* more of its files for cleanup, NULL-terminated */
	/*
	 * Its serial port is a socket vmd makes (serial.sock) and passes to it listening, as
	 * VMM_FD_FIRST (VmmVm.serial_fd while argv() builds): the daemon logs and serves it
	 * (console.c). false: the VMM writes console.log itself.
	 */
	bool serial_socket;
	/*
	 * Its serial port is serial.sock too, but the VMM binds it and listens itself (Cloud
	 * Hypervisor's serial mode Socket): the daemon connects to it all the same.
	 */
	bool serial_vmm_socket;
	/* Its VMM drops root on its own (a jailed Firecracker): vmd does not (NULL: never). */
	bool (*drops_root)(const Backend *b);
	/*
	 * A disk from an image gets a raw copy of it (a reflink, a sparse copy or a conversion:
	 * vmm-image.c), not a qcow2 overlay: its VMM takes raw disks only (Firecracker), or
	 * would open an overlay's backing file by the path in its header, as the VMM user
	 * (Cloud Hypervisor), when the VMM is to need no access to the image at all.
	 */
	bool raw_image_copies;
	size_t size; /* of the backend's VM struct, which starts with a VmmVm */

	void (*free)(VmmVm *v); /* its own parts */
	/* Its own fields into, and out of, vm.json. */
	int (*save)(VmmVm *v, json_t *record);
	int (*load)(VmmVm *v, const json_t *record);
	/* Before the VMM starts, beside the runtime dir's own preparation (NULL: nothing). */
	int (*prepare)(VmmVm *v);
	/* The argv to start v->config with (a NULL-terminated strv). */
	int (*argv)(VmmVm *v, char ***ret);
	/*
	 * The sandbox a process of this VMM runs for, from its argv as argv() builds it (pid to
	 * look further, at its jail): 1 and *ret_name, 0 if it runs for none of this run dir's.
	 * vmm_argv_names_dir() does what most need.
	 */
	int (*argv_name)(const Backend *b, pid_t pid, char *const *argv, char **ret_name);
	/*
	 * The requests of j's phase. For every phase that has none, the job goes on (or, in a
	 * phase that waits, waits: for the exit, a backend's vmm_job_phase_done(), or the
	 * deadline). v->state is what vmd last knew; j says what the job is about.
	 *
	 * Suspend and restore (BACKEND_CAP_SUSPEND), by j->type: freeze (pause), save (the
	 * request(s) that write j->snapshot_dir: a VMM that saves synchronously is done when
	 * it answers, and builds nothing for saving), saving (set rq->poll_usec, e.g.
	 * VMM_SAVE_POLL_USEC, and answer VMM_AGAIN until complete, VMM_SKIP then, -errno
	 * with vmm_job_fail_message() on a failed save), quit (as a stop's), thaw (resume,
	 * unless j->was_paused); load, loading (as save, saving), boot (resume unless
	 * v->config->state is SANDBOX_PAUSED). A descriptor goes with a request through
	 * vmm_request_pass_fd().
	 */
	int (*build)(VmmVm *v, VmmJob *j, VmmRequests *rq);
	/*
	 * What the files phase of j (a start, a restore, a disk added or updated) opens,
	 * copies or checks for the VMM, added to f with the vmm_files_add*() of vmm-files.h;
	 * the spawn takes them (vmm_files_take()). NULL, or nothing added: nothing.
	 */
	int (*files)(VmmVm *v, VmmJob *j, VmmFiles *f);
	/* A QMP event (QMP VMMs). */
	void (*event)(VmmVm *v, const char *event, json_t *data);
	/* What observe() reports beyond what every VMM has (NULL: nothing). */
	void (*observed)(const VmmVm *v, VmObserved *o);
	/* The VMM is gone: drop anything of it the backend keeps. */
	void (*exited)(VmmVm *v);
	/* Remove what prepare made outside the runtime dir (NULL: nothing). */
	int (*cleanup)(Backend *b, const char *name);
	/*
	 * At cleanup, before the record goes: free what the VM's config held outside vmd's
	 * files (devices), v as vmd drives it or as its record has it (NULL: nothing).
	 */
	void (*release)(VmmVm *v);
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
	/*
	 * What prepare() opened for the VMM to inherit (taps...): each is VMM_FD_FIRST + its
	 * index in the VMM, and closed in vmd once the VMM has it (or failed to start).
	 */
	int pass_fds[VMM_PASS_FDS_MAX];
	size_t n_pass_fds;
	VmmBootFile *boot_files[_VMM_BOOT_MAX]; /* its kernel's and initrd's (vmm-files.c) */
	sd_event_source *pid_source;

	VmState state;
	int exit_status;
	bool stop_requested, guest_shutdown;
	bool restoring; /* started to restore a snapshot, not loaded to the end yet (record) */
	uint64_t generation, started_at_usec;
	SandboxSpec *config; /* what it runs: its boot config and the devices it has */

	VmmJob job;	/* start, stop, adopt, pause, resume, add, resize */
	VmmJob unplug;	/* a device removal, which waits on the guest beside the rest */
	VmmJob observe; /* what the VMM reports, read when asked (refresh) */
	uint64_t job_serial;
	char *unresponsive; /* why its VMM is taken for hung, or NULL */
	char *vmm_version;  /* as its VMM reports it ("cloud-hypervisor v52.0"), or NULL */
	sd_event_source *observe_retry; /* asks a VMM that did not answer again */
	sd_event_source *mark_source;	/* vmm-job.c: the child that marks a save complete */

	int serial_fd;	   /* serial_socket: its number in the VMM while argv() builds, or -EBADF */
	Console *console;  /* serial_socket: the daemon's end, while the VMM runs */
	GuestAgent *agent; /* config->guest_agent: the daemon asking it, while the VMM runs */

	Qmp *qmp;			    /* QMP VMMs: the connection */
	uint64_t qmp_retry_at, qmp_backoff; /* CLOCK_MONOTONIC; after a broken connection */
};

/* The start of Backend.data for a backend built on VmmVm. */
typedef struct VmmBackend {
	const VmmVmType *type;
	Hashmap *vms;		 /* name -> VmmVm: the VMs this vmd drives */
	char *binary;		 /* absolute, NULL if not found */
	int binary_error;	 /* why not */
	const char *binary_name; /* as configured, for messages */
	char boot_id[64];
	HttpLoop *http; /* REST VMMs: made for the first request */
	/*
	 * name -> VmmStray: the live processes of this VMM that run for a name, as one scan of
	 * /proc found them at the first need (and again after a SIGHUP). Only a vmd starts VMMs
	 * in its run dir and one vmd holds it: what runs there and was not started by this one
	 * was running before it, so a scan once is enough.
	 */
	Hashmap *strays;
	bool strays_scanned;
	VmmBootFile *boot_files; /* the copies of kernels and initrds VMs share (vmm-files.c) */
} VmmBackend;

#define VMM_BACKEND(b) ((VmmBackend *)(b)->data)

/*
 * Set up a backend of VMs of type t; binary is the configured binary, or default_binary
 * from $PATH. The vmm_vm_* functions below that take a Backend fit its BackendOps as is.
 */
int vmm_backend_init(Backend *b, const VmmVmType *t, const char *binary, const char *default_binary);
/* The VMs keep running: the next vmd adopts them. */
void vmm_backend_done(Backend *b);
/* SIGHUP: the next look for strays scans /proc again. */
void vmm_backend_reload(Backend *b);

/*
 * Hand fd (vmd's, close-on-exec) to the VMM about to be spawned for v: the number it has
 * there, or -E2BIG (fd is closed either way, in the end).
 */
int vmm_vm_pass_fd(VmmVm *v, int fd);
/*
 * A socket vmd makes listening in v's runtime dir (file, mode 0600), handed over as
 * vmm_vm_pass_fd() does: the number the VMM has it as, or -errno, said as what's ("the
 * serial console's") in the backend's error.
 */
int vmm_vm_pass_listener(VmmVm *v, const char *file, const char *what);

/* vmm-pass.c: for a VMM that opens files by path itself, as the VMM user. */
/* Who v's VMM runs as: NULL, as vmd, if the daemon said nothing or the VMM drops root itself. */
const VmmUser *vmm_vm_user(const VmmVm *v, VmmUser *buf);
/*
 * For VmmVmType.files: a disk hot-added, which the VMM gets by path only and opens as the
 * VMM user: whether that user may (refused with the words naming what, path and the user,
 * and what to do). Nothing as vmd, or root.
 */
int vmm_vm_want_access(VmmFiles *f, const DiskSpec *d);
/*
 * The VMM's own dir, <dir>/VMM_OWN_DIR, owned by the VMM user, for what the VMM makes itself
 * (files: a socket, console.log): a stale socket in it removed, its console.log kept as
 * console.log.1, and each of files in the runtime dir a symlink to the dir's. Passed: *ret
 * is the dir as /proc/self/fd/N in the VMM, which needs no way through the runtime dir.
 */
#define VMM_OWN_DIR "vmm"
int vmm_vm_own_dir(VmmVm *v, const char *const *files, char **ret);
/* At cleanup: the own dir's files, and the dir if then empty. */
int vmm_own_dir_cleanup(Backend *b, const char *name, const char *const *files);

/*
 * What a VMM that opens its boot files itself names them as, once they are passed: each
 * /proc/self/fd/N in the VMM; NULL: as the spec says (a VM vmd did not start, or none).
 */
typedef struct VmmPassed {
	char *own; /* its own dir (vmm_vm_own_dir()) */
	char *kernel, *initrd, *seed;
	char *disks[SPEC_DISKS_MAX];
} VmmPassed;
/*
 * Its own dir with own_files, kernel and initrd (sealed copies), the disks (vmd's opens,
 * checked for the VMM user), the seed (a copy), passed (into *p, what it had freed first):
 * what the files step got for vmm_vm_want_boot().
 */
int vmm_vm_pass_boot(VmmVm *v, const char *const *own_files, VmmPassed *p);
/* For VmmVmType.files, at a start: what vmm_vm_pass_boot() passes. */
int vmm_vm_want_boot(VmmVm *v, VmmFiles *f);
void vmm_passed_done(VmmPassed *p);

/* vmm-stray.c */
/* A VM found absent or exited (rec: its record, if any): is a VMM running for it anyway? */
int vmm_stray_observe(Backend *b, const char *name, const VmmVm *rec, VmObserved *o);
/* Before vmd makes anything run for name: -EEXIST, with the words, if something does. */
int vmm_stray_refuse(Backend *b, const char *name);
/* Forget the processes found: the next need scans again. */
void vmm_strays_forget(VmmBackend *vb);

/*
 * For VmmVmType.argv_name: the name in an argv that has option followed by
 * "<prefix><run-dir>/<name>/<file>", as vmd builds it: 1 and *ret_name, or 0.
 */
int vmm_argv_names_dir(const Backend *b, char *const *argv, const char *option, const char *prefix,
		       const char *file, char **ret_name);
/*
 * The same for a VMM whose argv names no path of the run dir (its sockets are fds, or in
 * its own dir as /proc/self/fd/N): its stderr, /proc/PID/fd/2, is <run-dir>/<name>/<file>.
 */
int vmm_stderr_names_dir(const Backend *b, pid_t pid, const char *file, char **ret_name);

VmmVm *vmm_vm_get(Backend *b, const char *name);
VmmVm *vmm_vm_free(VmmVm *v);
DEFINE_POINTER_CLEANUP(VmmVm, vmm_vm_free)
/* <run-dir>/<name>/<file> */
char *vmm_vm_path(const Backend *b, const char *name, const char *file);
int vmm_vm_save(VmmVm *v);
/* What the VMM said it is ("cloud-hypervisor v52.0"), kept in the record; -ENOMEM. */
int vmm_vm_set_version(VmmVm *v, const char *fmt, ...) _printf_(2, 3);
/* Tell the daemon that something changed on its own. */
void vmm_vm_changed(VmmVm *v);

/* The names of the VMs of this type with a record. */
int vmm_vm_list(Backend *b, char ***ret_names, size_t *ret_n);
/* What runs under name, from memory (never from the VMM); from the record if not driven. */
int vmm_vm_observe(Backend *b, const char *name, VmObserved *ret);
/* Take charge of a VM found running: the very process the record names, on this boot. */
int vmm_vm_adopt(Backend *b, const char *name);
void vmm_vm_refresh(Backend *b);
/* Start a VM for spec: 1, it is VM_STARTING until its start job is done. */
int vmm_vm_start(Backend *b, const SandboxSpec *spec, uint64_t generation);
int vmm_vm_stop(Backend *b, const char *name, uint64_t timeout_ms, bool force);
int vmm_vm_pause(Backend *b, const char *name);
int vmm_vm_resume(Backend *b, const char *name);
int vmm_vm_disk_add(Backend *b, const char *name, const DiskSpec *disk, uint64_t generation);
int vmm_vm_disk_update(Backend *b, const char *name, const DiskSpec *disk, uint64_t generation);
int vmm_vm_disk_remove(Backend *b, const char *name, const char *id, uint64_t generation);
int vmm_vm_net_add(Backend *b, const char *name, const NetSpec *net, uint64_t generation);
int vmm_vm_net_remove(Backend *b, const char *name, const char *id, uint64_t generation);
int vmm_vm_resize(Backend *b, const char *name, unsigned vcpus, uint64_t memory, uint64_t generation);
/* BackendOps.suspend: a suspend job (freeze, save, saving, quit); 1. */
int vmm_vm_suspend(Backend *b, const char *name, const char *snapshot_dir);
/* BackendOps.restore: a start whose job is a restore (spawn, api-up, load, loading, boot); 1. */
int vmm_vm_restore(Backend *b, const SandboxSpec *spec, uint64_t generation,
		   const char *snapshot_dir);
/*
 * For a backend's configure phase: a start adopted from a vmd that died while the VMM
 * restored a snapshot (v->restoring) is not booted afresh (the guest would write to the
 * disks the snapshot belongs to): -ESTALE, the job failed and the VMM killed, so that the
 * daemon wakes the snapshot again. 0 otherwise.
 */
int vmm_vm_refuse_fresh_boot(VmmVm *v, VmmJob *j);
/* Remove the runtime files of a VM that is not running. Never touches disk images. */
int vmm_vm_cleanup(Backend *b, const char *name);
/* vmm-idle.c: its console's bytes and its taps' packets (BackendOps.activity). */
int vmm_vm_activity(Backend *b, const char *name, uint64_t *ret);
/* The packets both ways on the taps of spec's NICs (a user network has none), as counted now. */
uint64_t vmm_net_packets(const SandboxSpec *spec);
/* A guest-ping to its guest agent, for a probe (BackendOps.agent_ping). */
int vmm_vm_agent_ping(Backend *b, const char *name, GuestAgentPingDone done, void *userdata);

/*
 * A copy of config without the disks and networks the VMM does not list: disks and nets
 * are JSON arrays of objects (NULL for none) whose member disk_key / net_key is the id.
 */
int vmm_vm_config_seen(const SandboxSpec *config, const json_t *disks, const char *disk_key,
		       const json_t *nets, const char *net_key, SandboxSpec **ret);

/* vmm-job.c: the job machinery, for vmm-vm.c and the backends. */

/* Begin a job of type at phase (its other fields set by the caller beforehand). */
int vmm_job_begin(VmmVm *v, VmmJob *j, BackendOp type, VmmPhase phase);
/* Go to phase now, whatever j was doing in its current one. */
void vmm_job_enter(VmmVm *v, VmmJob *j, VmmPhase phase);
/* A phase that waits is over (a QMP event said so); the job goes on. */
void vmm_job_phase_done(VmmVm *v, VmmJob *j);
/* End j now with error and message (NULL: none), and tell the daemon. */
void vmm_job_complete(VmmVm *v, VmmJob *j, int error, const char *message);
/* Why a reply handler fails its phase, in words; the handler then returns -errno. */
void vmm_job_fail_message(VmmJob *j, const char *fmt, ...) _printf_(2, 3);
/* What the VM's jobs are doing, for observe(). */
void vmm_job_report(const VmmVm *v, VmObserved *o);
/* A line in the journal of what v's job did: result (NULL: none), error (a -errno or 0). */
void vmm_job_log(VmmVm *v, int priority, const char *result, int error, const char *fmt, ...)
	_printf_(5, 6);
/* The VMM exited: every job hears it; true if the start job took the news (no vm_exited). */
bool vmm_job_vm_exited(VmmVm *v, const char *start_error);
void vmm_job_free(VmmJob *j);
/* The image worker of j is done (error: it failed): on to the next, or the VMM. */
void vmm_job_image_done(VmmVm *v, VmmJob *j, int error);

/* vmm-start.c: spawn the VMM of a VM whose start made its images and files first. */
int vmm_vm_launch(VmmVm *v);
/* The files phase (vmm-boot.c) of j is done (error: it failed): on to the next. */
void vmm_job_files_done(VmmVm *v, VmmJob *j, int error);

/* vmm-boot.c: j's files phase. */
/* Begin it: 1, a worker runs and vmm_job_files_done() follows; 0: nothing to do; -errno. */
int vmm_files_begin(VmmVm *v, VmmJob *j);
/* Kill its worker, if any, and close what it got that nobody took. */
void vmm_files_free(VmmJob *j);
/* What it is doing, in words. */
char *vmm_files_describe(const VmmVm *v, const VmmJob *j);
/*
 * vmm-start.c: watch v's VMM for its exit (vmm_vm_exited), and keep its serial console and
 * ask its guest agent, if it has them; adopted: found running, not started by this vmd.
 */
int vmm_vm_watch(VmmVm *v, bool adopted);

/* vmm-image.c */
/* Whether config has a disk from an image. */
bool vmm_image_needed(const SandboxSpec *config);
/*
 * Name each image disk's copy (path, format) in v->config. restoring: a snapshot's wake,
 * which keeps the qcow2 overlay an earlier vmd made for a type with raw copies (the
 * snapshot names it) while it has no raw copy yet. -EINVAL: no state dir.
 */
int vmm_image_resolve(VmmVm *v, bool restoring);
/*
 * Look at each image disk's copy from j->image.disk on and begin the work the first needs
 * (worker_done: the worker before has just succeeded). 1: a worker runs, and
 * vmm_job_image_done() follows; 0: every copy is right; -errno, with j's message.
 */
int vmm_image_step(VmmVm *v, VmmJob *j, bool worker_done);
/* Kill the worker, if any, and remove what it was writing. */
void vmm_image_abort(VmmJob *j);
/* What the image phase is doing, in words. */
char *vmm_image_describe(const VmmVm *v, const VmmJob *j);
/* What came back for j's request in flight (vmm-api.c calls it). */
void vmm_job_reply(VmmJob *j, const VmmReply *r);
/* Ask the VMM what it runs (an observe job), unless a job is at work on it. */
void vmm_job_refresh(VmmVm *v);

/* vmm-vm.c, for vmm-job.c: stop driving v (its record stays); v is freed. */
void vmm_vm_forget(VmmVm *v);
/* vmm-vm.c, for vmm-start.c: a VM of type t, not yet driven; NULL without memory. */
VmmVm *vmm_vm_new(Backend *b, const VmmVmType *t, const char *name);
/* vmm-vm.c, for vmm-start.c: v's VMM is gone, with status (as vmm_reap() says it). */
void vmm_vm_exited(VmmVm *v, int status);

/* vmm-api.c: the transports, for vmm-job.c and vmm-vm.c. */

/* Send req for j; vmm_job_reply() gets its answer. < 0: it could not even be sent. */
int vmm_api_send(VmmVm *v, VmmJob *j, const VmmRequest *req);
/* Forget j's request in flight: its answer, if one comes, is dropped. */
void vmm_api_cancel(VmmVm *v, VmmJob *j);
/* The VMM answered something: it is not hung (any more). */
void vmm_api_heard(VmmVm *v);
/* Close the VM's QMP connection (it broke, or its QEMU exited); the next request connects. */
void vmm_api_disconnect(VmmVm *v);
