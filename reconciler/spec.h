/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "probe-spec.h"
#include "util.h"

/* The desired state of one sandbox, as a sandbox file states it (docs/sandbox-file.md). */

#define SPEC_API_VERSION "vmd/v1"
#define SPEC_KIND "Sandbox"
#define SPEC_NAME_MAX 63
#define SPEC_ID_MAX 31
#define SPEC_IFNAME_MAX 15
#define SPEC_VCPUS_MAX 256
/* spec.resources: systemd's CPUWeight= and IOWeight= range, and a quota of up to 100 CPUs. */
#define SPEC_WEIGHT_MAX 10000
#define SPEC_CPU_QUOTA_MAX 10000
#define SPEC_MEMORY_MIN (16ull << 20)
#define SPEC_CMDLINE_MAX 4096
#define SPEC_STOP_TIMEOUT_MAX_MS (24ull * 3600 * 1000)
/* suspendAfterIdle: 1s at least (short enough for tests), 24h at most. */
#define SPEC_IDLE_MIN_MS 1000ull
#define SPEC_IDLE_MAX_MS (24ull * 3600 * 1000)
#define SPEC_DISKS_MAX 32
#define SPEC_NETWORKS_MAX 16
#define SPEC_LABELS_MAX 64
#define SPEC_LABEL_KEY_MAX 128
#define SPEC_LABEL_VALUE_MAX 256
#define SPEC_PATH_MAX 4095
/* Provisioning (docs/sandbox-file.md, "Provisioning"). */
#define SPEC_USER_DATA_MAX (1u << 20) /* bytes of user-data, inline or from its file */
#define SPEC_META_DATA_MAX 32	      /* metaData keys */
#define SPEC_META_KEY_MAX 128	      /* characters of a metaData key */
#define SPEC_META_VALUE_MAX 1024      /* characters of a metaData value */
#define SPEC_SSH_KEYS_MAX 32	      /* sshAuthorizedKeys, and the files of keys */
#define SPEC_SSH_KEY_MAX 16384	      /* characters of one key */
#define SPEC_CREDENTIALS_MAX 32
#define SPEC_CREDENTIAL_SIZE_MAX (1u << 20) /* bytes of a credential's file */
/* fw_cfg names are at most 55 bytes (QEMU's FW_CFG_MAX_FILE_PATH), 27 of them the prefix. */
#define SPEC_CREDENTIAL_NAME_MAX 28

typedef enum BackendKind {
	BACKEND_QEMU,
	BACKEND_CLOUD_HYPERVISOR,
	BACKEND_FIRECRACKER,
	BACKEND_NOOP,
	_BACKEND_KIND_MAX,
	_BACKEND_KIND_INVALID = -EINVAL,
} BackendKind;

typedef enum SandboxState {
	SANDBOX_RUNNING,
	SANDBOX_PAUSED,
	SANDBOX_STOPPED,
	SANDBOX_SUSPENDED, /* its state saved to disk, no VMM (BACKEND_CAP_SUSPEND) */
	_SANDBOX_STATE_MAX,
	_SANDBOX_STATE_INVALID = -EINVAL,
} SandboxState;

/* spec.startFrom: a boot every time, or a template snapshot after the first (template.c). */
typedef enum StartFrom {
	START_FROM_BOOT,
	START_FROM_SNAPSHOT,
	_START_FROM_MAX,
	_START_FROM_INVALID = -EINVAL,
} StartFrom;

typedef enum RestartPolicy {
	RESTART_ALWAYS,
	RESTART_ON_FAILURE,
	RESTART_NEVER,
	_RESTART_POLICY_MAX,
	_RESTART_POLICY_INVALID = -EINVAL,
} RestartPolicy;

typedef enum UpdatePolicy {
	UPDATE_RESTART,
	UPDATE_ON_NEXT_BOOT,
	_UPDATE_POLICY_MAX,
	_UPDATE_POLICY_INVALID = -EINVAL,
} UpdatePolicy;

typedef enum DiskFormat {
	DISK_FORMAT_RAW,
	DISK_FORMAT_QCOW2,
	_DISK_FORMAT_MAX,
	_DISK_FORMAT_INVALID = -EINVAL,
} DiskFormat;

