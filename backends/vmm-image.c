/* SPDX-License-Identifier: MIT */
/*
 * The sandbox's own copy of each disk that names an image (docs/sandbox-file.md, "Disks
 * from images"), made in the start job's image phase, before its VMM starts. The copy is
 * <state-dir>/disks/<name>/<id>.qcow2, a qcow2 overlay whose backing file is the image
 * (QEMU, which gets the image as a node of its own), or <id>.raw, a full copy (the types
 * with raw_image_copies: Firecracker takes raw disks only, Cloud Hypervisor would open an
 * overlay's backing file by its path, as the VMM user).
 *
 * Nothing here waits in the loop: each copy is made by a worker (vmm-worker.c), a child of
 * vmd that runs qemu-img (or copies the image itself) and syncs what it wrote, and whose
 * exit comes back through its pidfd. It writes <id>.<ext>.part; vmd renames it into place once the
 * worker is done, so that a copy is whole or absent: after a kill -9 of vmd (the worker dies with
 * it, PR_SET_PDEATHSIG) the next start makes it again.
 *
 * Beside each copy, <id>.json says what it is a copy of (image, imageFormat) and for which
 * generation of the spec it was made. It is written before the copy appears and the copy is
 * moved aside before it changes, so a copy never sits beside a record of another image. A
 * copy of another image than the spec's is kept beside, as <id>.gen<N>.<ext> (N: the
 * generation it was made for), never overwritten.
 *
 * A type with raw copies may find <id>.qcow2, an overlay an earlier vmd made (Cloud
 * Hypervisor's, before it had raw copies), which holds the guest's writes: a boot converts
 * it, read through its backing file, into <id>.raw, and then keeps it aside as
 * <id>.gen<N>.qcow2, never deleted. A snapshot's wake keeps using it while there is no
 * raw copy (the snapshot names it); the next boot converts it.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "disk-image.h"
#include "log.h"
#include "util.h"
#include "vmm-vm.h"

#define IMAGE_COPY_CHUNK (1u << 20)

/* What a worker makes. */
typedef enum ImageTask {
	IMAGE_OVERLAY, /* qemu-img create -f qcow2 -F FMT -b IMAGE PART [SIZE] */
	IMAGE_CONVERT, /* qemu-img convert -f qcow2 -O raw IMAGE PART, grown to SIZE */
	IMAGE_COPY,    /* a reflink (FICLONE), else a sparse copy, of a raw IMAGE, grown */
	IMAGE_GROW,    /* the copy there grown to SIZE in place (qemu-img resize, or truncate) */
	IMAGE_FLATTEN, /* qemu-img convert -f qcow2 -O raw OVERLAY PART: an earlier overlay, grown */
} ImageTask;

static bool is_image_disk(const DiskSpec *d)
{
	return d->image != NULL;
}

bool vmm_image_needed(const SandboxSpec *config)
{
	for (size_t i = 0; i < config->n_disks; i++)
		if (is_image_disk(&config->disks[i]))
			return true;
	return false;
}

/* Beside d's copy, with suffix for its extension: <id><suffix>. */
static char *sibling_path(const DiskSpec *d, const char *suffix)
{
	const char *dot = strrchr(d->path, '.');
	char *p = NULL;

	return asprintf(&p, "%.*s%s", (int)(dot - d->path), d->path, suffix) < 0 ? NULL : p;
}

/* Where an earlier vmd made d's qcow2 overlay, for a raw copy's d. */
static char *earlier_overlay_path(const DiskSpec *d)
{
	return sibling_path(d, ".qcow2");
}

/* 1 if path is there, 0 if not, or -errno. */
static int exists(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0)
		return 1;
	return errno == ENOENT ? 0 : -errno;
}

/* The overlay an earlier vmd made for d, a raw copy's: 1 and *ret if it is there, else 0. */
static int find_earlier_overlay(const DiskSpec *d, char **ret)
{
	_cleanup_free_ char *overlay = earlier_overlay_path(d);
	int r;

	if (!overlay)
		return -ENOMEM;
	r = exists(overlay);
	if (r > 0)
		*ret = TAKE_PTR(overlay);
	return r;
}

/* A wake, with no raw copy of d but an earlier overlay: the overlay, which the snapshot names. */
static int keep_earlier_overlay(DiskSpec *d)
{
	_cleanup_free_ char *overlay = NULL;
	int r = exists(d->path);

	if (r != 0)
		return r < 0 ? r : 0;
	r = find_earlier_overlay(d, &overlay);
	if (r <= 0)
		return r;
	free(d->path);
	d->path = TAKE_PTR(overlay);
	d->format = DISK_FORMAT_QCOW2;
	return 0;
}

