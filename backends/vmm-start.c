/* SPDX-License-Identifier: MIT */
/*
 * Starting a VM's VMM (vmm-vm.h): its runtime dir made ready, the descriptors it inherits,
 * its seed and credentials, the spawn as the VMM user, and from then on the watch on its
 * exit, its serial console and its guest agent, which an adopted VMM gets too.
 */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "log.h"
#include "provision.h"
#include "spec-json.h"
#include "util.h"
#include "vmm-vm.h"

/* Watching it */

static int on_pidfd(sd_event_source *s _unused_, int fd _unused_, uint32_t revents _unused_,
		    void *userdata)
{
	VmmVm *v = userdata;
	int status = -1, r;

	r = v->child ? vmm_reap(v->pidfd, &status) : -ECHILD;
	if (r == 0)
		return 0; /* not yet */
	if (r < 0)
		/* Not ours to reap (adopted): a stop vmd asked for or the guest's own power-off is clean. */
		status = v->stop_requested || v->guest_shutdown ? 0 : -1;
	vmm_vm_exited(v, status);
	return 0;
}

static int watch_exit(VmmVm *v)
{
	return sd_event_add_io(v->b->event, &v->pid_source, v->pidfd, EPOLLIN, on_pidfd, v);
}

static void agent_changed(void *userdata)
{
	vmm_vm_changed(userdata); /* its status shows what the agent says */
}

/* The daemon asking the VM's guest agent, if it has one (guestAgent: true). */
static void agent_open(VmmVm *v)
{
	_cleanup_free_ char *sock = NULL;
	int r;

	if (v->agent || !v->config || !v->config->guest_agent)
		return;
	sock = vmm_vm_path(v->b, v->name, GUEST_AGENT_SOCKET);
	if (!sock)
		return;
	r = guest_agent_new(v->b->event, sock, agent_changed, v, &v->agent);
	if (r < 0)
		log_error_errno(r, "%s: cannot ask its guest agent at %s: %m", v->name, sock);
}

/*
 * The daemon's end of the VM's serial console, once its VMM runs. A console that cannot be
 * kept is reported; the VM runs on without it.
 */
static void console_open(VmmVm *v, bool adopted)
{
	_cleanup_free_ char *serial = NULL, *sock = NULL;
	int r;

	if (!(v->type->serial_socket || v->type->serial_vmm_socket) || v->console)
		return;
	serial = vmm_vm_path(v->b, v->name, CONSOLE_SERIAL);
	sock = vmm_vm_path(v->b, v->name, CONSOLE_SOCKET);
	if (!serial || !sock)
		return;
	/* A VMM that binds it itself does so a moment after its start: only adopted ones tell. */
	if ((v->type->serial_socket || adopted) && access(serial, F_OK) < 0 && errno == ENOENT) {
		/* Adopted from a vmd before serial sockets: the VMM writes console.log itself. */
		(void)unlink(sock);
		log_info("%s: its VMM has no serial socket (%s): its console stays in %s/" CONSOLE_LOG
			 ", without vmd console, until its next start",
			 v->name, serial, v->dir);
		return;
	}
	r = console_new(v->b->event, v->name, v->dir, v->b->options.console_log_size, &v->console);
	if (r < 0)
		log_error_errno(r, "%s: cannot keep the serial console in %s: %m", v->name, v->dir);
}

int vmm_vm_watch(VmmVm *v, bool adopted)
{
	int r = watch_exit(v);

	if (r < 0)
		return r;
	console_open(v, adopted);
	agent_open(v);
	return 0;
}

/* Starting it */

static void prepare_dir(VmmVm *v)
{
	_cleanup_free_ char *console = vmm_vm_path(v->b, v->name, CONSOLE_LOG),
			    *old = vmm_vm_path(v->b, v->name, CONSOLE_LOG_OLD),
			    *log = vmm_vm_path(v->b, v->name, v->type->log),
			    *image_log = vmm_vm_path(v->b, v->name, VMM_IMAGE_LOG),
			    *sock = vmm_vm_path(v->b, v->name, v->type->socket),
			    *serial = vmm_vm_path(v->b, v->name, CONSOLE_SERIAL);

	if (console && old)
		(void)rename(console, old); /* the boot before, for whoever looks into a crash */
	if (log)
		(void)unlink(log);
	if (image_log)
		(void)unlink(image_log); /* each start's image workers say their own */
	if (sock)
		(void)vmm_remove_stale_socket(v->b->run_dir, sock);
	/* One the VMM binds itself must not be there: CH's vm.create fails on it. */
	if (v->type->serial_vmm_socket && serial)
		(void)vmm_remove_stale_socket(v->b->run_dir, serial);
}

int vmm_vm_pass_fd(VmmVm *v, int fd)
{
	if (v->n_pass_fds >= VMM_PASS_FDS_MAX) {
		close(fd);
		return -E2BIG;
	}
	v->pass_fds[v->n_pass_fds] = fd;
	return VMM_FD_FIRST + (int)v->n_pass_fds++;
}

int vmm_vm_pass_listener(VmmVm *v, const char *file, const char *what)
{
	_cleanup_free_ char *path = vmm_vm_path(v->b, v->name, file);
	int fd = path ? unix_listen(path, 0600) : -ENOMEM;

	if (fd < 0) {
		backend_set_error(v->b, "cannot make %s socket %s: %s", what, path ?: file,
				  strerror(-fd));
		return fd;
	}
	return vmm_vm_pass_fd(v, fd);
}

/* The VMM has them now, or never will. */
static void close_pass_fds(VmmVm *v)
{
	while (v->n_pass_fds > 0)
		close(v->pass_fds[--v->n_pass_fds]);
}

