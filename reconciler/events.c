/* SPDX-License-Identifier: MIT */
/*
 * The event stream: <run-dir>/events.sock (docs/events.md). Each event is rendered once,
 * as one line of JSON, and appended to every client's buffer; what the socket takes is
 * written at once, the rest when it is writable. A buffer past EVENTS_CLIENT_MAX bytes
 * drops its client: a reader that stalls costs the daemon a bounded amount of memory and
 * no wait. Nothing is ever read from a client but to find that it left: the socket takes
 * no commands.
 *
 * A new client's snapshot is rendered as the client takes it, a slice at a time (at most
 * SNAPSHOT_FILL bytes ahead, SLICE_USEC of the loop), in the order of Manager.all, which
 * only ever grows at its end: 100,000 sandboxes are never rendered in one go, nor held in
 * memory. Meanwhile the client gets the events of the sandboxes its snapshot is past
 * (Sandbox.event_id below its cursor's), and not those of the others, whose snapshot, to
 * come, says their state then.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>

#include "events.h"
#include "list.h"
#include "log.h"
#include "manager.h"

#define EVENTS_CLIENT_MAX (256u * 1024u) /* unsent bytes a client may lag behind */
#define EVENTS_CLIENTS_MAX 64
#define SNAPSHOT_FILL (64u * 1024u) /* snapshot bytes rendered ahead of what a client took */
#define SLICE_USEC 2000		    /* of the loop, for one client's slice of its snapshot */

typedef struct EventClient {
	EventServer *server;
	int fd;
	sd_event_source *io;
	char *buf; /* unsent: buf[off..len) */
	size_t len, off, size;
	bool read_closed; /* it shut its sending side: only a hangup or a failed write ends it */
	bool in_snapshot; /* its snapshot is not all queued yet: cursor is the next to go */
	Sandbox *cursor;
	ListNode node;
} EventClient;

struct EventServer {
	Manager *manager;
	char *path;
	int fd;
	sd_event_source *io;
	List clients;
	sd_event_source *pause; /* accept(2) failed for want of fds: tried again after it */
	bool accept_failing;	/* that was said, until a client is taken again */
	uint64_t seq;		/* of the last event sent */
	uint64_t next_id;	/* Sandbox.event_id of the next sandbox made */
};

static EventClient *client_free(EventClient *c)
{
	if (!c)
		return NULL;
	list_remove(&c->server->clients, &c->node);
	sd_event_source_disable_unref(c->io);
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	return mfree(c);
}

static void client_drop(EventClient *c, const char *why)
{
	log_fields(LOG_WARNING, &(LogFields){ .message_id = LOG_MESSAGE_DAEMON },
		   "dropped a client of %s: %s", c->server->path, why);
	client_free(c);
}

