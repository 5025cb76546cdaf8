/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <regex.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "console.h"
#include "log.h"
#include "manager.h"
#include "neigh.h"
#include "probe.h"
#include "rollout.h"

#define HTTP_REPLY_MAX 256	    /* the status line is all an http probe reads */
#define CONSOLE_READ_MAX (1u << 20) /* at most this much of console.log per try */
/*
 * A user network's VMM (QEMU's slirp) accepts a forwarded port's connection itself and
 * only then connects to the guest, hanging up when nothing listens there: a tcp probe
 * through it passes only if the connection is still up this long after the connect.
 */
#define FORWARD_SETTLE_USEC (300ull * 1000)

struct Prober {
	Manager *m;
	Sandbox *sb;
	ProbeSpec readiness, liveness; /* copies: the spec may change under a try */
	uint64_t boot;		       /* the started_at_usec of the VM probed */
	uint64_t generation;	       /* of the spec whose probes these are */
	uint64_t began;		       /* CLOCK_MONOTONIC: readiness began */
	bool ready;		       /* readiness passed (or there is none) */
	bool timed_out;		       /* readiness did not pass in its timeout */
	bool killed;		       /* liveness failed: the VM is being forced off */
	unsigned failures;	       /* liveness, in a row */
	char *last;		       /* the last try's failure, or NULL */
	regex_t re;		       /* the console probe's, compiled */
	bool re_ok;
	uint64_t console_offset; /* how far console.log has been read */
	/* The try under way. */
	int fd;
	bool sent;
	bool forwarded; /* to a host port a user network forwards: the VMM accepts for the guest */
	bool settling;	/* tcp, forwarded: connected, watching whether the VMM hangs up */
	bool pinging;	/* agent: a guest-ping asked of the backend, not answered yet */
	char reply[HTTP_REPLY_MAX];
	size_t reply_len;
	char target[INET6_ADDRSTRLEN + 8];
	sd_event_source *io, *deadline, *next;
};

static const ProbeSpec *current(const Prober *p)
{
	return p->ready ? &p->liveness : &p->readiness;
}

static void try_end(Prober *p)
{
	if (p->pinging) {
		Backend *b = manager_backend_of(p->m, p->sb);

		/* Taken back: its answer, should it come, is for nobody. */
		if (b && b->ops->agent_ping)
			(void)b->ops->agent_ping(b, p->sb->name, NULL, p);
		p->pinging = false;
	}
	p->io = sd_event_source_disable_unref(p->io);
	p->deadline = sd_event_source_disable_unref(p->deadline);
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -EBADF;
	p->sent = false;
	p->settling = false;
	p->reply_len = 0;
}

static Prober *prober_free(Prober *p)
{
	if (!p)
		return NULL;
	try_end(p);
	sd_event_source_disable_unref(p->next);
	probe_spec_done(&p->readiness);
	probe_spec_done(&p->liveness);
	if (p->re_ok)
		regfree(&p->re);
	free(p->last);
	return mfree(p);
}

DEFINE_POINTER_CLEANUP(Prober, prober_free)

void probe_free(Sandbox *sb)
{
	sb->prober = prober_free(sb->prober);
}

static int probe_copy(const ProbeSpec *s, ProbeSpec *ret)
{
	_cleanup_(json_decrefp) json_t *j = probe_spec_to_json(s);

	*ret = (ProbeSpec){};
	if (s->kind == PROBE_NONE)
		return 0;
	return j ? probe_spec_from_json(j, ret) : -ENOMEM;
}

static bool probe_equal(const ProbeSpec *a, const ProbeSpec *b)
{
	_cleanup_(json_decrefp) json_t *ja = probe_spec_to_json(a), *jb = probe_spec_to_json(b);

	return (!ja && !jb) || (ja && jb && json_equal(ja, jb));
}

static void schedule(Prober *p, uint64_t usec);

