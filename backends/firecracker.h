/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the Firecracker backend's files share: firecracker.c (the VM over the API),
 * firecracker-snapshot.c (suspend and wake) and firecracker-jail.c (the jailer's chroot:
 * its paths, what vmd links in, what is cleared).
 */

#include "vmm-vm.h"

#define JAIL_KERNEL "vmlinux"
#define JAIL_INITRD "initrd"
#define JAIL_DISK "disk-"
/* The cloud-init seed: "disk-" and a name no disk id gives ('_'), cleared with the disks. */
#define JAIL_SEED JAIL_DISK "_seed"
/* Its drive: upper case, which no disk's id gives either (fc_id() maps '-' to '_' only). */
#define FC_SEED_ID "VmdSeed"
#define JAIL_SOCKET "api.sock"
#define JAIL_CONSOLE "console.log"
/* A snapshot's files while Firecracker writes or reads them in the jail (firecracker.c). */
#define JAIL_SNAPSHOT "snapshot."
#define JAIL_SNAPSHOT_STATE JAIL_SNAPSHOT "state"
#define JAIL_SNAPSHOT_MEMORY JAIL_SNAPSHOT "mem"

typedef struct Fc {
	VmmBackend vmm; /* first */
	char *jailer;	/* absolute; NULL if not found (or not asked for) */
	int jailer_error;
} Fc;

#define FC(b) ((Fc *)(b)->data)

/* Whether Firecracker starts through the jailer (--jailer). */
bool fc_jailed(const Backend *b);
/* --jailer-chroot-base, or the jailer's default. */
const char *fc_jail_base(const Backend *b);
/* Firecracker's file name: the jail is named after it, and the jailer copies it in. */
const char *fc_name(const Backend *b);
/* The path Firecracker is given for a host file: where it is in the jail, if jailed. */
char *fc_vm_path(const Backend *b, const char *host, const char *jail_name);

/* VmmVmType's prepare, cleanup and argv_name for Firecracker (see there). */
int fc_jail_prepare(VmmVm *vm);
int fc_jail_cleanup(Backend *b, const char *name);
/* The jail's link file (in its root) made to point at host instead, atomically. */
int fc_jail_relink(VmmVm *vm, const char *host, const char *file);
/* A file Firecracker made in the jail root moved out to host (a hard link, then unlinked). */
int fc_jail_take(VmmVm *vm, const char *file, const char *host);
/* The jail root's file gone (a link vmd made), if there. */
void fc_jail_drop(VmmVm *vm, const char *file);
int fc_argv_name(const Backend *b, pid_t pid, char *const *argv, char **ret);

/* A PUT of body (taken; NULL: -ENOMEM) to path. */
int fc_put(VmmRequests *rq, json_t *body, const char *path);
/* PATCH /vm to state: "Paused" or "Resumed". */
int fc_patch_vm(VmmRequests *rq, const char *state);
/* Where the guest's console goes: PUT /serial from 1.14, its stdout before. */
int fc_put_console(VmmVm *v, VmmRequests *rq);
/* The requests of a suspend's freeze, save, thaw and quit, and of a restore's load. */
int fc_build_snapshot(VmmVm *v, VmmJob *j, VmmRequests *rq);
