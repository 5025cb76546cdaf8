/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

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

/*
 * For a VMM that opens its tap by name (Firecracker): the tap of NET_BRIDGE network n as a
 * persistent tap, owned by uid and gid ((uid_t)-1, (gid_t)-1: anyone's), on its bridge and
 * up; not held open by vmd. One left there (by a VMM that died) is taken again, and given
 * to uid and gid. -errno, and why in words; a tap made here is removed again on failure.
 */
int netdev_persistent_tap(const NetSpec *n, uid_t uid, gid_t gid, char *why, size_t size);
/* That tap gone (once its VMM, if any, closed it). 1 if it was there, 0 if not. */
int netdev_persistent_tap_remove(const NetSpec *n);
