/* SPDX-License-Identifier: MIT */
/*
 * Guests' addresses as soon as the host learns them. status.c lists, for each NIC of a
 * sandbox's VM, the addresses its MAC has in the neighbour table and the --dhcp-leases
 * file (manager_neigh()). Without the events below they would show only at the next pass
 * over the sandbox (the resync, a SIGHUP, a change): a guest that took a lease a second
 * after its start would be addressless in its status for up to a minute.
 */
#include <errno.h>
#include <libgen.h>
#include <string.h>
#include <sys/inotify.h>

#include "log.h"
#include "manager.h"
#include "neigh.h"

/* A table older than this is read again; the events below make it older at once. */
#define NEIGH_MAX_AGE_USEC (2 * 1000 * 1000)
/* The MACs one read of events remembers; past them, every sandbox with a NIC is looked at. */
#define CHANGED_MAX 64

struct NeighTable *manager_neigh(Manager *m)
{
	uint64_t now = now_usec(CLOCK_MONOTONIC);

	if (!m->neigh || m->neigh_read_at == 0 || now - m->neigh_read_at > NEIGH_MAX_AGE_USEC) {
		NeighTable *t = NULL;

		if (neigh_table_load(&t) >= 0) {
			if (m->config.dhcp_leases &&
			    neigh_table_add_leases(t, m->config.dhcp_leases,
						   (int64_t)(now_usec(CLOCK_REALTIME) / 1000000)) < 0 &&
			    !m->leases_error_said) {
				log_warning("cannot read the DHCP leases in %s",
					    m->config.dhcp_leases);
				m->leases_error_said = true;
			}
			neigh_table_free(m->neigh);
			m->neigh = t;
		}
		m->neigh_read_at = now;
	}
	return m->neigh;
}

typedef struct Changed {
	const NeighTable *before; /* the table as status.json shows it */
	uint8_t macs[CHANGED_MAX][6];
	size_t n;
	bool all; /* too many to remember, or the kernel dropped some */
} Changed;

static void remember(const uint8_t *mac, const char *addr, void *userdata)
{
	Changed *c = userdata;
	uint8_t was[6];

	/* An entry that went says no MAC: the one its address had is the one to look at. */
	if (!mac) {
		if (neigh_mac_of(c->before, addr, was) < 0)
			return; /* not shown anywhere: nothing to take back */
		mac = was;
	}

	for (size_t i = 0; i < c->n; i++)
		if (memcmp(c->macs[i], mac, 6) == 0)
			return;
	if (c->n == CHANGED_MAX)
		c->all = true;
	else
		memcpy(c->macs[c->n++], mac, 6);
}

/* The sandboxes whose VM has a NIC that c names (or any NIC, for c->all): reconciled. */
static void reconcile_changed(Manager *m, const Changed *c)
{
	void *v;

	/* What the next status build reads is the table as it is now. */
	m->neigh_read_at = 0;
	for (size_t i = 0; hashmap_next(m->sandboxes, &i, &v);) {
		Sandbox *sb = v;
		const SandboxSpec *config = sb->observed.config;
		bool hit = false;

		for (size_t k = 0; config && k < config->n_networks && !hit; k++) {
			const NetSpec *n = &config->networks[k];

			if (n->type == NET_USER)
				continue; /* its addresses are QEMU's own, never the host's */
			hit = c->all;
			for (size_t j = 0; j < c->n && !hit; j++)
				hit = memcmp(c->macs[j], n->mac, 6) == 0;
		}
		if (hit)
			manager_mark_dirty(m, sb);
	}
}

static int on_neigh(sd_event_source *s _unused_, int fd _unused_, uint32_t revents _unused_,
		    void *userdata)
{
	Manager *m = userdata;
	Changed c = { .before = m->neigh };
	int r = neigh_monitor_read(m->neigh_monitor, remember, &c);

	if (r < 0) {
		/* Not to spin on a socket that keeps failing: the resync is left. */
		log_warning_errno(r, "cannot read neighbour events; addresses show at each pass");
		m->neigh_event = sd_event_source_disable_unref(m->neigh_event);
		return 0;
	}
	if (r > 0)
		c.all = true;
	if (c.n > 0 || c.all)
		reconcile_changed(m, &c);
	return 0;
}

static int on_leases(sd_event_source *s _unused_, const struct inotify_event *ev, void *userdata)
{
	Manager *m = userdata;
	_cleanup_free_ char *copy = strdup(m->config.dhcp_leases);

	/* The directory is watched, for a file dnsmasq (re)creates: this one only. */
	if (!copy || (ev->len > 0 && !streq(ev->name, basename(copy))))
		return 0;
	m->leases_error_said = false;
	reconcile_changed(m, &(Changed){ .all = true });
	return 0;
}

void addresses_watch(Manager *m)
{
	int r = neigh_monitor_new(&m->neigh_monitor);

	if (r >= 0)
		r = sd_event_add_io(m->event, &m->neigh_event, neigh_monitor_fd(m->neigh_monitor),
				    EPOLLIN, on_neigh, m);
	if (r < 0)
		log_warning_errno(r, "cannot watch the neighbour table; addresses show at each pass");
	if (m->config.dhcp_leases) {
		_cleanup_free_ char *copy = strdup(m->config.dhcp_leases);

		r = copy ? sd_event_add_inotify(m->event, &m->leases_event, dirname(copy),
						IN_CLOSE_WRITE | IN_MOVED_TO | IN_MODIFY |
							IN_CREATE | IN_DELETE | IN_ONLYDIR,
						on_leases, m)
			 : -ENOMEM;
		if (r < 0)
			log_warning_errno(
				r, "cannot watch the directory of %s; leases show at each pass",
				m->config.dhcp_leases);
	}
}

void addresses_done(Manager *m)
{
	m->neigh_event = sd_event_source_disable_unref(m->neigh_event);
	m->leases_event = sd_event_source_disable_unref(m->leases_event);
	m->neigh_monitor = neigh_monitor_free(m->neigh_monitor);
	m->neigh = neigh_table_free(m->neigh);
}