static void set_last(Prober *p, const char *msg)
{
	if (streq_ptr(p->last, msg))
		return;
	free(p->last);
	p->last = msg ? strdup(msg) : NULL;
	if (!p->ready)
		manager_mark_dirty(p->m, p->sb); /* Ready's message follows */
}

/* A liveness failure in a row too many: the VM is forced off, restarted per restartPolicy. */
static void liveness_kill(Prober *p)
{
	Backend *b = manager_backend_of(p->m, p->sb);
	char *why = NULL;
	int r;

	if (asprintf(&why, "liveness probe failed %u times in a row: %s", p->failures,
		     p->last ?: "no reason known") < 0)
		why = NULL;
	free(p->sb->liveness_kill);
	p->sb->liveness_kill = why;
	p->killed = true;
	log_fields(LOG_WARNING,
		   &(LogFields){ .sandbox = p->sb->name,
				 .action = "restart",
				 .result = "liveness",
				 .message_id = LOG_MESSAGE_PROBE },
		   "%s; forcing the VM off, restartPolicy %s decides what follows", why ?: "",
		   restart_policy_to_string(p->sb->desired->restart_policy));
	r = b && b->ops->stop ? b->ops->stop(b, p->sb->name, 0, true) : -EOPNOTSUPP;
	if (r < 0) {
		/* It runs on: probed on, and another run of failures tries again. */
		log_fields(LOG_ERR, &(LogFields){ .sandbox = p->sb->name, .error = -r },
			   "cannot force the VM off after its liveness failures");
		p->sb->liveness_kill = mfree(p->sb->liveness_kill);
		p->killed = false;
		p->failures = 0;
		schedule(p, p->liveness.period_ms * 1000);
	}
	manager_mark_dirty(p->m, p->sb);
}

/* What a try found: ok, or why not (msg). */
static void tried(Prober *p, bool ok, const char *msg)
{
	const ProbeSpec *s = current(p);
	uint64_t now = now_usec(CLOCK_MONOTONIC);

	try_end(p);
	if (!p->ready) {
		if (ok) {
			p->ready = true;
			set_last(p, NULL);
			log_fields(LOG_INFO,
				   &(LogFields){ .sandbox = p->sb->name,
						 .result = "ready",
						 .message_id = LOG_MESSAGE_PROBE },
				   "readiness probe passed");
			manager_mark_dirty(p->m, p->sb);
			if (p->liveness.kind != PROBE_NONE)
				schedule(p, p->liveness.period_ms * 1000);
			return;
		}
		set_last(p, msg);
		if (now - p->began >= s->timeout_ms * 1000) {
			p->timed_out = true;
			log_fields(LOG_WARNING,
				   &(LogFields){ .sandbox = p->sb->name,
						 .result = "timeout",
						 .message_id = LOG_MESSAGE_PROBE },
				   "readiness probe did not pass in %" PRIu64
				   " ms: %s; the VM keeps running",
				   s->timeout_ms, msg);
			manager_mark_dirty(p->m, p->sb);
			return;
		}
		schedule(p, s->period_ms * 1000);
		return;
	}
	if (ok) {
		p->failures = 0;
		set_last(p, NULL);
	} else {
		p->failures++;
		set_last(p, msg);
	}
	if (p->failures >= s->failure_threshold)
		liveness_kill(p);
	else
		schedule(p, s->period_ms * 1000);
}

static void tried_errno(Prober *p, const char *what, int r)
{
	char msg[256];

	snprintf(msg, sizeof(msg), "%s %s: %s", what, p->target, strerror(r));
	tried(p, false, msg);
}

