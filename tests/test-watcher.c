/* SPDX-License-Identifier: MIT */
/*
 * The watcher on real inotify, in temporary directories: each way tools write files must
 * end in a hint for the file, or a rescan, and hidden or temporary names must not. And
 * inotify out of reach (its limits lowered in a user namespace): no crash, the state told.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "helpers.h"
#include "watcher.h"

typedef struct Seen {
	char *paths[64];
	size_t n;
	unsigned rescans;
} Seen;

static void on_hint(void *userdata, const char *path)
{
	Seen *s = userdata;

	if (!path)
		s->rescans++;
	else if (s->n < ELEMENTSOF(s->paths))
		s->paths[s->n++] = strdup(path);
}

static void seen_clear(Seen *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->paths[i]);
	*s = (Seen){};
}

static bool saw(const Seen *s, const char *path)
{
	for (size_t i = 0; i < s->n; i++)
		if (streq(s->paths[i], path))
			return true;
	return false;
}

typedef struct Fixture {
	char *dir; /* the temporary directory */
	char *sb;  /* the watched sandbox directory in it */
	sd_event *event;
	Watcher *w;
	Seen seen;
} Fixture;

static int setup(void **state)
{
	Fixture *f = calloc(1, sizeof(*f));

	f->dir = test_tmpdir();
	assert_true(asprintf(&f->sb, "%s/sandboxes", f->dir) > 0);
	assert_int_equal(mkdir(f->sb, 0755), 0);
	assert_int_equal(sd_event_new(&f->event), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	Fixture *f = *state;

	watcher_free(f->w);
	sd_event_unref(f->event);
	seen_clear(&f->seen);
	test_tmpdir_remove(f->dir);
	free(f->sb);
	free(f);
	return 0;
}

static void start(Fixture *f, const char *dir)
{
	assert_int_equal(watcher_new(dir, on_hint, NULL, &f->seen, f->event, &f->w), 0);
	/* The thread sets its watches up on its own: give it a moment, then drop what came. */
	for (int i = 0; i < 5; i++)
		(void)sd_event_run(f->event, 20 * 1000);
	seen_clear(&f->seen);
}

/* Run the loop until pred holds; a bound against hanging, not a speed test. */
static bool run_until(Fixture *f, bool (*pred)(const Fixture *f, const void *arg), const void *arg)
{
	for (int i = 0; i < 500; i++) {
		if (pred(f, arg))
			return true;
		(void)sd_event_run(f->event, 20 * 1000);
	}
	return pred(f, arg);
}

static bool saw_path(const Fixture *f, const void *arg)
{
	return saw(&f->seen, arg);
}

static bool saw_rescan(const Fixture *f, const void *arg _unused_)
{
	return f->seen.rescans > 0;
}

static bool saw_path_or_rescan(const Fixture *f, const void *arg)
{
	return saw(&f->seen, arg) || f->seen.rescans > 0;
}

static char *at(const Fixture *f, const char *name)
{
	char *p = NULL;

	assert_true(asprintf(&p, "%s/%s", f->sb, name) > 0);
	return p;
}

static const char *TEXT = "apiVersion: vmd/v1\nkind: Sandbox\nspec: {backend: noop, memory: 16Mi}\n";

static void test_atomic_rename(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *tmp = at(f, ".web.yaml.tmp"), *dst = at(f, "web.yaml");

	start(f, f->sb);
	test_write_str(f->sb, ".web.yaml.tmp", TEXT);
	assert_int_equal(rename(tmp, dst), 0);
	assert_true(run_until(f, saw_path, dst));
	assert_false(saw(&f->seen, tmp)); /* hidden: never a hint */
}

/* vim without backupcopy: rename away to web.yaml~, write anew, delete the backup. */
static void test_vim_save(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *path = at(f, "web.yaml"), *backup = at(f, "web.yaml~"),
			    *probe = at(f, "4913");

	test_write_str(f->sb, "web.yaml", TEXT);
	start(f, f->sb);
	test_write_str(f->sb, "4913", "");
	assert_int_equal(unlink(probe), 0);
	assert_int_equal(rename(path, backup), 0);
	test_write_str(f->sb, "web.yaml", TEXT);
	assert_int_equal(unlink(backup), 0);
	assert_true(run_until(f, saw_path, path));
	assert_false(saw(&f->seen, backup));
	assert_false(saw(&f->seen, probe));
}

/* Truncate, then write in a second open: the last hint comes after the last close. */
static void test_truncate_then_write(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *path = at(f, "web.yaml");
	int fd;

	test_write_str(f->sb, "web.yaml", TEXT);
	start(f, f->sb);
	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	assert_true(fd >= 0);
	close(fd);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	assert_int_equal(write(fd, TEXT, strlen(TEXT)), (ssize_t)strlen(TEXT));
	close(fd);
	assert_true(run_until(f, saw_path, path));
}

/* git-sync: the sandbox directory is a symlink, flipped atomically to a new checkout. */
static void test_symlink_flip(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *link = NULL, *rev1 = NULL, *rev2 = NULL, *tmp = NULL, *hint = NULL;

	assert_true(asprintf(&link, "%s/current", f->dir) > 0);
	assert_true(asprintf(&rev1, "%s/rev1", f->dir) > 0);
	assert_true(asprintf(&rev2, "%s/rev2", f->dir) > 0);
	assert_true(asprintf(&tmp, "%s/current.tmp", f->dir) > 0);
	test_write_str(rev1, "web.yaml", TEXT);
	test_write_str(rev2, "web.yaml", TEXT);
	assert_int_equal(symlink("rev1", link), 0);
	start(f, link);

	assert_int_equal(symlink("rev2", tmp), 0);
	assert_int_equal(rename(tmp, link), 0);
	assert_true(run_until(f, saw_rescan, NULL));

	/* And it watches the new target: a change there is reported under the link's path. */
	seen_clear(&f->seen);
	test_write_str(rev2, "db.yaml", TEXT);
	assert_true(asprintf(&hint, "%s/db.yaml", link) > 0);
	assert_true(run_until(f, saw_path, hint));
}

/* A ConfigMap volume: files are symlinks through ..data, which kubelet swaps. */
static void test_configmap_swap(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *data = at(f, "..data"), *tmp = at(f, "..data_tmp"),
			    *web = at(f, "web.yaml");

	test_write_str(f->sb, "..2024_01_01/web.yaml", TEXT);
	assert_int_equal(symlink("..2024_01_01", data), 0);
	assert_int_equal(symlink("..data/web.yaml", web), 0);
	start(f, f->sb);

	test_write_str(f->sb, "..2024_01_02/web.yaml", TEXT);
	assert_int_equal(symlink("..2024_01_02", tmp), 0);
	assert_int_equal(rename(tmp, data), 0);
	assert_true(run_until(f, saw_rescan, NULL));
	/* Files inside the hidden timestamped folders are never hints of their own. */
	for (size_t i = 0; i < f->seen.n; i++)
		assert_null(strstr(f->seen.paths[i], "/..2024"));
}

/* The directory deleted and re-created: a rescan, and watching goes on in the new one. */
static void test_dir_recreated(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *path = at(f, "web.yaml"), *cmd = NULL;

	test_write_str(f->sb, "web.yaml", TEXT);
	start(f, f->sb);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(f->sb), 0);
	assert_true(run_until(f, saw_rescan, NULL));
	seen_clear(&f->seen);

	assert_int_equal(mkdir(f->sb, 0755), 0);
	assert_true(run_until(f, saw_rescan, NULL));
	/*
	 * The library may still hand out events read before it was set up again, so that
	 * rescan may have come early. What the daemon needs: a file written now is seen, as
	 * a hint or by a rescan handled after the write (a rescan reads the directory then).
	 */
	seen_clear(&f->seen);
	test_write_str(f->sb, "web.yaml", TEXT);
	assert_true(run_until(f, saw_path_or_rescan, path));
}