int vmm_image_resolve(VmmVm *v, bool restoring)
{
	const char *state_dir = v->b->options.state_dir;
	DiskFormat f = v->type->raw_image_copies ? DISK_FORMAT_RAW : DISK_FORMAT_QCOW2;
	int r;

	for (size_t i = 0; i < v->config->n_disks; i++) {
		DiskSpec *d = &v->config->disks[i];

		if (!is_image_disk(d))
			continue;
		if (!state_dir) {
			backend_set_error(v->b, "disk '%s' names an image, and vmd has no state dir",
					  d->id);
			return -EINVAL;
		}
		free(d->path);
		d->path = spec_disk_overlay_path(state_dir, v->name, d->id, f);
		if (!d->path)
			return -ENOMEM;
		d->format = f;
		if (restoring && f == DISK_FORMAT_RAW && (r = keep_earlier_overlay(d)) < 0) {
			backend_set_error(v->b, "disk '%s': cannot look for its copy %s: %s", d->id,
					  d->path, strerror(-r));
			return r;
		}
	}
	return 0;
}

/* The worker */

static bool is_zero(const char *buf, size_t n)
{
	return n == 0 || (buf[0] == 0 && memcmp(buf, buf + 1, n - 1) == 0);
}

/* [from, to) of in into out at the same offsets, leaving what is all zeros a hole. */
static int copy_range(int in, int out, off_t from, off_t to, char *buf)
{
	while (from < to) {
		size_t want = (size_t)MIN((off_t)IMAGE_COPY_CHUNK, to - from);
		ssize_t n = pread(in, buf, want, from);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		if (!is_zero(buf, (size_t)n) && pwrite(out, buf, (size_t)n, from) != n)
			return -errno ?: -EIO;
		from += n;
	}
	return 0;
}

/*
 * A copy of a raw image: a reflink where the filesystem shares extents (FICLONE), else only
 * its data, from SEEK_DATA to SEEK_HOLE, so that a sparse image stays sparse.
 */
static int copy_image(int in, int out)
{
	_cleanup_free_ char *buf = NULL;
	off_t pos = 0, end = lseek(in, 0, SEEK_END);
	int r;

	if (ioctl(out, FICLONE, in) == 0)
		return 0;
	buf = malloc(IMAGE_COPY_CHUNK);
	if (!buf || end < 0)
		return -errno ?: -ENOMEM;
	while (pos < end) {
		off_t data = lseek(in, pos, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			break; /* only a hole is left */
		if (data < 0)
			return copy_range(in, out, pos, end, buf); /* no SEEK_DATA here: all of it */
		hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			hole = end;
		r = copy_range(in, out, data, hole, buf);
		if (r < 0)
			return r;
		pos = hole;
	}
	return ftruncate(out, end) < 0 ? -errno : 0;
}

/* Grow the raw file at path to size (never shrink), and sync it. */
static int grow_and_sync(const char *path, uint64_t size)
{
	_cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0)
		return -errno;
	if (size > (uint64_t)st.st_size && ftruncate(fd, (off_t)size) < 0)
		return -errno;
	return fsync(fd) < 0 ? -errno : 0;
}

/* Whether task begins with qemu-img, the worker's first stage, exec'd. */
static bool runs_qemu_img(ImageTask task, const DiskSpec *d)
{
	return task == IMAGE_OVERLAY || task == IMAGE_CONVERT || task == IMAGE_FLATTEN ||
	       (task == IMAGE_GROW && d->format == DISK_FORMAT_QCOW2);
}

/*
 * The first stage of a task that runs qemu-img: its argv, in the worker. overlay: what
 * IMAGE_FLATTEN converts, whose backing file (the image) qemu-img reads through, as root.
 */
