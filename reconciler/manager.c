/* SPDX-License-Identifier: MIT */
/*
 * The daemon's loop. Everything happens on one sd-event loop: signals, the watcher's
 * hints, timers, the backends' events. Sandboxes that something happened to are marked
 * dirty and reconciled in one deferred pass, so that a burst of events costs one pass.
 * A pass over every sandbox (resync, SIGHUP, a watcher overflow) goes in slices below
 * that priority: what an event asks for never waits behind 100,000 others.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/sysinfo.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <systemd/sd-daemon.h>

#include "events.h"
#include "log.h"
#include "manager.h"
#include "ordering.h"
#include "probe.h"
#include "idle.h"
#include "rollout.h"
#include "watcher.h"

/* A pass over every sandbox yields the loop this often, as the state dir's writes do. */
#define SLICE_USEC 2000
/* Below what events ask for (SD_EVENT_PRIORITY_NORMAL), above the state dir (IDLE). */
#define RESYNC_PRIORITY (SD_EVENT_PRIORITY_NORMAL + 10)

Sandbox *manager_sandbox(Manager *m, const char *name, bool create)
{
	Sandbox *sb = hashmap_get(m->sandboxes, name);

	if (sb || !create)
		return sb;
	sb = calloc(1, sizeof(*sb));
	if (!sb)
		return NULL;
	sb->manager = m;
	sb->vm_backend = _BACKEND_KIND_INVALID;
	sb->name = strdup(name);
	if (!sb->name || hashmap_put(m->sandboxes, sb->name, sb) < 0) {
		free(sb->name);
		return mfree(sb);
	}
	list_append(&m->all, &sb->all_node);
	events_sandbox_new(m, sb);
	manager_tally_add(m, sb);
	if (!m->read_only)
		sandbox_load_backoff(m, sb);
	rollout_load(m, sb);
	idle_load(m, sb);
	return sb;
}

static Sandbox *sandbox_free(Sandbox *sb)
{
	if (!sb)
		return NULL;
	sd_event_source_disable_unref(sb->wake);
	vm_observed_done(&sb->observed);
	sandbox_spec_free(sb->desired);
	sandbox_status_done(&sb->status);
	free(sb->persist_text);
	free(sb->path);
	free(sb->config_error);
	free(sb->source_revision);
	free(sb->last_error);
	free(sb->exit_reason);
	free(sb->refusal);
	free(sb->adopt_error);
	probe_free(sb);
	rollout_free(sb->manager, sb);
	free(sb->liveness_kill);
	free(sb->waiting);
	strv_free(sb->after_counted);
	sandbox_suspend_done(sb);
	idle_free(sb);
	sandbox_template_done(sb);
	free(sb->name);
	return mfree(sb);
}

void manager_drop_sandbox(Manager *m, Sandbox *sb)
{
	/* A pass in slices about to get to it goes on with the next one. */
	if (m->resync_next == sb)
		m->resync_next = list_entry(sb->all_node.next, Sandbox, all_node);
	events_forget(m, sb);
	list_remove(&m->all, &sb->all_node);
	list_remove(&m->dirty, &sb->dirty_node);
	list_remove(&m->persist_queue, &sb->persist_node);
	deletion_guard_forget(m, sb);
	host_ports_release(m, sb);
	ordering_forget(m, sb);
	manager_tally_remove(m, sb);
	hashmap_remove(m->sandboxes, sb->name);
	sandbox_free(sb);
}

BackendKind manager_backend_kind(const Manager *m, const Sandbox *sb)
{
	if (m->config.backend_override >= 0)
		return m->config.backend_override;
	if (sb->vm_backend >= 0 &&
	    IN_SET(sb->observed.state, VM_STARTING, VM_RUNNING, VM_PAUSED, VM_STOPPING, VM_EXITED))
		return sb->vm_backend;
	if (sb->desired)
		return sb->desired->backend;
	return sb->vm_backend >= 0 ? sb->vm_backend : m->config.default_backend;
}

Backend *manager_backend_of(Manager *m, const Sandbox *sb)
{
	return m->backends[manager_backend_kind(m, sb)];
}

const HostResources *manager_admission(const Manager *m, const Backend *b)
{
	return m->config.allow_overcommit || !b->ops->takes_host_resources ? NULL : &m->host;
}