/* What a disk's path is: a regular file, or a block device the spec says it is. */
typedef enum DiskDevice {
	DISK_DEVICE_FILE,
	DISK_DEVICE_BLOCK,
	_DISK_DEVICE_MAX,
	_DISK_DEVICE_INVALID = -EINVAL,
} DiskDevice;

typedef enum NetType {
	NET_TAP,     /* a tap that exists, which vmd opens */
	NET_USER,    /* the VMM's user-mode network */
	NET_BRIDGE,  /* a tap vmd makes, on a bridge */
	NET_MACVTAP, /* a macvtap vmd makes, on a link (mode bridge) */
	_NET_TYPE_MAX,
	_NET_TYPE_INVALID = -EINVAL,
} NetType;

DECLARE_STRING_TABLE(backend_kind, BackendKind);
DECLARE_STRING_TABLE(sandbox_state, SandboxState);
DECLARE_STRING_TABLE(restart_policy, RestartPolicy);
DECLARE_STRING_TABLE(start_from, StartFrom);
DECLARE_STRING_TABLE(update_policy, UpdatePolicy);
DECLARE_STRING_TABLE(disk_format, DiskFormat);
DECLARE_STRING_TABLE(disk_device, DiskDevice);
DECLARE_STRING_TABLE(net_type, NetType);

typedef struct Label {
	char *key;
	char *value;
} Label;

/*
 * The file the loader looked at when it checked a disk's path or image (stat(), symlinks
 * followed): what the start opens must still be it (docs/sandbox-file.md, "What vmd
 * opens"). Not part of the spec as JSON says it: spec_copy() carries it, nothing compares it.
 */
typedef struct FileIdentity {
	bool set;
	dev_t dev;
	ino_t ino;
} FileIdentity;

typedef struct DiskSpec {
	char id[SPEC_ID_MAX + 1];
	/*
	 * The disk's file. NULL in a spec for a disk made from an image, until its backend
	 * names the sandbox's own copy (spec_disk_overlay_path()) in what the VM runs.
	 */
	char *path;
	bool read_only;
	DiskFormat format; /* of path: for a disk from an image, of the copy (its backend's) */
	/* A disk from a base image (docs/sandbox-file.md, "Disks from images"); NULL: path. */
	char *image;
	DiskFormat image_format; /* stated, checked against its header, never probed */
	uint64_t size;		 /* bytes the copy has; 0: the image's virtual size */
	bool ephemeral;		 /* the copy goes when the sandbox is removed */
	DiskDevice device;	 /* of path: a regular file unless `device: block` */
	FileIdentity checked;	 /* path's file (or image's) as the loader checked it */
} DiskSpec;

typedef enum PortProtocol {
	PORT_TCP,
	PORT_UDP,
	_PORT_PROTOCOL_MAX,
	_PORT_PROTOCOL_INVALID = -EINVAL,
} PortProtocol;

DECLARE_STRING_TABLE(port_protocol, PortProtocol);

#define SPEC_PORTS_MAX 16

/* A port of the host forwarded to the guest (user-mode networking). */
typedef struct PortSpec {
	uint16_t host, guest;
	PortProtocol protocol;
	char address[16];      /* the host's address it listens on, IPv4: 127.0.0.1 unless given */
	unsigned line, column; /* of host in the file, for errors across files; 0: unknown */
} PortSpec;

typedef struct NetSpec {
	char id[SPEC_ID_MAX + 1];
	NetType type;
	/*
	 * The tap (or macvtap) device: empty for NET_USER; for NET_BRIDGE and NET_MACVTAP
	 * derived from name and id when the file gives none.
	 */
	char tap[SPEC_IFNAME_MAX + 1];
	char bridge[SPEC_IFNAME_MAX + 1]; /* NET_BRIDGE: the bridge it is attached to */
	char link[SPEC_IFNAME_MAX + 1];	  /* NET_MACVTAP: the link it sits on */
	uint8_t mac[6];
	bool mac_derived;		/* not in the file: derived from name and id */
	bool tap_derived;		/* not in the file: derived from name and id */
	PortSpec ports[SPEC_PORTS_MAX]; /* NET_USER */
	size_t n_ports;
} NetSpec;