_Noreturn static void exec_qemu_img(ImageTask task, const char *qemu_img, const DiskSpec *d,
				    const char *overlay, const char *part)
{
	char size[32];
	const char *format = disk_format_to_string(d->image_format);

	snprintf(size, sizeof(size), "%" PRIu64, d->size);
	if (task == IMAGE_OVERLAY)
		execv(qemu_img, (char *[]){ (char *)qemu_img, "create", "-q", "-f", "qcow2", "-F",
					    (char *)format, "-b", d->image, (char *)part,
					    d->size ? size : NULL, NULL });
	else if (task == IMAGE_CONVERT || task == IMAGE_FLATTEN)
		execv(qemu_img, (char *[]){ (char *)qemu_img, "convert", "-q", "-f", "qcow2", "-O",
					    "raw", task == IMAGE_FLATTEN ? (char *)overlay : d->image,
					    (char *)part, NULL });
	else
		execv(qemu_img, (char *[]){ (char *)qemu_img, "resize", "-q", "-f", "qcow2",
					    d->path, size, NULL });
	fprintf(stderr, "cannot run %s: %m\n", qemu_img);
	_exit(127);
}

/* What the worker does itself: the copy, growing, and the sync of what was written. */
static int finish(ImageTask task, const DiskSpec *d, const char *part)
{
	switch (task) {
	case IMAGE_OVERLAY:
		return grow_and_sync(part, 0);
	case IMAGE_CONVERT:
	case IMAGE_FLATTEN:
		return grow_and_sync(part, d->size);
	case IMAGE_COPY: {
		_cleanup_close_ int in = open(d->image, O_RDONLY | O_CLOEXEC | O_NOCTTY),
				    out = open(part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		int r;

		if (in < 0 || out < 0)
			return -errno;
		r = copy_image(in, out);
		return r < 0 ? r : grow_and_sync(part, d->size);
	}
	case IMAGE_GROW:
		return grow_and_sync(d->path, d->format == DISK_FORMAT_QCOW2 ? 0 : d->size);
	}
	return -EINVAL;
}

/* What a worker is to do: its task, and where. */
typedef struct ImageWorkerArgs {
	ImageTask task;
	const char *qemu_img; /* its first stage runs it, exec'd; NULL: none */
	const DiskSpec *d;
	const char *overlay; /* IMAGE_FLATTEN's: what it converts */
	const char *part;
	int log_fd;
} ImageWorkerArgs;

/*
 * A worker (vmm-worker.c), and never more than one process, so that whatever ends it
 * (vmd's SIGKILL, vmd's death) leaves nothing behind. Its first stage execs qemu-img when
 * the task has it (qemu_img set); its second (or only) stage is finish().
 */
static int worker(void *arg, int sock _unused_)
{
	const ImageWorkerArgs *a = arg;
	int r, null_fd;

	null_fd = open("/dev/null", O_RDWR | O_NOCTTY);
	if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(a->log_fd, 1) < 0 || dup2(a->log_fd, 2) < 0)
		return 1;
	(void)syscall(SYS_close_range, 3, ~0u, 0);
	if (a->qemu_img)
		exec_qemu_img(a->task, a->qemu_img, a->d, a->overlay, a->part);
	r = finish(a->task, a->d, a->part);
	if (r < 0)
		fprintf(stderr, "disk '%s': %s\n", a->d->id, strerror(-r));
	return r < 0 ? 1 : 0;
}

/* vmd's side */

static char *side_path(const DiskSpec *d)
{
	return sibling_path(d, ".json");
}

static char *part_path(const DiskSpec *d)
{
	char *p = NULL;

	return asprintf(&p, "%s.part", d->path) < 0 ? NULL : p;
}

/* path (d's copy, or its earlier overlay) kept aside: <id>.gen<N>.<its extension>. */
static char *generation_path(const char *path, uint64_t generation)
{
	const char *dot = strrchr(path, '.');
	char *p = NULL;

	return asprintf(&p, "%.*s.gen%" PRIu64 "%s", (int)(dot - path), path, generation, dot) < 0
		       ? NULL
		       : p;
}

/* What <id>.json says the copy there is of: 1 if it is d's image, 0 if another's or none. */
static int side_matches(const DiskSpec *d, uint64_t *ret_generation)
{
	_cleanup_free_ char *path = side_path(d), *text = NULL;
	_cleanup_(json_decrefp) json_t *j = NULL;

	*ret_generation = 0;
	if (!path)
		return -ENOMEM;
	if (read_file(path, 64 * 1024, &text, NULL) < 0)
		return 0;
	j = json_loads(text, 0, NULL);
	*ret_generation = (uint64_t)json_integer_value(json_object_get(j, "generation"));
	return streq_ptr(json_string_value(json_object_get(j, "image")), d->image) &&
	       streq_ptr(json_string_value(json_object_get(j, "imageFormat")),
			 disk_format_to_string(d->image_format));
}