/* Subfolders are watched, including ones created later. */
static void test_subfolders(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *deep = at(f, "team/a/web.yaml"), *newsub = at(f, "later/db.yaml");

	test_write_str(f->sb, "team/a/x.yaml", TEXT);
	start(f, f->sb);
	test_write_str(f->sb, "team/a/web.yaml", TEXT);
	assert_true(run_until(f, saw_path, deep));

	test_write_str(f->sb, "later/keep", "");
	assert_true(run_until(f, saw_rescan, NULL));
	test_write_str(f->sb, "later/db.yaml", TEXT);
	assert_true(run_until(f, saw_path, newsub));
}

/* More hints than the queue holds, while the loop is busy: they fold into one rescan. */
static void test_flood(void **state)
{
	Fixture *f = *state;

	start(f, f->sb);
	for (int i = 0; i < 6000; i++) {
		char name[32];

		snprintf(name, sizeof(name), "f%d.yaml", i);
		test_write_str(f->sb, name, "x");
	}
	assert_true(run_until(f, saw_rescan, NULL));
	assert_true(f->seen.n < 6000);
}

/* The fds that are open, as a bit set (fds below 1024). */
static void open_fds(bool ret[1024])
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	memset(ret, 0, 1024 * sizeof(bool));
	assert_non_null(d);
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] != '.' && fd != dirfd(d) && fd < 1024)
			ret[fd] = true;
	}
	closedir(d);
}