/*
 * What cloud-init reads from the NoCloud seed vmd builds (backends/seed.c). Every field is
 * optional; an empty cloudInit: still gives the guest its hostname and instance-id.
 */
typedef struct CloudInitSpec {
	char *user_data;      /* inline, or NULL */
	char *user_data_file; /* a host path, read at each boot, or NULL */
	Label *meta_data;     /* beside the defaults instance-id and local-hostname */
	size_t n_meta_data;
	char *network_config; /* the network-config file's text (YAML or JSON), or NULL */
	char **ssh_keys;      /* strv: inline public keys, or NULL */
	char **ssh_key_files; /* strv: host paths of authorized_keys files, or NULL */
	/*
	 * 16 hex digits of the FNV-1a hash of what userDataFile and sshAuthorizedKeysFiles
	 * held when the sandbox file was loaded ("" when not read, or none is named): a file
	 * that changed makes the spec a new one at the sandbox file's next load, so that the
	 * planner sees a boot-time change (spec_provision_hash_files()).
	 */
	char files_hash[17];
} CloudInitSpec;

/* A systemd credential the guest reads (QEMU: fw_cfg). The value never leaves its file. */
typedef struct CredentialSpec {
	char name[SPEC_CREDENTIAL_NAME_MAX + 1];
	char *from_file; /* a host path */
} CredentialSpec;

/*
 * spec.resources: the limits of the VMM's scope under systemd (reconciler/vm-scope.c).
 * 0: not in the file (cpuWeight: systemd's default, 100; no quota; ioWeight: the default).
 */
typedef struct ResourcesSpec {
	unsigned cpu_weight; /* 1..10000 */
	unsigned cpu_quota;  /* percent of one CPU's time: 200 is two CPUs' worth */
	unsigned io_weight;  /* 1..10000 */
} ResourcesSpec;

/* A sandbox named in spec.after (reconciler/ordering.c), and where the file names it. */
#define SPEC_AFTER_MAX 32
typedef struct AfterSpec {
	char name[SPEC_NAME_MAX + 1];
	unsigned line, column; /* in the file, for errors across files; 0: unknown (JSON) */
} AfterSpec;

/* spec.rollback: absent (the daemon's --rollback decides), false or true. */
typedef enum SpecRollback {
	SPEC_ROLLBACK_DEFAULT,
	SPEC_ROLLBACK_OFF,
	SPEC_ROLLBACK_ON,
} SpecRollback;

typedef struct SandboxSpec {
	char name[SPEC_NAME_MAX + 1];
	Label *labels;
	size_t n_labels;

	BackendKind backend;
	bool backend_explicit; /* false: the daemon's default */
	SandboxState state;
	RestartPolicy restart_policy;
	UpdatePolicy update_policy;
	StartFrom start_from;
	unsigned vcpus;
	uint64_t memory; /* bytes */
	char *kernel;	 /* NULL when absent (noop only) */
	char *initrd;
	char *cmdline;
	uint64_t stop_timeout_ms;
	uint64_t suspend_after_idle_ms; /* idle.c: suspended after this long idle; 0: never */
	bool guest_agent; /* a QEMU guest agent port, which vmd asks (backends/guest-agent.c) */

	/* As many as the file has: 10,000 sandboxes with a disk each should not cost 48 slots. */
	DiskSpec *disks;
	size_t n_disks;
	bool delete_disks_on_remove; /* the copies of its images go with the sandbox */
	NetSpec *networks;
	size_t n_networks;

	CloudInitSpec *cloud_init; /* NULL: no seed */
	CredentialSpec *credentials;
	size_t n_credentials;
	ResourcesSpec resources;
	/* probe-spec.h: PROBE_NONE when the file has none */
	ProbeSpec readiness;
	ProbeSpec liveness;
	/* spec.after: the sandboxes to be Ready before it starts (ordering.c); never a boot change */
	AfterSpec *after;
	size_t n_after;
	/* rollback: a new generation that is not Ready in time goes back (reconciler/rollout.c) */
	SpecRollback rollback;
} SandboxSpec;