/* What the host has: its online CPUs and its memory, read at start and on SIGHUP. */
static void read_host_resources(HostResources *ret)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	struct sysinfo si;

	*ret = (HostResources){ .cpus = cpus > 0 ? (unsigned)cpus : 0 };
	if (sysinfo(&si) == 0)
		ret->memory = (uint64_t)si.totalram * si.mem_unit;
}

static int reconcile_dirty(sd_event_source *s _unused_, void *userdata)
{
	Manager *m = userdata;
	_cleanup_free_ Sandbox **batch = NULL;
	uint64_t began = now_usec(CLOCK_MONOTONIC);
	size_t n = 0;

	/*
	 * Take the whole set first: reconciling may drop the sandbox at hand (never another),
	 * and may mark sandboxes dirty again, for the next pass.
	 */
	batch = reallocarray(NULL, m->dirty.size + 1, sizeof(Sandbox *));
	if (!batch)
		return log_error_errno(ENOMEM, "cannot reconcile");
	while (m->dirty.first)
		batch[n++] = list_entry(list_pop_first(&m->dirty), Sandbox, dirty_node);
	(void)sd_event_source_set_enabled(m->reconcile_event, SD_EVENT_OFF);

	for (size_t i = 0; i < n; i++)
		sandbox_reconcile(m, batch[i]);
	if (m->dirty.size > 0)
		(void)sd_event_source_set_enabled(m->reconcile_event, SD_EVENT_ONESHOT);
	if (m->ready)
		manager_notify_status(m);
	if (n > 0)
		telemetry_pass_done(m, PASS_EVENT, began);
	return 0;
}

void manager_mark_dirty(Manager *m, Sandbox *sb)
{
	if (!list_contains(&m->dirty, &sb->dirty_node))
		list_append(&m->dirty, &sb->dirty_node);
	if (m->reconcile_event)
		(void)sd_event_source_set_enabled(m->reconcile_event, SD_EVENT_ONESHOT);
}

