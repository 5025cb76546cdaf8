/* SPDX-License-Identifier: MIT */
/*
 * vmd and the systemd it runs under, when it runs as a system service.
 *
 * Scopes. A VMM is vmd's child but must outlive it: in vmd's own control group it would be
 * signalled by `systemctl kill vmd`, reported as a "left-over process" at every restart,
 * and killed at the host's shutdown with everything else, at once. So each VMM is moved
 * into a scope of its own, vmd-NAME.scope in machine.slice, as libvirt does, through
 * StartTransientUnit with its pid. The scope is ordered Before= vmd's unit: when both stop
 * (the host shuts down), vmd stops first, and the scope is stopped only after it.
 *
 * Shutdown. At SIGTERM vmd asks the manager's SystemState: "stopping" means the host is
 * shutting down (shutdown.target is queued or active: manager_state() in systemd's
 * src/core/manager.c), and vmd then shuts every guest down as a stop does (the power
 * button, stopTimeout, then force) before it exits, as libvirt-guests does; otherwise
 * (`systemctl stop` or `restart vmd`) the VMs keep running. The question goes two ways at
 * once: to systemd's own socket (/run/systemd/private, as systemctl talks to it when it
 * runs as root), with no dbus-daemon in the way, which is itself on its way down at a
 * shutdown and slow under load; and over the system bus, for when the private socket
 * cannot be reached. The first answer decides; only when both fail, or neither answers
 * within STATE_TIMEOUT_USEC, is it taken that the host does not shut down.
 *
 * Every call is asynchronous, on the daemon's loop: systemd is asked, never waited for.
 * Outside a systemd service (tests, a shell) none of this exists, and nothing changes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-login.h>

#include "host-systemd.h"
#include "list.h"
#include "log.h"
#include "manager.h"
#include "ordering.h"
#include "util.h"
#include "vm-scope.h"

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC UINT64_C(1000000)
#define SCOPE_TRIES 8
#define SCOPE_RETRY_USEC (250 * USEC_PER_MSEC)
/* Well within the unit's TimeoutStopSec= (90 s by default), extended while asking. */
#define STATE_TIMEOUT_USEC (20 * USEC_PER_SEC)
#define SYSTEMD_PRIVATE "/run/systemd/private"
/* After the longest stopTimeout: the quit and kill phases of a stop, and the exit's reaping. */
#define SHUTDOWN_SLACK_USEC (15 * USEC_PER_SEC)

struct HostSystemd {
	sd_bus *bus;
	char *unit; /* vmd's own unit, "vmd.service" */
	bool scope_error_said;
	bool machine_error_said;
	List requests; /* every ScopeRequest whose answer or retry is to come */
	/* The question at SIGTERM: does the host shut down? */
	sd_bus *private; /* systemd's own socket, opened for it: no dbus-daemon between */
	unsigned asked;	 /* calls of it whose reply is to come */
	bool answered;	 /* one said: the others' replies are not heard any more */
	char *why[2];	 /* why each way gave no state: [0] the system bus, [1] the other */
};

typedef struct ScopeRequest {
	HostSystemd *h;
	ListNode node; /* in h->requests */
	char *name;
	pid_t pid;
	unsigned tries;
	sd_event_source *retry;
	ScopeLimits limits; /* its device paths are the request's own copies */
	bool has_limits;    /* false: no spec to compute them from, a scope without limits */
	bool adopted;	    /* in its scope already: only registered with machined */
	bool unregistered;  /* the machine of the VMM before was dropped */
} ScopeRequest;

static void scope_request_free(ScopeRequest *r)
{
	if (!r)
		return;
	list_remove(&r->h->requests, &r->node);
	sd_event_source_disable_unref(r->retry);
	for (size_t i = 0; i < r->limits.n_devices; i++)
		free((char *)r->limits.devices[i].path);
	free(r->name);
	free(r);
}

/* A request about the VMM of sandbox name, in h's list until it is freed; NULL: no memory. */
static ScopeRequest *scope_request_new(HostSystemd *h, const char *name)
{
	ScopeRequest *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->h = h;
	list_append(&h->requests, &r->node);
	r->name = strdup(name);
	if (!r->name) {
		scope_request_free(r);
		return NULL;
	}
	return r;
}