static int side_write(const DiskSpec *d, uint64_t generation)
{
	_cleanup_(json_decrefp) json_t *j = json_pack(
		"{s:s, s:s, s:I}", "image", d->image, "imageFormat",
		disk_format_to_string(d->image_format), "generation", (json_int_t)generation);
	_cleanup_free_ char *path = side_path(d), *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;

	if (!path || !text)
		return -ENOMEM;
	return write_file_atomic(path, text, strlen(text), 0600, true);
}

/* The size the copy at d->path has now, as a disk. */
static int copy_size(const DiskSpec *d, uint64_t *ret)
{
	_cleanup_free_ char *why = NULL;
	struct stat st;
	int r;

	/* A raw copy is the guest's bytes: whatever they begin with, its size is the file's. */
	if (d->format == DISK_FORMAT_RAW) {
		if (stat(d->path, &st) < 0)
			return -errno;
		*ret = (uint64_t)st.st_size;
		return 0;
	}
	r = disk_image_probe(d->path, d->format, ret, &why);
	if (r < 0 && r != -ENOMEM)
		log_warning("disk '%s': its copy %s %s", d->id, d->path, why ?: strerror(-r));
	return r;
}

static int start_worker(VmmVm *v, VmmJob *j, ImageTask task, const DiskSpec *d);

static void on_worker(VmmWorker *wk _unused_, int status, void *userdata)
{
	VmmJob *j = userdata;
	VmmImageWork *w = &j->image;
	const DiskSpec *d = &j->vm->config->disks[w->disk];
	int r;

	if (status != 0) {
		vmm_job_fail_message(j, "disk '%s': %s exited with status %d", d->id,
				     w->stage == 0 && runs_qemu_img(w->task, d)
					     ? "qemu-img"
					     : "vmd's image worker",
				     status);
		vmm_job_image_done(j->vm, j, -EIO);
		return;
	}
	if (w->stage == 0 && runs_qemu_img(w->task, d)) {
		/* qemu-img is done: the worker's own stage syncs what it wrote. */
		w->stage = 1;
		r = start_worker(j->vm, j, w->task, d);
		if (r < 0)
			vmm_job_image_done(j->vm, j, r);
		return;
	}
	vmm_job_image_done(j->vm, j, 0);
}

/* Fork the worker of task's stage w->stage (0 for a new task). 1, or -errno. */
static int start_worker(VmmVm *v, VmmJob *j, ImageTask task, const DiskSpec *d)
{
	VmmImageWork *w = &j->image;
	_cleanup_free_ char *log = vmm_vm_path(v->b, v->name, VMM_IMAGE_LOG), *qemu_img = NULL,
			    *overlay = task == IMAGE_FLATTEN ? earlier_overlay_path(d) : NULL;
	_cleanup_close_ int log_fd = -EBADF;
	bool tool = w->stage == 0 && runs_qemu_img(task, d);
	int r;

	if (!log || (task == IMAGE_FLATTEN && !overlay))
		return -ENOMEM;
	if (tool && (r = vmm_find_binary("qemu-img", &qemu_img)) < 0) {
		vmm_job_fail_message(j, "disk '%s': cannot find qemu-img: %s", d->id, strerror(-r));
		return r;
	}
	log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0600);
	if (log_fd < 0)
		return -errno;
	w->task = task;
	w->copying = IN_SET(task, IMAGE_CONVERT, IMAGE_COPY, IMAGE_FLATTEN);
	w->task_grow = task == IMAGE_GROW;
	r = vmm_worker_start(&w->worker, v->b->event, worker,
			     &(ImageWorkerArgs){ .task = task,
						 .qemu_img = qemu_img,
						 .d = d,
						 .overlay = overlay,
						 .part = w->part ?: d->path,
						 .log_fd = log_fd },
			     NULL, on_worker, j);
	return r < 0 ? r : 1;
}

/* What move_aside() keeps, in the journal's words. */
typedef enum Aside {
	ASIDE_OTHER_IMAGE,	 /* d's copy, of the image before */
	ASIDE_EARLIER_OTHER,	 /* an earlier vmd's overlay of the image before */
	ASIDE_EARLIER_FLATTENED, /* an earlier vmd's overlay, whose data the raw copy has now */
} Aside;