CloudInitSpec *cloud_init_spec_free(CloudInitSpec *c);
DEFINE_POINTER_CLEANUP(CloudInitSpec, cloud_init_spec_free)

/*
 * A systemd credential name (systemd's credential_name_valid(): a file name and an fd name,
 * so printable ASCII without '/' or ':', not "." or ".."), and at most
 * SPEC_CREDENTIAL_NAME_MAX bytes, which fw_cfg can carry.
 */
bool spec_credential_name_is_valid(const char *s);

SandboxSpec *sandbox_spec_free(SandboxSpec *s);

/* Room for n more disks or networks (zeroed), beyond the n_disks or n_networks in use. */
int sandbox_spec_reserve(SandboxSpec *s, size_t more_disks, size_t more_networks);
DEFINE_POINTER_CLEANUP(SandboxSpec, sandbox_spec_free)

/* A disk or network by id, NULL if s has none. */
const DiskSpec *spec_find_disk(const SandboxSpec *s, const char *id);
const NetSpec *spec_find_net(const SandboxSpec *s, const char *id);
/* Add a copy of a device (-EEXIST if its id is taken), or remove one by id (-ENOENT). */
int spec_add_disk(SandboxSpec *s, const DiskSpec *d);
int spec_remove_disk(SandboxSpec *s, const char *id);
int spec_add_net(SandboxSpec *s, const NetSpec *n);
int spec_remove_net(SandboxSpec *s, const char *id);

/*
 * The sandbox's own copy of a disk's image: <state_dir>/disks/<name>/<id>.qcow2, a qcow2
 * overlay whose backing file is the image; <id>.raw, a full copy, for a backend that takes
 * only raw disks (firecracker). NULL: no memory.
 */
char *spec_disk_overlay_path(const char *state_dir, const char *name, const char *id,
			     DiskFormat format);
/* The directory of a sandbox's copies: <state_dir>/disks/<name>. */
char *spec_disks_dir(const char *state_dir, const char *name);

/* ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ (an RFC 1123 label) */
bool spec_name_is_valid(const char *s);
/* ^[a-z0-9][a-z0-9-]{0,30}$ */
bool spec_id_is_valid(const char *s);
/* A Linux interface name: 1..15 printable ASCII bytes, no '/', ':' or space, not . or .. */
bool spec_ifname_is_valid(const char *s);

/* Parse "xx:xx:xx:xx:xx:xx" (hex, either case). */
int spec_mac_parse(const char *s, uint8_t ret[6]);
/* Write it as "xx:xx:xx:xx:xx:xx", lowercase. */
void spec_mac_format(const uint8_t mac[6], char buf[static 18]);
static inline bool spec_mac_is_unicast(const uint8_t mac[6])
{
	return (mac[0] & 1) == 0;
}

/*
 * The MAC of a network with none in its file: locally administered unicast, from the
 * FNV-1a 64-bit hash of "NAME/ID". Stable across releases; documented in docs/sandbox-file.md.
 */
void spec_mac_derive(const char *name, const char *id, uint8_t ret[6]);

/*
 * The device name of a bridge or macvtap network with none in its file: "vmd" and 12 hex
 * digits of the FNV-1a 64-bit hash of "tap:NAME/ID", 15 bytes as IFNAMSIZ allows. Stable
 * across releases; documented in docs/sandbox-file.md.
 */
void spec_tap_derive(const char *name, const char *id, char ret[static SPEC_IFNAME_MAX + 1]);

/* A forwarded port as QEMU's hostfwd says it ("tcp:127.0.0.1:2222-:22"); NULL: no memory. */
char *spec_port_format(const PortSpec *p);
/* All of n's, comma-separated; NULL if none. */
char *spec_ports_format(const NetSpec *n);

/* The sandbox name a file name gives: its base name without .yaml or .yml; -EINVAL if none. */
int spec_name_from_path(const char *path, char **ret);