static int write_persisted(sd_event_source *s, void *userdata)
{
	Manager *m = userdata;

	/*
	 * 2 ms at a time, however slow the disk: the loop stays free for what happens meanwhile.
	 * After a failure, the retry's timer (desired.c) turns it on again.
	 */
	if (manager_write_persisted(m, SLICE_USEC) == 0 || m->state_write_error)
		(void)sd_event_source_set_enabled(s, SD_EVENT_OFF);
	else
		(void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
	return 0;
}

/* For the first pass, before READY=1: every sandbox in it, at once. */
static void mark_all_dirty(Manager *m)
{
	for (ListNode *n = m->all.first; n; n = n->next)
		manager_mark_dirty(m, list_entry(n, Sandbox, all_node));
}

/* Start a pass over every sandbox: read the directory again, then reconcile each one. */
static void resync_begin(Manager *m)
{
	int r;

	m->resync_reload = m->reload_asked;
	m->reload_asked = false;
	m->resync_again = false;
	m->telemetry.resync_began = now_usec(CLOCK_MONOTONIC);
	r = manager_scan_start(m);
	if (r == -EBUSY)
		return; /* another vmd took the directory: this one is on its way out */
	if (r < 0)
		log_error_errno(ENOMEM, "cannot read %s again", m->config.sandbox_dir);
	m->resync_scanning = true; /* without a scan, reconcile all the same */
	m->resync_next = NULL;
	(void)sd_event_source_set_enabled(m->resync_event, SD_EVENT_ONESHOT);
}

/*
 * Ask for a pass. One under way goes on to its end and another follows: restarting it
 * instead would starve the files late in the directory under a storm of overflows.
 */
static void resync_start(Manager *m)
{
	if (m->resync_scanning || m->resync_next)
		m->resync_again = true;
	else
		resync_begin(m);
}

static void resync_done(Manager *m)
{
	/* Every file it found gone is counted now: the stops that came due meanwhile are judged. */
	deletion_guard_pass_done(m);
	telemetry_pass_done(m, PASS_RESYNC, m->telemetry.resync_began);
	if (m->resync_reload) {
		m->resync_reload = false;
		manager_notify_ready(m);
		log_fields(LOG_INFO, &(LogFields){ .message_id = LOG_MESSAGE_DAEMON },
			   "reloaded: %zu sandboxes from %s", hashmap_size(m->sandboxes),
			   m->config.sandbox_dir);
	}
	if (m->resync_again)
		resync_begin(m);
	else
		(void)sd_event_source_set_enabled(m->resync_event, SD_EVENT_OFF);
}

/*
 * One slice of a pass, about SLICE_USEC. Whatever an event marks dirty meanwhile goes
 * first: the dirty pass runs at a higher priority, between two slices.
 */
static int resync_slice(sd_event_source *s, void *userdata)
{
	Manager *m = userdata;
	uint64_t start = now_usec(CLOCK_MONOTONIC);

	if (m->resync_scanning) {
		if (manager_scan_step(m, SLICE_USEC) > 0) {
			(void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
			return 0;
		}
		m->resync_scanning = false;
		m->resync_next = list_entry(m->all.first, Sandbox, all_node);
	}
	while (m->resync_next && now_usec(CLOCK_MONOTONIC) - start < SLICE_USEC) {
		Sandbox *sb = m->resync_next;

		/* Step past it first: reconciling may drop it (and never another). */
		m->resync_next = list_entry(sb->all_node.next, Sandbox, all_node);
		manager_scan_check_gone(m, sb);
		sandbox_reconcile(m, sb);
	}
	if (m->resync_next)
		(void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
	else
		resync_done(m);
	manager_notify_status(m);
	return 0;
}

static void on_vm_exited(void *userdata, const char *name, int status, const char *reason)
{
	Manager *m = userdata;
	Sandbox *sb = manager_sandbox(m, name, false);

	log_fields(status == 0 ? LOG_INFO : LOG_WARNING,
		   &(LogFields){ .sandbox = name,
				 .result = status == 0 ? "exited" : "failed",
				 .message_id = LOG_MESSAGE_VM_EXITED },
		   "VM exited with status %d%s%s", status, reason ? ": " : "", reason ?: "");
	if (sb) {
		sandbox_vm_exited(m, sb, status, reason);
		manager_mark_dirty(m, sb);
	}
	host_systemd_check_shutdown(m);
}

static void on_op_done(void *userdata, const char *name, BackendOp op, const char *device,
		       int error, const char *message)
{
	Sandbox *sb = manager_sandbox(userdata, name, false);

	if (sb)
		sandbox_op_done(userdata, sb, op, device, error, message);
	host_systemd_check_shutdown(userdata);
}

/*
 * What a kill left in the run dir: write_file_atomic()'s temporaries in the sandboxes'
 * runtime dirs. Removed after READY=1, 2 ms at a time at idle priority: nothing reads them
 * meanwhile, and a sandbox removed before the sweep gets to it removes its own.
 */
static int sweep_slice(sd_event_source *s, void *userdata)
{
	Manager *m = userdata;
	uint64_t start = now_usec(CLOCK_MONOTONIC);
	struct dirent *e;

	while (now_usec(CLOCK_MONOTONIC) - start < SLICE_USEC) {
		e = readdir(m->sweep);
		if (!e) {
			closedir(TAKE_PTR(m->sweep));
			return sd_event_source_set_enabled(s, SD_EVENT_OFF);
		}
		if (e->d_name[0] != '.' && e->d_type != DT_REG && e->d_type != DT_SOCK)
			(void)remove_atomic_temporaries(dirfd(m->sweep), e->d_name);
	}
	return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static void sweep_start(Manager *m)
{
	m->sweep = opendir(m->config.run_dir);
	if (!m->sweep)
		return;
	if (sd_event_add_defer(m->event, &m->sweep_event, sweep_slice, m) < 0) {
		closedir(TAKE_PTR(m->sweep));
		return;
	}
	(void)sd_event_source_set_priority(m->sweep_event, SD_EVENT_PRIORITY_IDLE);
	(void)sd_event_source_set_enabled(m->sweep_event, SD_EVENT_ONESHOT);
}

/* Ask every VMM what it runs; the answers (or their absence) come back as changes. */
static void refresh_vms(Manager *m)
{
	for (int k = 0; k < _BACKEND_KIND_MAX; k++)
		if (m->backends[k] && m->backends[k]->ops->refresh)
			m->backends[k]->ops->refresh(m->backends[k]);
}

static void on_vm_changed(void *userdata, const char *name)
{
	Sandbox *sb = manager_sandbox(userdata, name, false);

	if (sb)
		manager_mark_dirty(userdata, sb);
}

/* Why the directory is not watched (error < 0: it is polled at each resync), or 0: it is. */
static void set_watch_error(Manager *m, int error)
{
	_cleanup_free_ char *why = NULL;
	const char *sysctl = watcher_error_sysctl(error);
	const char *words = error == -EMFILE   ? "the inotify instances are used up"
			    : error == -ENOSPC ? "the inotify watches are used up"
			    : error == -ENFILE ? "the system's open files are used up"
			    : error == -ENOMEM ? "inotify is out of memory"
					       : strerror(-error);

	if (error == 0) {
		if (m->watch_error)
			log_fields(LOG_INFO, &(LogFields){ .message_id = LOG_MESSAGE_DAEMON },
				   "watching %s with inotify again", m->config.sandbox_dir);
		m->watch_error = mfree(m->watch_error);
	} else {
		if (asprintf(&why, "cannot watch %s: %s%s%s%s; reading it every %g s instead",
			     m->config.sandbox_dir, words, sysctl ? " (sysctl " : "", sysctl ?: "",
			     sysctl ? ")" : "", (double)m->config.resync_usec / 1e6) < 0)
			return;
		/* Once, not at every resync's retry. */
		if (!streq_ptr(why, m->watch_error))
			log_fields(LOG_ERR, &(LogFields){ .message_id = LOG_MESSAGE_DAEMON }, "%s",
				   why);
		free(m->watch_error);
		m->watch_error = TAKE_PTR(why);
	}
	if (m->ready)
		manager_notify_status(m);
}

static void on_watch_state(void *userdata, int error)
{
	set_watch_error(userdata, error);
}

static void on_watch(void *userdata, const char *path)
{
	Manager *m = userdata;

	if (path) {
		manager_file_event(m, path);
		return;
	}
	/* The watcher lost track (overflow, directory replaced): read everything again. */
	resync_start(m);
}

static int on_resync(sd_event_source *s, uint64_t usec, void *userdata)
{
	Manager *m = userdata;

	refresh_vms(m);
	/* Without inotify this pass is how changes are seen; inotify is tried again too. */
	if (m->watch_error && m->watcher)
		watcher_retry(m->watcher);
	resync_start(m);
	return sd_event_source_set_time(s, usec + m->config.resync_usec);
}

static int on_sighup(sd_event_source *s _unused_, const struct signalfd_siginfo *si _unused_,
		     void *userdata)
{
	Manager *m = userdata;
	void *v;

	/* vmd approve-deletions left an approval, and signalled: the stops it names go ahead. */
	deletion_guard_approve(m);
	/* vmd wake left a request, and signalled: the sandbox it names wakes. */
	idle_take_wakes(m);
	(void)sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, now_usec(CLOCK_MONOTONIC));
	log_fields(LOG_INFO, &(LogFields){ .message_id = LOG_MESSAGE_DAEMON },
		   "reloading: reading %s again", m->config.sandbox_dir);
	/* What was left alone is tried again now; nothing here waits for any VMM. */
	for (size_t i = 0; hashmap_next(m->sandboxes, &i, &v);) {
		Sandbox *sb = v;

		sb->adopt_retry_at = 0;
		sb->stranger = false;
	}
	/* What the backends learnt of the host once (the VMMs found running) is looked at anew. */
	for (int k = 0; k < _BACKEND_KIND_MAX; k++)
		if (m->backends[k] && m->backends[k]->ops->reload)
			m->backends[k]->ops->reload(m->backends[k]);
	refresh_vms(m);
	read_host_resources(&m->host);
	if (m->watch_error && m->watcher)
		watcher_retry(m->watcher);
	if (m->state_write_error)
		(void)sd_event_source_set_enabled(m->persist_event, SD_EVENT_ONESHOT);
	/*
	 * READY=1 once a pass that starts after this signal is done, not as it starts: as at
	 * startup, it says that every file was read and every sandbox looked at again. The
	 * pass goes in slices meanwhile, and what events ask for is served in between.
	 */
	m->reload_asked = true;
	resync_start(m);
	return 0;
}

static int on_sigterm(sd_event_source *s _unused_, const struct signalfd_siginfo *si _unused_,
		      void *userdata)
{
	(void)sd_notify(false, "STOPPING=1");
	host_systemd_sigterm(userdata);
	return 0;
}

static void on_sigpipe(int sig _unused_)
{
}

/* One vmd per run dir: a lock on <run-dir>/vmd.lock, holding the owner's pid. */
static int take_lock(Manager *m)
{
	_cleanup_free_ char *path = NULL, *pid = NULL;
	_cleanup_close_ int fd = -EBADF;
	char buf[32];
	int n;

	if (asprintf(&path, "%s/vmd.lock", m->config.run_dir) < 0)
		return -ENOMEM;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
	if (fd < 0)
		return log_error_errno(errno, "cannot open %s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK)
			return log_error_errno(errno, "cannot lock %s", path);
		(void)read_file(path, 31, &pid, NULL);
		log_fields(LOG_ERR, &(LogFields){},
			   "another vmd (pid %s) is running with run dir %s; one vmd per run dir",
			   pid ? strtok(pid, "\n") : "unknown", m->config.run_dir);
		return -EBUSY;
	}
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n)
		return log_error_errno(errno, "cannot write %s", path);
	m->lock_fd = TAKE_FD(fd);
	return 0;
}

/* The --run-dir of the vmd that runs as pid, if its command line gives one. */
static char *run_dir_of(pid_t pid)
{
	_cleanup_free_ char **argv = NULL;

	if (pid <= 0 || process_argv(pid, &argv) < 0)
		return NULL;
	for (size_t i = 0; argv[i] && argv[i + 1]; i++)
		if (streq(argv[i], "--run-dir"))
			return strdup(argv[i + 1]);
	return NULL;
}

int manager_lock_sandbox_dir(Manager *m)
{
	const char *dir = m->config.sandbox_dir;
	_cleanup_close_ int fd = -EBADF;
	_cleanup_free_ char *other_run = NULL;
	struct stat now, locked;
	char pid_text[32] = "unknown";
	pid_t pid;

	if (m->sandbox_lock_fd >= 0 && stat(dir, &now) == 0 &&
	    fstat(m->sandbox_lock_fd, &locked) == 0 && now.st_dev == locked.st_dev &&
	    now.st_ino == locked.st_ino)
		return 0; /* the very directory locked already */
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return 0; /* not there (yet): the scan says so; it is locked once it is */
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK) {
			/* A filesystem without locks: the run dir's lock is all there is. */
			log_fields(LOG_WARNING, &(LogFields){ .error = errno },
				   "cannot lock %s; relying on the run dir's lock alone", dir);
			return 0;
		}
		pid = flock_holder(fd);
		if (pid > 0)
			snprintf(pid_text, sizeof(pid_text), "%d", (int)pid);
		other_run = run_dir_of(pid);
		log_fields(LOG_ERR, &(LogFields){},
			   "another vmd (pid %s%s%s) is running on sandbox dir %s; one vmd per sandbox dir",
			   pid_text, other_run ? ", run dir " : "", other_run ?: "", dir);
		return -EBUSY;
	}
	if (m->sandbox_lock_fd >= 0)
		close(m->sandbox_lock_fd);
	m->sandbox_lock_fd = TAKE_FD(fd);
	return 0;
}

