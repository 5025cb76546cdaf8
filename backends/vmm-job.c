/* SPDX-License-Identifier: MIT */
/*
 * Every operation on a VM is a job (vmm-vm.h): one phase at a time, one timer for the
 * phase's deadline (or its next poll), the phase's requests one after the other over the
 * VMM's API, and one completion. The backend says what to send in each phase (build) and
 * what a reply means; this file owns the control flow, the deadlines and the transports;
 * vmm-job-end.c what a job that ends does to the VM's record, and vmm-job-report.c how a
 * job is shown. Nothing here waits: a request is sent (vmm-api.c) and its reply comes back
 * through the event loop.
 *
 * The phases of each job:
 *   start    [image ->] files -> spawn -> api-up -> configure -> boot; a failure or a
 *            deadline: kill, and the start fails once the VMM is gone; image (the copies
 *            of the disks' images, before any VMM runs: vmm-image.c) and files (what the
 *            VMM gets, opened by a worker: vmm-boot.c) fail the start at once
 *   adopt    identity -> handshake -> observe
 *   stop     graceful -> shutdown (until stopTimeout) -> quit (VMM_KILL_GRACE_USEC) -> kill;
 *            done when the VMM is gone
 *   remove   request -> release (until the guest lets go) -> cleanup
 *   add      [files ->] request; a failure: rollback; files (the VMM user's access to a
 *            disk the VMM opens by path) fails the job
 *   pause, resume, resize: request.   observe (refresh): observe.
 *   suspend  freeze -> save -> saving -> quit (VMM_KILL_GRACE_USEC) -> kill; done when the
 *            VMM is gone; a failure or a deadline before quit: thaw, and it fails
 *   restore  [image ->] files -> spawn -> api-up -> load -> loading -> boot; fails as a
 *            start
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "provision.h"
#include "snapshot.h"
#include "util.h"
#include "vmm-vm.h"

#define VMM_KILL_WAIT_USEC (10ull * 1000000)  /* SIGKILL to gone, before saying so again */
#define VMM_API_POLL_FAST_USEC 2000	      /* a starting VMM: look again this soon */
#define VMM_API_POLL_SLOW_USEC (20ull * 1000) /* ... once it has taken a while */
#define VMM_API_POLL_FAST_FOR_USEC (1ull * 1000000)
#define VMM_TIMER_ACCURACY_USEC 1000

const char *const vmm_phase_table[_VMM_PHASE_MAX] = {
	[VMM_PHASE_NONE] = "none",	     [VMM_PHASE_IMAGE] = "image",
	[VMM_PHASE_SPAWN] = "spawn",	     [VMM_PHASE_API_UP] = "api-up",
	[VMM_PHASE_CONFIGURE] = "configure", [VMM_PHASE_BOOT] = "boot",
	[VMM_PHASE_IDENTITY] = "identity",   [VMM_PHASE_HANDSHAKE] = "handshake",
	[VMM_PHASE_OBSERVE] = "observe",     [VMM_PHASE_GRACEFUL] = "graceful",
	[VMM_PHASE_SHUTDOWN] = "shutdown",   [VMM_PHASE_QUIT] = "quit",
	[VMM_PHASE_KILL] = "kill",	     [VMM_PHASE_REQUEST] = "request",
	[VMM_PHASE_RELEASE] = "release",     [VMM_PHASE_CLEANUP] = "cleanup",
	[VMM_PHASE_ROLLBACK] = "rollback",   [VMM_PHASE_FREEZE] = "freeze",
	[VMM_PHASE_SAVE] = "save",	     [VMM_PHASE_SAVING] = "saving",
	[VMM_PHASE_THAW] = "thaw",	     [VMM_PHASE_LOAD] = "load",
	[VMM_PHASE_LOADING] = "loading",     [VMM_PHASE_FILES] = "files",
};

static void run_phase(VmmVm *v, VmmJob *j);
static void enter(VmmVm *v, VmmJob *j, VmmPhase phase);
static void send_next(VmmVm *v, VmmJob *j);

