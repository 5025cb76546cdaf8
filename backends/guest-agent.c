/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "guest-agent.h"
#include "log.h"
#include "spec.h"
#include "util.h"

#define AGENT_PERIOD_USEC (5 * 1000 * 1000)    /* ask again this often */
#define AGENT_REPLY_USEC (10 * 1000 * 1000)    /* an unanswered question is asked again */
#define AGENT_RECONNECT_USEC (1 * 1000 * 1000) /* after the socket broke, or was not there */
#define AGENT_LINE_MAX (256 * 1024)	       /* a longer reply is the guest's nonsense */
#define AGENT_IFACES_MAX 64
#define AGENT_ADDRESSES_MAX 16 /* of one interface */

typedef enum AgentState {
	AGENT_DISCONNECTED,
	AGENT_SYNCING,	/* guest-sync-delimited sent: skip to the 0xff, then its reply */
	AGENT_QUERYING, /* guest-network-get-interfaces sent */
	AGENT_IDLE,	/* answered: the next question at the timer */
	AGENT_PINGING,	/* guest-ping sent, for a probe */
} AgentState;

struct GuestAgent {
	sd_event *event;
	char *path;
	void (*changed)(void *userdata);
	void *userdata;
	int fd;
	sd_event_source *io, *timer;
	AgentState state;
	bool delimited; /* the 0xff of the sync's reply was seen */
	uint64_t sync_id;
	char *buf;
	size_t len;
	char *out; /* what is left to send */
	size_t out_len;
	AgentIface *ifaces;
	size_t n_ifaces;
	GuestAgentPingDone ping_done; /* a probe's guest-ping, to send or sent; NULL: none */
	void *ping_userdata;
};

void agent_ifaces_free(AgentIface *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].addresses);
	free(v);
}

static bool is_address(const char *s)
{
	unsigned char b[16];

	return s && (inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1);
}

int guest_agent_parse_interfaces(const char *text, size_t len, AgentIface **ret, size_t *ret_n)
{
	json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL), *list, *iface;
	AgentIface *v = NULL;
	size_t n = 0, i;

	list = json_object_get(j, "return");
	if (!json_is_array(list)) {
		json_decref(j);
		return -EINVAL;
	}
	v = calloc(AGENT_IFACES_MAX, sizeof(*v));
	if (!v) {
		json_decref(j);
		return -ENOMEM;
	}
	json_array_foreach(list, i, iface)
	{
		const char *mac = json_string_value(json_object_get(iface, "hardware-address"));
		const char *found[AGENT_ADDRESSES_MAX];
		json_t *addrs = json_object_get(iface, "ip-addresses"), *a;
		size_t k, n_found = 0;
		uint8_t m[6];

		if (n == AGENT_IFACES_MAX)
			break;
		/* lo's 00:00:00:00:00:00 is nobody's NIC; neither is what does not parse. */
		if (!mac || spec_mac_parse(mac, m) < 0 || !memcmp(m, "\0\0\0\0\0\0", 6))
			continue;
		json_array_foreach(addrs, k, a)
		{
			const char *ip = json_string_value(json_object_get(a, "ip-address"));

			if (n_found < ELEMENTSOF(found) && is_address(ip))
				found[n_found++] = ip;
		}
		memcpy(v[n].mac, m, 6);
		v[n].addresses = join_sorted_unique(found, n_found);
		n++;
	}
	json_decref(j);
	*ret = v;
	*ret_n = n;
	return 0;
}

char *guest_agent_addresses(const GuestAgent *a, const uint8_t mac[6])
{
	for (size_t i = 0; a && i < a->n_ifaces; i++)
		if (memcmp(a->ifaces[i].mac, mac, 6) == 0)
			return a->ifaces[i].addresses ? strdup(a->ifaces[i].addresses) : NULL;
	return NULL;
}

/* Whether two reports say the same. */
static bool ifaces_equal(const AgentIface *a, size_t na, const AgentIface *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (memcmp(a[i].mac, b[i].mac, 6) != 0 || !streq_ptr(a[i].addresses, b[i].addresses))
			return false;
	return true;
}

static void set_ifaces(GuestAgent *a, AgentIface *v, size_t n)
{
	bool same = ifaces_equal(a->ifaces, a->n_ifaces, v, n);

	agent_ifaces_free(a->ifaces, a->n_ifaces);
	a->ifaces = v;
	a->n_ifaces = n;
	if (!same && a->changed)
		a->changed(a->userdata);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);
static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