/* Move path aside, as <id>.gen<N>.<ext>, never overwritten. */
static int move_aside(VmmVm *v, VmmJob *j, const DiskSpec *d, const char *path, Aside what,
		      uint64_t generation)
{
	static const char *const words[] = {
		[ASIDE_OTHER_IMAGE] = "names another image now: its copy of the image before",
		[ASIDE_EARLIER_OTHER] =
			"names another image now: the qcow2 overlay an earlier vmd made of the image before",
		[ASIDE_EARLIER_FLATTENED] =
			"is a raw copy now: the qcow2 overlay an earlier vmd made, whose data the copy has,",
	};
	_cleanup_free_ char *to = generation_path(path, generation);

	if (!to)
		return -ENOMEM;
	if (renameat2(AT_FDCWD, path, AT_FDCWD, to, RENAME_NOREPLACE) < 0) {
		int r = -errno;

		vmm_job_fail_message(j, "disk '%s': cannot keep %s as %s: %s", d->id, path, to,
				     strerror(-r));
		return r;
	}
	log_fields(LOG_NOTICE,
		   &(LogFields){ .sandbox = v->name,
				 .backend = v->type->vmm,
				 .message_id = LOG_MESSAGE_VMM },
		   "disk '%s' %s is kept as %s%s", d->id, words[what], to,
		   what == ASIDE_EARLIER_FLATTENED ? " (it may be deleted)" : "");
	return 0;
}

/* d's copy is there and of its image: grown if its size asks for more. 1: a worker runs. */
static int check_copy(VmmVm *v, VmmJob *j, const DiskSpec *d)
{
	uint64_t have = 0;
	char a[32], b[32];
	int r = copy_size(d, &have);

	if (r < 0) {
		vmm_job_fail_message(j, "disk '%s': its copy %s cannot be read as %s: %s", d->id,
				     d->path, disk_format_to_string(d->format), strerror(-r));
		return r;
	}
	if (d->size == 0 || d->size == have)
		return 0;
	if (d->size < have) {
		format_size(d->size, a);
		format_size(have, b);
		vmm_job_fail_message(
			j,
			"disk '%s': size %s is smaller than its copy's %s: a disk is never shrunk (its data would be cut); give size %s or more, or remove %s",
			d->id, a, b, b, d->path);
		return -EFBIG;
	}
	j->image.stage = 0;
	return start_worker(v, j, IMAGE_GROW, d);
}

/*
 * Begin making d's copy: its record first (unless flatten: it is right, of the earlier
 * overlay that is converted), then the worker into <id>.<ext>.part.
 */
static int make_copy(VmmVm *v, VmmJob *j, const DiskSpec *d, bool flatten)
{
	VmmImageWork *w = &j->image;
	_cleanup_free_ char *dir = spec_disks_dir(v->b->options.state_dir, v->name);
	ImageTask task = flatten				? IMAGE_FLATTEN
			 : d->format == DISK_FORMAT_QCOW2	? IMAGE_OVERLAY
			 : d->image_format == DISK_FORMAT_QCOW2 ? IMAGE_CONVERT
								: IMAGE_COPY;
	int r;

	free(w->part);
	w->part = part_path(d);
	if (!dir || !w->part)
		return -ENOMEM;
	r = mkdir_p(dir, 0700);
	if (r < 0) {
		vmm_job_fail_message(j, "cannot make %s: %s", dir, strerror(-r));
		return r;
	}
	r = flatten ? 0 : side_write(d, j->generation ?: v->generation);
	if (r < 0) {
		vmm_job_fail_message(j, "disk '%s': cannot record its image beside %s: %s", d->id,
				     d->path, strerror(-r));
		return r;
	}
	/* What a vmd killed while making it left: made anew. */
	if (unlink(w->part) < 0 && errno != ENOENT)
		return -errno;
	w->stage = 0;
	return start_worker(v, j, task, d);
}

/* The work on disk w->disk is done: the copy made is renamed into place, synced. */
static int commit(VmmJob *j)
{
	VmmImageWork *w = &j->image;
	const DiskSpec *d = &j->vm->config->disks[w->disk];
	_cleanup_free_ char *dir = spec_disks_dir(j->vm->b->options.state_dir, j->vm->name);
	const BackendOptions *o = &j->vm->b->options;
	_cleanup_close_ int dfd = -EBADF;
	VmmUser buf;
	const VmmUser *user = vmm_vm_user(j->vm, &buf);

	if (w->task_grow || !w->part)
		return 0;
	if (!dir)
		return -ENOMEM;
	/*
	 * The copy is the sandbox's disk, so it is the VMM's uid's to read and write, as the
	 * user's own disks must be: a jailed VMM runs as the jailer's uid, on a hard link of
	 * the copy in its jail; any other as the VMM user (vmm-pass.c reopens it as that).
	 */
	if (o->jailer_binary && o->jailer_uid != (uid_t)-1 && !user) {
		if (chown(w->part, o->jailer_uid, o->jailer_gid) < 0)
			return -errno;
	} else if (user && chown(w->part, user->uid, user->gid) < 0)
		return -errno;
	if (rename(w->part, d->path) < 0)
		return -errno;
	w->part = mfree(w->part);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return dfd < 0 || fsync(dfd) < 0 ? -errno : 0;
}