/* Phases that, their requests sent, wait: for the exit, the guest, or their deadline. */
static bool phase_waits(VmmPhase p)
{
	return IN_SET(p, VMM_PHASE_SHUTDOWN, VMM_PHASE_QUIT, VMM_PHASE_KILL, VMM_PHASE_RELEASE);
}

/* What follows phase p of a job of type t when p has done its work; NONE: the job is done. */
static VmmPhase next_phase(BackendOp t, VmmPhase p)
{
	switch (p) {
	case VMM_PHASE_IMAGE:
		return VMM_PHASE_FILES;
	case VMM_PHASE_FILES:
		return IN_SET(t, BACKEND_OP_START, BACKEND_OP_RESTORE) ? VMM_PHASE_SPAWN
								       : VMM_PHASE_REQUEST;
	case VMM_PHASE_SPAWN:
		return VMM_PHASE_API_UP;
	case VMM_PHASE_API_UP:
		return t == BACKEND_OP_RESTORE ? VMM_PHASE_LOAD : VMM_PHASE_CONFIGURE;
	case VMM_PHASE_LOAD:
		return VMM_PHASE_LOADING;
	case VMM_PHASE_LOADING:
		return VMM_PHASE_BOOT;
	case VMM_PHASE_FREEZE:
		return VMM_PHASE_SAVE;
	case VMM_PHASE_SAVE:
		return VMM_PHASE_SAVING;
	case VMM_PHASE_SAVING:
		return VMM_PHASE_QUIT;
	case VMM_PHASE_CONFIGURE:
		return VMM_PHASE_BOOT;
	case VMM_PHASE_IDENTITY:
		return VMM_PHASE_HANDSHAKE;
	case VMM_PHASE_HANDSHAKE:
		return VMM_PHASE_OBSERVE;
	case VMM_PHASE_GRACEFUL:
		return VMM_PHASE_SHUTDOWN;
	case VMM_PHASE_REQUEST:
		return IN_SET(t, BACKEND_OP_DISK_REMOVE, BACKEND_OP_NET_REMOVE) ? VMM_PHASE_RELEASE
										: VMM_PHASE_NONE;
	case VMM_PHASE_RELEASE:
		return VMM_PHASE_CLEANUP;
	default:
		return VMM_PHASE_NONE; /* boot, observe, cleanup, rollback; the stop's last phases */
	}
}

static uint64_t phase_timeout(const VmmJob *j, VmmPhase p, uint64_t now)
{
	switch (p) {
	case VMM_PHASE_IMAGE:
		return VMM_IMAGE_TIMEOUT_USEC;
	case VMM_PHASE_FILES:
		return VMM_FILES_TIMEOUT_USEC;
	case VMM_PHASE_API_UP:
		return VMM_START_TIMEOUT_USEC;
	case VMM_PHASE_GRACEFUL:
	case VMM_PHASE_SHUTDOWN:
		return j->stop_deadline > now ? j->stop_deadline - now : 0;
	case VMM_PHASE_QUIT:
		return VMM_KILL_GRACE_USEC;
	case VMM_PHASE_KILL:
		return VMM_KILL_WAIT_USEC;
	case VMM_PHASE_RELEASE:
		return VMM_RELEASE_TIMEOUT_USEC;
	case VMM_PHASE_SAVE:
	case VMM_PHASE_SAVING:
	case VMM_PHASE_LOAD:
	case VMM_PHASE_LOADING:
		return VMM_SAVE_TIMEOUT_USEC;
	default:
		return VMM_REQUEST_TIMEOUT_USEC;
	}
}

/* Requests */