static void arm(GuestAgent *a, uint64_t usec)
{
	if (!a->timer)
		(void)sd_event_add_time_relative(a->event, &a->timer, CLOCK_MONOTONIC, usec,
						 100 * 1000, on_timer, a);
	else {
		(void)sd_event_source_set_time_relative(a->timer, usec);
		(void)sd_event_source_set_enabled(a->timer, SD_EVENT_ONESHOT);
	}
}

/* The probe's guest-ping is over: tell it, once. */
static void ping_finish(GuestAgent *a, int error, const char *message)
{
	GuestAgentPingDone done = a->ping_done;

	a->ping_done = NULL;
	if (done)
		done(a->ping_userdata, error, message);
}

static void disconnect(GuestAgent *a)
{
	a->io = sd_event_source_disable_unref(a->io);
	if (a->fd >= 0)
		a->fd = (close(a->fd), -EBADF);
	a->state = AGENT_DISCONNECTED;
	a->len = a->out_len = 0;
	a->out = mfree(a->out);
	/* What it said is of a guest that may be gone: nothing is known until it says again. */
	set_ifaces(a, NULL, 0);
	arm(a, AGENT_RECONNECT_USEC);
	ping_finish(a, -ECONNRESET, "the guest agent's socket closed");
}

static void update_events(GuestAgent *a)
{
	(void)sd_event_source_set_io_events(a->io, EPOLLIN | (a->out_len ? EPOLLOUT : 0));
}

/* Queue one command (a line) and wait for its reply. */
static int send_command(GuestAgent *a, const char *line, AgentState next)
{
	size_t n = strlen(line);
	char *out = realloc(a->out, a->out_len + n);

	if (!out)
		return -ENOMEM;
	memcpy(out + a->out_len, line, n);
	a->out = out;
	a->out_len += n;
	a->state = next;
	update_events(a);
	arm(a, AGENT_REPLY_USEC);
	return 0;
}

static int send_sync(GuestAgent *a)
{
	char line[128];

	/* A fresh id each time: a late reply to an earlier sync is not taken for this one. */
	a->sync_id = (now_usec(CLOCK_MONOTONIC) ^ (uint64_t)getpid()) & 0x7fffffff;
	a->delimited = false;
	snprintf(line, sizeof(line),
		 "{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":%llu}}\n",
		 (unsigned long long)a->sync_id);
	return send_command(a, line, AGENT_SYNCING);
}

/* Synced and answered: a probe's guest-ping goes now, the next question at the timer. */
static void idle(GuestAgent *a)
{
	a->state = AGENT_IDLE;
	if (a->ping_done && send_command(a, "{\"execute\":\"guest-ping\"}\n", AGENT_PINGING) < 0)
		disconnect(a);
	else if (!a->ping_done)
		arm(a, AGENT_PERIOD_USEC);
}

int guest_agent_ping(GuestAgent *a, GuestAgentPingDone done, void *userdata)
{
	a->ping_done = done;
	a->ping_userdata = userdata;
	if (!done)
		return 0;
	if (a->state == AGENT_DISCONNECTED) {
		a->ping_done = NULL;
		return -ENOTCONN;
	}
	/* Asked already, or another question first: sent when that is answered. */
	if (a->state == AGENT_IDLE)
		idle(a);
	return 0;
}

static int connect_agent(GuestAgent *a)
{
	int fd = unix_connect(a->path), r;

	if (fd < 0)
		return fd;
	r = sd_event_add_io(a->event, &a->io, fd, EPOLLIN, on_io, a);
	if (r < 0) {
		close(fd);
		return r;
	}
	a->fd = fd;
	return send_sync(a);
}

static int on_timer(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	GuestAgent *a = userdata;

	switch (a->state) {
	case AGENT_DISCONNECTED:
		if (connect_agent(a) < 0)
			disconnect(a);
		break;
	case AGENT_IDLE:
		/* Synced once: each question is asked plainly from now on. */
		if (send_command(a, "{\"execute\":\"guest-network-get-interfaces\"}\n",
				 AGENT_QUERYING) < 0)
			disconnect(a);
		break;
	case AGENT_SYNCING:
	case AGENT_QUERYING:
	case AGENT_PINGING:
		/* No answer: no agent (yet), or a reply lost. Sync again, past what is queued. */
		a->len = 0;
		if (a->state == AGENT_PINGING)
			ping_finish(a, -ETIMEDOUT, "guest-ping: no answer");
		if (send_sync(a) < 0)
			disconnect(a);
		break;
	}
	return 0;
}

