/* SPDX-License-Identifier: MIT */
/*
 * Which sandbox forwards which host port: one map for the daemon, from "tcp/2222" to the
 * claim of the sandbox whose spec in force forwards it, whatever the addresses (a port on
 * 127.0.0.1 and the same on 0.0.0.0 cannot both be had). The sandbox that holds a port
 * keeps it; a file asking for it as well is refused, as an invalid one is, and its sandbox
 * keeps its last valid spec.
 */
#include <stdio.h>
#include <stdlib.h>

#include "host-ports.h"
#include "manager.h"
#include "rollout.h"

struct HostPort {
	char key[HOST_PORT_KEY_MAX];
	Sandbox *sb;
};

void host_port_key(const PortSpec *p, char key[static HOST_PORT_KEY_MAX])
{
	snprintf(key, HOST_PORT_KEY_MAX, "%s/%u", port_protocol_to_string(p->protocol),
		 (unsigned)p->host);
}

char *host_port_conflict_text(size_t net, size_t port, const char *key, const char *owner,
			      const char *owner_path)
{
	char *s = NULL;

	if (asprintf(&s,
		     "spec.networks[%zu].ports[%zu].host: host port %s is forwarded by sandbox '%s' already (%s)",
		     net, port, key, owner, owner_path ?: "its last valid spec") < 0)
		return NULL;
	return s;
}

char *host_ports_conflict(Manager *m, const Sandbox *sb, const SandboxSpec *spec, const char *path)
{
	for (size_t i = 0; i < spec->n_networks; i++)
		for (size_t k = 0; k < spec->networks[i].n_ports; k++) {
			const PortSpec *p = &spec->networks[i].ports[k];
			_cleanup_free_ char *text = NULL;
			char key[HOST_PORT_KEY_MAX], *s = NULL;
			HostPort *held;

			host_port_key(p, key);
			held = m->ports ? hashmap_get(m->ports, key) : NULL;
			if (!held || held->sb == sb)
				continue;
			text = host_port_conflict_text(i, k, key, held->sb->name, held->sb->path);
			if (!text || asprintf(&s, "%s:%u:%u: %s", path, p->line, p->column, text) < 0)
				return NULL;
			return s;
		}
	return NULL;
}

void host_ports_release(Manager *m, Sandbox *sb)
{
	for (size_t i = 0; i < sb->n_ports; i++) {
		if (m->ports && hashmap_get(m->ports, sb->ports[i]->key) == sb->ports[i])
			hashmap_remove(m->ports, sb->ports[i]->key);
		free(sb->ports[i]);
	}
	sb->ports = mfree(sb->ports);
	sb->n_ports = 0;
}

static size_t n_ports(const SandboxSpec *s)
{
	size_t n = 0;

	for (size_t i = 0; s && i < s->n_networks; i++)
		n += s->networks[i].n_ports;
	return n;
}

static bool holds(const Sandbox *sb, const char *key)
{
	for (size_t i = 0; i < sb->n_ports; i++)
		if (streq(sb->ports[i]->key, key))
			return true;
	return false;
}

/* s's ports, for sb, in room made for them; false when out of memory. */
static bool claim_spec(Manager *m, Sandbox *sb, const SandboxSpec *s)
{
	for (size_t i = 0; s && i < s->n_networks; i++)
		for (size_t k = 0; k < s->networks[i].n_ports; k++) {
			HostPort *h = calloc(1, sizeof(*h));

			if (!h)
				return false;
			host_port_key(&s->networks[i].ports[k], h->key);
			if (holds(sb, h->key)) {
				free(h);
				continue;
			}
			h->sb = sb;
			sb->ports[sb->n_ports++] = h;
			/* One a spec from the state dir holds for another: the first keeps it. */
			(void)hashmap_put(m->ports, h->key, h);
		}
	return true;
}

void host_ports_claim(Manager *m, Sandbox *sb)
{
	/* A rollback's spec runs: its ports are the sandbox's too, beside its file's. */
	const SandboxSpec *file = sb->desired, *running = rollout_spec(sb);
	size_t n = n_ports(file) + (running != file ? n_ports(running) : 0);

	host_ports_release(m, sb);
	if (n == 0 || (!m->ports && !(m->ports = hashmap_new())))
		return;
	sb->ports = calloc(n, sizeof(HostPort *));
	if (sb->ports && claim_spec(m, sb, file) && running != file)
		(void)claim_spec(m, sb, running);
}
