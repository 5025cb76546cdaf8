/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>

/*
 * The host's neighbour table (ARP and NDP), as the kernel has it now: which IP addresses
 * answer from which MAC. vmd learns a guest's addresses from it without the guest's help:
 * an entry exists once the host and the guest exchanged a packet.
 */
typedef struct NeighTable NeighTable;

/* Read it through netlink (libnl-route-3); -errno. */
int neigh_table_load(NeighTable **ret);
NeighTable *neigh_table_free(NeighTable *t);
/*
 * Add the leases of a dnsmasq lease file ("EXPIRY MAC IP HOSTNAME CLIENT-ID" a line) that
 * have not expired at now (seconds since the epoch; an expiry of 0 never does). A file that
 * is not there adds nothing; -errno for one that cannot be read.
 */
int neigh_table_add_leases(NeighTable *t, const char *path, int64_t now);
/* The addresses seen with mac, sorted and comma-separated ("10.0.0.2,fe80::1"), or NULL. */
char *neigh_addresses(const NeighTable *t, const uint8_t mac[6]);
/* The MAC that addr had in t: 0, or -ENOENT. */
int neigh_mac_of(const NeighTable *t, const char *addr, uint8_t ret[6]);

/*
 * The kernel's word when a neighbour entry comes, changes or goes (RTNLGRP_NEIGH), so that
 * a guest's address reaches its status when it is learned, not at the next pass.
 */
typedef struct NeighMonitor NeighMonitor;

/* A netlink socket subscribed to neighbour events, non-blocking; -errno. */
int neigh_monitor_new(NeighMonitor **ret);
NeighMonitor *neigh_monitor_free(NeighMonitor *nm);
/* To poll for input. */
int neigh_monitor_fd(const NeighMonitor *nm);
/*
 * Read what is queued, calling changed(mac, addr) for each entry that came, changed or went:
 * mac is NULL when the kernel did not say (an entry that went, or failed, has none).
 * Returns 1 if the kernel dropped events (its buffer overflowed: any entry may have changed),
 * else 0; -errno on a read that failed otherwise.
 */
typedef void (*NeighChanged)(const uint8_t *mac, const char *addr, void *userdata);
int neigh_monitor_read(NeighMonitor *nm, NeighChanged changed, void *userdata);