/* The first address of net's NIC the host knows, as status.json lists it. */
static bool nic_address(Manager *m, const NetSpec *net, char *buf, size_t size)
{
	_cleanup_free_ char *all = neigh_addresses(manager_neigh(m), net->mac);
	const char *best = NULL;

	if (!all)
		return false;
	for (char *a = all, *save = NULL; (a = strtok_r(a, ",", &save)); a = NULL) {
		if (!strchr(a, ':')) {
			best = a; /* IPv4 first */
			break;
		}
		if (!best && strncasecmp(a, "fe80:", 5) != 0)
			best = a; /* a link-local one would need its scope */
	}
	if (!best)
		return false;
	snprintf(buf, size, "%s", best);
	return true;
}

/* Where a probe of port connects: a forwarded host port, or the guest's address. */
static int probe_address(Prober *p, uint16_t port, struct sockaddr_storage *ret, socklen_t *len)
{
	const SandboxSpec *s = rollout_spec(p->sb);
	char addr[INET6_ADDRSTRLEN] = "";
	uint16_t to = port;

	p->forwarded = false;
	for (size_t i = 0; s && i < s->n_networks && !addr[0]; i++) {
		const NetSpec *net = &s->networks[i];

		if (net->type != NET_USER) {
			(void)nic_address(p->m, net, addr, sizeof(addr));
			continue;
		}
		for (size_t k = 0; k < net->n_ports; k++)
			if (net->ports[k].guest == port && net->ports[k].protocol == PORT_TCP) {
				const char *a = net->ports[k].address;

				snprintf(addr, sizeof(addr), "%s",
					 streq(a, "0.0.0.0") ? "127.0.0.1" : a);
				to = net->ports[k].host;
				p->forwarded = true;
				break;
			}
	}
	if (!addr[0])
		return -EADDRNOTAVAIL;
	snprintf(p->target, sizeof(p->target), strchr(addr, ':') ? "[%s]:%u" : "%s:%u", addr,
		 (unsigned)to);
	memset(ret, 0, sizeof(*ret));
	if (inet_pton(AF_INET, addr, &((struct sockaddr_in *)ret)->sin_addr) == 1) {
		((struct sockaddr_in *)ret)->sin_family = AF_INET;
		((struct sockaddr_in *)ret)->sin_port = htons(to);
		*len = sizeof(struct sockaddr_in);
		return 0;
	}
	if (inet_pton(AF_INET6, addr, &((struct sockaddr_in6 *)ret)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)ret)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)ret)->sin6_port = htons(to);
		*len = sizeof(struct sockaddr_in6);
		return 0;
	}
	return -EADDRNOTAVAIL;
}

/* "HTTP/1.x NNN ...": 2xx passes. */
static void http_judge(Prober *p)
{
	char msg[HTTP_REPLY_MAX + 64];
	unsigned code = 0;
	char *eol;

	p->reply[p->reply_len] = 0;
	eol = strpbrk(p->reply, "\r\n");
	if (eol)
		*eol = 0;
	if (sscanf(p->reply, "HTTP/%*u.%*u %3u", &code) != 1) {
		_cleanup_free_ char *shown = text_escape(p->reply);

		snprintf(msg, sizeof(msg), "http %s: not an HTTP reply: %s", p->target, shown ?: "");
		tried(p, false, msg);
		return;
	}
	snprintf(msg, sizeof(msg), "http %s%s: status %u", p->target, current(p)->path, code);
	tried(p, code >= 200 && code < 300, msg);
}

