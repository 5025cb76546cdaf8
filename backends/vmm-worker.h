/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * vmm-worker.c: work that may wait (a copy, an open on a slow filesystem, a check as
 * another user) done by a worker, a child of vmd, so that the event loop never waits on
 * it: the image copies of a start (vmm-image.c) and the files a VMM gets (vmm-boot.c).
 *
 * A worker runs a function and _exit()s with what it returns. It dies with vmd
 * (PR_SET_PDEATHSIG SIGKILL): a vmd killed mid-work leaves no worker, and the next one does
 * the work again. Its exit comes back through its pidfd, in the loop. A worker may send
 * descriptors back over a socket (SCM_RIGHTS), each with a small fixed-size record, which
 * the loop reads as they come. An abort is a SIGKILL by its pidfd; it is reaped later,
 * without waiting for it.
 */

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

/* What comes back with a descriptor (or instead of one). */
typedef struct VmmWorkerRecord {
	unsigned index; /* which of its work it is, the caller's numbering */
	int error;	/* 0: a descriptor comes with it; -errno: none, message says why */
	struct stat st; /* of the descriptor's file */
	unsigned match; /* 0, or 1 + which of the caller's known files it is (no descriptor) */
	char message[1024];
} VmmWorkerRecord;

typedef struct VmmWorker VmmWorker;
/* Its exit: status as vmm_reap() says it (-1: unknown). The worker may be freed in it. */
typedef void (*VmmWorkerExited)(VmmWorker *w, int status, void *userdata);
/* A record it sent, with its descriptor (fd, taken; -EBADF: none). */
typedef void (*VmmWorkerReceived)(VmmWorker *w, const VmmWorkerRecord *rec, int fd, void *userdata);

/* All zeros: none runs (a field of a zeroed struct is one). */
struct VmmWorker {
	bool running;
	pid_t pid;
	int pidfd; /* while it runs */
	bool has_sock;
	int sock; /* vmd's end of its socket, if has_sock */
	sd_event *event;
	sd_event_source *exit_source, *sock_source;
	VmmWorkerExited exited;
	VmmWorkerReceived received; /* NULL: it has no socket */
	void *userdata;
};

/*
 * Fork a worker that runs run(arg, sock) (sock: its end of the socket, if received is not
 * NULL, else -EBADF) with signals at their defaults and none blocked, and _exit()s with
 * what it returns. 0, or -errno (nothing runs then).
 */
int vmm_worker_start(VmmWorker *w, sd_event *e, int (*run)(void *arg, int sock), void *arg,
		     VmmWorkerReceived received, VmmWorkerExited exited, void *userdata);
bool vmm_worker_running(const VmmWorker *w);
/* Kill it, if it runs (reaped once it is gone, never waited for here); w can be reused. */
void vmm_worker_abort(VmmWorker *w);
/* In the worker: send rec with fd (-EBADF: none). 0, or -errno. */
int vmm_worker_send(int sock, const VmmWorkerRecord *rec, int fd);
