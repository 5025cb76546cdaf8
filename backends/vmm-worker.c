/* SPDX-License-Identifier: MIT */
/* Workers: children of vmd that do what may wait, for the loop (vmm-worker.h). */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"
#include "vmm-worker.h"
#include "vmm.h"

bool vmm_worker_running(const VmmWorker *w)
{
	return w->running;
}

static void close_sock(VmmWorker *w)
{
	w->sock_source = sd_event_source_disable_unref(w->sock_source);
	if (w->has_sock)
		close(w->sock);
	w->has_sock = false;
	w->sock = -EBADF;
}

/* What the worker sent so far, to the caller. */
static void drain(VmmWorker *w)
{
	while (w->has_sock) {
		VmmWorkerRecord rec;
		char control[CMSG_SPACE(sizeof(int))] = {};
		struct iovec iov = { .iov_base = &rec, .iov_len = sizeof(rec) };
		struct msghdr mh = { .msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = control,
				     .msg_controllen = sizeof(control) };
		struct cmsghdr *c;
		int fd = -EBADF;
		ssize_t n = recvmsg(w->sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0) {
			close_sock(w); /* its end is closed: all of it is read */
			return;
		}
		if (n < 0)
			return; /* nothing more now */
		c = CMSG_FIRSTHDR(&mh);
		if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(c), sizeof(int));
		if ((size_t)n != sizeof(rec) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
			if (fd >= 0)
				close(fd);
			continue; /* not one of ours */
		}
		rec.message[sizeof(rec.message) - 1] = '\0';
		w->received(w, &rec, fd, w->userdata);
	}
}

static int on_sock(sd_event_source *s _unused_, int fd _unused_, uint32_t revents _unused_,
		   void *userdata)
{
	drain(userdata);
	return 0;
}

static int on_worker_exit(sd_event_source *s _unused_, int fd _unused_, uint32_t revents _unused_,
			  void *userdata)
{
	VmmWorker *w = userdata;
	int status = -1, r = vmm_reap(w->pidfd, &status);

	if (r == 0)
		return 0; /* not yet */
	w->exit_source = sd_event_source_disable_unref(w->exit_source);
	w->pidfd = (close(w->pidfd), -EBADF);
	w->running = false;
	/* What it sent before it exited is all there: read before its exit is told. */
	drain(w);
	close_sock(w);
	w->exited(w, r < 0 ? -1 : status, w->userdata);
	return 0;
}

_Noreturn static void child(int (*run)(void *arg, int sock), void *arg, int sock, pid_t parent)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigset_t none;

	/* A worker never outlives the vmd that waits for it: the next start redoes its work. */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	for (int s = 1; s < NSIG; s++)
		(void)sigaction(s, &dfl, NULL);
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	_exit(run(arg, sock) & 0xff);
}

int vmm_worker_start(VmmWorker *w, sd_event *e, int (*run)(void *arg, int sock), void *arg,
		     VmmWorkerReceived received, VmmWorkerExited exited, void *userdata)
{
	_cleanup_close_ int theirs = -EBADF, pidfd = -EBADF;
	pid_t parent = getpid(), pid;
	int pair[2], r;

	*w = (VmmWorker){ .pidfd = -EBADF, .sock = -EBADF };
	if (received) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
			return -errno;
		w->sock = pair[0];
		w->has_sock = true;
		theirs = pair[1];
	}
	pid = fork();
	if (pid < 0) {
		r = -errno;
		close_sock(w);
		return r;
	}
	if (pid == 0) {
		if (w->has_sock)
			close(w->sock);
		child(run, arg, theirs, parent);
	}
	pidfd = vmm_pidfd_open(pid);
	if (pidfd < 0) {
		(void)kill(pid, SIGKILL);
		(void)waitpid(pid, NULL, 0);
		close_sock(w);
		return pidfd;
	}
	*w = (VmmWorker){ .pid = pid,
			  .pidfd = TAKE_FD(pidfd),
			  .sock = w->sock,
			  .has_sock = w->has_sock,
			  .running = true,
			  .event = e,
			  .exited = exited,
			  .received = received,
			  .userdata = userdata };
	r = sd_event_add_io(e, &w->exit_source, w->pidfd, EPOLLIN, on_worker_exit, w);
	if (r >= 0 && w->has_sock)
		r = sd_event_add_io(e, &w->sock_source, w->sock, EPOLLIN, on_sock, w);
	if (r < 0) {
		vmm_worker_abort(w);
		return r;
	}
	return 0;
}

static int on_killed(sd_event_source *s, const siginfo_t *si _unused_, void *userdata _unused_)
{
	/*
	 * Reaped by sd-event: the source, and its pidfd, go now, not with the loop. No longer
	 * floating, its one reference is dropped (sd-event frees it once dispatched).
	 */
	(void)sd_event_source_set_floating(s, false);
	return 0;
}

/* A worker killed: reaped once it is gone, without waiting for it here. */
static void reap_later(sd_event *e, int pidfd)
{
	sd_event_source *s = NULL;

	if (e && sd_event_add_child_pidfd(e, &s, pidfd, WEXITED, on_killed, NULL) >= 0) {
		(void)sd_event_source_set_child_pidfd_own(s, true);
		(void)sd_event_source_set_floating(s, true);
		sd_event_source_unref(s);
		return;
	}
	(void)waitid(P_PIDFD, (id_t)pidfd, NULL, WEXITED); /* SIGKILL sent: soon */
	close(pidfd);
}

void vmm_worker_abort(VmmWorker *w)
{
	w->exit_source = sd_event_source_disable_unref(w->exit_source);
	close_sock(w);
	if (w->running) {
		(void)vmm_kill(w->pidfd, SIGKILL);
		reap_later(w->event, w->pidfd);
		w->pidfd = -EBADF;
		w->running = false;
	}
}

int vmm_worker_send(int sock, const VmmWorkerRecord *rec, int fd)
{
	char control[CMSG_SPACE(sizeof(int))] = {};
	struct iovec iov = { .iov_base = (void *)rec, .iov_len = sizeof(*rec) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		struct cmsghdr *c;

		mh.msg_control = control;
		mh.msg_controllen = sizeof(control);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}