int host_systemd_new(sd_event *event, HostSystemd **ret)
{
	_cleanup_free_ char *unit = NULL;
	HostSystemd *h;
	int r;

	size_t len;

	*ret = NULL;
	/* Only a system service: a unit of the system manager, not a user's or a session's. */
	if (sd_booted() <= 0 || sd_pid_get_unit(0, &unit) < 0)
		return 0;
	len = strlen(unit);
	if (len < 8 || !streq(unit + len - 8, ".service"))
		return 0;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->unit = TAKE_PTR(unit);
	r = sd_bus_open_system(&h->bus);
	if (r >= 0)
		r = sd_bus_attach_event(h->bus, event, SD_EVENT_PRIORITY_NORMAL);
	if (r < 0) {
		log_fields(
			LOG_WARNING, &(LogFields){ .error = -r },
			"cannot reach systemd on the system bus; VMMs stay in vmd's control group, and the host's shutdown does not shut guests down first");
		host_systemd_free(h);
		return 0;
	}
	*ret = h;
	return 0;
}

void host_systemd_free(HostSystemd *h)
{
	if (!h)
		return;
	/* The bus takes its pending calls with it, unanswered: their requests are freed here. */
	sd_bus_flush_close_unref(h->bus);
	sd_bus_flush_close_unref(h->private);
	free(h->why[0]);
	free(h->why[1]);
	while (h->requests.first)
		scope_request_free(list_entry(h->requests.first, ScopeRequest, node));
	free(h->unit);
	free(h);
}

const char *host_systemd_unit(const HostSystemd *h)
{
	return h ? h->unit : NULL;
}

/* Whether pid is in vmd's own control group still: one that left it is where it belongs. */
static bool in_own_cgroup(pid_t pid)
{
	_cleanup_free_ char *mine = NULL, *its = NULL;

	if (sd_pid_get_cgroup(0, &mine) < 0 || sd_pid_get_cgroup(pid, &its) < 0)
		return false;
	return streq(mine, its);
}

static int scope_send(ScopeRequest *req);

static void machine_register(ScopeRequest *req);

/* Whether the VMM runs in vmd-NAME.scope yet. */
static bool in_scope(const ScopeRequest *req)
{
	_cleanup_free_ char *unit = NULL, *want = NULL;

	if (asprintf(&want, "vmd-%s.scope", req->name) < 0 || sd_pid_get_unit(req->pid, &unit) < 0)
		return false;
	return streq(unit, want);
}

static int machine_retry(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	ScopeRequest *req = userdata;

	req->retry = sd_event_source_disable_unref(req->retry);
	machine_register(req);
	return 0;
}

static int unregister_reply(sd_bus_message *m _unused_, void *userdata,
			    sd_bus_error *ret_error _unused_)
{
	machine_register(userdata); /* its error, if any, is RegisterMachine's again */
	return 0;
}

/*
 * A machine of this name for a scope just made is the crashed VMM's before: machined keeps
 * a machine while a unit of its unit's name is active, and the new scope has that name.
 * UnregisterMachine drops it and kills nothing (machine_finalize()).
 */
static void machine_unregister(ScopeRequest *req)
{
	char machine[VM_SCOPE_MACHINE_NAME_MAX + 1];
	int r;

	req->unregistered = true;
	r = vm_scope_machine_name(req->name, machine);
	if (r >= 0)
		r = sd_bus_call_method_async(req->h->bus, NULL, "org.freedesktop.machine1",
					     "/org/freedesktop/machine1",
					     "org.freedesktop.machine1.Manager", "UnregisterMachine",
					     unregister_reply, req, "s", machine);
	if (r < 0)
		scope_request_free(req);
}

