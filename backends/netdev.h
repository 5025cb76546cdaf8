/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "spec.h"

/*
 * The device of network n, for a VMM: a tap that exists (NET_TAP), a tap made on its bridge
 * (NET_BRIDGE) or a macvtap made on its link (NET_MACVTAP), up, opened. *ret_tap is its
 * descriptor, *ret_vhost one of /dev/vhost-net when vhost is asked and it exists (-EBADF
 * otherwise); both close-on-exec. dir: the VM's runtime dir, for a device node udev did
 * not make. -errno, and why in words, on failure; nothing made is left then.
 */
int netdev_open(const NetSpec *n, const char *dir, bool vhost, int *ret_tap, int *ret_vhost,
		char *why, size_t size);

/* What netdev_open() made that outlives the descriptors (a macvtap): gone. 1 if it was there. */
int netdev_release(const NetSpec *n);