static int on_io(sd_event_source *s _unused_, int fd, uint32_t revents _unused_, void *userdata)
{
	Prober *p = userdata;
	const ProbeSpec *spec = current(p);
	const char *what = probe_kind_table[spec->kind];
	int err = 0;
	socklen_t l = sizeof(err);
	ssize_t n;

	if (p->settling) {
		char c;

		/* Anything from the guest is its service answering; an end, the VMM hanging up. */
		n = recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n > 0)
			tried(p, true, NULL);
		else {
			char msg[256];

			snprintf(msg, sizeof(msg),
				 "tcp %s: closed at once: nothing listens on guest port %u",
				 p->target, (unsigned)spec->port);
			tried(p, false, msg);
		}
		return 0;
	}
	if (!p->sent) {
		char req[PROBE_HTTP_PATH_MAX + 128];
		int len;

		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
			err = errno;
		if (err) {
			tried_errno(p, what, err);
			return 0;
		}
		if (spec->kind == PROBE_TCP && p->forwarded) {
			uint64_t end = 0, now = now_usec(CLOCK_MONOTONIC);

			/* Within the try's own timeout still. */
			(void)sd_event_source_get_time(p->deadline, &end);
			p->settling = true;
			(void)sd_event_source_set_io_events(p->io, EPOLLIN | EPOLLRDHUP);
			(void)sd_event_source_set_time_relative(
				p->deadline, MIN(FORWARD_SETTLE_USEC, end > now ? end - now : 0));
			return 0;
		}
		if (spec->kind == PROBE_TCP) {
			tried(p, true, NULL);
			return 0;
		}
		len = snprintf(
			req, sizeof(req),
			"GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: vmd\r\nConnection: close\r\n\r\n",
			spec->path, p->target);
		/* A request this small fits in an empty socket buffer. */
		n = send(fd, req, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n != len) {
			tried_errno(p, what, n < 0 ? errno : EMSGSIZE);
			return 0;
		}
		p->sent = true;
		(void)sd_event_source_set_io_events(p->io, EPOLLIN);
		return 0;
	}
	n = recv(fd, p->reply + p->reply_len, sizeof(p->reply) - 1 - p->reply_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n < 0) {
		tried_errno(p, what, errno);
		return 0;
	}
	p->reply_len += (size_t)n;
	if (n == 0 || memchr(p->reply, '\n', p->reply_len) || p->reply_len == sizeof(p->reply) - 1)
		http_judge(p);
	return 0;
}

static int on_deadline(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	Prober *p = userdata;
	char msg[256];

	if (p->settling) {
		tried(p, true, NULL); /* still connected: the guest took it */
		return 0;
	}
	snprintf(msg, sizeof(msg), "%s %s: no answer in time", probe_kind_table[current(p)->kind],
		 p->target);
	tried(p, false, msg);
	return 0;
}

static void try_connect(Prober *p, uint64_t budget_usec)
{
	const ProbeSpec *s = current(p);
	struct sockaddr_storage sa;
	socklen_t len;
	int r;

	r = probe_address(p, s->port, &sa, &len);
	if (r < 0) {
		char msg[128];

		snprintf(msg, sizeof(msg), "%s port %u: no address yet", probe_kind_table[s->kind],
			 (unsigned)s->port);
		tried(p, false, msg);
		return;
	}
	p->fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0) {
		tried_errno(p, probe_kind_table[s->kind], errno);
		return;
	}
	if (connect(p->fd, (struct sockaddr *)&sa, len) < 0 && errno != EINPROGRESS) {
		tried_errno(p, probe_kind_table[s->kind], errno);
		return;
	}
	r = sd_event_add_io(p->m->event, &p->io, p->fd, EPOLLOUT, on_io, p);
	if (r >= 0)
		r = sd_event_add_time_relative(p->m->event, &p->deadline, CLOCK_MONOTONIC,
					       budget_usec, 0, on_deadline, p);
	if (r < 0)
		tried_errno(p, probe_kind_table[s->kind], -r);
}

static void agent_answered(void *userdata, int error, const char *message)
{
	Prober *p = userdata;
	char msg[256];

	p->pinging = false; /* over: nothing to take back */
	if (error >= 0) {
		tried(p, true, NULL);
		return;
	}
	snprintf(msg, sizeof(msg), "agent: %s", message ?: strerror(-error));
	tried(p, false, msg);
}

/*
 * The agent probe: a guest-ping through the backend's guest agent client (backends/
 * guest-agent.c), answered later on the loop, or not within budget_usec.
 */
