/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: what the VMMs answer, through the backends' reply handlers. A real
 * backend adopts a VM whose record (<run-dir>/fz/vm.json) names the fuzzer itself, so
 * that the identity check passes and the pidfd never fires; then observes it and
 * refreshes it (an observe job). The VMM is a harness server on the VM's API socket,
 * served from the same private loop: the input, split on 0xff, is its answers, one
 * segment per request, and once they run out it hangs up, so that every run ends fast.
 *
 * A record that says "starting" (a vmd died while it started the VM) is adopted by seeing
 * the start through: api-up, configure, boot. A start that fails kills its VMM, so the VM
 * is then a child that stands in for the VMM, not the fuzzer; it is killed (it "exits")
 * when the answers run out, or 500 ms on, since a VMM that does not answer yet is asked
 * again until the start's 30 s deadline.
 *
 * The first byte picks:
 *   bits 0-1  the backend: QEMU, Cloud Hypervisor, Firecracker (3: QEMU)
 *   bit 2     the record says "paused", not "running"
 *   bit 3     the handshake is answered from the input too, not by the harness: QEMU's
 *             query-name, Cloud Hypervisor's vmm.ping (whose pid, the fuzzer's, no input
 *             can know)
 *   bit 4     the record says "starting", and names the stand-in child
 *
 * QMP: the harness greets, answers qmp_capabilities (and query-name) itself, and each
 * later command with segments: one that is not JSON goes as is (and breaks the
 * connection), an object with "event" is sent as an event and the next segment answers,
 * an object with "return" or "error" gets the command's id, anything else is wrapped as
 * {"return": ...}. REST: a segment's first byte picks the status, the rest is the body.
 */
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "fuzz-common.h"
#include "qemu.h"
#include "spec-json.h"
#include "util.h"
#include "vmm-vm.h"

#define SEPARATOR 0xff
#define RUN_LIMIT_USEC (20ull * 1000000) /* the harness always answers: more is a hang */
#define STAND_IN_LIFE_USEC (500ull * 1000)

typedef struct Fuzz Fuzz;

typedef struct Conn Conn;
struct Conn {
	Fuzz *f;
	int fd;
	sd_event_source *io;
	char *in;
	size_t in_len;
	char *out;
	size_t out_len;
	bool hang_up; /* once out is sent */
	Conn *next;
};

struct Fuzz {
	BackendKind kind;
	uint8_t flags;
	const uint8_t *data; /* the segments left */
	size_t size;
	bool exhausted;

	sd_event *event;
	int listen_fd;
	sd_event_source *listen_io;
	Conn *conns;

	bool starting;	       /* the record says so; the VM is the stand-in */
	pid_t vm_pid;	       /* the fuzzer, or the stand-in */
	sd_event_source *doom; /* the stand-in's end */

	Backend *b;
	unsigned adopts, other_ops;
	int adopt_error;
};

static pid_t stand_in_pid;

/*
 * The stand-in VMM of a start: a child that waits to be killed, made anew once it was (by
 * vm_dies(), or by a start that gave up; that start ended on its exit: it is a zombie).
 */
