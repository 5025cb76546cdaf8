/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

/*
 * The network devices of a test binary's own network namespace (net_namespace()): the
 * host's interfaces are never touched. A failure fails the test.
 */

/*
 * Enter a network namespace of the binary's own, for its taps, bridges and macvtaps, and a
 * mount namespace with a sysfs of it (/sys/class/net shows the namespace of whoever
 * mounted it); lo up. -errno, with a word on stderr, if it cannot.
 */
int net_namespace(const char *who);

/* ip ARG... NULL; a failure fails the test. */
void net_ip(const char *first, ...);

bool net_link_exists(const char *ifname);
/* The bridge ifname is on, or NULL. */
char *net_master_of(const char *ifname);
/* A file of /sys/class/net/IFNAME, without its newline; NULL if there is none. */
char *net_attr(const char *ifname, const char *attr);
/* Wait until ifname is gone: the VM that had it, and vmd, let it go. */
void net_wait_link_gone(const char *ifname);
/* How many descriptors of process pid are of /dev/net/tun (taps) or of a macvtap. */
unsigned net_tap_fds(pid_t pid);
/* Whether process pid has a descriptor attached to tap (its fdinfo's "iff:"). */
bool net_holds_tap(pid_t pid, const char *tap);