int vmm_request_add(VmmRequests *rq, const char *method, json_t *body,
		    int (*reply)(VmmVm *v, VmmJob *j, const VmmReply *r), const char *path_fmt, ...)
{
	_cleanup_(json_decrefp) json_t *b = body;
	VmmRequest *req;
	va_list ap;
	int r;

	if (rq->n >= VMM_REQUESTS_MAX)
		return -E2BIG;
	req = &rq->items[rq->n];
	*req = (VmmRequest){ .method = method, .reply = reply };
	va_start(ap, path_fmt);
	r = vasprintf(&req->path, path_fmt, ap);
	va_end(ap);
	if (r < 0) {
		req->path = NULL;
		return -ENOMEM;
	}
	req->body = TAKE_PTR(b);
	rq->n++;
	return 0;
}

int vmm_request_pass_fd(VmmRequests *rq, int fd)
{
	VmmRequest *req = rq->n > 0 ? &rq->items[rq->n - 1] : NULL;

	if (!req || req->has_fd) {
		close(fd);
		return -EINVAL;
	}
	req->fd = fd;
	req->has_fd = true;
	return 0;
}

static void requests_clear(VmmRequests *rq)
{
	for (size_t i = 0; i < rq->n; i++) {
		free(rq->items[i].path);
		json_decref(rq->items[i].body);
		if (rq->items[i].has_fd)
			close(rq->items[i].fd);
	}
	*rq = (VmmRequests){};
}

/* What a request is called in messages: "vm.boot" for /api/v1/vm.boot, "PUT /drives/a", "cont". */
static char *request_name(const VmmRequest *req)
{
	static const char api[] = "/api/v1/";
	char *s = NULL;

	if (!req->method)
		return strdup(req->path);
	if (strncmp(req->path, api, strlen(api)) == 0)
		return strdup(req->path + strlen(api));
	return asprintf(&s, "%s %s", req->method, req->path) < 0 ? NULL : s;
}

void vmm_job_fail_message(VmmJob *j, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_vformat(&j->message, fmt, ap);
	va_end(ap);
}

/* The flow of a job */

/* What the reply to the request at hand means for the phase. */
static int interpret(VmmVm *v, VmmJob *j, const VmmReply *r)
{
	const VmmRequest *req = &j->requests.items[j->next];
	int verdict;

	/*
	 * A starting VMM that does not listen yet, or not quite, is only not up yet: asked
	 * again until it answers, exits (its own words say why) or runs out of time.
	 */
	if (j->phase == VMM_PHASE_API_UP && r->error < 0 && !r->answered)
		return VMM_AGAIN;
	verdict = req->reply ? req->reply(v, j, r) : r->error < 0 ? r->error : VMM_NEXT;
	/* Undoing and cleaning up do what they can. */
	if (verdict < 0 && (req->best_effort ||
			    IN_SET(j->phase, VMM_PHASE_ROLLBACK, VMM_PHASE_CLEANUP, VMM_PHASE_THAW)))
		return VMM_NEXT;
	if (verdict < 0 && !j->message) {
		_cleanup_free_ char *what = request_name(req);

		vmm_job_fail_message(j, "%s: %s", what ?: "request",
				     r->message ?: strerror(-verdict));
	}
	return verdict;
}

static void phase_failed(VmmVm *v, VmmJob *j, int error);
static void phase_over(VmmVm *v, VmmJob *j);

static int timer_fired(sd_event_source *s, uint64_t usec, void *userdata);

static void arm_timer(VmmVm *v, VmmJob *j, uint64_t at)
{
	j->timer = sd_event_source_disable_unref(j->timer);
	if (sd_event_add_time(v->b->event, &j->timer, CLOCK_MONOTONIC, MIN(at, j->deadline),
			      VMM_TIMER_ACCURACY_USEC, timer_fired, j) < 0)
		j->timer = NULL; /* the job then waits on its exit or its replies alone */
}