/* Write what the socket takes; -errno if the client is gone. */
static int client_flush(EventClient *c)
{
	while (c->off < c->len) {
		ssize_t n =
			send(c->fd, c->buf + c->off, c->len - c->off, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		c->off += (size_t)n;
	}
	if (c->off == c->len) {
		c->off = c->len = 0;
		/* All sent: the room a burst needed is given back. */
		if (c->size > EVENTS_CLIENT_MAX) {
			c->buf = mfree(c->buf);
			c->size = 0;
		}
	}
	/* While its snapshot is being queued, writable means: the next slice of it. */
	return sd_event_source_set_io_events(
		c->io, (c->read_closed ? 0 : EPOLLIN) | (c->len || c->in_snapshot ? EPOLLOUT : 0));
}

/* Queue line (with its newline) for c; false if c was dropped. */
static bool client_queue(EventClient *c, const char *line, size_t n)
{
	if (c->len - c->off + n > EVENTS_CLIENT_MAX) {
		client_drop(c, "it does not read its events fast enough");
		return false;
	}
	if (c->off > 0 && c->len + n > c->size) {
		memmove(c->buf, c->buf + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
	}
	if (c->len + n > c->size) {
		size_t size = MAX(c->size * 2, c->len + n);
		char *b = realloc(c->buf, size);

		if (!b) {
			client_drop(c, "out of memory");
			return false;
		}
		c->buf = b;
		c->size = size;
	}
	memcpy(c->buf + c->len, line, n);
	c->len += n;
	return true;
}

static void client_fill(EventClient *c);

static int client_io(sd_event_source *s _unused_, int fd, uint32_t revents, void *userdata)
{
	EventClient *c = userdata;
	char junk[4096];

	if (revents & EPOLLIN) {
		/* Whatever it sends is read to find out that it left, and thrown away. */
		ssize_t n = read(fd, junk, sizeof(junk));

		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			client_free(c);
			return 0;
		}
		/* The end of what it sends (socat with its input at an end) is no hangup. */
		c->read_closed = n == 0;
	}
	if (revents & (EPOLLHUP | EPOLLERR)) {
		client_free(c);
		return 0;
	}
	if (client_flush(c) < 0)
		client_free(c);
	else if (c->in_snapshot && c->len - c->off < SNAPSHOT_FILL)
		client_fill(c);
	return 0;
}

static char *render(json_t *j)
{
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	char *line = NULL;

	json_decref(j);
	if (text && asprintf(&line, "%s\n", text) < 0)
		line = NULL;
	free(text);
	return line;
}

/* "seq", "time", "type" and "sandbox" of every event, then its own fields. */
static json_t *event_new(uint64_t seq, const char *type, const Sandbox *sb)
{
	char now[32];

	json_t *j;

	format_timestamp(now_usec(CLOCK_REALTIME), now);
	j = json_pack("{s:I, s:s, s:s}", "seq", (json_int_t)seq, "time", now, "type", type);
	if (j && sb)
		json_object_set_new(j, "sandbox", json_string(sb->name));
	return j;
}

/* What may name a file or quote one: escaped as status.json escapes it. */
static json_t *text_json(const char *s)
{
	_cleanup_free_ char *e = s ? utf8_escape(s) : NULL;

	return e ? json_string(e) : json_null();
}

static json_t *condition_json(const Condition *c)
{
	return json_pack("{s:s, s:s, s:o}", "status",
			 condition_status_table[c->status % _CONDITION_STATUS_MAX], "reason",
			 c->reason ?: "", "message", text_json(c->message));
}

/* Whether c is to get an event of sb now: not while its snapshot has yet to come to sb. */
static bool client_wants(const EventClient *c, const Sandbox *sb)
{
	return !c->in_snapshot || (sb && (!c->cursor || sb->event_id < c->cursor->event_id));
}

static void send_all(EventServer *es, const Sandbox *sb, json_t *j)
{
	_cleanup_free_ char *line = render(j);
	size_t n = line ? strlen(line) : 0;

	if (!line)
		return;
	for (ListNode *p = es->clients.first, *next; p; p = next) {
		EventClient *c = list_entry(p, EventClient, node);

		next = p->next;
		if (client_wants(c, sb) && client_queue(c, line, n) && client_flush(c) < 0)
			client_free(c);
	}
}

/* Whether anyone listens: nothing is rendered for nobody. */
static EventServer *listening(Manager *m)
{
	EventServer *es = m->events;

	return es && es->clients.size > 0 ? es : NULL;
}

static json_t *snapshot(EventServer *es, const Sandbox *sb)
{
	json_t *j = event_new(es->seq, "snapshot", sb), *conds = json_object();

	for (size_t i = 0; i < _CONDITION_TYPE_MAX; i++)
		json_object_set_new(conds, condition_type_table[i],
				    condition_json(&sb->status.conditions[i]));
	json_object_set_new(j, "phase", json_string(phase_to_string(sb->status.phase)));
	json_object_set_new(j, "generation", json_integer((json_int_t)sb->generation));
	/* As status.json says it: until vmd settles one, what the VM was started with. */
	json_object_set_new(j, "observedGeneration",
			    json_integer((json_int_t)(sb->settled_generation
							      ?: sb->observed.state != VM_ABSENT
								 ? sb->observed.generation
								 : 0)));
	json_object_set_new(j, "file", text_json(sb->path));
	json_object_set_new(j, "sourceRevision",
			    sb->source_revision
				    ? json_pack("{s:s, s:s}", "kind",
						source_revision_kind_to_string(sb->source_kind),
						"revision", sb->source_revision)
				    : json_null());
	json_object_set_new(j, "conditions", conds);
	return j;
}

/*
 * The next slice of c's snapshot: sandboxes from its cursor on, until SNAPSHOT_FILL bytes
 * wait or SLICE_USEC passed; then "synced", once all are queued.
 */
static void client_fill(EventClient *c)
{
	EventServer *es = c->server;
	uint64_t began = now_usec(CLOCK_MONOTONIC);

	while (c->cursor && c->len - c->off < SNAPSHOT_FILL &&
	       now_usec(CLOCK_MONOTONIC) - began < SLICE_USEC) {
		_cleanup_free_ char *line = render(snapshot(es, c->cursor));

		c->cursor = list_entry(c->cursor->all_node.next, Sandbox, all_node);
		if (line && !client_queue(c, line, strlen(line)))
			return;
	}
	if (!c->cursor) {
		_cleanup_free_ char *synced = render(event_new(es->seq, "synced", NULL));

		c->in_snapshot = false;
		if (synced && !client_queue(c, synced, strlen(synced)))
			return;
	}
	if (client_flush(c) < 0)
		client_free(c);
}

static int accept_again(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	EventServer *es = userdata;

	es->pause = sd_event_source_disable_unref(es->pause);
	return sd_event_source_set_enabled(es->io, SD_EVENT_ON);
}

/*
 * The connection waiting cannot be taken for want of fds (EMFILE, ENFILE): it would wake
 * the loop at once again, so the socket is not watched for a second. Said once.
 */
static void accept_failed(EventServer *es, int error)
{
	if (!IN_SET(error, EMFILE, ENFILE, ENOBUFS, ENOMEM) || es->pause)
		return;
	if (!es->accept_failing)
		log_fields(LOG_WARNING,
			   &(LogFields){ .error = error, .message_id = LOG_MESSAGE_DAEMON },
			   "cannot take a client of %s; trying again every second", es->path);
	es->accept_failing = true;
	if (sd_event_add_time_relative(es->manager->event, &es->pause, CLOCK_MONOTONIC, 1000 * 1000,
				       0, accept_again, es) >= 0)
		(void)sd_event_source_set_enabled(es->io, SD_EVENT_OFF);
}

/* A new client: a snapshot of every sandbox, then "synced", then what happens. */
static int on_accept(sd_event_source *s _unused_, int fd, uint32_t revents _unused_, void *userdata)
{
	EventServer *es = userdata;
	Manager *m = es->manager;
	EventClient *c;
	int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (cfd < 0) {
		accept_failed(es, errno);
		return 0;
	}
	es->accept_failing = false;
	if (es->clients.size >= EVENTS_CLIENTS_MAX) {
		log_fields(LOG_WARNING, &(LogFields){ .message_id = LOG_MESSAGE_DAEMON },
			   "refused a client of %s: %d are connected already", es->path,
			   EVENTS_CLIENTS_MAX);
		close(cfd);
		return 0;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(cfd);
		return 0;
	}
	c->server = es;
	c->fd = cfd;
	c->in_snapshot = true;
	c->cursor = list_entry(m->all.first, Sandbox, all_node);
	list_append(&es->clients, &c->node);
	if (sd_event_add_io(m->event, &c->io, cfd, EPOLLIN, client_io, c) < 0) {
		client_free(c);
		return 0;
	}
	client_fill(c);
	return 0;
}

void events_sandbox_new(Manager *m, Sandbox *sb)
{
	if (m->events)
		sb->event_id = m->events->next_id++;
}

void events_forget(Manager *m, Sandbox *sb)
{
	EventServer *es = m->events;

	if (!es)
		return;
	for (ListNode *p = es->clients.first; p; p = p->next) {
		EventClient *c = list_entry(p, EventClient, node);

		if (c->cursor == sb)
			c->cursor = list_entry(sb->all_node.next, Sandbox, all_node);
	}
}

void events_start(Manager *m)
{
	_cleanup_free_ EventServer *es = calloc(1, sizeof(*es));
	int r;

	if (!es)
		return;
	es->manager = m;
	es->fd = -EBADF;
	if (asprintf(&es->path, "%s/" EVENTS_SOCKET, m->config.run_dir) < 0) {
		es->path = NULL;
		return;
	}
	/* Who may read status.json may read its events (docs/events.md): 0660. */
	es->fd = unix_listen(es->path, 0660);
	r = es->fd < 0 ? es->fd : sd_event_add_io(m->event, &es->io, es->fd, EPOLLIN, on_accept, es);
	if (r < 0) {
		log_fields(LOG_ERR, &(LogFields){ .error = -r, .message_id = LOG_MESSAGE_DAEMON },
			   "cannot serve events at %s; vmd events and vmd status --watch will not work",
			   es->path);
		if (es->fd >= 0)
			close(es->fd);
		free(es->path);
		return;
	}
	m->events = TAKE_PTR(es);
}

void events_stop(Manager *m)
{
	EventServer *es = TAKE_PTR(m->events);

	if (!es)
		return;
	while (es->clients.first)
		client_free(list_entry(es->clients.first, EventClient, node));
	sd_event_source_disable_unref(es->pause);
	sd_event_source_disable_unref(es->io);
	close(es->fd);
	(void)unlink(es->path);
	free(es->path);
	free(es);
}

static uint64_t condition_fingerprint(const Condition *c)
{
	uint64_t h = fnv1a64(FNV1A64_INIT, &c->status, sizeof(c->status));

	h = fnv1a64(h, c->reason ?: "", strlen(c->reason ?: "") + 1);
	return fnv1a64(h, c->message ?: "", strlen(c->message ?: ""));
}

void events_mark(const Sandbox *sb, EventsMark *ret)
{
	*ret = (EventsMark){ .phase = sb->status.phase };
	if (!listening(sb->manager))
		return;
	for (size_t i = 0; i < _CONDITION_TYPE_MAX; i++) {
		ret->status[i] = sb->status.conditions[i].status;
		ret->conditions[i] = condition_fingerprint(&sb->status.conditions[i]);
	}
}

void events_status_changed(Manager *m, const Sandbox *sb, const EventsMark *before)
{
	EventServer *es = listening(m);

	if (!es)
		return;
	if (sb->status.phase != before->phase) {
		json_t *j = event_new(++es->seq, "phase", sb);

		json_object_set_new(j, "phase", json_string(phase_to_string(sb->status.phase)));
		json_object_set_new(j, "previous", json_string(phase_to_string(before->phase)));
		json_object_set_new(j, "generation", json_integer((json_int_t)sb->generation));
		send_all(es, sb, j);
	}
	for (size_t i = 0; i < _CONDITION_TYPE_MAX && listening(m); i++) {
		const Condition *c = &sb->status.conditions[i];
		json_t *j, *change;

		if (condition_fingerprint(c) == before->conditions[i])
			continue;
		j = event_new(++es->seq, "condition", sb);
		json_object_set_new(j, "condition", json_string(condition_type_table[i]));
		change = condition_json(c);

		json_object_update(j, change);
		json_decref(change);
		json_object_set_new(
			j, "previous",
			json_string(
				condition_status_table[before->status[i] % _CONDITION_STATUS_MAX]));
		send_all(es, sb, j);
	}
}

void events_action(Manager *m, const Sandbox *sb, const char *action, const char *device,
		   const char *result, const char *detail)
{
	EventServer *es = listening(m);
	json_t *j;

	if (!es)
		return;
	j = event_new(++es->seq, "action", sb);
	json_object_set_new(j, "action", json_string(action));
	json_object_set_new(j, "device", device ? json_string(device) : json_null());
	json_object_set_new(j, "result", json_string(result));
	json_object_set_new(j, "message", text_json(detail));
	json_object_set_new(j, "generation", json_integer((json_int_t)sb->generation));
	send_all(es, sb, j);
}

void events_file(Manager *m, const Sandbox *sb, const char *result, const char *detail)
{
	EventServer *es = listening(m);
	json_t *j;

	if (!es)
		return;
	j = event_new(++es->seq, "file", sb);
	json_object_set_new(j, "result", json_string(result));
	json_object_set_new(j, "file", text_json(sb->path));
	json_object_set_new(j, "message", text_json(detail));
	json_object_set_new(j, "generation", json_integer((json_int_t)sb->generation));
	send_all(es, sb, j);
}

void events_deleted(Manager *m, const Sandbox *sb)
{
	EventServer *es = listening(m);

	if (es)
		send_all(es, sb, event_new(++es->seq, "deleted", sb));
}
