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
/* The addresses seen with mac, sorted and comma-separated ("10.0.0.2,fe80::1"), or NULL. */
char *neigh_addresses(const NeighTable *t, const uint8_t mac[6]);