/* Ask again later: the poll of a phase that waits, a VMM not listening yet. */
static void poll_later(VmmVm *v, VmmJob *j)
{
	uint64_t now = now_usec(CLOCK_MONOTONIC), every = j->requests.poll_usec;

	if (j->phase == VMM_PHASE_API_UP)
		every = now - j->phase_since < VMM_API_POLL_FAST_FOR_USEC ? VMM_API_POLL_FAST_USEC
									  : VMM_API_POLL_SLOW_USEC;
	j->attempts++;
	j->next = j->requests.n; /* nothing in flight until the poll */
	arm_timer(v, j, now + every);
}

static void conclude(VmmVm *v, VmmJob *j, int verdict)
{
	switch (verdict) {
	case VMM_SKIP:
		phase_over(v, j);
		return;
	case VMM_AGAIN:
		poll_later(v, j);
		return;
	case VMM_FINISH:
		vmm_job_complete(v, j, 0, NULL);
		return;
	default:
		phase_failed(v, j, verdict);
	}
}

void vmm_job_reply(VmmJob *j, const VmmReply *r)
{
	VmmVm *v = j->vm;

	int verdict;

	if (!j->in_flight)
		return;
	j->in_flight = false;
	j->http = NULL;
	j->http_fds = NULL;
	if (r->answered)
		vmm_api_heard(v); /* an answer, even a refusal, is a VMM that answers */
	verdict = interpret(v, j, r);
	if (verdict == VMM_NEXT) {
		j->next++;
		send_next(v, j);
	} else
		conclude(v, j, verdict);
}

/* Every request of the phase has had its answer. */
static void requests_done(VmmVm *v, VmmJob *j)
{
	if (!phase_waits(j->phase) || j->early_done) {
		j->early_done = false;
		phase_over(v, j);
		return;
	}
	/* A VMM that cannot be asked to quit (no request for it) is killed at once. */
	if (j->phase == VMM_PHASE_QUIT && j->requests.n == 0) {
		enter(v, j, VMM_PHASE_KILL);
		return;
	}
	if (j->requests.poll_usec)
		poll_later(v, j);
}

static void send_next(VmmVm *v, VmmJob *j)
{
	while (j->next < j->requests.n) {
		int r = vmm_api_send(v, j, &j->requests.items[j->next]), verdict;

		if (r >= 0) {
			j->in_flight = true;
			return;
		}
		/* Not even sent: that is its answer. */
		verdict = interpret(v, j, &(VmmReply){ .error = r });
		if (verdict != VMM_NEXT) {
			conclude(v, j, verdict);
			return;
		}
		j->next++;
	}
	requests_done(v, j);
}

/* The phase's requests, built anew (a poll asks again with what the VM is now). */
static void run_phase(VmmVm *v, VmmJob *j)
{
	int r;

	requests_clear(&j->requests);
	j->next = 0;
	r = v->type->build(v, j, &j->requests);
	if (r < 0) {
		phase_failed(v, j, r);
		return;
	}
	send_next(v, j);
}

void vmm_job_log(VmmVm *v, int priority, const char *result, int error, const char *fmt, ...)
{
	_cleanup_free_ char *m = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	log_fields(priority,
		   &(LogFields){ .sandbox = v->name,
				 .backend = v->type->vmm,
				 .result = result,
				 .error = error < 0 ? -error : error,
				 .message_id = streq_ptr(result, "exited") ? LOG_MESSAGE_VM_EXITED
									   : LOG_MESSAGE_VMM },
		   "%s", m ?: "out of memory");
}

void vmm_job_enter(VmmVm *v, VmmJob *j, VmmPhase phase)
{
	enter(v, j, phase);
}

/*
 * A start that cannot make its disks (or spawn its VMM after them) fails now: no VMM runs
 * for it yet. The VM is exited, without a record, as a start that never got through.
 */
static void image_failed(VmmVm *v, VmmJob *j, int error)
{
	_cleanup_free_ char *m = NULL;

	if (!j->message && (m = v->b->error ? strdup(v->b->error) : NULL))
		vmm_job_fail_message(j, "%s", m);
	vmm_job_log(v, LOG_ERR, "failed", error, "cannot start the VM: %s",
		    j->message ?: strerror(-error));
	v->state = VM_EXITED;
	v->exit_status = -1;
	vmm_job_complete(v, j, error, j->message ?: strerror(-error));
}