static int spawn(VmmVm *v)
{
	VmmUser user;
	_cleanup_(strv_freep) char **argv = NULL;
	_cleanup_free_ char *log = vmm_vm_path(v->b, v->name, v->type->log),
			    *out = v->type->out ? vmm_vm_path(v->b, v->name, v->type->out) : NULL;
	int r;

	if (!log || (v->type->out && !out))
		return -ENOMEM;
	/* The serial console's socket first: QEMU has it as VMM_FD_FIRST, whatever follows. */
	if (v->type->serial_socket) {
		v->serial_fd = vmm_vm_pass_listener(v, CONSOLE_SERIAL, "the serial console's");
		if (v->serial_fd < 0)
			return v->serial_fd;
	}
	/* The seed and the credentials' copies were made by the files step's worker. */
	r = v->type->prepare ? v->type->prepare(v) : 0;
	if (r < 0) {
		close_pass_fds(v);
		(void)provision_remove(v->dir);
		return r;
	}
	r = v->type->argv(v, &argv);
	if (r >= 0)
		r = vmm_spawn_logging(argv, log, out, vmm_vm_user(v, &user), v->pass_fds,
				      v->n_pass_fds, &v->id.pid, &v->pidfd);
	/* The VMM has them now, or nobody needs them. */
	close_pass_fds(v);
	v->serial_fd = -EBADF;
	if (r < 0)
		(void)provision_remove(v->dir);
	if (r < 0 && !argv)
		return r;
	if (r < 0) {
		backend_set_error(v->b, "cannot run %s: %s", argv[0], strerror(-r));
		return r;
	}
	v->child = true;
	return vmm_identity(v->id.pid, &v->id);
}

/*
 * Spawn v's VMM, record it and watch it. On failure nothing runs for it (it is killed, and
 * reaped once it is gone) and it has no record.
 */
static int launch(VmmVm *v)
{
	_cleanup_free_ char *rec = vmm_vm_path(v->b, v->name, "vm.json");
	int r;

	if (!rec)
		return -ENOMEM;
	r = spawn(v);
	if (r >= 0)
		/* Recorded before it answers: a vmd that dies now finds it, and adopts it. */
		r = vmm_vm_save(v);
	if (r >= 0)
		r = vmm_vm_watch(v, false);
	if (r < 0) {
		if (v->pidfd >= 0)
			(void)vmm_kill(v->pidfd, SIGKILL);
		(void)unlink(rec);
	}
	return r;
}

int vmm_vm_launch(VmmVm *v)
{
	int r = launch(v);

	/* The VMM has what the files step got, or never will. */
	vmm_files_free(&v->job);
	if (r < 0) {
		v->pid_source = sd_event_source_disable_unref(v->pid_source);
		if (v->pidfd >= 0)
			v->pidfd = (close(v->pidfd), -EBADF);
	}
	return r;
}

/* A start job of type op (start, or restore from snapshot_dir): 1, VM_STARTING until it ends. */
static int start_job(Backend *b, const SandboxSpec *spec, uint64_t generation, BackendOp op,
		     const char *snapshot_dir)
{
	const VmmVmType *t = VMM_BACKEND(b)->type;
	VmmBackend *vb = VMM_BACKEND(b);
	_cleanup_(vmm_vm_freep) VmmVm *v = NULL;
	bool images;
	int r;

	if (!b->event)
		return -EROFS;
	if (!vb->binary) {
		backend_set_error(b, "cannot find %s: %s", vb->binary_name,
				  strerror(-vb->binary_error));
		return vb->binary_error;
	}
	if (!spec->kernel) {
		backend_set_error(b, "spec.kernel is required for %s", t->vmm);
		return -EINVAL;
	}
	/* Never a second VMM for one name, whatever the record says. */
	r = vmm_stray_refuse(b, spec->name);
	if (r < 0)
		return r;
	if (vmm_vm_get(b, spec->name))
		vmm_vm_forget(vmm_vm_get(b, spec->name));
	v = vmm_vm_new(b, t, spec->name);
	if (!v)
		return -ENOMEM;
	r = spec_copy(spec, &v->config);
	if (r < 0)
		return r;
	images = vmm_image_needed(v->config);
	if (images && (r = vmm_image_resolve(v, snapshot_dir != NULL)) < 0)
		return r;
	r = mkdir_p(v->dir, 0750);
	if (r < 0)
		return r;
	prepare_dir(v);
	memcpy(v->boot_id, vb->boot_id, sizeof(v->boot_id));
	v->generation = generation;
	v->started_at_usec = now_usec(CLOCK_REALTIME);
	v->state = VM_STARTING;

	/* What argv() reads of a restore: there before any spawn. */
	if (snapshot_dir && !(v->job.snapshot_dir = strdup(snapshot_dir)))
		return -ENOMEM;
	v->restoring = snapshot_dir != NULL; /* in the record until it is done */
	/*
	 * The VMM is spawned once its images' copies are made and its files opened (a worker
	 * does both, vmm-image.c, vmm-boot.c): phases of the start.
	 */
	r = hashmap_put(vb->vms, v->name, v);
	if (r < 0)
		return r;
	r = vmm_job_begin(v, &v->job, op, images ? VMM_PHASE_IMAGE : VMM_PHASE_FILES);
	v->job.image.spawn = true;
	v->job.generation = generation;
	TAKE_PTR(v);
	return r < 0 ? r : 1;
}

int vmm_vm_start(Backend *b, const SandboxSpec *spec, uint64_t generation)
{
	return start_job(b, spec, generation, BACKEND_OP_START, NULL);
}

int vmm_vm_restore(Backend *b, const SandboxSpec *spec, uint64_t generation, const char *snapshot_dir)
{
	return start_job(b, spec, generation, BACKEND_OP_RESTORE, snapshot_dir);
}
