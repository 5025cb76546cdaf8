/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Inside the QEMU backend: the VM vmd drives, shared by qemu.c (lifecycle, record, what
 * each phase of a job sends) and qemu-hotplug.c (root ports, disks and NICs). Nothing
 * else includes it.
 */

#include "backend.h"
#include "qemu.h"
#include "vmm-vm.h"

#define DEVICE_NAME_MAX (sizeof(QEMU_DISK_DEVICE) + SPEC_ID_MAX + 1)

typedef struct Port {
	char device[DEVICE_NAME_MAX]; /* "disk-ID" or "net-ID" on it, "" if free */
	unsigned fdset; /* a disk hot-added: its fdset; 0: QEMU_FDSET_DISK + the port's */
	bool legacy;	/* a disk of a vmd before: its nodes are named after its id */
} Port;

typedef struct QemuVm {
	VmmVm vm; /* first: process, record, state, config, jobs (vmm-vm.c) */
	Port ports[QEMU_PORTS_MAX];
	unsigned n_ports;
	unsigned add_port; /* 1 + the port the add at work took, 0 if none: what a rollback frees */
	unsigned add_fds;  /* descriptors the add at work gave QEMU (getfd), before its netdev */
	unsigned last_fdset; /* the last hot-added disk's fdset, 0 if none yet */
	/*
	 * QEMU has a vmgenid device: every fresh boot; a wake as its save had it, with the
	 * very devices of the save (a QEMU of a vmd before had none).
	 */
	bool vmgenid;
	/* At the start: the descriptors of each network's tap and vhost in QEMU, or -1. */
	int net_fds[SPEC_NETWORKS_MAX], vhost_fds[SPEC_NETWORKS_MAX];
	int agent_fd; /* the guest agent's listening socket, as QEMU has it, or -1 */
	int qmp_fd;   /* qmp.sock, made by vmd and passed listening, as QEMU has it */
	/* At the start (qemu-fds.c): what QEMU opens no path of, as it has them, or -1. */
	int disk_fds[SPEC_DISKS_MAX], base_fds[SPEC_DISKS_MAX];
	int kernel_fd, initrd_fd, seed_fd;
	int credential_fds[SPEC_CREDENTIALS_MAX];
} QemuVm;

/* qemu.c: whether the networks' vhost-net is opened for QEMU (KVM runs the guest). */
bool qemu_wants_vhost(const Backend *b);

/* qemu-fds.c: the files of a start, opened and passed (-1 where there is none). */
int qemu_prepare_files(QemuVm *v);
/* VmmVmType.files: what qemu_prepare_files() passes, for the files step (vmm-boot.c). */
int qemu_files(VmmVm *vm, VmmJob *j, VmmFiles *f);

/* qemu-hotplug.c */
void qemu_device_name(char buf[static DEVICE_NAME_MAX], const char *prefix, const char *id);
/* "disk-ID" or "net-ID" with a valid id: a name vmd gives a device, and nothing else. */
bool qemu_is_device_name(const char *s);
/*
 * The record's names of what backs each disk (vm.json "diskNames"): the fdsets of disks
 * hot-added, the last one given, which disks are named as a vmd before named them.
 */
int qemu_vm_save_disk_names(const QemuVm *v, json_t *j);
int qemu_vm_load_disk_names(QemuVm *v, const json_t *j);
/* query-fdsets of a QEMU adopted: the next hot-added disk's set is one it does not hold. */
int qemu_observe_fdsets(VmmVm *vm, VmmJob *j, const VmmReply *r);
/* The requests of a hot-plug job's phase: add, remove (ask, cleanup), undo a failed add. */
int qemu_build_hotplug(QemuVm *v, VmmJob *j, VmmRequests *rq);
/* What QEMU has (qom-list /machine/peripheral): the config loses what it lacks. */
int qemu_observe_devices(VmmVm *vm, VmmJob *j, const VmmReply *r);
/* DEVICE_DELETED for device: its removal goes on to free what backed it. */
void qemu_device_deleted(QemuVm *v, const char *device);

/* qemu-snapshot.c: the requests of a suspend's phases, and of a restore's load and boot. */
int qemu_build_snapshot(QemuVm *v, VmmJob *j, VmmRequests *rq);
/* The root ports of the VM saved in snapshot_dir, into v->ports: -ENOENT if it has none. */
int qemu_snapshot_ports(QemuVm *v, const char *snapshot_dir);