static void image_step(VmmVm *v, VmmJob *j, bool worker_done)
{
	int r = vmm_image_step(v, j, worker_done);

	if (r < 0)
		image_failed(v, j, r);
	else if (r == 0)
		phase_over(v, j);
	else
		vmm_vm_changed(v); /* the status says which disk */
}

void vmm_job_image_done(VmmVm *v, VmmJob *j, int error)
{
	_cleanup_free_ char *log = NULL, *text = NULL;
	char *line;

	if (error >= 0) {
		image_step(v, j, true);
		return;
	}
	/* In the worker's words: the last line of image.log. */
	log = vmm_vm_path(v->b, v->name, VMM_IMAGE_LOG);
	if (log && read_file(log, 64 * 1024, &text, NULL) >= 0) {
		while (*text && text[strlen(text) - 1] == '\n')
			text[strlen(text) - 1] = '\0';
		line = strrchr(text, '\n');
		vmm_job_fail_message(j, "disk '%s': %s", v->config->disks[j->image.disk].id,
				     line ? line + 1 : text);
	}
	vmm_image_abort(j);
	image_failed(v, j, error);
}

/* A files phase that failed: a start fails as at its images; any other job fails. */
static void files_failed(VmmVm *v, VmmJob *j, int error)
{
	vmm_files_free(j);
	if (!IN_SET(j->type, BACKEND_OP_START, BACKEND_OP_RESTORE)) {
		vmm_job_complete(v, j, error, j->message);
		return;
	}
	(void)provision_remove(v->dir);
	image_failed(v, j, error);
}

void vmm_job_files_done(VmmVm *v, VmmJob *j, int error)
{
	if (error < 0)
		files_failed(v, j, error);
	else
		phase_over(v, j);
}

static void files_step(VmmVm *v, VmmJob *j)
{
	int r = vmm_files_begin(v, j);

	if (r < 0)
		files_failed(v, j, r);
	else if (r == 0)
		phase_over(v, j);
}

static void enter(VmmVm *v, VmmJob *j, VmmPhase phase)
{
	uint64_t now = now_usec(CLOCK_MONOTONIC);

	vmm_api_cancel(v, j);
	j->phase = phase;
	j->phase_since = now;
	j->attempts = 0;
	j->deadline = now + phase_timeout(j, phase, now);
	arm_timer(v, j, j->deadline);
	if (j != &v->observe)
		vmm_vm_changed(v); /* the status says which phase it is in */
	if (phase == VMM_PHASE_KILL) {
		(void)vmm_kill(v->pidfd, SIGKILL);
		requests_clear(&j->requests);
		return; /* the pidfd tells when it is gone */
	}
	requests_clear(&j->requests);
	if (phase == VMM_PHASE_IMAGE) {
		image_step(v, j, false);
		return;
	}
	if (phase == VMM_PHASE_FILES) {
		files_step(v, j);
		return;
	}
	if (phase == VMM_PHASE_SPAWN && j->image.spawn) {
		int r;

		j->image.spawn = false;
		r = vmm_vm_launch(v);
		if (r < 0) {
			image_failed(v, j, r);
			return;
		}
	}
	if (IN_SET(phase, VMM_PHASE_SPAWN, VMM_PHASE_IDENTITY)) {
		phase_over(v, j); /* done by whoever began the job */
		return;
	}
	if (phase == VMM_PHASE_SHUTDOWN)
		return; /* the exit, or the deadline */
	run_phase(v, j);
}