static int machine_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error _unused_)
{
	ScopeRequest *req = userdata;
	const sd_bus_error *e = sd_bus_message_get_error(m);
	bool exists = e && sd_bus_error_has_name(e, "org.freedesktop.machine1.MachineExists");

	if (exists && !req->adopted && !req->unregistered) {
		machine_unregister(req);
		return 0;
	}
	/* Adopted: the vmd before this one registered it. */
	if (!e || (exists && req->adopted))
		log_fields(LOG_DEBUG, &(LogFields){ .sandbox = req->name },
			   "registered with systemd-machined (leader %d)", (int)req->pid);
	else if (!req->h->machine_error_said) {
		log_fields(LOG_WARNING, &(LogFields){ .sandbox = req->name },
			   "cannot register its VM with systemd-machined: %s; machinectl does not list it (said once)",
			   e->message ?: e->name);
		req->h->machine_error_said = true;
	}
	scope_request_free(req);
	return 0;
}

/*
 * RegisterMachine, with the VMM as leader: machined finds its unit (the scope) from the
 * pid, and drops the machine when the scope goes. Takes req, whatever happens.
 */
static void machine_register(ScopeRequest *req)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
	char machine[VM_SCOPE_MACHINE_NAME_MAX + 1];
	HostSystemd *h = req->h;
	int r;

	/*
	 * StartTransientUnit answers once the scope's start job is queued; the VMM is moved
	 * when the job runs, and machined takes its unit from the leader's cgroup then.
	 */
	if (!req->adopted && !in_scope(req) && ++req->tries < SCOPE_TRIES &&
	    sd_event_add_time_relative(sd_bus_get_event(h->bus), &req->retry, CLOCK_MONOTONIC,
				       SCOPE_RETRY_USEC, 0, machine_retry, req) >= 0)
		return;
	if (vm_scope_machine_name(req->name, machine) < 0) {
		log_fields(LOG_INFO, &(LogFields){ .sandbox = req->name },
			   "not registered with systemd-machined: vmd-%s is longer than a machine name may be (64)",
			   req->name);
		scope_request_free(req);
		return;
	}
	r = sd_bus_message_new_method_call(h->bus, &m, "org.freedesktop.machine1",
					   "/org/freedesktop/machine1",
					   "org.freedesktop.machine1.Manager", "RegisterMachine");
	if (r >= 0)
		r = sd_bus_message_append(m, "s", machine);
	if (r >= 0)
		r = sd_bus_message_append_array(m, 'y', NULL, 0); /* no id: machined has none */
	if (r >= 0)
		r = sd_bus_message_append(m, "ssus", "vmd", "vm", (uint32_t)req->pid, "");
	if (r >= 0)
		r = sd_bus_call_async(h->bus, NULL, m, machine_reply, req, 0);
	if (r < 0)
		scope_request_free(req);
}

static int scope_retry(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	ScopeRequest *req = userdata;

	req->retry = sd_event_source_disable_unref(req->retry);
	if (scope_send(req) < 0)
		scope_request_free(req);
	return 0;
}

static int scope_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error _unused_)
{
	ScopeRequest *req = userdata;
	const sd_bus_error *e = sd_bus_message_get_error(m);
	HostSystemd *h = req->h;

	if (!e) {
		log_fields(LOG_DEBUG, &(LogFields){ .sandbox = req->name },
			   "its VMM (pid %d) runs in vmd-%s.scope", (int)req->pid, req->name);
		req->tries = 0;
		machine_register(req);
		return 0;
	}
	/*
	 * The scope of the VMM before this one may still be there, on its way out: its
	 * process is gone (vmd reaped it), and systemd collects the scope in a moment.
	 */
	if (sd_bus_error_has_name(e, "org.freedesktop.systemd1.UnitExists") &&
	    ++req->tries < SCOPE_TRIES && in_own_cgroup(req->pid) &&
	    sd_event_add_time_relative(sd_bus_get_event(h->bus), &req->retry, CLOCK_MONOTONIC,
				       SCOPE_RETRY_USEC, 0, scope_retry, req) >= 0)
		return 0;
	if (!h->scope_error_said)
		log_fields(LOG_WARNING, &(LogFields){ .sandbox = req->name },
			   "cannot move its VMM (pid %d) into a scope of its own: %s; it stays in vmd's control group (said once)",
			   (int)req->pid, e->message ?: e->name);
	h->scope_error_said = true;
	scope_request_free(req);
	return 0;
}