static void try_agent(Prober *p, uint64_t budget_usec)
{
	Backend *b = manager_backend_of(p->m, p->sb);
	int r;

	snprintf(p->target, sizeof(p->target), "guest-ping");
	r = b && b->ops->agent_ping ? b->ops->agent_ping(b, p->sb->name, agent_answered, p)
				    : -EOPNOTSUPP;
	if (r == -EOPNOTSUPP)
		return tried(p, false, "agent: its backend asks no guest agent");
	if (r == -ENOTCONN)
		return tried(p, false, "agent: not connected to the guest agent's port yet");
	if (r < 0)
		return tried_errno(p, "agent", -r);
	p->pinging = true;
	r = sd_event_add_time_relative(p->m->event, &p->deadline, CLOCK_MONOTONIC, budget_usec, 0,
				       on_deadline, p);
	if (r < 0)
		tried_errno(p, "agent", -r);
}

/* The console probe: the lines console.log gained since the last try. */
static void try_console(Prober *p)
{
	_cleanup_free_ char *path = NULL, *buf = NULL;
	_cleanup_close_ int fd = -EBADF;
	struct stat st;
	size_t used = 0;
	ssize_t n;

	snprintf(p->target, sizeof(p->target), "%s", CONSOLE_LOG);
	if (asprintf(&path, "%s/%s/" CONSOLE_LOG, p->m->config.run_dir, p->sb->name) < 0)
		return tried(p, false, "console: out of memory");
	/* A VMM's own console.log (its dir, vmm/) may be a link it put there: never followed. */
	fd = open_nofollow(path, O_RDONLY | O_NONBLOCK);
	if (fd == -ELOOP)
		return tried(p, false,
			     "console: console.log is a symlink, which vmd does not follow");
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return tried(p, false, "console: nothing printed yet");
	if ((uint64_t)st.st_size < p->console_offset)
		p->console_offset = 0; /* rotated: console.log began again */
	buf = malloc(CONSOLE_READ_MAX + 1);
	if (!buf)
		return tried(p, false, "console: out of memory");
	n = pread(fd, buf, CONSOLE_READ_MAX, (off_t)p->console_offset);
	if (n < 0)
		return tried_errno(p, "console", errno);
	buf[n] = 0;
	for (char *line = buf, *nl; (nl = memchr(line, '\n', (size_t)n - used)); line = nl + 1) {
		size_t len = (size_t)(nl - line);

		*nl = 0;
		if (len > 0 && line[len - 1] == '\r')
			line[--len] = 0;
		used = (size_t)(nl + 1 - buf);
		/* A line with a NUL in it is no text: not matched. */
		if (strlen(line) == len && regexec(&p->re, line, 0, NULL, 0) == 0) {
			p->console_offset += used;
			return tried(p, true, NULL);
		}
	}
	/* A line cut off is read whole at the next try; one longer than the buffer, skipped. */
	p->console_offset += used ?: (size_t)n == CONSOLE_READ_MAX ? (size_t)n : 0;
	tried(p, false, "console: no line matched yet");
}

static int on_next(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	Prober *p = userdata;
	const ProbeSpec *spec = current(p);
	uint64_t budget = spec->period_ms * 1000;

	p->next = sd_event_source_disable_unref(p->next);
	if (!p->ready) {
		uint64_t spent = now_usec(CLOCK_MONOTONIC) - p->began, all = spec->timeout_ms * 1000;

		budget = MIN(budget, all > spent ? all - spent : 1);
	} else
		budget = MIN(budget, spec->timeout_ms * 1000);
	if (spec->kind == PROBE_CONSOLE)
		try_console(p);
	else if (spec->kind == PROBE_AGENT)
		try_agent(p, budget);
	else
		try_connect(p, budget);
	return 0;
}

