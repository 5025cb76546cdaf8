/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <fcntl.h>
#include <inotifytools/inotify.h>
#include <inotifytools/inotifytools.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include "sandbox-dir.h"
#include "util.h"
#include "watcher.h"

#define QUEUE_MAX 4096 /* more pending hints than this: read everything instead */

#define DIR_EVENTS                                                                                 \
	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_ATTRIB |        \
	 IN_DELETE_SELF | IN_MOVE_SELF)
#define PARENT_EVENTS (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)

struct Watcher {
	char *given;  /* the directory as configured: maybe a symlink that gets swapped */
	char *dir;    /* where it leads now, without a trailing slash (the thread's) */
	char *parent; /* its parent directory */
	char *base;   /* its name in the parent */
	WatcherFn fn;
	WatcherStateFn state_fn;
	void *userdata;
	int efd;
	sd_event_source *io;
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	pthread_cond_t watching_cond; /* signalled once the first watches are set up */
	bool watching_set_up;	      /* under lock */
	pthread_cond_t retry_cond;    /* signalled by watcher_retry() and watcher_free() */

	/*
	 * A mount over the directory sends no inotify event: the mount table's changes are
	 * watched on the loop (/proc/self/mountinfo), and when the path leads to another
	 * directory than the one watched, the thread is asked to watch again (and rescan).
	 */
	int mounts_fd;
	sd_event_source *mounts_io;
	sd_event_source *rewatch_timer; /* asks again until the thread took it */
	atomic_bool rewatch_asked;
	dev_t watched_dev; /* under lock: the directory the watches are on */
	ino_t watched_ino;

	pthread_mutex_t lock; /* guards what follows: the thread adds, the loop takes */
	char **queue;
	size_t n_queue;
	bool rescan;
	int error;	    /* why inotify is out of reach, or 0 */
	bool error_changed; /* not told to state_fn yet */
	bool retry;	    /* watcher_retry() asked for another try */
};

static void wake(Watcher *w)
{
	uint64_t one = 1;

	(void)!write(w->efd, &one, sizeof(one));
}

static void push(Watcher *w, char *path)
{
	pthread_mutex_lock(&w->lock);
	if (!path || w->rescan || w->n_queue >= QUEUE_MAX) {
		/* Everything is read again: single hints add nothing. */
		for (size_t i = 0; i < w->n_queue; i++)
			free(w->queue[i]);
		w->n_queue = 0;
		w->rescan = true;
		free(path);
	} else {
		char **q = reallocarray(w->queue, w->n_queue + 1, sizeof(char *));

		if (q) {
			w->queue = q;
			q[w->n_queue++] = path;
		} else {
			free(path);
			w->rescan = true;
		}
	}
	pthread_mutex_unlock(&w->lock);
	wake(w);
}

/*
 * libinotifytools opens its inotify fd without O_CLOEXEC and has no accessor for it: find
 * it, so that no VMM vmd starts inherits it.
 */
static void inotify_fd_cloexec(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	while (d && (e = readdir(d))) {
		char link[64], target[64];
		ssize_t n;
		int fd = atoi(e->d_name);

		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0 || fd <= 2)
			continue;
		target[n] = '\0';
		if (streq(target, "anon_inode:inotify"))
			(void)fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
	}
	if (d)
		closedir(d);
}

/* libinotifytools' error, as -errno. */
static int inotify_error(void)
{
	return -(inotifytools_error() ?: EIO);
}

/* Whether a failed watch says that inotify itself ran out (watches, memory, files). */
static bool is_exhausted(int error)
{
	return IN_SET(error, -ENOSPC, -ENOMEM, -EMFILE, -ENFILE);
}

const char *watcher_error_sysctl(int error)
{
	switch (error) {
	case -EMFILE:
		return "fs.inotify.max_user_instances";
	case -ENOSPC:
		return "fs.inotify.max_user_watches";
	case -ENFILE:
		return "fs.file-max";
	default:
		return NULL;
	}
}

/*
 * (Re)establish every watch: 0 when watching, 1 when the directory is not there to watch
 * (its parent is; the thread looks for it every few seconds), -errno when inotify itself
 * is out of reach. Then nothing is watched and libinotifytools is left uninitialised, so
 * that nothing calls into it (its every function asserts that it was initialised).
 */
