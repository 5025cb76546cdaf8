/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The test guest (tests/guest: its init reports on the serial console, VMD-GUEST-READY,
 * VMD-GUEST-DEVICES ..., VMD-GUEST-TICK n) under real QEMU with TCG, for test-qemu and
 * test-qemu-net.
 */
#include <jansson.h>
#include <sys/types.h>

#include "daemon-fixture.h"

/* A file of the test guest ($VMD_GUEST, or build/guest); the caller frees it. */
char *qemu_guest_file(const char *file);
/* fixture_setup(), with the daemon on TCG. */
int qemu_setup(void **state);
/* fixture_setup(), with the daemon on the QEMU simulator (tests/sim/qemu). */
int qemu_sim_setup(void **state);
/* A qemu sandbox file for the test guest with extra_spec's lines, renamed over. */
void qemu_put(Fixture *f, const char *name, const char *extra_spec);
/* The guest's last VMD-GUEST-DEVICES line, from "blk=" on; the caller frees it. */
char *qemu_last_devices(Fixture *f, const char *name);
/* Wait until the guest sees disks blk and networks starting with net_prefix. */
void qemu_wait_devices(Fixture *f, const char *name, const char *blk, const char *net_prefix);
/* The inode of pid's memfd named name ("/memfd:kernel (deleted)"), 0 if it has none. */
ino_t qemu_memfd_of(pid_t pid, const char *name);
/* How many disks or networks (kind) status s lists. */
size_t qemu_n_devices(json_t *s, const char *kind);