/* The scope's limits, as properties of StartTransientUnit (docs/daemon.md, "A scope per VMM"). */
static int append_limits(sd_bus_message *m, const ScopeLimits *l)
{
	int r;

	r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)", "MemoryMax", "t", l->memory_max,
				  "TasksMax", "t", l->tasks_max, "CPUWeight", "t", l->cpu_weight,
				  "DevicePolicy", "s", "closed");
	if (r >= 0 && l->cpu_quota_per_sec_usec > 0)
		r = sd_bus_message_append(m, "(sv)", "CPUQuotaPerSecUSec", "t",
					  l->cpu_quota_per_sec_usec);
	if (r >= 0 && l->io_weight > 0)
		r = sd_bus_message_append(m, "(sv)", "IOWeight", "t", l->io_weight);
	if (r >= 0)
		r = sd_bus_message_open_container(m, 'r', "sv");
	if (r >= 0)
		r = sd_bus_message_append(m, "s", "DeviceAllow");
	if (r >= 0)
		r = sd_bus_message_open_container(m, 'v', "a(ss)");
	if (r >= 0)
		r = sd_bus_message_open_container(m, 'a', "(ss)");
	for (size_t i = 0; r >= 0 && i < l->n_devices; i++)
		r = sd_bus_message_append(m, "(ss)", l->devices[i].path, l->devices[i].access);
	for (int k = 0; r >= 0 && k < 3; k++)
		r = sd_bus_message_close_container(m);
	return r;
}

static int scope_send(ScopeRequest *req)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
	_cleanup_free_ char *unit = NULL, *description = NULL;
	HostSystemd *h = req->h;
	int r;

	if (asprintf(&unit, "vmd-%s.scope", req->name) < 0 ||
	    asprintf(&description, "vmd sandbox %s", req->name) < 0)
		return -ENOMEM;
	r = sd_bus_message_new_method_call(h->bus, &m, "org.freedesktop.systemd1",
					   "/org/freedesktop/systemd1",
					   "org.freedesktop.systemd1.Manager", "StartTransientUnit");
	if (r >= 0)
		r = sd_bus_message_append(m, "ss", unit, "fail");
	if (r >= 0)
		r = sd_bus_message_open_container(m, 'a', "(sv)");
	if (r >= 0)
		r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)(sv)", "Description", "s",
					  description, "Slice", "s", "machine.slice", "PIDs", "au",
					  1, (uint32_t)req->pid, "CollectMode", "s",
					  "inactive-or-failed", "Before", "as", 1, h->unit);
	if (r >= 0 && req->has_limits)
		r = append_limits(m, &req->limits);
	if (r >= 0)
		r = sd_bus_message_close_container(m);
	if (r >= 0)
		r = sd_bus_message_append(m, "a(sa(sv))", 0);
	if (r >= 0)
		r = sd_bus_call_async(h->bus, NULL, m, scope_reply, req, 0);
	return r;
}

static bool is_block(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISBLK(st.st_mode);
}

void host_systemd_scope(HostSystemd *h, const char *name, pid_t pid, const SandboxSpec *spec,
			uint64_t max_memory, unsigned max_vcpus)
{
	ScopeRequest *req;

	if (!h || pid <= 0)
		return;
	req = scope_request_new(h, name);
	if (!req)
		return;
	req->pid = pid;
	/* Adopted in a scope already, by the vmd before this one: registered, unless it was not. */
	if (!in_own_cgroup(pid)) {
		req->adopted = true;
		machine_register(req);
		return;
	}
	if (spec) {
		vm_scope_limits(spec, max_memory, max_vcpus, is_block, &req->limits);
		for (size_t i = 0; i < req->limits.n_devices; i++) {
			char *copy = strdup(req->limits.devices[i].path);

			if (!copy) {
				req->limits.n_devices = i;
				scope_request_free(req);
				return;
			}
			req->limits.devices[i].path = copy;
		}
		req->has_limits = true;
	}
	if (scope_send(req) < 0)
		scope_request_free(req);
}