static int setup_watches(Watcher *w)
{
	char *real = realpath(w->given, NULL);
	struct stat st = {};
	int r;

	if (real) {
		free(w->dir);
		w->dir = real;
	}
	(void)stat(w->dir, &st);
	pthread_mutex_lock(&w->lock);
	w->watched_dev = st.st_dev;
	w->watched_ino = st.st_ino;
	pthread_mutex_unlock(&w->lock);
	inotifytools_cleanup();
	if (!inotifytools_initialize())
		return inotify_error();
	inotify_fd_cloexec();
	if (!inotifytools_watch_file(w->parent, PARENT_EVENTS) && is_exhausted(inotify_error()))
		goto exhausted;
	if (inotifytools_watch_recursively(w->dir, DIR_EVENTS) != 0)
		return 0;
	if (!is_exhausted(inotify_error()))
		return 1;
exhausted:
	/* A watch set that misses part of the directory would miss changes without a word. */
	r = inotify_error();
	inotifytools_cleanup();
	return r;
}

/* Tell the loop whether inotify is out of reach (error < 0) or not. */
static void set_error(Watcher *w, int error)
{
	bool changed;

	pthread_mutex_lock(&w->lock);
	changed = w->error != error;
	if (changed) {
		w->error = error;
		w->error_changed = true;
	}
	pthread_mutex_unlock(&w->lock);
	if (changed)
		wake(w);
}

/* Nothing is watched: wait for watcher_retry() (true) or the end (false). */
static bool wait_for_retry(Watcher *w)
{
	bool again;

	pthread_mutex_lock(&w->lock);
	while (!w->retry && !atomic_load(&w->stop))
		pthread_cond_wait(&w->retry_cond, &w->lock);
	w->retry = false;
	again = !atomic_load(&w->stop);
	pthread_mutex_unlock(&w->lock);
	return again;
}

/* Whether path (below the watched directory) goes through a hidden folder such as ..2024_x. */
static bool in_hidden_dir(const Watcher *w, const char *dir)
{
	size_t n = strlen(w->dir);
	const char *rel = strncmp(dir, w->dir, n) == 0 ? dir + n : dir;

	for (const char *p = rel; (p = strchr(p, '/'));)
		if (*++p == '.')
			return true;
	return false;
}

static void handle(Watcher *w, struct inotify_event *ev, bool *ret_rewatch)
{
	const char *wd_path = inotifytools_filename_from_wd(ev->wd);
	_cleanup_free_ char *dir = NULL;
	char *path = NULL;
	struct stat st;
	size_t l;

	if (ev->mask & IN_Q_OVERFLOW) {
		push(w, NULL);
		return;
	}
	if (!wd_path)
		return;
	dir = strdup(wd_path);
	if (!dir)
		return push(w, NULL);
	l = strlen(dir);
	while (l > 1 && dir[l - 1] == '/')
		dir[--l] = '\0';

	if (streq(dir, w->parent) && !streq(dir, w->dir)) {
		/* Something happened to the directory itself in its parent. */
		/* The rescan is announced once the new watches are set up, not before. */
		if (ev->len > 0 && streq(ev->name, w->base))
			*ret_rewatch = true;
		return;
	}
	if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
		if (streq(dir, w->dir))
			*ret_rewatch = true;
		else
			push(w, NULL);
		return;
	}
	if (ev->len == 0 && (ev->mask & IN_ATTRIB) && streq(dir, w->dir)) {
		/* The directory's own owner or mode: it judges every file in it (sandbox-file.h). */
		push(w, NULL);
		return;
	}
	if (ev->len == 0 || in_hidden_dir(w, dir))
		return;
	if (ev->name[0] == '.' && ev->name[1] == '.') {
		/* A ConfigMap's ..data swap: the files behind every symlink changed at once. */
		push(w, NULL);
		return;
	}
	/* Report it under the directory as configured, where the daemon knows its files. */
	if (asprintf(&path, "%s%s/%s", w->given,
		     dir + (strncmp(dir, w->dir, strlen(w->dir)) == 0 ? strlen(w->dir) : strlen(dir)),
		     ev->name) < 0)
		return push(w, NULL);
	if (ev->mask & IN_ISDIR) {
		/* Out of watches for the new folder: start over, which says so. */
		if (ev->mask & (IN_CREATE | IN_MOVED_TO) && sandbox_dir_subdir_is_searched(ev->name) &&
		    !inotifytools_watch_recursively(path, DIR_EVENTS) &&
		    is_exhausted(inotify_error()))
			*ret_rewatch = true;
		free(path);
		push(w, NULL); /* files may have come or gone with it */
		return;
	}
	if (!sandbox_dir_name_is_candidate(ev->name)) {
		free(path);
		return;
	}
	/* A new regular file is read once it is written and closed, not while it is empty. */
	if ((ev->mask & IN_CREATE) && !(ev->mask & ~(IN_CREATE | IN_ISDIR)) &&
	    lstat(path, &st) == 0 && !S_ISLNK(st.st_mode)) {
		free(path);
		return;
	}
	push(w, path);
}