static pid_t stand_in(void)
{
	if (stand_in_pid > 0 && waitpid(stand_in_pid, NULL, WNOHANG) == 0)
		return stand_in_pid;
	stand_in_pid = fork();
	fuzz_check(stand_in_pid >= 0);
	if (stand_in_pid == 0) {
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	return stand_in_pid;
}

/* The VMM exits (its pidfd tells vmd): only ever the stand-in, reaped at once. */
static void vm_dies(Fuzz *f)
{
	if (!f->starting || stand_in_pid <= 0)
		return;
	(void)kill(stand_in_pid, SIGKILL);
	(void)waitpid(stand_in_pid, NULL, 0);
	stand_in_pid = 0;
}

static int on_doom(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	vm_dies(userdata);
	return 0;
}

static const long statuses[] = { 200, 200, 200, 204, 400, 404, 405, 409, 429, 500, 501, 302 };

/* The next answer: false once there are none. */
static bool next_segment(Fuzz *f, const uint8_t **ret, size_t *ret_len)
{
	const uint8_t *sep;

	if (f->exhausted)
		return false;
	sep = memchr(f->data, SEPARATOR, f->size);
	*ret = f->data;
	*ret_len = sep ? (size_t)(sep - f->data) : f->size;
	if (sep) {
		f->size -= *ret_len + 1;
		f->data = sep + 1;
	} else
		f->exhausted = true;
	return true;
}

/* Server connections */

static void conn_free(Conn *c)
{
	for (Conn **p = &c->f->conns; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	sd_event_source_disable_unref(c->io);
	close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
}

/* Send what is queued; false if c is gone. */
static bool conn_flush(Conn *c)
{
	while (c->out_len > 0) {
		ssize_t n = send(c->fd, c->out, c->out_len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			conn_free(c);
			return false;
		}
		memmove(c->out, c->out + n, c->out_len - (size_t)n);
		c->out_len -= (size_t)n;
	}
	if (c->out_len == 0 && c->hang_up) {
		conn_free(c);
		return false;
	}
	(void)sd_event_source_set_io_events(c->io, EPOLLIN | (c->out_len ? EPOLLOUT : 0));
	return true;
}

static void queue(Conn *c, const void *p, size_t len)
{
	fuzz_append(&c->out, &c->out_len, p, len);
}

static void queue_json(Conn *c, json_t *j)
{
	_cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);

	fuzz_check(text);
	queue(c, text, strlen(text));
	queue(c, "\r\n", 2);
	json_decref(j);
}

/* QMP */

static const char greeting[] =
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "
	"\"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n";

static void qmp_answer(Conn *c, json_int_t id)
{
	const uint8_t *p;
	size_t len;

	while (next_segment(c->f, &p, &len)) {
		json_t *j = json_loadb((const char *)p, len, JSON_DECODE_ANY, NULL);

		if (!j) {
			queue(c, p, len); /* not JSON: the client breaks the connection */
			queue(c, "\n", 1);
			return;
		}
		if (json_is_object(j) && json_object_get(j, "event")) {
			queue_json(c, j);
			continue; /* an event, then the answer */
		}
		if (!json_is_object(j) ||
		    (!json_object_get(j, "return") && !json_object_get(j, "error")))
			j = json_pack("{s:o}", "return", j);
		fuzz_check(j && json_object_set_new(j, "id", json_integer(id)) == 0);
		queue_json(c, j);
		return;
	}
	c->hang_up = true;
	vm_dies(c->f);
}

static void qmp_serve(Conn *c)
{
	char *nl;

	while (!c->hang_up && (nl = memchr(c->in, '\n', c->in_len))) {
		size_t used = (size_t)(nl - c->in) + 1;
		json_t *cmd = json_loadb(c->in, used, 0, NULL);
		const char *execute = json_string_value(json_object_get(cmd, "execute"));
		json_int_t id = json_integer_value(json_object_get(cmd, "id"));

		fuzz_check(execute); /* vmd sends only commands */
		if (streq(execute, "qmp_capabilities"))
			queue_json(c, json_pack("{s:{}, s:I}", "return", "id", id));
		else if (streq(execute, "query-name") && !(c->f->flags & 0x8))
			queue_json(c, json_pack("{s:{s:s}, s:I}", "return", "name", FUZZ_NAME, "id",
						id));
		else
			qmp_answer(c, id);
		json_decref(cmd);
		memmove(c->in, c->in + used, c->in_len - used);
		c->in_len -= used;
	}
}

/* REST */

/* The length of a whole request at the start of c->in, 0 if it is not all there yet. */
static size_t http_request_len(const Conn *c)
{
	const char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4), *cl;
	size_t head, body = 0;

	if (!end)
		return 0;
	head = (size_t)(end - c->in) + 4;
	cl = memmem(c->in, head, "Content-Length: ", 16);
	if (cl)
		body = strtoul(cl + 16, NULL, 10);
	return c->in_len >= head + body ? head + body : 0;
}

static void http_serve(Conn *c)
{
	size_t used;

	while (!c->hang_up && (used = http_request_len(c)) > 0) {
		const uint8_t *p;
		size_t len;
		long status;
		char head[160], pong[64];
		bool ping;

		ping = !(c->f->flags & 0x8) && c->in_len > 20 &&
		       strncmp(c->in, "GET /api/v1/vmm.ping ", 21) == 0;
		memmove(c->in, c->in + used, c->in_len - used);
		c->in_len -= used;
		if (ping) {
			snprintf(pong, sizeof(pong), "{\"build_version\": \"v38.0\", \"pid\": %d}",
				 (int)c->f->vm_pid);
			p = (const uint8_t *)pong;
			len = strlen(pong);
		} else if (!next_segment(c->f, &p, &len)) {
			c->hang_up = true;
			vm_dies(c->f);
			return;
		}
		status = ping ? 200 : len ? statuses[p[0] % ELEMENTSOF(statuses)] : 200;
		if (len && !ping)
			p++, len--;
		if (status == 204)
			len = 0;
		snprintf(head, sizeof(head),
			 "HTTP/1.1 %ld Fuzz\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\n\r\n",
			 status, len);
		queue(c, head, strlen(head));
		queue(c, p, len);
	}
}