int manager_new(const ManagerConfig *config, Manager **ret)
{
	_cleanup_(manager_freep) Manager *m = calloc(1, sizeof(Manager));
	const BackendCallbacks cb = {
		.vm_exited = on_vm_exited,
		.vm_changed = on_vm_changed,
		.op_done = on_op_done,
	};
	_cleanup_free_ char *boot_id = NULL;
	sigset_t mask;
	int r;

	if (!m)
		return -ENOMEM;
	m->config = *config;
	m->lock_fd = m->sandbox_lock_fd = -EBADF;
	m->sandboxes = hashmap_new();
	if (!m->sandboxes)
		return -ENOMEM;

	r = mkdir_p(config->run_dir, 0755);
	if (r < 0)
		return log_error_errno(r, "cannot create %s", config->run_dir);
	if (read_file("/proc/sys/kernel/random/boot_id", 64, &boot_id, NULL) >= 0)
		snprintf(m->boot_id, sizeof(m->boot_id), "%.*s", (int)strcspn(boot_id, "\n"),
			 boot_id);
	r = mkdir_p(config->state_dir, 0700);
	if (r < 0)
		return log_error_errno(r, "cannot create %s", config->state_dir);
	r = take_lock(m);
	if (r < 0)
		return r;
	r = manager_lock_sandbox_dir(m);
	if (r < 0)
		return r;

	/* VMMs that outlive their parent are ours to reap, not init's (which may be slow). */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);

	r = sd_event_new(&m->event);
	if (r < 0)
		return log_error_errno(r, "cannot create the event loop");
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGCHLD);
	(void)sigprocmask(SIG_BLOCK, &mask, NULL);
	/*
	 * A write to a standard error nobody reads any more (the journal's stream, with journald
	 * gone) fails rather than ending vmd. Caught, not ignored: VMMs get the default back.
	 */
	(void)sigaction(SIGPIPE, &(struct sigaction){ .sa_handler = on_sigpipe }, NULL);
	read_host_resources(&m->host);
	if ((r = sd_event_add_signal(m->event, NULL, SIGTERM, on_sigterm, m)) < 0 ||
	    (r = sd_event_add_signal(m->event, NULL, SIGINT, on_sigterm, m)) < 0 ||
	    (r = sd_event_add_signal(m->event, NULL, SIGHUP, on_sighup, m)) < 0)
		return log_error_errno(r, "cannot watch signals");
	(void)sd_event_set_watchdog(m->event, true); /* pings WATCHDOG=1 when systemd asks for it */

	r = sd_event_add_defer(m->event, &m->reconcile_event, reconcile_dirty, m);
	if (r < 0)
		return log_error_errno(r, "cannot set up the event loop");
	(void)sd_event_source_set_enabled(m->reconcile_event, SD_EVENT_OFF);
	r = sd_event_add_defer(m->event, &m->persist_event, write_persisted, m);
	if (r < 0)
		return log_error_errno(r, "cannot set up the event loop");
	(void)sd_event_source_set_priority(m->persist_event, SD_EVENT_PRIORITY_IDLE);
	(void)sd_event_source_set_enabled(m->persist_event, SD_EVENT_OFF);
	r = sd_event_add_defer(m->event, &m->resync_event, resync_slice, m);
	if (r < 0)
		return log_error_errno(r, "cannot set up the event loop");
	(void)sd_event_source_set_priority(m->resync_event, RESYNC_PRIORITY);
	(void)sd_event_source_set_enabled(m->resync_event, SD_EVENT_OFF);
	telemetry_init(m);
	r = deletion_guard_init(m);
	if (r < 0)
		return log_error_errno(r, "cannot set up the event loop");
	r = host_systemd_new(m->event, &m->systemd);
	if (r < 0)
		return log_error_errno(r, "cannot set up the event loop");
	addresses_watch(m);
	r = sd_event_add_time_relative(m->event, &m->resync_timer, CLOCK_MONOTONIC,
				       config->resync_usec, 1000 * 1000, on_resync, m);
	if (r < 0)
		return log_error_errno(r, "cannot set up the resync timer");
	(void)sd_event_source_set_enabled(m->resync_timer, SD_EVENT_ON);

	for (int k = 0; k < _BACKEND_KIND_MAX; k++) {
		BackendCallbacks c = cb;
		BackendOptions o = config->backend_options;

		c.userdata = m;
		o.state_dir = config->state_dir; /* disks/: the copies of the images */
		if (!backend_ops[k])
			continue;
		r = backend_new(k, m->event, config->run_dir, &c, &o, &m->backends[k]);
		if (r < 0)
			return log_error_errno(r, "cannot set up backend %s",
					       backend_kind_to_string(k));
	}
	events_start(m);
	*ret = TAKE_PTR(m);
	return 0;
}