/* SIGRTMIN interrupts the thread's blocking read when it is to stop; it does nothing else. */
#define STOP_SIGNAL SIGRTMIN

static void on_stop_signal(int sig _unused_)
{
}

static void *watch_thread(void *userdata)
{
	Watcher *w = userdata;
	sigset_t mask;
	int r;

	/* Signals are the event loop's, through its signalfd; this thread takes only its own. */
	sigfillset(&mask);
	sigdelset(&mask, STOP_SIGNAL);
	pthread_sigmask(SIG_SETMASK, &mask, NULL);

	r = setup_watches(w);
	set_error(w, MIN(r, 0));
	pthread_mutex_lock(&w->lock);
	w->watching_set_up = true;
	pthread_cond_signal(&w->watching_cond);
	pthread_mutex_unlock(&w->lock);

	while (!atomic_load(&w->stop)) {
		bool rewatch = false;
		struct inotify_event *ev;

		if (r < 0) {
			/* inotify is out of reach: the loop polls, and asks for another try. */
			if (!wait_for_retry(w))
				break;
			(void)atomic_exchange(&w->rewatch_asked, false);
			rewatch = true;
		} else {
			/* Without the directory, look again every few seconds (and watch the parent). */
			ev = inotifytools_next_event(r == 0 ? -1 : 2);
			if (atomic_load(&w->stop))
				break;
			/* The mount table says the path leads elsewhere now: watch what it leads to. */
			if (atomic_exchange(&w->rewatch_asked, false))
				rewatch = true;
			if (ev)
				handle(w, ev, &rewatch);
			else if (r == 0)
				rewatch = true; /* an error of the library: start over */
			else if (access(w->dir, F_OK) == 0)
				rewatch = true;
		}
		if (rewatch) {
			r = setup_watches(w);
			set_error(w, MIN(r, 0));
			/* Only now: a file written before the watches were back is seen by this rescan. */
			if (r >= 0)
				push(w, NULL);
		}
	}
	return NULL;
}

static int on_wake(sd_event_source *s _unused_, int fd, uint32_t revents _unused_, void *userdata)
{
	Watcher *w = userdata;
	char **queue;
	size_t n;
	bool rescan, error_changed;
	int error;
	uint64_t v;

	(void)!read(fd, &v, sizeof(v));
	pthread_mutex_lock(&w->lock);
	queue = w->queue;
	n = w->n_queue;
	rescan = w->rescan;
	error = w->error;
	error_changed = w->error_changed;
	w->queue = NULL;
	w->n_queue = 0;
	w->rescan = false;
	w->error_changed = false;
	pthread_mutex_unlock(&w->lock);

	if (error_changed && w->state_fn)
		w->state_fn(w->userdata, error);
	if (rescan)
		w->fn(w->userdata, NULL);
	for (size_t i = 0; i < n && !rescan; i++)
		if (i == 0 || !streq(queue[i], queue[i - 1]))
			w->fn(w->userdata, queue[i]);
	for (size_t i = 0; i < n; i++)
		free(queue[i]);
	free(queue);
	return 0;
}

/* Until the thread takes the request: a signal that lands just before its read() is missed. */
static int rewatch_again(sd_event_source *s, uint64_t usec, void *userdata)
{
	Watcher *w = userdata;

	if (!atomic_load(&w->rewatch_asked))
		return sd_event_source_set_enabled(s, SD_EVENT_OFF);
	(void)pthread_kill(w->thread, STOP_SIGNAL);
	return sd_event_source_set_time(s, usec + 20 * 1000);
}

static int on_mounts(sd_event_source *s, int fd _unused_, uint32_t revents _unused_, void *userdata)
{
	Watcher *w = userdata;
	struct stat st;
	bool moved;

	/* Gone: the thread notices that itself. */
	if (stat(w->given, &st) < 0)
		return 0;
	pthread_mutex_lock(&w->lock);
	moved = st.st_dev != w->watched_dev || st.st_ino != w->watched_ino;
	pthread_mutex_unlock(&w->lock);
	if (!moved)
		return 0;
	atomic_store(&w->rewatch_asked, true);
	(void)pthread_kill(w->thread, STOP_SIGNAL);
	if (!w->rewatch_timer)
		return sd_event_add_time_relative(sd_event_source_get_event(s), &w->rewatch_timer,
						  CLOCK_MONOTONIC, 20 * 1000, 1000, rewatch_again, w);
	(void)sd_event_source_set_time_relative(w->rewatch_timer, 20 * 1000);
	return sd_event_source_set_enabled(w->rewatch_timer, SD_EVENT_ON);
}