int vmm_job_begin(VmmVm *v, VmmJob *j, BackendOp type, VmmPhase phase)
{
	if (j->type != BACKEND_OP_NONE)
		return -EBUSY;
	j->vm = v;
	j->type = type;
	j->phase = phase;
	j->phase_since = now_usec(CLOCK_MONOTONIC);
	j->deadline = j->phase_since + phase_timeout(j, phase, j->phase_since);
	j->error = 0;
	j->message = mfree(j->message);
	/* A job that changes the VM makes what an observe in flight reads stale. */
	if (j != &v->observe && v->observe.type != BACKEND_OP_NONE)
		vmm_job_complete(v, &v->observe, -ECANCELED, NULL);
	/*
	 * Its first phase runs from the loop: whatever happens, the daemon hears of it after
	 * the call that began it has returned, never from inside.
	 */
	j->kick = true;
	arm_timer(v, j, j->phase_since);
	return 0;
}

/* The child that marks a save complete is done: reaped. */
static int on_marked(sd_event_source *s _unused_, int fd, uint32_t revents _unused_, void *userdata)
{
	VmmVm *v = userdata;
	int status = -1;

	if (vmm_reap(fd, &status) == 0)
		return 0; /* not yet */
	v->mark_source = sd_event_source_disable_unref(v->mark_source);
	return 0;
}

/*
 * The save is complete, its VMM about to be ended: said in the dir (snapshot.h), so that
 * a vmd killed before it hears of the exit commits the save at its next start. The marker
 * goes only once the state itself is on disk (a power loss between the two must not
 * commit a torn save): a child syncs the tree, then writes the marker synced, while the
 * loop goes on. Without a loop, or a child, there is no marker: the daemon's commit syncs.
 */
static void mark_saved(VmmVm *v, const VmmJob *j)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_close_ int pidfd = -EBADF;
	pid_t pid;
	int r;

	if (!v->b->event || asprintf(&path, "%s/" SNAPSHOT_COMPLETE, j->snapshot_dir) < 0)
		return;
	v->mark_source = sd_event_source_disable_unref(v->mark_source);
	pid = fork();
	if (pid == 0)
		_exit(snapshot_sync(j->snapshot_dir) < 0 ||
				      write_file_atomic(path, "", 0, 0600, true) < 0
			      ? 1
			      : 0);
	r = pid < 0 ? -errno : (pidfd = vmm_pidfd_open(pid));
	if (r >= 0)
		r = sd_event_add_io(v->b->event, &v->mark_source, pidfd, EPOLLIN, on_marked, v);
	if (r < 0) {
		if (pid > 0)
			(void)waitpid(pid, NULL, 0);
		vmm_job_log(
			v, LOG_WARNING, NULL, r,
			"cannot mark the save in %s complete; a vmd killed before the exit of %s loses it",
			j->snapshot_dir, v->type->display);
		return;
	}
	(void)sd_event_source_set_io_fd_own(v->mark_source, true);
	TAKE_FD(pidfd);
}

static void phase_over(VmmVm *v, VmmJob *j)
{
	VmmPhase next = next_phase(j->type, j->phase);

	if (IN_SET(j->type, BACKEND_OP_STOP, BACKEND_OP_SUSPEND) && j->phase == VMM_PHASE_QUIT)
		return; /* asked to quit: the exit, or the deadline, ends it */
	if (j->type == BACKEND_OP_SUSPEND && next == VMM_PHASE_QUIT) {
		/* Its state is complete on disk: the VMM's exit is what was asked for. */
		v->stop_requested = true;
		(void)vmm_vm_save(v);
		mark_saved(v, j);
	}
	if (next == VMM_PHASE_NONE) {
		vmm_job_complete(v, j, j->error, j->error < 0 ? j->message : NULL);
		return;
	}
	enter(v, j, next);
}

void vmm_job_phase_done(VmmVm *v, VmmJob *j)
{
	if (j->type == BACKEND_OP_NONE)
		return;
	if (!phase_waits(j->phase) || j->in_flight || j->kick) {
		j->early_done = true; /* before its time: the waiting phase ends as it begins */
		return;
	}
	phase_over(v, j);
}