static int memory_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error _unused_)
{
	ScopeRequest *req = userdata;
	const sd_bus_error *e = sd_bus_message_get_error(m);

	if (e && !req->h->scope_error_said) {
		log_fields(LOG_WARNING, &(LogFields){ .sandbox = req->name },
			   "cannot raise the MemoryMax of vmd-%s.scope for its guest's room to grow: %s (said once)",
			   req->name, e->message ?: e->name);
		req->h->scope_error_said = true;
	}
	scope_request_free(req);
	return 0;
}

void host_systemd_scope_memory(HostSystemd *h, const char *name, uint64_t memory_max)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
	_cleanup_free_ char *unit = NULL;
	ScopeRequest *req;
	int r;

	if (!h)
		return;
	req = scope_request_new(h, name);
	if (!req || asprintf(&unit, "vmd-%s.scope", name) < 0) {
		scope_request_free(req);
		return;
	}
	r = sd_bus_message_new_method_call(h->bus, &m, "org.freedesktop.systemd1",
					   "/org/freedesktop/systemd1",
					   "org.freedesktop.systemd1.Manager", "SetUnitProperties");
	if (r >= 0)
		r = sd_bus_message_append(m, "sba(sv)", unit, true, 1, "MemoryMax", "t", memory_max);
	if (r >= 0)
		r = sd_bus_call_async(h->bus, NULL, m, memory_reply, req, 0);
	if (r < 0)
		scope_request_free(req);
}

/* Shutdown */

static bool vm_up(const Sandbox *sb)
{
	return IN_SET(sb->observed.state, VM_STARTING, VM_RUNNING, VM_PAUSED, VM_STOPPING) &&
	       !sb->stranger && !sb->observed.stray;
}

static int shutdown_deadline(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	Manager *m = userdata;

	log_fields(LOG_WARNING, &(LogFields){ .message_id = LOG_MESSAGE_DAEMON },
		   "stopping; not every guest shut down in time, the host's shutdown ends them");
	return sd_event_exit(m->event, 0);
}

static uint64_t stop_timeout_ms(const Sandbox *sb)
{
	const SandboxSpec *spec = sb->desired ?: sb->observed.config;

	return spec ? spec->stop_timeout_ms : 30000;
}

/* Shut sb's guest down for the host's shutdown, as a stop does; false if it cannot be. */
static bool host_stop_one(Manager *m, Sandbox *sb)
{
	Backend *b = manager_backend_of(m, sb);
	int r;

	sb->host_stop_waits = false;
	r = b->ops->stop(b, sb->name, stop_timeout_ms(sb), false);
	if (r < 0) {
		log_fields(LOG_ERR,
			   &(LogFields){ .sandbox = sb->name,
					 .backend = b->ops->name,
					 .action = "stop",
					 .result = "failed",
					 .error = -r,
					 .message_id = LOG_MESSAGE_ACTION_FAILED },
			   "cannot shut its guest down for the host's shutdown");
		sb->host_stop = false;
		return false;
	}
	log_fields(LOG_INFO,
		   &(LogFields){ .sandbox = sb->name,
				 .backend = b->ops->name,
				 .action = "stop",
				 .result = "started",
				 .message_id = LOG_MESSAGE_ACTION_DONE },
		   "shutting its guest down: the host shuts down");
	/* Down already (a backend whose stop is synchronous): those it held go now. */
	sandbox_observe(m, sb);
	if (!vm_up(sb))
		sb->host_stop = false;
	return true;
}

/*
 * The stops that waited for those naming them in spec.after (ordering.c), now that these
 * are down; true if one began (or failed: what waited for it is free too, look again).
 */
static bool host_stop_waiting(Manager *m)
{
	bool again = false;

	for (ListNode *n = m->all.first; n; n = n->next) {
		Sandbox *sb = list_entry(n, Sandbox, all_node);

		if (sb->host_stop && sb->host_stop_waits && !ordering_stop_waits(m, sb)) {
			(void)host_stop_one(m, sb);
			again = true;
		}
	}
	return again;
}