/* The mount table, watched for a mount over the directory; best effort (no /proc: none). */
static void watch_mounts(Watcher *w, sd_event *event)
{
	w->mounts_fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
	if (w->mounts_fd >= 0)
		(void)sd_event_add_io(event, &w->mounts_io, w->mounts_fd, EPOLLPRI, on_mounts, w);
}

int watcher_new(const char *dir, WatcherFn fn, WatcherStateFn state_fn, void *userdata,
		sd_event *event, Watcher **ret)
{
	Watcher *w = calloc(1, sizeof(*w));
	char *slash;
	int r;

	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->watching_cond, NULL);
	pthread_cond_init(&w->retry_cond, NULL);
	w->efd = -EBADF;
	w->mounts_fd = -EBADF;
	w->fn = fn;
	w->state_fn = state_fn;
	w->userdata = userdata;
	w->given = strdup(dir);
	while (w->given && strlen(w->given) > 1 && w->given[strlen(w->given) - 1] == '/')
		w->given[strlen(w->given) - 1] = '\0';
	w->dir = realpath(dir, NULL) ?: strdup(dir);
	if (!w->given || !w->dir)
		goto oom;
	/* Keep the path as given for the parent: a symlink swap happens there. */
	w->parent = strdup(dir);
	if (!w->parent)
		goto oom;
	while (strlen(w->parent) > 1 && w->parent[strlen(w->parent) - 1] == '/')
		w->parent[strlen(w->parent) - 1] = '\0';
	slash = strrchr(w->parent, '/');
	w->base = strdup(slash ? slash + 1 : w->parent);
	if (!w->base)
		goto oom;
	if (slash == w->parent)
		w->parent[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		strcpy(w->parent, ".");

	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->efd < 0) {
		r = -errno;
		goto fail;
	}
	r = sd_event_add_io(event, &w->io, w->efd, EPOLLIN, on_wake, w);
	if (r < 0)
		goto fail;
	r = sigaction(STOP_SIGNAL, &(struct sigaction){ .sa_handler = on_stop_signal }, NULL) < 0
		    ? -errno
		    : 0;
	if (r < 0)
		goto fail;
	r = -pthread_create(&w->thread, NULL, watch_thread, w);
	if (r < 0)
		goto fail;
	w->thread_started = true;
	/*
	 * Return once the watches are set up: the caller scans after this, and a change it
	 * does not see must then reach the watch.
	 */
	pthread_mutex_lock(&w->lock);
	while (!w->watching_set_up)
		pthread_cond_wait(&w->watching_cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
	watch_mounts(w, event);
	*ret = w;
	return 0;
oom:
	r = -ENOMEM;
fail:
	watcher_free(w);
	return r;
}

Watcher *watcher_free(Watcher *w)
{
	if (!w)
		return NULL;
	sd_event_source_disable_unref(w->mounts_io);
	sd_event_source_disable_unref(w->rewatch_timer);
	if (w->mounts_fd >= 0)
		close(w->mounts_fd);
	if (w->thread_started) {
		atomic_store(&w->stop, true);
		/* Again until it is gone: a signal that lands just before its read() is missed. */
		for (;;) {
			struct timespec ts;

			/* It reads events, or waits for a retry. */
			pthread_mutex_lock(&w->lock);
			pthread_cond_signal(&w->retry_cond);
			pthread_mutex_unlock(&w->lock);
			(void)pthread_kill(w->thread, STOP_SIGNAL);
			(void)clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 20 * 1000 * 1000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			if (pthread_timedjoin_np(w->thread, NULL, &ts) == 0)
				break;
		}
		inotifytools_cleanup();
	}
	sd_event_source_disable_unref(w->io);
	if (w->efd >= 0)
		close(w->efd);
	for (size_t i = 0; i < w->n_queue; i++)
		free(w->queue[i]);
	free(w->queue);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->watching_cond);
	pthread_cond_destroy(&w->retry_cond);
	free(w->given);
	free(w->dir);
	free(w->parent);
	free(w->base);
	return mfree(w);
}

int watcher_error(Watcher *w)
{
	int error;

	pthread_mutex_lock(&w->lock);
	error = w->error;
	pthread_mutex_unlock(&w->lock);
	return error;
}

void watcher_retry(Watcher *w)
{
	pthread_mutex_lock(&w->lock);
	if (w->error < 0) {
		w->retry = true;
		pthread_cond_signal(&w->retry_cond);
	}
	pthread_mutex_unlock(&w->lock);
}