/* A start that cannot go on: kill what was started; the start fails once it is gone. */
static void give_up_start(VmmVm *v, VmmJob *j, int error)
{
	j->error = error;
	vmm_job_log(v, LOG_ERR, "killed", error, "%s did not start the VM: %s; killing it",
		    v->type->display, j->message ?: strerror(-error));
	enter(v, j, VMM_PHASE_KILL);
}

/* A save that cannot go on: the guest runs again as it ran, and the suspend fails. */
static void give_up_save(VmmVm *v, VmmJob *j, int error)
{
	j->error = error;
	vmm_job_log(v, LOG_ERR, "failed", error, "%s did not save the VM: %s; %s", v->type->display,
		    j->message ?: strerror(-error),
		    j->was_paused ? "it stays paused" : "resuming it");
	enter(v, j, VMM_PHASE_THAW);
}

static void phase_failed(VmmVm *v, VmmJob *j, int error)
{
	if (IN_SET(j->type, BACKEND_OP_START, BACKEND_OP_RESTORE) && j->phase != VMM_PHASE_KILL) {
		give_up_start(v, j, error);
		return;
	}
	if (j->type == BACKEND_OP_SUSPEND &&
	    IN_SET(j->phase, VMM_PHASE_FREEZE, VMM_PHASE_SAVE, VMM_PHASE_SAVING)) {
		give_up_save(v, j, error);
		return;
	}
	if (j->type == BACKEND_OP_SUSPEND && j->phase == VMM_PHASE_QUIT) {
		enter(v, j, VMM_PHASE_KILL); /* saved: it cannot be asked to quit, so it is killed */
		return;
	}
	if (j->type == BACKEND_OP_STOP) {
		/* The VMM could not be asked: on to the next, harder way. */
		if (j->phase == VMM_PHASE_GRACEFUL) {
			vmm_job_log(v, LOG_WARNING, "forced", error,
				    "cannot ask the guest to shut down (%s); forcing it off",
				    j->message ?: strerror(-error));
			enter(v, j, VMM_PHASE_QUIT);
		} else
			enter(v, j, VMM_PHASE_KILL);
		return;
	}
	if (IN_SET(j->type, BACKEND_OP_DISK_ADD, BACKEND_OP_NET_ADD) &&
	    j->phase == VMM_PHASE_REQUEST) {
		j->error = error;
		j->undo = j->next; /* those before the one that failed went through */
		enter(v, j, VMM_PHASE_ROLLBACK);
		return;
	}
	vmm_job_complete(v, j, error, j->message);
}

static void became_unresponsive(VmmVm *v, const VmmJob *j)
{
	const VmmRequest *req = j->next < j->requests.n ? &j->requests.items[j->next] : NULL;
	_cleanup_free_ char *what = req ? request_name(req) : NULL;
	char *m = NULL;

	if (v->unresponsive)
		return;
	if (asprintf(&m, "%s pid %d did not answer %s within %" PRIu64 " s", v->type->display,
		     (int)v->id.pid, what ?: "its API", (j->deadline - j->phase_since) / 1000000) < 0)
		return;
	v->unresponsive = m;
	vmm_job_log(v, LOG_WARNING, "unresponsive", ETIMEDOUT, "%s; serving the other sandboxes", m);
	vmm_vm_changed(v);
}