void host_systemd_check_shutdown(Manager *m)
{
	size_t up = 0;
	int code;

	/* Not shutting guests down, or done with it already (the loop is on its way out). */
	if (!m->host_stopping || sd_event_get_exit_code(m->event, &code) >= 0)
		return;
	for (ListNode *n = m->all.first; n; n = n->next) {
		Sandbox *sb = list_entry(n, Sandbox, all_node);

		if (!sb->host_stop)
			continue;
		sandbox_observe(m, sb);
		if (!vm_up(sb))
			sb->host_stop = sb->host_stop_waits = false;
	}
	while (host_stop_waiting(m))
		;
	/* Counted after: a stop that could not begin is not waited for. */
	for (ListNode *n = m->all.first; n; n = n->next)
		up += list_entry(n, Sandbox, all_node)->host_stop;
	if (up > 0)
		return;
	log_fields(LOG_INFO, &(LogFields){ .message_id = LOG_MESSAGE_DAEMON },
		   "stopping; every guest is shut down");
	(void)sd_event_exit(m->event, 0);
}

/*
 * The host shuts down: every guest is shut down as a stop does, and then vmd exits. A
 * guest that others name in their spec.after waits until they are down.
 */
void host_systemd_shut_guests_down(Manager *m)
{
	uint64_t longest = 0, waiting = 0;
	size_t n_up = 0;
	char ext[64];

	m->host_stopping = true; /* nothing is planned any more: no restart, no start */
	for (ListNode *n = m->all.first; n; n = n->next) {
		Sandbox *sb = list_entry(n, Sandbox, all_node);
		Backend *b = manager_backend_of(m, sb);

		sandbox_observe(m, sb);
		sb->host_stop = b && vm_up(sb) && b->ops->stop;
	}
	for (ListNode *n = m->all.first; n; n = n->next) {
		Sandbox *sb = list_entry(n, Sandbox, all_node);

		if (!sb->host_stop)
			continue;
		sb->host_stop_waits = ordering_stop_waits(m, sb);
		if (sb->host_stop_waits)
			waiting += stop_timeout_ms(sb); /* one after another, at worst */
		else if (!host_stop_one(m, sb))
			continue;
		else
			longest = MAX(longest, stop_timeout_ms(sb));
		n_up++;
	}
	longest += waiting;
	log_fields(LOG_INFO, &(LogFields){ .message_id = LOG_MESSAGE_DAEMON },
		   "the host shuts down: shutting %zu guest%s down before vmd stops", n_up,
		   n_up == 1 ? "" : "s");
	if (n_up == 0) {
		(void)sd_event_exit(m->event, 0);
		return;
	}
	/* systemd's TimeoutStopSec= waits that long too, not only its own default. */
	snprintf(ext, sizeof(ext), "EXTEND_TIMEOUT_USEC=%" PRIu64,
		 longest * USEC_PER_MSEC + 2 * SHUTDOWN_SLACK_USEC);
	(void)sd_notify(false, ext);
	if (sd_event_add_time_relative(m->event, NULL, CLOCK_MONOTONIC,
				       longest * USEC_PER_MSEC + SHUTDOWN_SLACK_USEC, 0,
				       shutdown_deadline, m) < 0)
		(void)sd_event_exit(m->event, 0);
	host_systemd_check_shutdown(m);
}

static void stopping_anyway(Manager *m, const char *state)
{
	log_fields(LOG_INFO, &(LogFields){ .message_id = LOG_MESSAGE_DAEMON },
		   "stopping; VMs keep running%s%s%s", state ? " (the host is " : "", state ?: "",
		   state ? ", not shutting down)" : "");
	(void)sd_event_exit(m->event, 0);
}

/* Why a reply does not say the state: its error, or a reply that is no string. */
static const char *reply_problem(sd_bus_message *reply)
{
	const sd_bus_error *e = sd_bus_message_get_error(reply);

	return e ? e->message ?: e->name : "no state in the answer";
}