int manager_new_read_only(const ManagerConfig *config, Manager **ret)
{
	_cleanup_(manager_freep) Manager *m = calloc(1, sizeof(Manager));
	int r;

	if (!m)
		return -ENOMEM;
	m->config = *config;
	m->lock_fd = m->sandbox_lock_fd = -EBADF;
	m->read_only = true;
	m->sandboxes = hashmap_new();
	if (!m->sandboxes)
		return -ENOMEM;
	read_host_resources(&m->host);
	for (int k = 0; k < _BACKEND_KIND_MAX; k++) {
		if (!backend_ops[k])
			continue;
		r = backend_new(k, NULL, config->run_dir, NULL, &config->backend_options,
				&m->backends[k]);
		if (r < 0)
			return r;
	}
	*ret = TAKE_PTR(m);
	return 0;
}

Manager *manager_free(Manager *m)
{
	void *v;

	if (!m)
		return NULL;
	events_stop(m);
	watcher_free(m->watcher);
	/* A clean stop leaves every last valid spec written, or tries to: no retry now. */
	m->stopping = true;
	(void)manager_write_persisted(m, UINT64_MAX);
	manager_scan_done(m);
	for (size_t i = 0; hashmap_next(m->sandboxes, &i, &v);)
		sandbox_free(v);
	hashmap_free(m->sandboxes);
	prioq_free(m->failing);
	manager_free_ignored(m);
	for (int k = 0; k < _BACKEND_KIND_MAX; k++)
		backend_free(m->backends[k]);
	sd_event_source_disable_unref(m->reconcile_event);
	sd_event_source_disable_unref(m->persist_event);
	sd_event_source_disable_unref(m->persist_retry);
	sd_event_source_disable_unref(m->resync_event);
	sd_event_source_disable_unref(m->resync_timer);
	deletion_guard_done(m);
	host_systemd_free(m->systemd);
	telemetry_done(m);
	hashmap_free(m->ports);
	ordering_done(m);
	addresses_done(m);
	sd_event_source_disable_unref(m->sweep_event);
	if (m->sweep)
		closedir(m->sweep);
	sd_event_unref(m->event);
	if (m->lock_fd >= 0)
		close(m->lock_fd);
	if (m->sandbox_lock_fd >= 0)
		close(m->sandbox_lock_fd);
	free(m->degraded);
	free(m->watch_error);
	free(m->state_write_error);
	free(m->notified_status);
	return mfree(m);
}