static void schedule(Prober *p, uint64_t usec)
{
	p->next = sd_event_source_disable_unref(p->next);
	if (sd_event_add_time_relative(p->m->event, &p->next, CLOCK_MONOTONIC, usec, 0, on_next, p) <
	    0)
		log_fields(LOG_ERR, &(LogFields){ .sandbox = p->sb->name },
			   "cannot schedule its next probe");
}

static int prober_new(Manager *m, Sandbox *sb, Prober **ret)
{
	_cleanup_(prober_freep) Prober *p = calloc(1, sizeof(Prober));
	const ProbeSpec *console;

	if (!p)
		return -ENOMEM;
	p->m = m;
	p->sb = sb;
	p->fd = -EBADF;
	p->boot = sb->observed.started_at_usec;
	p->generation = rollout_generation(sb);
	p->began = now_usec(CLOCK_MONOTONIC);
	p->console_offset = sb->console_offset;
	if (probe_copy(&rollout_spec(sb)->readiness, &p->readiness) < 0 ||
	    probe_copy(&rollout_spec(sb)->liveness, &p->liveness) < 0)
		return -ENOMEM;
	p->ready = p->readiness.kind == PROBE_NONE;
	console = p->readiness.kind == PROBE_CONSOLE ? &p->readiness : &p->liveness;
	if (console->kind == PROBE_CONSOLE) {
		if (regcomp(&p->re, console->match, REG_EXTENDED | REG_NOSUB) != 0)
			return -EINVAL; /* the loader compiled it */
		p->re_ok = true;
	}
	if (p->readiness.kind != PROBE_NONE || p->liveness.kind != PROBE_NONE)
		schedule(p, 0);
	*ret = TAKE_PTR(p);
	return 0;
}

void probe_sync(Manager *m, Sandbox *sb)
{
	const SandboxSpec *s = rollout_spec(sb); /* a rollback's, or its file's */
	uint64_t generation = rollout_generation(sb);
	Prober *p = sb->prober;
	bool probed = s && !m->read_only && sb->observed.state == VM_RUNNING &&
		      !sb->observed.unresponsive && !sb->observed.unwatched &&
		      (s->readiness.kind != PROBE_NONE || s->liveness.kind != PROBE_NONE);

	/* A new generation may keep the probes (a label changed): they go on as they were. */
	if (p && probed && p->generation != generation &&
	    probe_equal(&p->readiness, &s->readiness) && probe_equal(&p->liveness, &s->liveness))
		p->generation = generation;
	if (p && (!probed || p->boot != sb->observed.started_at_usec || p->generation != generation))
		probe_free(sb);
	if (!probed || sb->prober)
		return;
	if (prober_new(m, sb, &sb->prober) < 0)
		log_fields(LOG_ERR, &(LogFields){ .sandbox = sb->name }, "cannot probe its VM");
}

bool probe_holds_ready(const Sandbox *sb, const char **reason, const char **message)
{
	const Prober *p = sb->prober;
	const SandboxSpec *s = rollout_spec(sb);

	/* Paused or stopped as asked is Ready as ever: nothing runs to probe. */
	if (!s || s->readiness.kind == PROBE_NONE || s->state != SANDBOX_RUNNING)
		return false;
	if (p && p->ready)
		return false;
	*message = p && p->last ? p->last : "";
	*reason = !p || !p->last ? "Probing" : p->timed_out ? "ProbeTimeout" : "ProbeFailed";
	return true;
}

void probe_vm_starting(Manager *m, Sandbox *sb)
{
	_cleanup_free_ char *path = NULL;
	struct stat st;

	sb->console_offset = 0;
	if (asprintf(&path, "%s/%s/" CONSOLE_LOG, m->config.run_dir, sb->name) >= 0 &&
	    stat(path, &st) >= 0)
		sb->console_offset = (uint64_t)st.st_size;
	free(sb->liveness_kill);
	sb->liveness_kill = NULL;
}

const char *probe_liveness_kill(const Sandbox *sb)
{
	return sb->liveness_kill;
}