/* Every fd the watcher opens is close-on-exec: a VMM started later inherits none. */
static void test_no_fd_leaks(void **state)
{
	Fixture *f = *state;
	bool before[1024], after[1024];
	unsigned opened = 0;

	open_fds(before);
	start(f, f->sb);
	open_fds(after);
	for (int fd = 3; fd < 1024; fd++) {
		if (!after[fd] || before[fd])
			continue;
		opened++;
		if (!(fcntl(fd, F_GETFD) & FD_CLOEXEC)) {
			char link[64], target[256] = "";

			snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
			(void)!readlink(link, target, sizeof(target) - 1);
			fail_msg("fd %d (%s) would leak into a child", fd, target);
		}
	}
	assert_true(opened >= 2); /* at least the inotify fd and the eventfd */
}

/* What a child without inotify saw: exit codes, no cmocka in a child. */
typedef struct Limited {
	const char *dir;
	bool hinted; /* a hint for dir/web.yaml, or a rescan */
	int state;   /* the last state told */
	unsigned states;
} Limited;

static void on_limited_hint(void *userdata, const char *path)
{
	Limited *l = userdata;
	char want[4200];

	snprintf(want, sizeof(want), "%s/web.yaml", l->dir);
	l->hinted |= !path || streq(path, want);
}

static void on_limited_state(void *userdata, int error)
{
	Limited *l = userdata;

	l->state = error;
	l->states++;
}

static bool spin(sd_event *e, const Limited *l, bool (*pred)(const Limited *l))
{
	for (int i = 0; i < 500 && !pred(l); i++)
		(void)sd_event_run(e, 20 * 1000);
	return pred(l);
}

static bool told_error(const Limited *l)
{
	return l->states > 0 && l->state < 0;
}

static bool told_watching(const Limited *l)
{
	return l->states > 1 && l->state == 0 && l->hinted;
}

/*
 * In a user namespace with /proc/sys/user/<sysctl> at value: the watcher comes up without
 * inotify, says why (want), survives a retry that fails, and ends cleanly; then, if the
 * limit is raised to raise (NULL: not), a retry watches again and a new file is a hint.
 */
static int without_inotify(const char *dir, const char *sysctl, const char *value, int want,
			   const char *raise)
{
	Limited l = { .dir = dir };
	char path[128], file[4200];
	sd_event *e = NULL;
	Watcher *w = NULL;
	int fd;

	alarm(60); /* a watcher_free() that hangs fails the test rather than stalling it */
	if (test_user_ns_limit(sysctl, value) < 0)
		return 10;
	if (sd_event_new(&e) < 0 || watcher_new(dir, on_limited_hint, on_limited_state, &l, e, &w) < 0)
		return 11;
	if (watcher_error(w) != want)
		return 12;
	if (!spin(e, &l, told_error) || l.state != want)
		return 13;
	watcher_retry(w);
	for (int i = 0; i < 10; i++)
		(void)sd_event_run(e, 20 * 1000);
	if (l.states != 1 || watcher_error(w) != want)
		return 14;
	if (raise) {
		snprintf(path, sizeof(path), "/proc/sys/user/%s", sysctl);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, raise, strlen(raise)) != (ssize_t)strlen(raise))
			return 15;
		close(fd);
		watcher_retry(w);
		if (!spin(e, &l, told_watching))
			return 16;
		l.hinted = false;
		snprintf(file, sizeof(file), "%s/web.yaml", dir);
		fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0)
			return 17;
		close(fd);
		if (!spin(e, &l, told_watching))
			return 18;
	}
	watcher_free(w);
	sd_event_unref(e);
	return 0;
}

static void run_without_inotify(Fixture *f, const char *sysctl, const char *value, int want,
				const char *raise)
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(without_inotify(f->sb, sysctl, value, want, raise));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("without inotify (%s=%s): %s %d", sysctl, value,
			 WIFEXITED(status) ? "failed at step" : "killed by signal",
			 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* No inotify instance to be had: no call into libinotifytools, which would abort. */
static void test_no_instances(void **state)
{
	run_without_inotify(*state, "max_inotify_instances", "0", -EMFILE, NULL);
}

/* Too few watches for the directory (the parent takes the one there is); then more. */
static void test_no_watches(void **state)
{
	run_without_inotify(*state, "max_inotify_watches", "1", -ENOSPC, "100");
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_atomic_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vim_save, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncate_then_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_flip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_configmap_swap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_recreated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subfolders, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flood, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_fd_leaks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_instances, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_watches, setup, teardown),
	};

	return cmocka_run_group_tests_name("watcher", tests, NULL, NULL);
}
