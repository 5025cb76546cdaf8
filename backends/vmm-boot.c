/* SPDX-License-Identifier: MIT */
/*
 * The files step of a job (vmm-files.h "The files step"): at a start, after the images and
 * before the spawn, what the VMM gets is opened, copied and checked by a worker, a child of
 * vmd (vmm-worker.c), never by the loop: the sealed copies of kernel, initrd, seed and
 * credentials (a copy is a read of the whole file), the disks' checked opens (an open on a
 * slow or hung filesystem waits), and, for a VMM that reopens them as the VMM user, whether
 * that user may (a thread of the worker that drops to it and tries). Each fd comes back over
 * the worker's socket as it is made; the spawn then takes them (vmm_files_take()). A
 * hot-added disk a VMM opens by path itself has its access check made the same way, in the
 * job's files phase, before its request.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "provision.h"
#include "util.h"
#include "vmm-vm.h"

VmmFileWant *vmm_files_add(VmmFiles *f, VmmFileKind kind, unsigned key, const char *what,
			   const char *path)
{
	VmmFileWant *w;

	if (f->n >= ELEMENTSOF(f->wants))
		return NULL;
	w = &f->wants[f->n];
	*w = (VmmFileWant){ .kind = kind, .key = key, .flags = O_RDONLY, .fd = -EBADF };
	snprintf(w->what, sizeof(w->what), "%s", what);
	w->path = strdup(path);
	if (!w->path)
		return NULL;
	f->n++;
	return w;
}

/* A want of kind for path, of disk d ("disk 'ID'" in messages). */
static VmmFileWant *add_of_disk(VmmFiles *f, VmmFileKind kind, unsigned key, const DiskSpec *d,
				const char *path)
{
	char what[SPEC_ID_MAX + 16];

	snprintf(what, sizeof(what), "disk '%s'", d->id);
	return vmm_files_add(f, kind, key, what, path);
}

int vmm_files_add_disk(VmmFiles *f, const DiskSpec *d, unsigned key)
{
	VmmFileWant *w = add_of_disk(f, VMM_FILE_OPEN, key, d, d->path);

	if (!w)
		return -ENOMEM;
	/* As vmm_open_disk(): a copy of an image is vmd's own file, checked as its image. */
	w->flags = d->read_only ? O_RDONLY : O_RDWR;
	w->device = d->image ? DISK_DEVICE_FILE : d->device;
	w->id = d->image ? (FileIdentity){} : d->checked;
	return 0;
}

int vmm_files_add_base(VmmFiles *f, const DiskSpec *d, unsigned key)
{
	VmmFileWant *w = add_of_disk(f, VMM_FILE_BASE, key, d, d->image);

	if (!w)
		return -ENOMEM;
	w->format = d->image_format;
	w->id = d->checked;
	return 0;
}

int vmm_files_add_boot(VmmFiles *f, VmmBootSlot slot, const char *what, const char *path)
{
	return vmm_files_add(f, VMM_FILE_BOOT, slot, what, path) ? 0 : -ENOMEM;
}

int vmm_files_add_access(VmmFiles *f, const char *what, const char *path, bool writable,
			 bool of_previous)
{
	VmmFileWant *w;

	if (!f->has_user || f->user.uid == 0)
		return 0;
	w = vmm_files_add(f, VMM_FILE_ACCESS, VMM_KEY_ACCESS, what, path);
	if (!w)
		return -ENOMEM;
	w->flags = writable ? O_RDWR : O_RDONLY;
	w->of_previous = of_previous;
	return 0;
}

/* The worker */

/* An access check, in a thread of the worker of its own (user_can_open()). */
typedef struct AccessCheck {
	const VmmUser *user;
	const char *path;
	int flags;
	int error; /* the errno it met, or 0 */
} AccessCheck;