static int on_conn(sd_event_source *s _unused_, int fd, uint32_t revents, void *userdata)
{
	Conn *c = userdata;

	if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		char buf[4096];
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n == 0 || (n < 0 && errno != EAGAIN)) {
			/*
			 * The client hung up. A start would connect again after a backoff (100 ms,
			 * then doubling): its VMM exits instead, to keep the runs short.
			 */
			if (c->f->kind == BACKEND_QEMU)
				vm_dies(c->f);
			conn_free(c);
			return 0;
		}
		if (n > 0)
			fuzz_append(&c->in, &c->in_len, buf, (size_t)n);
		if (c->f->kind == BACKEND_QEMU)
			qmp_serve(c);
		else
			http_serve(c);
	}
	(void)conn_flush(c);
	return 0;
}

static int on_accept(sd_event_source *s _unused_, int fd, uint32_t revents _unused_, void *userdata)
{
	Fuzz *f = userdata;
	int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	Conn *c;

	if (cfd < 0)
		return 0;
	c = calloc(1, sizeof(Conn));
	fuzz_check(c);
	*c = (Conn){ .f = f, .fd = cfd, .next = f->conns };
	f->conns = c;
	fuzz_check(sd_event_add_io(f->event, &c->io, cfd, EPOLLIN, on_conn, c) >= 0);
	if (f->kind == BACKEND_QEMU)
		queue(c, greeting, strlen(greeting));
	(void)conn_flush(c);
	return 0;
}

