/* SPDX-License-Identifier: MIT */
#pragma once

#include "spec.h"

typedef struct Manager Manager;
typedef struct Sandbox Sandbox;
typedef struct HostPort HostPort;

#define HOST_PORT_KEY_MAX 16 /* "tcp/65535" */

/* What a forwarded port is known by: its protocol and host port, "tcp/2222". */
void host_port_key(const PortSpec *p, char key[static HOST_PORT_KEY_MAX]);
/* "spec.networks[N].ports[P].host: host port KEY is forwarded by sandbox 'OWNER' already (PATH)" */
char *host_port_conflict_text(size_t net, size_t port, const char *key, const char *owner,
			      const char *owner_path);

/*
 * Host ports forwarded to guests (user-mode networking) belong to one sandbox each, across
 * files: a port (and protocol) another sandbox's spec in force forwards already is a
 * conflict. The message for path, "PATH:LINE:COL: error: ..." naming the other sandbox and
 * its file, or NULL when spec can have all its ports (or no memory to say otherwise).
 */
char *host_ports_conflict(Manager *m, const Sandbox *sb, const SandboxSpec *spec, const char *path);
/* sb's spec in force (sb->desired) holds its ports now; those of the one before are free. */
void host_ports_claim(Manager *m, Sandbox *sb);
/* sb holds none any more (it is gone). */
void host_ports_release(Manager *m, Sandbox *sb);