/*
 * qemu-ga's guest-ping answers {"return": {}} (qga/commands.c: qmp_guest_ping() returns
 * nothing); an error is {"error": {"class": ..., "desc": ...}}.
 */
static void ping_answered(GuestAgent *a, const char *line, size_t n)
{
	_cleanup_(json_decrefp) json_t *j = json_loadb(line, n, 0, NULL);
	const char *desc = json_string_value(json_object_get(json_object_get(j, "error"), "desc"));
	char msg[256];

	if (json_is_object(json_object_get(j, "return"))) {
		ping_finish(a, 0, NULL);
		return;
	}
	snprintf(msg, sizeof(msg), "guest-ping: %s", desc ?: "not an answer");
	ping_finish(a, -EPROTO, msg);
}

/* One line of the agent's. */
static void handle_line(GuestAgent *a, const char *line, size_t n)
{
	AgentIface *v;
	size_t nv;

	if (a->state == AGENT_SYNCING) {
		json_t *j = json_loadb(line, n, 0, NULL);
		json_t *id = json_object_get(j, "return");
		bool ours = json_is_integer(id) && (uint64_t)json_integer_value(id) == a->sync_id;

		json_decref(j);
		if (ours && send_command(a, "{\"execute\":\"guest-network-get-interfaces\"}\n",
					 AGENT_QUERYING) < 0)
			disconnect(a);
		return;
	}
	if (a->state == AGENT_PINGING) {
		ping_answered(a, line, n);
		idle(a);
		return;
	}
	if (a->state != AGENT_QUERYING)
		return; /* nothing asked: not an answer */
	if (guest_agent_parse_interfaces(line, n, &v, &nv) < 0) {
		/* An error ({"error": ...}) or nonsense: asked again at the next period. */
		idle(a);
		return;
	}
	set_ifaces(a, v, nv);
	idle(a);
}

static void read_input(GuestAgent *a)
{
	char chunk[4096];
	ssize_t n = read(a->fd, chunk, sizeof(chunk));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		disconnect(a); /* QEMU went, or closed it */
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		char c = chunk[i];

		if (a->state == AGENT_SYNCING && !a->delimited) {
			/* What an agent had queued before the sync is skipped, up to its 0xff. */
			a->delimited = (unsigned char)c == 0xff;
			continue;
		}
		if (c == '\n') {
			handle_line(a, a->buf, a->len);
			if (a->fd < 0)
				return;
			a->len = 0;
			continue;
		}
		if (a->len == AGENT_LINE_MAX) {
			/* Too long to be an answer: drop it, and sync past it. */
			a->len = 0;
			if (send_sync(a) < 0)
				disconnect(a);
			return;
		}
		a->buf[a->len++] = c;
	}
}

static void write_output(GuestAgent *a)
{
	ssize_t n = write(a->fd, a->out, a->out_len);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		disconnect(a);
		return;
	}
	memmove(a->out, a->out + n, a->out_len - (size_t)n);
	a->out_len -= (size_t)n;
	update_events(a);
}

static int on_io(sd_event_source *s _unused_, int fd _unused_, uint32_t revents, void *userdata)
{
	GuestAgent *a = userdata;

	if (revents & EPOLLOUT)
		write_output(a);
	if (a->fd >= 0 && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		read_input(a);
	return 0;
}

int guest_agent_new(sd_event *e, const char *path, void (*changed)(void *userdata), void *userdata,
		    GuestAgent **ret)
{
	_cleanup_(guest_agent_freep) GuestAgent *a = calloc(1, sizeof(*a));

	if (!a)
		return -ENOMEM;
	a->fd = -EBADF;
	a->event = sd_event_ref(e);
	a->path = strdup(path);
	a->buf = malloc(AGENT_LINE_MAX);
	if (!a->path || !a->buf)
		return -ENOMEM;
	if (connect_agent(a) < 0)
		disconnect(a); /* and again in a second */
	a->changed = changed;
	a->userdata = userdata;
	*ret = TAKE_PTR(a);
	return 0;
}

GuestAgent *guest_agent_free(GuestAgent *a)
{
	if (!a)
		return NULL;
	sd_event_source_disable_unref(a->io);
	sd_event_source_disable_unref(a->timer);
	if (a->fd >= 0)
		close(a->fd);
	sd_event_unref(a->event);
	agent_ifaces_free(a->ifaces, a->n_ifaces);
	free(a->out);
	free(a->buf);
	free(a->path);
	return mfree(a);
}