static void server_start(Fuzz *f, const char *rel)
{
	_cleanup_free_ char *path = fuzz_path(rel);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	fuzz_check(strlen(path) < sizeof(sa.sun_path));
	strcpy(sa.sun_path, path);
	f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	fuzz_check(f->listen_fd >= 0);
	fuzz_check(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	fuzz_check(listen(f->listen_fd, 8) == 0);
	fuzz_check(sd_event_add_io(f->event, &f->listen_io, f->listen_fd, EPOLLIN, on_accept, f) >= 0);
}

static void server_stop(Fuzz *f)
{
	while (f->conns)
		conn_free(f->conns);
	sd_event_source_disable_unref(f->listen_io);
	close(f->listen_fd);
}

/* The daemon's side */

static void on_op_done(void *userdata, const char *name, BackendOp op, const char *device _unused_,
		       int error, const char *message _unused_)
{
	Fuzz *f = userdata;

	fuzz_check(streq(name, FUZZ_NAME) && error <= 0);
	if (op == (f->starting ? BACKEND_OP_ADOPT : BACKEND_OP_START))
		fuzz_check(!"an adoption ended as a start, or a start as an adoption");
	if (!IN_SET(op, BACKEND_OP_ADOPT, BACKEND_OP_START)) {
		/* What a DEVICE_DELETED the VM had not asked for starts: freeing the device. */
		fuzz_check(IN_SET(op, BACKEND_OP_DISK_REMOVE, BACKEND_OP_NET_REMOVE));
		f->other_ops++;
		return;
	}
	fuzz_check(f->adopts == 0);
	f->adopts++;
	f->adopt_error = error;
}

static void on_vm_changed(void *userdata _unused_, const char *name)
{
	fuzz_check(streq(name, FUZZ_NAME));
}

static void on_vm_exited(void *userdata, const char *name, int status _unused_,
			 const char *reason _unused_)
{
	/* The stand-in, killed after its start: the fuzzer's own pidfd never fires. */
	fuzz_check(((Fuzz *)userdata)->starting && streq(name, FUZZ_NAME));
}

static bool adopted(void *userdata)
{
	return ((Fuzz *)userdata)->adopts > 0;
}

/*
 * The observe job is over (and a device cleanup a DEVICE_DELETED began). A stop that a
 * guest found off begins is not run: its end is a SIGKILL to the VMM, the fuzzer itself.
 */
static bool observed(void *userdata)
{
	VmmVm *v = vmm_vm_get(((Fuzz *)userdata)->b, FUZZ_NAME);

	if (!v || IN_SET(v->job.type, BACKEND_OP_STOP, BACKEND_OP_START))
		return true;
	return v->observe.type == BACKEND_OP_NONE && v->unplug.type == BACKEND_OP_NONE;
}

static const char *socket_of(BackendKind kind)
{
	return kind == BACKEND_QEMU ? FUZZ_NAME "/qmp.sock" : FUZZ_NAME "/api.sock";
}

/* The record vmd would have written for this VM, naming the fuzzer. */
static void write_record(const Fuzz *f)
{
	static SandboxSpec *specs[_BACKEND_KIND_MAX];
	const char *state = f->starting ? "starting" : f->flags & 0x4 ? "paused" : "running";
	_cleanup_free_ char *text = NULL;
	json_t *j;

	if (!specs[f->kind])
		specs[f->kind] = fuzz_spec(f->kind);
	j = fuzz_record(backend_ops[f->kind]->name, state, specs[f->kind], f->vm_pid);
	if (f->kind == BACKEND_QEMU) {
		json_object_set_new(j, "ports",
				    json_pack("{s:i, s:i, s:i, s:i}", "disk-root", 0, "disk-data",
					      1, "net-net0", 2, "net-net1", 3));
		json_object_set_new(j, "nPorts", json_integer(4 + QEMU_SPARE_PORTS));
	} else if (f->kind == BACKEND_CLOUD_HYPERVISOR) {
		json_object_set_new(j, "maxVcpus", json_integer(4));
		json_object_set_new(j, "maxMemory", json_integer(1 << 30));
	}
	text = json_dumps(j, JSON_SORT_KEYS | JSON_INDENT(1));
	fuzz_check(text);
	fuzz_write(FUZZ_NAME "/vm.json", text, strlen(text));
	json_decref(j);
}

static void observe(Fuzz *f)
{
	VmObserved o = {};

	fuzz_check(f->b->ops->observe(f->b, FUZZ_NAME, &o) == 0);
	fuzz_check(o.state >= 0 && o.state < _VM_STATE_MAX);
	vm_observed_done(&o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const BackendKind kinds[] = { BACKEND_QEMU, BACKEND_CLOUD_HYPERVISOR,
					     BACKEND_FIRECRACKER, BACKEND_QEMU };
	Fuzz f = { .listen_fd = -EBADF };
	const BackendCallbacks callbacks = {
		.op_done = on_op_done,
		.vm_changed = on_vm_changed,
		.vm_exited = on_vm_exited,
		.userdata = &f,
	};
	const BackendOptions options = {
		.qemu_binary = "/bin/true",
		.cloud_hypervisor_binary = "/bin/true",
		.firecracker_binary = "/bin/true",
	};
	_cleanup_free_ char *run_dir = NULL;

	if (size == 0)
		return 0;
	f.kind = kinds[data[0] & 3];
	f.flags = data[0];
	f.data = data + 1;
	f.size = size - 1;
	f.starting = data[0] & 0x10;
	f.vm_pid = f.starting ? stand_in() : getpid();

	fuzz_dir_reset();
	run_dir = strdup(fuzz_dir());
	fuzz_check(run_dir);
	write_record(&f);
	fuzz_check(sd_event_new(&f.event) >= 0);
	server_start(&f, socket_of(f.kind));
	fuzz_check(backend_new(f.kind, f.event, run_dir, &callbacks, &options, &f.b) == 0);

	if (f.starting)
		fuzz_check(sd_event_add_time_relative(f.event, &f.doom, CLOCK_MONOTONIC,
						      STAND_IN_LIFE_USEC, 1000, on_doom, &f) >= 0);
	/* 1: an adoption, its op_done to come; 0: taken, the start it was in goes on. */
	fuzz_check(f.b->ops->adopt(f.b, FUZZ_NAME) == (f.starting ? 0 : 1));
	fuzz_run_until(f.event, adopted, &f, RUN_LIMIT_USEC);
	if (!f.starting)
		fuzz_check((f.adopt_error == 0) == (vmm_vm_get(f.b, FUZZ_NAME) != NULL));
	if (f.adopt_error == 0) {
		observe(&f);
		f.b->ops->refresh(f.b);
		fuzz_run_until(f.event, observed, &f, RUN_LIMIT_USEC);
		observe(&f);
	}

	backend_free(f.b);
	sd_event_source_disable_unref(f.doom);
	server_stop(&f);
	sd_event_unref(f.event);
	return 0;
}
