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
