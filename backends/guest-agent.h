/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The QEMU guest agent of a VM whose spec says guestAgent: true, as the daemon asks it.
 * QEMU gets a listening socket vmd made (agent.sock in the VM's runtime dir) for a
 * virtio-serial port named org.qemu.guest_agent.0; qemu-ga in the guest serves that port.
 * The daemon is the socket's one client: from its event loop, never waiting, it syncs with
 * the agent (guest-sync-delimited: its reply follows a 0xff byte, so that what an earlier
 * client left unread is skipped) and asks guest-network-get-interfaces every few seconds.
 * A guest without an agent, or one not up yet, only leaves the questions unanswered: they
 * are asked again, nothing else happens.
 *
 * Nothing the guest says is trusted beyond that: a reply is bounded in size, only what
 * parses as an IPv4 or IPv6 address is kept, and at most a few per interface.
 */

#include <stdint.h>
#include <systemd/sd-event.h>

#include "macro.h"

#define GUEST_AGENT_SOCKET "agent.sock"
#define GUEST_AGENT_PORT "org.qemu.guest_agent.0"

typedef struct GuestAgent GuestAgent;

/*
 * Ask the agent behind path (a socket QEMU listens on); changed(userdata) whenever what it
 * reports changes.
 */
int guest_agent_new(sd_event *e, const char *path, void (*changed)(void *userdata), void *userdata,
		    GuestAgent **ret);
GuestAgent *guest_agent_free(GuestAgent *a);
DEFINE_POINTER_CLEANUP(GuestAgent, guest_agent_free)

/*
 * A guest-ping for a probe (reconciler/probe.c): sent once the agent is synced and not
 * busy with another question; done(userdata, 0 or -errno, why or NULL) once, later, on
 * the loop: the answer, an error the agent gave, or -ETIMEDOUT, -ECONNRESET. -ENOTCONN at
 * once while the socket is not connected. One at a time: a new one replaces the one
 * before, whose done is then never called; done NULL takes it back.
 */
typedef void (*GuestAgentPingDone)(void *userdata, int error, const char *message);
int guest_agent_ping(GuestAgent *a, GuestAgentPingDone done, void *userdata);

/* The addresses the agent last reported for the interface with mac, "a,b" sorted; or NULL. */
char *guest_agent_addresses(const GuestAgent *a, const uint8_t mac[6]);

/*
 * Parse a guest-network-get-interfaces reply ({"return": [...]}) into (mac, addresses)
 * pairs: for the tests and the fuzzer as well. -EINVAL if it is not one.
 */
typedef struct AgentIface {
	uint8_t mac[6];
	char *addresses; /* "a,b" sorted, or NULL */
} AgentIface;
int guest_agent_parse_interfaces(const char *json, size_t len, AgentIface **ret, size_t *ret_n);
void agent_ifaces_free(AgentIface *v, size_t n);
