/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Inside the QEMU backend: the VM vmd drives, shared by qemu.c (lifecycle, record,
 * adoption) and qemu-hotplug.c (root ports, disks and NICs). Nothing else includes it.
 */

#include "backend.h"
#include "qemu.h"
#include "qmp.h"
#include "vmm-vm.h"

#define QMP_TIMEOUT_USEC (5ull * 1000000)	   /* one command */
#define QEMU_UNPLUG_TIMEOUT_USEC (30ull * 1000000) /* device_del to DEVICE_DELETED */
#define DEVICE_NAME_MAX (sizeof(QEMU_DISK_DEVICE) + SPEC_ID_MAX + 1)

typedef enum UnplugState {
	UNPLUG_NONE,
	UNPLUG_IN_FLIGHT, /* device_del sent, DEVICE_DELETED not yet seen */
	UNPLUG_TIMED_OUT, /* the guest did not let go in time: report, then send again */
} UnplugState;

typedef struct Port {
	char device[DEVICE_NAME_MAX]; /* "disk-ID" or "net-ID" on it, "" if free */
	UnplugState unplug;
	uint64_t unplug_deadline; /* CLOCK_MONOTONIC */
	unsigned unplug_attempts;
} Port;

typedef struct QemuVm {
	VmmVm vm; /* first: process, record, state, config (vmm-vm.c) */
	Qmp *qmp;
	sd_event_source *unplug_timer;
	Port ports[QEMU_PORTS_MAX];
	unsigned n_ports;
} QemuVm;

/* The VM's QEMU: identity, connection, what it runs, which device is on which port. */
QemuVm *qemu_vm_get(Backend *b, const char *name);
/* The VM, when vmd drives it and can talk to it (connecting again if need be). */
int qemu_vm_for_command(Backend *b, const char *name, QemuVm **ret);
/* Run a command; a QMP error becomes the message of the failure (backend_set_error). */
int qemu_command(QemuVm *v, const char *cmd, json_t *args);

/* qemu-hotplug.c */
void qemu_device_name(char buf[static DEVICE_NAME_MAX], const char *prefix, const char *id);
/* Whether a hot-unplug is in flight, and words for it (or its timeout), NULL if none. */
bool qemu_vm_is_busy(const QemuVm *v);
char *qemu_progress(const QemuVm *v);
/* Its config, less the devices QEMU does not have (qom-list /machine/peripheral). */
int qemu_observed_config(QemuVm *v, SandboxSpec **ret);
/* DEVICE_DELETED for device: free its backend node or netdev, its port, its config entry. */
void qemu_unplug_done(QemuVm *v, const char *device);
int qemu_disk_add(Backend *b, const char *name, const DiskSpec *d, uint64_t generation);
int qemu_disk_remove(Backend *b, const char *name, const char *id, uint64_t generation);
int qemu_net_add(Backend *b, const char *name, const NetSpec *n, uint64_t generation);
int qemu_net_remove(Backend *b, const char *name, const char *id, uint64_t generation);
