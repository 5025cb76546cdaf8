/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/neighbour.h>
#include <netlink/netlink.h>
#include <netlink/route/neighbour.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "neigh.h"
#include "spec.h"
#include "util.h"

typedef struct Neigh {
	uint8_t mac[6];
	char addr[48]; /* INET6_ADDRSTRLEN, and more */
} Neigh;

struct NeighTable {
	Neigh *items;
	size_t n, size;
};

NeighTable *neigh_table_free(NeighTable *t)
{
	if (t)
		free(t->items);
	free(t);
	return NULL;
}

/* Room for one more; NULL without memory. */
static Neigh *add_entry(NeighTable *t)
{
	if (t->n == t->size) {
		size_t size = t->size ? 2 * t->size : 64;
		Neigh *items = reallocarray(t->items, size, sizeof(Neigh));

		if (!items)
			return NULL;
		t->items = items;
		t->size = size;
	}
	return &t->items[t->n++];
}

static void add_one(struct nl_object *o, void *userdata)
{
	NeighTable *t = userdata;
	struct rtnl_neigh *n = (struct rtnl_neigh *)o;
	struct nl_addr *ll = rtnl_neigh_get_lladdr(n), *dst = rtnl_neigh_get_dst(n);
	int state = rtnl_neigh_get_state(n), family = rtnl_neigh_get_family(n);
	Neigh *e;

	/* What answered, or did lately: not what was asked and never answered. */
	if (!ll || !dst || nl_addr_get_len(ll) != 6 || (family != AF_INET && family != AF_INET6) ||
	    (state & (NUD_INCOMPLETE | NUD_FAILED | NUD_NOARP)))
		return;
	e = add_entry(t);
	if (!e)
		return;
	memcpy(e->mac, nl_addr_get_binary_addr(ll), 6);
	nl_addr2str(dst, e->addr, sizeof(e->addr));
	/* nl_addr2str() adds the prefix length when it is not a host's: never for a neighbour. */
	e->addr[strcspn(e->addr, "/")] = '\0';
}

int neigh_table_load(NeighTable **ret)
{
	struct nl_sock *s = nl_socket_alloc();
	struct nl_cache *cache = NULL;
	NeighTable *t = calloc(1, sizeof(*t));
	int r;

	if (!s || !t) {
		nl_socket_free(s);
		free(t);
		return -ENOMEM;
	}
	r = nl_connect(s, NETLINK_ROUTE);
	if (r >= 0)
		r = rtnl_neigh_alloc_cache(s, &cache);
	if (r >= 0)
		nl_cache_foreach(cache, add_one, t);
	nl_cache_free(cache);
	nl_socket_free(s);
	if (r < 0) {
		neigh_table_free(t);
		return -EIO;
	}
	*ret = t;
	return 0;
}

int neigh_table_add_leases(NeighTable *t, const char *path, int64_t now)
{
	_cleanup_free_ char *text = NULL;
	int r = read_file(path, 16 << 20, &text, NULL);

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	for (char *line = text, *next; line && *line; line = next) {
		char mac[32], ip[48];
		unsigned char addr[16];
		long long expiry;
		uint8_t m[6];
		Neigh *e;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		/* "duid ..." lines and anything else that is not a lease are skipped. */
		if (sscanf(line, "%lld %31s %47s", &expiry, mac, ip) != 3 ||
		    (expiry != 0 && expiry <= now) || spec_mac_parse(mac, m) < 0 ||
		    (inet_pton(AF_INET, ip, addr) != 1 && inet_pton(AF_INET6, ip, addr) != 1))
			continue;
		e = add_entry(t);
		if (!e)
			return -ENOMEM;
		memcpy(e->mac, m, 6);
		snprintf(e->addr, sizeof(e->addr), "%s", ip);
	}
	return 0;
}

char *neigh_addresses(const NeighTable *t, const uint8_t mac[6])
{
	const char *found[16];
	size_t n = 0;

	for (size_t i = 0; t && i < t->n && n < ELEMENTSOF(found); i++)
		/* The same address through two interfaces (a bridge and its port) once. */
		if (memcmp(t->items[i].mac, mac, 6) == 0)
			found[n++] = t->items[i].addr;
	return join_sorted_unique(found, n);
}

int neigh_mac_of(const NeighTable *t, const char *addr, uint8_t ret[6])
{
	for (size_t i = 0; t && i < t->n; i++)
		if (streq(t->items[i].addr, addr)) {
			memcpy(ret, t->items[i].mac, 6);
			return 0;
		}
	return -ENOENT;
}

struct NeighMonitor {
	struct nl_sock *sock;
	NeighChanged changed;
	void *userdata;
};

NeighMonitor *neigh_monitor_free(NeighMonitor *nm)
{
	if (nm)
		nl_socket_free(nm->sock);
	free(nm);
	return NULL;
}

static void monitor_object(struct nl_object *o, void *userdata)
{
	NeighMonitor *nm = userdata;
	struct nl_addr *ll = rtnl_neigh_get_lladdr((struct rtnl_neigh *)o),
		       *dst = rtnl_neigh_get_dst((struct rtnl_neigh *)o);
	char addr[48] = "";

	if (dst) {
		nl_addr2str(dst, addr, sizeof(addr));
		addr[strcspn(addr, "/")] = '\0';
	}
	nm->changed(ll && nl_addr_get_len(ll) == 6 ? nl_addr_get_binary_addr(ll) : NULL, addr,
		    nm->userdata);
}

static int monitor_message(struct nl_msg *msg, void *userdata)
{
	int type = nlmsg_hdr(msg)->nlmsg_type;

	if (type == RTM_NEWNEIGH || type == RTM_DELNEIGH)
		(void)nl_msg_parse(msg, monitor_object, userdata);
	return NL_OK;
}

int neigh_monitor_new(NeighMonitor **ret)
{
	NeighMonitor *nm = calloc(1, sizeof(*nm));

	if (!nm)
		return -ENOMEM;
	nm->sock = nl_socket_alloc();
	if (!nm->sock) {
		free(nm);
		return -ENOMEM;
	}
	/* Events carry no sequence numbers of ours. */
	nl_socket_disable_seq_check(nm->sock);
	if (nl_socket_modify_cb(nm->sock, NL_CB_VALID, NL_CB_CUSTOM, monitor_message, nm) < 0 ||
	    nl_connect(nm->sock, NETLINK_ROUTE) < 0 ||
	    nl_socket_add_membership(nm->sock, RTNLGRP_NEIGH) < 0 ||
	    nl_socket_set_nonblocking(nm->sock) < 0) {
		neigh_monitor_free(nm);
		return -EIO;
	}
	*ret = nm;
	return 0;
}

int neigh_monitor_fd(const NeighMonitor *nm)
{
	return nl_socket_get_fd(nm->sock);
}

int neigh_monitor_read(NeighMonitor *nm, NeighChanged changed, void *userdata)
{
	bool dropped = false;

	nm->changed = changed;
	nm->userdata = userdata;
	for (;;) {
		int r = nl_recvmsgs_default(nm->sock);

		if (r >= 0)
			continue;
		if (r == -NLE_AGAIN)
			break;
		if (r == -NLE_NOMEM) /* ENOBUFS: the kernel's queue overflowed */
			dropped = true;
		else if (r != -NLE_INTR)
			return -EIO;
	}
	return dropped;
}