/*
 * What runs already: every VM a backend has runtime state for becomes a sandbox. Those
 * that run are adopted when they are reconciled, before anything else is done to them,
 * once the backend proved they are its own. Never restarted.
 */
void manager_find_vms(Manager *m)
{
	for (int k = 0; k < _BACKEND_KIND_MAX; k++) {
		Backend *b = m->backends[k];
		char **names = NULL;
		size_t n = 0;

		if (!b || !b->ops->list || b->ops->list(b, &names, &n) < 0)
			continue;
		for (size_t i = 0; i < n; i++) {
			Sandbox *sb = manager_sandbox(m, names[i], true);

			free(names[i]);
			if (!sb)
				continue;
			sb->vm_backend = k;
			sandbox_observe(m, sb);
		}
		free(names);
	}
}

int manager_run(Manager *m)
{
	int r;

	manager_find_vms(m);
	manager_load_persisted(m);
	manager_load_snapshots(m);
	manager_load_templates(m);
	if (manager_scan(m) == -EBUSY)
		return -EBUSY;
	mark_all_dirty(m);
	reconcile_dirty(NULL, m);

	/* Without inotify (its limits reached), the resync timer polls: Degraded, WatchUnavailable. */
	r = watcher_new(m->config.sandbox_dir, on_watch, on_watch_state, m, m->event, &m->watcher);
	set_watch_error(m, r < 0 ? r : watcher_error(m->watcher));
	/* A change between the first scan and the watch being set up is not missed. */
	if (manager_scan(m) == -EBUSY)
		return -EBUSY;
	reconcile_dirty(NULL, m);
	deletion_guard_pass_done(m);

	m->ready = true;
	manager_notify_ready(m);
	sweep_start(m);
	log_fields(LOG_INFO, &(LogFields){ .message_id = LOG_MESSAGE_DAEMON },
		   "ready: %zu sandboxes from %s", hashmap_size(m->sandboxes), m->config.sandbox_dir);

	r = sd_event_loop(m->event);
	if (r == -EBUSY)
		return r; /* another vmd took the sandbox directory, and was said to */
	if (r < 0)
		return log_error_errno(r, "event loop failed");
	return 0;
}
