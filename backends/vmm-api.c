/* SPDX-License-Identifier: MIT */
/*
 * How a job's requests reach a VMM and its replies come back (vmm-job.c owns what they
 * mean): QMP over one connection per VM, connected when a request needs it and again,
 * after a backoff, when it broke; REST through the backend's libcurl multi handle. Both
 * run on the event loop: a request is sent, and vmm_job_reply() hears its answer.
 */
#include <stdio.h>

#include "log.h"
#include "util.h"
#include "vmm-vm.h"

#define VMM_QMP_BACKOFF_FIRST_USEC (100ull * 1000)
#define VMM_QMP_BACKOFF_MAX_USEC (5ull * 1000000)

void vmm_api_heard(VmmVm *v)
{
	if (!v->unresponsive)
		return;
	v->unresponsive = mfree(v->unresponsive);
	log_fields(LOG_INFO,
		   &(LogFields){ .sandbox = v->name,
				 .backend = v->type->vmm,
				 .message_id = LOG_MESSAGE_VMM },
		   "%s answers again", v->type->display);
	vmm_vm_changed(v);
}

void vmm_api_cancel(VmmVm *v, VmmJob *j)
{
	if (!j->in_flight)
		return;
	if (j->http)
		http_request_cancel(TAKE_PTR(j->http));
	else if (j->http_fds)
		http_request_fds_cancel(TAKE_PTR(j->http_fds));
	else if (v->qmp)
		qmp_cancel(v->qmp, j->qmp_id);
	j->in_flight = false;
	j->serial = 0;
}

static void on_qmp_reply(Qmp *q _unused_, int error, json_t *ret, const char *desc, void *userdata)
{
	VmmJob *j = userdata;

	vmm_job_reply(j, &(VmmReply){ .error = error,
				      .answered = error == 0 || error == -EREMOTEIO,
				      .json = ret,
				      .message = desc });
}

/* A REST request is done, either transport's: the request is freed after this handler. */
static void on_http_fds_reply(int error, const HttpReply *reply, void *userdata)
{
	VmmJob *j = userdata;

	j->http = NULL;
	j->http_fds = NULL;
	vmm_job_reply(j, &(VmmReply){ .error = error,
				      .answered = reply->status > 0,
				      .json = reply->json,
				      .message = reply->error });
}

static void on_http_reply(HttpRequest *req _unused_, int error, const HttpReply *reply, void *userdata)
{
	on_http_fds_reply(error, reply, userdata);
}

static void on_qmp_ready(Qmp *q, int error, void *userdata)
{
	VmmVm *v = userdata;

	if (error == 0) {
		v->qmp_backoff = 0;
		return;
	}
	/* The calls waiting on it heard why already; connect again later, not at once. */
	if (v->qmp == q)
		vmm_api_disconnect(v);
}

static void on_qmp_event(Qmp *q _unused_, const char *event, json_t *data, uint64_t ts _unused_,
			 void *userdata)
{
	VmmVm *v = userdata;

	vmm_api_heard(v);
	if (streq(event, "SHUTDOWN"))
		v->guest_shutdown = json_is_true(json_object_get(data, "guest"));
	if (v->type->event)
		v->type->event(v, event, data);
}

static void on_qmp_close(Qmp *q, int error, void *userdata)
{
	VmmVm *v = userdata;

	/* QEMU is exiting (its pidfd tells when) or broke the protocol: connect again later. */
	if (!v->stop_requested && !v->guest_shutdown && !vmm_has_exited(v->pidfd))
		log_fields(LOG_WARNING,
			   &(LogFields){ .sandbox = v->name,
					 .backend = v->type->vmm,
					 .error = -error,
					 .message_id = LOG_MESSAGE_VMM },
			   "lost the QMP connection to a running %s", v->type->display);
	if (v->qmp == q)
		vmm_api_disconnect(v);
}

void vmm_api_disconnect(VmmVm *v)
{
	if (!v->qmp)
		return;
	v->qmp = qmp_free(v->qmp);
	/* A peer that breaks every connection is not asked hundreds of times a second. */
	v->qmp_backoff = v->qmp_backoff ? MIN(v->qmp_backoff * 2, VMM_QMP_BACKOFF_MAX_USEC)
					: VMM_QMP_BACKOFF_FIRST_USEC;
	v->qmp_retry_at = now_usec(CLOCK_MONOTONIC) + v->qmp_backoff;
}

/* The QMP connection, made if need be: -ENOENT or -ECONNREFUSED while nobody listens. */
static int qmp_ensure(VmmVm *v)
{
	_cleanup_free_ char *sock = NULL;
	const QmpHandlers h = {
		.ready = on_qmp_ready,
		.event = on_qmp_event,
		.close = on_qmp_close,
		.userdata = v,
	};

	if (v->qmp)
		return 0; /* ready, or negotiating: the command waits for it */
	if (now_usec(CLOCK_MONOTONIC) < v->qmp_retry_at)
		return -ENOTCONN;
	sock = vmm_vm_path(v->b, v->name, v->type->socket);
	if (!sock)
		return -ENOMEM;
	return qmp_connect(sock, v->b->event, &h, &v->qmp);
}

/* Send req; its reply comes to on_reply. < 0: it could not even be sent. */
int vmm_api_send(VmmVm *v, VmmJob *j, const VmmRequest *req)
{
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	/* The phase's deadline decides; the transport's own timeout only backs it up. */
	uint64_t timeout = (j->deadline > now ? j->deadline - now : 0) + 1000000;
	int r;

	j->serial = ++v->job_serial;
	if (v->type->api == VMM_API_REST) {
		_cleanup_free_ char *sock = vmm_vm_path(v->b, v->name, v->type->socket);
		VmmBackend *vb = VMM_BACKEND(v->b);

		if (!sock)
			return -ENOMEM;
		/* A descriptor goes as SCM_RIGHTS, which libcurl cannot send (http-fds.c). */
		if (req->has_fd)
			return http_request_fds(v->b->event, sock, req->method, req->path,
						req->body, &req->fd, 1, timeout, on_http_fds_reply,
						j, &j->http_fds);
		/* libcurl (and the TLS library it sets up) only once a REST VMM runs here. */
		if (!vb->http && (r = http_loop_new(v->b->event, &vb->http)) < 0)
			return r;
		return http_request(vb->http, sock, req->method, req->path, req->body, timeout,
				    on_http_reply, j, &j->http);
	}
	r = qmp_ensure(v);
	if (r < 0)
		return r;
	return qmp_send_fd(v->qmp, req->path, json_incref(req->body),
			   req->has_fd ? req->fd : -EBADF, timeout, on_qmp_reply, j, &j->qmp_id);
}
