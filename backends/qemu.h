/* SPDX-License-Identifier: MIT */
#pragma once

#include "spec.h"

/*
 * The QEMU backend's pieces: qemu-argv.c builds the command line (pure, tested on its
 * own), qemu.c drives the process through QMP (qmp.c) and vmm.c.
 */

#define QEMU_SPARE_PORTS 8 /* free pcie-root-ports for hot-plug, beyond the boot devices */
#define QEMU_PORTS_MAX 64  /* 8 slots of 8 functions */

typedef enum QemuAccel {
	QEMU_ACCEL_AUTO, /* kvm when /dev/kvm works, else tcg */
	QEMU_ACCEL_KVM,
	QEMU_ACCEL_TCG,
	_QEMU_ACCEL_MAX,
	_QEMU_ACCEL_INVALID = -EINVAL,
} QemuAccel;

DECLARE_STRING_TABLE(qemu_accel, QemuAccel);

/* Everything a QEMU command line is made of. */
typedef struct QemuLaunch {
	const char *binary; /* absolute */
	QemuAccel accel;
	const char *dir; /* <run-dir>/<name>: the pid file, the credentials' copies */
	int serial_fd;	 /* the serial console's listening socket, as QEMU has it (VMM_FD_FIRST) */
	int qmp_fd;	 /* qmp.sock, listening, as QEMU has it */
	int agent_fd;	 /* spec->guest_agent: the agent port's listening socket, as QEMU has it */
	const SandboxSpec *spec;
	const unsigned *disk_ports; /* root port of each disk, of each network */
	const unsigned *net_ports;
	unsigned n_ports; /* root ports to create */
	/* Each network's tap and vhost-net descriptors, as QEMU has them, or -1 (NULL: none). */
	const int *net_fds, *vhost_fds;
	/*
	 * What QEMU opens no path of (qemu-fds.c), as QEMU has them: each disk's file, each
	 * overlay's base image (-1: not an overlay), put in fdsets; the kernel, the initrd
	 * (-1: none), each credential, read as /proc/self/fd/N. A NULL array: none (a spec
	 * with disks or credentials then has no command line: QEMU never gets a path).
	 */
	const int *disk_fds, *base_fds, *credential_fds;
	int kernel_fd, initrd_fd;
	int seed_fd;   /* the cloud-init seed (provision.h) read-only, -1 for none */
	bool incoming; /* -incoming defer: its state comes from a snapshot (migrate-incoming) */
	bool vmgenid;  /* a VM generation ID device (QEMU_VMGENID_DEVICE) */
} QemuLaunch;

/* The fdset of a disk on root port P, of its base image, and of the seed. */
#define QEMU_FDSET_DISK 1 /* + P */
#define QEMU_FDSET_SEED 100
#define QEMU_FDSET_BASE 101 /* + P */
/*
 * A hot-added disk's fdset: one of its own for each add, from here up (QemuVm.last_fdset),
 * so that a set a failed remove-fd left behind is never added to again.
 */
#define QEMU_FDSET_HOTADD 200

/* The argv (NULL-terminated, to free with strv_free) to run QEMU with. */
int qemu_build_argv(const QemuLaunch *l, char ***ret);

/* ",hostfwd=..." for each of n's ports ("" for none), each as spec_port_format() says it. */
char *qemu_hostfwds(const NetSpec *n);

/* A value for a QEMU key=value option: commas doubled, so that it cannot end the value. */
char *qemu_opt_escape(const char *s);

/* Device and node names of a disk or network, as in QMP: "disk-ID", "net-ID"... */
#define QEMU_DISK_DEVICE "disk-"
/*
 * A disk's block nodes are named after its root port P ("vmd-disk3"), not its id: QEMU's
 * node names are shorter than 32 characters (7.2 block.c bdrv_assign_node_name(): "Node
 * name too long", BlockDriverState.node_name[32]), which "disk-node-" and an id of
 * SPEC_ID_MAX would not be. The device keeps its id's name ("disk-ID": qdev ids have no
 * such limit).
 */
#define QEMU_NODE_NAME_MAX 32
#define QEMU_DISK_NODE "vmd-disk" /* + P: the format node */
#define QEMU_DISK_FILE "vmd-file" /* + P: the file node under it */
/* An overlay's base image: its format node and its file node. */
#define QEMU_DISK_BASE "vmd-base"	   /* + P */
#define QEMU_DISK_BASE_FILE "vmd-bfile"	   /* + P */
#define QEMU_DISK_BASE_OPAQUE "disk-base-" /* + ID: its descriptor's opaque, in its fdset */
/* A QEMU a vmd before started names a disk's nodes after its id: its removal does too. */
#define QEMU_LEGACY_DISK_NODE "disk-node-"
#define QEMU_LEGACY_DISK_FILE "disk-file-"
#define QEMU_NET_DEVICE "net-"
#define QEMU_NETDEV "netdev-"
#define QEMU_PORT "vmd-port"
/* The seed's device and nodes: no disk's names ("disk-..."), whatever its id. */
#define QEMU_SEED_DEVICE "vmd-seed"
#define QEMU_SEED_NODE "vmd-seed-node"
#define QEMU_SEED_FILE "vmd-seed-file"
/*
 * The VM generation ID (ACPI, q35): guid=auto makes a new GUID in each QEMU process, and
 * on an incoming migration QEMU writes it into the guest and notifies it (hw/acpi/vmgenid.c
 * vmgenid_post_load()): a Linux guest (5.18 on, CONFIG_VMGENID) reseeds its RNG at a wake.
 */
#define QEMU_VMGENID_DEVICE "vmd-vmgenid"
/* Where systemd looks for credentials among fw_cfg's files (systemd's import-creds.c). */
#define QEMU_CREDENTIAL_PREFIX "opt/io.systemd.credentials/"