/* The phase's deadline passed. */
static void timed_out(VmmVm *v, VmmJob *j)
{
	if (j->in_flight)
		became_unresponsive(v, j);
	vmm_api_cancel(v, j);
	if (j->phase == VMM_PHASE_FILES) {
		vmm_job_fail_message(j, "the files %s gets were not ready within %llu s",
				     v->type->display, VMM_FILES_TIMEOUT_USEC / 1000000);
		files_failed(v, j, -ETIMEDOUT);
		return;
	}
	switch (j->type) {
	case BACKEND_OP_START:
	case BACKEND_OP_RESTORE:
		if (j->phase == VMM_PHASE_KILL)
			break;
		if (j->phase == VMM_PHASE_IMAGE) {
			vmm_job_fail_message(
				j, "the disks' copies of their images were not made within %llu s",
				VMM_IMAGE_TIMEOUT_USEC / 1000000);
			vmm_image_abort(j);
			image_failed(v, j, -ETIMEDOUT);
			return;
		}
		vmm_job_fail_message(j, "%s did not answer within %" PRIu64 " s", v->type->display,
				     (j->deadline - j->phase_since) / 1000000);
		give_up_start(v, j, -ETIMEDOUT);
		return;
	case BACKEND_OP_STOP:
		if (IN_SET(j->phase, VMM_PHASE_GRACEFUL, VMM_PHASE_SHUTDOWN)) {
			log_fields(LOG_WARNING,
				   &(LogFields){ .sandbox = v->name,
						 .backend = v->type->vmm,
						 .action = "stop",
						 .result = "forced",
						 .message_id = LOG_MESSAGE_VMM },
				   "did not stop within its stopTimeout; forcing it off");
			enter(v, j, VMM_PHASE_QUIT);
			return;
		}
		if (j->phase == VMM_PHASE_QUIT) {
			vmm_job_log(v, LOG_WARNING, "killed", 0, "%s did not quit; sending SIGKILL",
				    v->type->display);
			enter(v, j, VMM_PHASE_KILL);
			return;
		}
		break;
	case BACKEND_OP_SUSPEND:
		if (j->phase == VMM_PHASE_QUIT) {
			vmm_job_log(v, LOG_WARNING, "killed", 0,
				    "%s did not quit after the save; sending SIGKILL",
				    v->type->display);
			enter(v, j, VMM_PHASE_KILL);
			return;
		}
		break;
	case BACKEND_OP_DISK_REMOVE:
	case BACKEND_OP_NET_REMOVE:
		if (j->phase == VMM_PHASE_RELEASE) {
			vmm_job_complete(
				v, j, -ETIMEDOUT,
				"the guest did not release the device in time (is it paused, or not booted far enough to handle hot-unplug?)");
			return;
		}
		break;
	default:
		break;
	}
	if (j->phase == VMM_PHASE_KILL) {
		/* Still there after SIGKILL (in the kernel's hands): say so, and keep waiting. */
		vmm_job_log(v, LOG_ERR, "killed", 0, "%s pid %d has not exited %llu s after SIGKILL",
			    v->type->display, (int)v->id.pid, VMM_KILL_WAIT_USEC / 1000000);
		(void)vmm_kill(v->pidfd, SIGKILL);
		j->deadline = now_usec(CLOCK_MONOTONIC) + VMM_KILL_WAIT_USEC;
		arm_timer(v, j, j->deadline);
		return;
	}
	if (!j->message)
		vmm_job_fail_message(j, "%s did not answer within %" PRIu64 " s", v->type->display,
				     (j->deadline - j->phase_since) / 1000000);
	phase_failed(v, j, -ETIMEDOUT);
}

static int timer_fired(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	VmmJob *j = userdata;
	VmmVm *v = j->vm;

	j->timer = sd_event_source_disable_unref(j->timer);
	if (j->kick) {
		j->kick = false;
		enter(v, j, j->phase);
		return 0;
	}
	if (now_usec(CLOCK_MONOTONIC) + VMM_TIMER_ACCURACY_USEC < j->deadline) {
		/* A poll, not the deadline: the timer of the deadline comes back after it. */
		arm_timer(v, j, j->deadline);
		run_phase(v, j);
		return 0;
	}
	timed_out(v, j);
	return 0;
}

void vmm_job_free(VmmJob *j)
{
	vmm_image_abort(j);
	vmm_files_free(j);
	j->timer = sd_event_source_disable_unref(j->timer);
	if (j->http)
		http_request_cancel(TAKE_PTR(j->http));
	requests_clear(&j->requests);
	free(j->disk.path);
	free(j->disk.image);
	free(j->message);
	free(j->snapshot_dir);
	*j = (VmmJob){ .vm = j->vm };
}