/* Neither way gave the state. */
static void cannot_tell(Manager *m)
{
	HostSystemd *h = m->systemd;

	log_fields(LOG_WARNING, &(LogFields){ .message_id = LOG_MESSAGE_DAEMON },
		   "cannot tell whether the host shuts down (" SYSTEMD_PRIVATE
		   ": %s; the system bus: %s); taking it that it does not",
		   h->why[1] ?: "?", h->why[0] ?: "?");
	stopping_anyway(m, NULL);
}

static int state_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error _unused_)
{
	Manager *m = userdata;
	HostSystemd *h = m->systemd;
	bool private = sd_bus_message_get_bus(reply) == h->private;
	const char *state = NULL;

	h->asked--;
	if (h->answered)
		return 0;
	if (sd_bus_message_is_method_error(reply, NULL) ||
	    sd_bus_message_read(reply, "v", "s", &state) < 0 || !state) {
		free(h->why[private]);
		h->why[private] = strdup(reply_problem(reply));
		if (h->asked == 0)
			cannot_tell(m);
		return 0; /* else the other way may answer yet */
	}
	h->answered = true;
	log_fields(LOG_DEBUG, &(LogFields){ .message_id = LOG_MESSAGE_DAEMON },
		   "systemd's SystemState is %s (asked %s)", state,
		   private ? SYSTEMD_PRIVATE : "over the system bus");
	if (streq(state, "stopping"))
		host_systemd_shut_guests_down(m);
	else
		stopping_anyway(m, state);
	return 0;
}

/* Ask bus for the manager's SystemState; its reply comes to state_reply. */
static int ask_state(Manager *m, sd_bus *bus)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
	int r;

	r = sd_bus_message_new_method_call(bus, &msg, "org.freedesktop.systemd1",
					   "/org/freedesktop/systemd1",
					   "org.freedesktop.DBus.Properties", "Get");
	if (r >= 0)
		r = sd_bus_message_append(msg, "ss", "org.freedesktop.systemd1.Manager",
					  "SystemState");
	if (r >= 0)
		r = sd_bus_call_async(bus, NULL, msg, state_reply, m, STATE_TIMEOUT_USEC);
	if (r >= 0)
		m->systemd->asked++;
	return r;
}

/*
 * A connection of its own to systemd's private socket, a direct one (no Hello: no bus
 * daemon), as systemctl's bus_connect_system_systemd() makes it. The connect and the
 * authentication go on in the loop; the call waits for them.
 */
static int open_private(HostSystemd *h)
{
	_cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
	int r;

	r = sd_bus_new(&bus);
	if (r >= 0)
		r = sd_bus_set_address(bus, "unix:path=" SYSTEMD_PRIVATE);
	if (r >= 0)
		r = sd_bus_start(bus);
	if (r >= 0)
		r = sd_bus_attach_event(bus, sd_bus_get_event(h->bus), SD_EVENT_PRIORITY_NORMAL);
	if (r < 0)
		return r;
	h->private = TAKE_PTR(bus);
	return 0;
}

void host_systemd_sigterm(Manager *m)
{
	HostSystemd *h = m->systemd;
	char ext[64];
	int r;

	if (m->host_stopping || m->sigterm_asked)
		return; /* one SIGTERM is enough: the guests are on their way down, or the question */
	m->sigterm_asked = true;
	if (!h) {
		stopping_anyway(m, NULL);
		return;
	}
	/* systemd's stop timeout covers the question, whatever TimeoutStopSec= says. */
	snprintf(ext, sizeof(ext), "EXTEND_TIMEOUT_USEC=%" PRIu64,
		 STATE_TIMEOUT_USEC + SHUTDOWN_SLACK_USEC);
	(void)sd_notify(false, ext);
	r = open_private(h);
	if (r >= 0)
		r = ask_state(m, h->private);
	if (r < 0)
		h->why[1] = strdup(strerror(-r));
	r = ask_state(m, h->bus);
	if (r < 0)
		h->why[0] = strdup(strerror(-r));
	if (h->asked == 0)
		cannot_tell(m);
}