static void *check_thread(void *arg)
{
	AccessCheck *c = arg;
	int fd;

	/*
	 * This thread's credentials alone: the system calls, not glibc's wrappers, which set
	 * every thread's. As vmm.c's spawn drops to the user: no groups, its gid, its uid.
	 */
	if (syscall(SYS_setgroups, 0, NULL) < 0 ||
	    syscall(SYS_setresgid, c->user->gid, c->user->gid, c->user->gid) < 0 ||
	    syscall(SYS_setresuid, c->user->uid, c->user->uid, c->user->uid) < 0) {
		c->error = EPERM;
		return NULL;
	}
	/* A test knob, as VMD_TEST_FILES_PAUSE=1: "check" stops the worker here too. */
	if (streq_ptr(getenv("VMD_TEST_FILES_PAUSE"), "check"))
		(void)raise(SIGSTOP);
	/* O_NONBLOCK: a FIFO put there must not hold the worker (vmm_open_checked()). */
	fd = open(c->path, c->flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		c->error = errno;
	else
		close(fd);
	return NULL;
}

/*
 * Whether user may open path with flags, as the VMM will: a thread of the worker that drops
 * to it and tries (a /proc/self/fd/N is the worker's fd). A thread, not a child: it goes
 * with the worker, whatever kills it, where a child would be left to vmd, its subreaper,
 * which reaps only what it knows, a zombie (or, its parent-death signal cleared by its
 * change of uid, running as the user with the worker's descriptors). 0, or the -errno met.
 */
static int user_can_open(const VmmUser *user, const char *path, int flags)
{
	AccessCheck c = { .user = user, .path = path, .flags = flags };
	pthread_t t;
	int r = -pthread_create(&t, NULL, check_thread, &c);

	if (r < 0)
		return r;
	r = -pthread_join(t, NULL);
	return r < 0 ? r : -c.error;
}

static int check_access(const VmmFiles *f, const VmmFileWant *w, int previous, char *why, size_t n)
{
	char self[64];
	bool writable = (w->flags & O_ACCMODE) == O_RDWR;
	int r;

	snprintf(self, sizeof(self), "/proc/self/fd/%d", previous);
	r = user_can_open(&f->user, w->of_previous ? self : w->path, w->flags);
	if (r < 0)
		snprintf(why, n,
			 "%s: '%s' is not %s by the VMM user (uid %u, gid %u: --vmm-user): %s; chown it to that user, or give it access with an ACL (setfacl -m u:%u:%s '%s')",
			 w->what, w->path, writable ? "readable and writable" : "readable",
			 (unsigned)f->user.uid, (unsigned)f->user.gid, strerror(-r),
			 (unsigned)f->user.uid, writable ? "rw" : "r", w->path);
	return r;
}

/* One want, in the worker: its fd (or 0 for a check), or -errno with the words in rec. */
static int make(const VmmFiles *f, const VmmFileWant *w, int previous, VmmWorkerRecord *rec)
{
	char *why = rec->message;
	size_t n = sizeof(rec->message);
	int fd;

	switch (w->kind) {
	case VMM_FILE_OPEN:
		fd = vmm_open_checked(w->what, w->path, w->flags, w->device, &w->id, why, n);
		break;
	case VMM_FILE_BASE:
		fd = vmm_open_base(w->what, w->path, w->format, &w->id, why, n);
		break;
	case VMM_FILE_COPY:
		return vmm_memfd_copy(w->what, w->path, &rec->st, why, n);
	case VMM_FILE_BOOT: /* another VM's copy of that very file, or a new one */
		return vmm_boot_copy(w->what, w->path, f->known, f->n_known, &rec->st, &rec->match,
				     why, n);
	case VMM_FILE_ACCESS:
		return check_access(f, w, previous, why, n);
	default:
		return -EINVAL;
	}
	if (fd >= 0 && fstat(fd, &rec->st) < 0) {
		int r = -errno;

		/* Not sent without its stat, nor kept open: the want fails, in words. */
		snprintf(why, n, "%s: cannot stat '%s': %s", w->what, w->path, strerror(-r));
		close(fd);
		return r;
	}
	return fd;
}

/*
 * In the worker, before the wants (which copy or open them): the seed and the credentials'
 * copies, made anew from the host's files (a fromFile on a hung filesystem waits here, not
 * in the loop). Sent as a record of VMM_FILES_PROVISION: 0, or -errno with the words.
 */
static int provision(const VmmFiles *f, int sock)
{
	VmmWorkerRecord rec = { .index = VMM_FILES_PROVISION };
	int r;

	r = credentials_copy(f->spec, f->dir, rec.message, sizeof(rec.message));
	if (r >= 0 && f->seed)
		r = seed_write(f->spec, f->seed, rec.message, sizeof(rec.message));
	rec.error = r < 0 ? r : 0;
	if (r >= 0)
		rec.message[0] = '\0';
	if (vmm_worker_send(sock, &rec, -EBADF) < 0)
		return -EPIPE;
	return r;
}

/*
 * The worker: each want in turn, sent back as it is made; the first that fails is sent
 * with its words, and ends it. Its fds stay open until it exits (an access check reopens
 * the one before).
 */
static int files_worker(void *arg, int sock)
{
	const VmmFiles *f = arg;
	int previous = -EBADF;

	/*
	 * A test knob, not a user's: VMD_TEST_FILES_PAUSE=1 stops the worker first
	 * (tests/test-files-step.c proves with it that the loop does not wait for it).
	 */
	if (getenv("VMD_TEST_FILES_PAUSE"))
		(void)raise(SIGSTOP);
	/* Nothing of vmd's but its socket: a worker that waits must hold nobody's files. */
	if (dup2(sock, 3) < 0)
		return 1;
	(void)syscall(SYS_close_range, 4, ~0u, 0);
	if (f->spec) {
		int r = provision(f, 3);

		if (r < 0)
			return r == -EPIPE ? 2 : 1;
	}
	for (size_t i = 0; i < f->n; i++) {
		VmmWorkerRecord rec = { .index = (unsigned)i };
		int fd = make(f, &f->wants[i], previous, &rec);

		rec.error = fd < 0 ? fd : 0;
		if (vmm_worker_send(3, &rec, fd > 0 ? fd : -EBADF) < 0)
			return 2;
		if (fd < 0)
			return 1;
		if (fd > 0)
			previous = fd;
	}
	return 0;
}

/* vmd's side */

static void files_received(VmmWorker *wk _unused_, const VmmWorkerRecord *rec, int fd, void *userdata)
{
	VmmJob *j = userdata;
	VmmFiles *f = j->files;
	VmmFileWant *w = rec->index < f->n ? &f->wants[rec->index] : NULL;
	int r = 0;

	if (rec->index == VMM_FILES_PROVISION && !f->provisioned) {
		if (fd >= 0)
			close(fd);
		f->provisioned = true;
		vmm_vm_changed(j->vm); /* the status says what it does next */
		if (rec->error < 0 && f->error == 0) {
			f->error = rec->error;
			vmm_job_fail_message(j, "%s", rec->message);
		}
		return;
	}
	if (!w || w->received) {
		if (fd >= 0)
			close(fd);
		return;
	}
	w->received = true;
	f->done = rec->index + 1;
	vmm_vm_changed(j->vm); /* the status says what it does next */
	if (rec->error < 0) {
		if (fd >= 0)
			close(fd);
		r = rec->error;
		vmm_job_fail_message(j, "%s", rec->message);
	} else if (w->kind == VMM_FILE_BOOT && rec->match > 0 && rec->match <= f->n_known)
		vmm_boot_file_use(j->vm, (VmmBootSlot)w->key, f->known[rec->match - 1]);
	else if (w->kind == VMM_FILE_BOOT && fd >= 0)
		r = vmm_boot_file_add(j->vm, (VmmBootSlot)w->key, fd, &rec->st);
	else
		w->fd = fd;
	if (r < 0 && f->error == 0)
		f->error = r;
}

static void files_exited(VmmWorker *wk _unused_, int status, void *userdata)
{
	VmmJob *j = userdata;
	VmmFiles *f = j->files;
	int r = f->error;

	if (r == 0 && (status != 0 || f->done < f->n || (f->spec && !f->provisioned))) {
		vmm_job_fail_message(j, "vmd's file worker exited with status %d", status);
		r = -EIO;
	}
	vmm_job_files_done(j->vm, j, r);
}

void vmm_files_free(VmmJob *j)
{
	VmmFiles *f = TAKE_PTR(j->files);

	if (!f)
		return;
	vmm_worker_abort(&f->worker);
	vmm_boot_files_release(j->vm, f->known, f->n_known);
	free(f->seed);
	for (size_t i = 0; i < f->n; i++) {
		free(f->wants[i].path);
		if (f->wants[i].fd >= 0)
			close(f->wants[i].fd);
	}
	free(f);
}

int vmm_files_begin(VmmVm *v, VmmJob *j)
{
	VmmUser buf;
	const VmmUser *user = vmm_vm_user(v, &buf);
	bool provision = IN_SET(j->type, BACKEND_OP_START, BACKEND_OP_RESTORE);
	int r = 0;

	vmm_files_free(j);
	if (!v->type->files && !provision)
		return 0;
	j->files = calloc(1, sizeof(*j->files));
	if (!j->files)
		return -ENOMEM;
	if (user) {
		j->files->has_user = true;
		j->files->user = *user;
	}
	/* The seed and the credentials' copies first: the worker writes them, then copies. */
	if (provision) {
		j->files->spec = v->config;
		j->files->dir = v->dir;
		if (v->config->cloud_init) {
			j->files->seed = vmm_vm_path(v->b, v->name, PROVISION_SEED);
			if (!j->files->seed)
				return -ENOMEM;
		}
	}
	if (v->type->files)
		r = v->type->files(v, j, j->files);
	if (r < 0 || (j->files->n == 0 && !provision))
		return r;
	/* The copies there are, for the worker to match its kernel and initrd against. */
	for (size_t i = 0; i < j->files->n; i++)
		if (j->files->wants[i].kind == VMM_FILE_BOOT) {
			r = vmm_boot_files_hold(v, &j->files->known, &j->files->n_known);
			if (r < 0)
				return r;
			break;
		}
	r = vmm_worker_start(&j->files->worker, v->b->event, files_worker, j->files, files_received,
			     files_exited, j);
	return r < 0 ? r : 1;
}

int vmm_files_take(VmmVm *v, unsigned key, const char *what, char *why, size_t n)
{
	VmmFiles *f = v->job.files;

	for (size_t i = 0; f && i < f->n; i++)
		if (f->wants[i].key == key && f->wants[i].fd >= 0)
			return TAKE_FD(f->wants[i].fd);
	snprintf(why, n, "%s: vmd did not open it beforehand", what);
	return -ENOENT;
}

char *vmm_files_describe(const VmmVm *v _unused_, const VmmJob *j)
{
	const VmmFiles *f = j->files;
	const VmmFileWant *w = f && f->done < f->n ? &f->wants[f->done] : NULL;
	char *m = NULL;
	int r;

	if (f && f->spec && !f->provisioned && (f->seed || f->spec->n_credentials > 0))
		r = asprintf(&m, "writing its seed and its credentials' copies");
	else if (!w)
		r = asprintf(&m, "opening the files its VMM gets");
	else if (IN_SET(w->kind, VMM_FILE_COPY, VMM_FILE_BOOT))
		r = asprintf(&m, "copying the %s %s", w->what, w->path);
	else if (w->kind == VMM_FILE_ACCESS)
		r = asprintf(&m, "checking %s access as the VMM user (uid %u)", w->what,
			     (unsigned)f->user.uid);
	else
		r = asprintf(&m, "opening %s %s", w->what, w->path);
	return r < 0 ? NULL : m;
}