/*
 * The qcow2 overlay an earlier vmd made for a raw copy's d, if there is one (of d's image:
 * matches). With no copy there (made false), one of d's image is converted into the copy
 * (1: a worker runs); else it is kept aside (0): the copy has its data (made), or it is of
 * the image before.
 */
static int earlier_overlay(VmmVm *v, VmmJob *j, const DiskSpec *d, bool matches, bool made,
			   uint64_t made_for)
{
	_cleanup_free_ char *overlay = NULL;
	int r;

	if (d->format != DISK_FORMAT_RAW || !v->type->raw_image_copies)
		return 0;
	r = find_earlier_overlay(d, &overlay);
	if (r <= 0)
		return r;
	if (matches && !made)
		return make_copy(v, j, d, true);
	return move_aside(v, j, d, overlay, made ? ASIDE_EARLIER_FLATTENED : ASIDE_EARLIER_OTHER,
			  made_for);
}

int vmm_image_step(VmmVm *v, VmmJob *j, bool worker_done)
{
	VmmImageWork *w = &j->image;
	int r;

	if (worker_done) {
		r = commit(j);
		if (r < 0) {
			vmm_job_fail_message(j, "disk '%s': cannot put its copy in place: %s",
					     v->config->disks[w->disk].id, strerror(-r));
			return r;
		}
		/* Made or grown: looked at again, and on to the next once it is right. */
	}
	for (; w->disk < v->config->n_disks; w->disk++) {
		const DiskSpec *d = &v->config->disks[w->disk];
		uint64_t made_for;
		int matches;

		if (!is_image_disk(d))
			continue;
		matches = side_matches(d, &made_for);
		if (matches < 0)
			return matches;
		if (access(d->path, F_OK) == 0) {
			if (!matches) {
				r = move_aside(v, j, d, d->path, ASIDE_OTHER_IMAGE, made_for);
				if (r < 0)
					return r;
			} else {
				r = check_copy(v, j, d);
				if (r == 0)
					r = earlier_overlay(v, j, d, true, true, made_for);
				if (r != 0)
					return r;
				continue;
			}
		}
		r = earlier_overlay(v, j, d, matches, false, made_for);
		if (r != 0)
			return r;
		return make_copy(v, j, d, false);
	}
	return 0;
}

void vmm_image_abort(VmmJob *j)
{
	VmmImageWork *w = &j->image;

	vmm_worker_abort(&w->worker);
	if (w->part)
		(void)unlink(w->part);
	w->part = mfree(w->part);
}

char *vmm_image_describe(const VmmVm *v, const VmmJob *j)
{
	const VmmImageWork *w = &j->image;
	const DiskSpec *d = w->disk < v->config->n_disks ? &v->config->disks[w->disk] : NULL;
	char done[32], total[32], *m = NULL;
	struct stat st, img;
	int r;

	/* What a copy has so far: its blocks, since it is sparse. */
	format_size(w->part && stat(w->part, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0, done);
	if (!d || !vmm_worker_running(&w->worker))
		r = asprintf(&m, "making the disks' copies of their images");
	else if (w->task_grow)
		r = asprintf(&m, "growing disk '%s' to its size", d->id);
	else if (!w->copying)
		r = asprintf(&m, "making disk '%s', a copy-on-write overlay of image %s", d->id,
			     d->image);
	else if (w->task == IMAGE_FLATTEN)
		r = asprintf(
			&m,
			"converting disk '%s', an earlier vmd's qcow2 overlay, into a raw copy (%s so far)",
			d->id, done);
	else {
		format_size(stat(d->image, &img) == 0 ? (uint64_t)img.st_size : 0, total);
		r = asprintf(&m, "copying image %s for disk '%s' (%s of at most %s)", d->image,
			     d->id, done, total);
	}
	return r < 0 ? NULL : m;
}
