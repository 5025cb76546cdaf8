/* SPDX-License-Identifier: MIT */
/*
 * What the sandbox directory asks for. Files are hints-driven (manager_file_event) and
 * rescanned in full (manager_scan at once, or manager_scan_step in slices); either way a
 * file is read only when its identity (device, inode, size, times) changed. The last
 * valid spec of every sandbox is kept in <state-dir>/sandboxes/NAME.json, so that an
 * invalid edit, or a restart of vmd while a file is invalid, changes nothing.
 */
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <sys/stat.h>

#include "log.h"
#include "manager.h"
#include "sandbox-dir.h"
#include "spec-json.h"
#include "spec-yaml.h"
#include "yaml-tree.h"

static char *persisted_path(Manager *m, const char *name)
{
	char *p = NULL;

	return asprintf(&p, "%s/sandboxes/%s.json", m->config.state_dir, name) < 0 ? NULL : p;
}

/*
 * Keep the last valid spec of a sandbox, later: the copy matters only at a restart of vmd,
 * so it is written at idle priority (manager_write_persisted) and never delays an action.
 */
static void persist(Manager *m, Sandbox *sb, const char *raw, size_t len)
{
	json_t *j;
	char *text;

	if (m->read_only)
		return;
	j = json_pack("{s:I, s:s, s:s%}", "generation", (json_int_t)sb->generation, "file",
		      sb->path, "yaml", raw, len);
	text = j ? json_dumps(j, JSON_SORT_KEYS) : NULL;
	json_decref(j);
	if (!text)
		return;
	free(sb->persist_text);
	sb->persist_text = text;
	/* Waiting already: it keeps its place, and the newer text is written. */
	if (!list_contains(&m->persist_queue, &sb->persist_node))
		list_append(&m->persist_queue, &sb->persist_node);
	if (m->persist_event)
		(void)sd_event_source_set_enabled(m->persist_event, SD_EVENT_ONESHOT);
}

size_t manager_write_persisted(Manager *m, uint64_t budget_usec)
{
	_cleanup_free_ char *dir = NULL;
	uint64_t start = now_usec(CLOCK_MONOTONIC);

	if (asprintf(&dir, "%s/sandboxes", m->config.state_dir) < 0 || mkdir_p(dir, 0700) < 0)
		return m->persist_queue.size;
	/* Oldest first, each taken off the front: a slice costs what it writes, however many wait. */
	while (m->persist_queue.first && now_usec(CLOCK_MONOTONIC) - start < budget_usec) {
		Sandbox *sb = list_entry(list_pop_first(&m->persist_queue), Sandbox, persist_node);
		_cleanup_free_ char *path = persisted_path(m, sb->name);
		int r = -ENOMEM;

		/*
		 * Atomic, not synced: an fsync (or a syncfs) can stall the loop for seconds on a
		 * busy disk. A rename survives restarts of vmd; after a power loss a torn copy is
		 * refused by the loader and ignored, which loses only the fallback for a file
		 * that is invalid at that boot.
		 */
		if (path)
			r = write_file_atomic(path, sb->persist_text, strlen(sb->persist_text),
					      0600, false);
		if (r < 0)
			log_fields(LOG_ERR, &(LogFields){ .sandbox = sb->name, .error = -r },
				   "cannot keep the last valid spec in %s", path ?: dir);
		sb->persist_text = mfree(sb->persist_text);
	}
	return m->persist_queue.size;
}

void manager_forget_persisted(Manager *m, const char *name)
{
	_cleanup_free_ char *path = m->read_only ? NULL : persisted_path(m, name);

	if (path)
		(void)unlink(path);
}

void manager_load_persisted(Manager *m)
{
	_cleanup_free_ char *dir = NULL;
	const SpecLoadOptions opts = backend_spec_load_options(m->config.default_backend);
	DIR *d;
	struct dirent *e;

	if (asprintf(&dir, "%s/sandboxes", m->config.state_dir) < 0)
		return;
	d = opendir(dir);
	if (!d)
		return;
	while ((e = readdir(d))) {
		_cleanup_(diag_list_done) DiagList diags = {};
		_cleanup_free_ char *name = NULL, *path = NULL, *yaml_path = NULL;
		SandboxSpec *spec = NULL;
		json_t *j;
		size_t l = strlen(e->d_name);
		Sandbox *sb;
		const char *yaml;

		/* A copy half-written when vmd was killed: never read, and removed. */
		if (!m->read_only && is_atomic_temporary(e->d_name)) {
			(void)unlinkat(dirfd(d), e->d_name, 0);
			continue;
		}
		if (e->d_name[0] == '.' || l < 6 || !streq(e->d_name + l - 5, ".json"))
			continue;
		name = strndup(e->d_name, l - 5);
		if (!name || asprintf(&path, "%s/%s", dir, e->d_name) < 0 ||
		    asprintf(&yaml_path, "%s.yaml", name) < 0)
			continue;
		j = json_load_file(path, 0, NULL);
		yaml = json_string_value(json_object_get(j, "yaml"));
		if (yaml &&
		    spec_load_buffer(yaml_path, yaml, json_string_length(json_object_get(j, "yaml")),
				     &opts, &spec, &diags) == 0 &&
		    (sb = manager_sandbox(m, name, true))) {
			sb->desired = spec;
			sb->generation =
				(uint64_t)json_integer_value(json_object_get(j, "generation"));
			sb->desired_since = now_usec(CLOCK_MONOTONIC);
		} else
			sandbox_spec_free(spec);
		json_decref(j);
	}
	closedir(d);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Why vmd does not trust a file it would run VMs from, or NULL. Checked on the open fd. */
static char *untrusted(Manager *m, const struct stat *st)
{
	char *why = NULL;

	if (st->st_uid != 0 && st->st_uid != geteuid() && st->st_uid != m->config.trusted_uid)
		(void)asprintf(
			&why,
			"the file is owned by uid %u; vmd reads only files owned by root, its own user or --trusted-uid",
			(unsigned)st->st_uid);
	else if (st->st_mode & (S_IWGRP | S_IWOTH))
		(void)asprintf(
			&why,
			"the file is writable by group or others (mode %04o); vmd reads only files that their owner alone can change",
			(unsigned)(st->st_mode & 07777));
	return why;
}

static void set_config_error(Manager *m, Sandbox *sb, const char *reason, char *error)
{
	if (!streq_ptr(sb->config_error, error))
		log_fields(LOG_ERR,
			   &(LogFields){ .sandbox = sb->name,
					 .result = "refused",
					 .message_id = LOG_MESSAGE_CONFIG_INVALID },
			   "%s; keeping the last valid spec, touching nothing", error);
	free(sb->config_error);
	sb->config_error = error;
	sb->config_reason = reason;
	manager_tally_update(m, sb);
}

static void clear_config_error(Manager *m, Sandbox *sb)
{
	if (!sb->config_error)
		return;
	log_fields(LOG_INFO,
		   &(LogFields){ .sandbox = sb->name,
				 .result = "valid",
				 .message_id = LOG_MESSAGE_CONFIG_VALID },
		   "%s is valid again", sb->path);
	sb->config_error = mfree(sb->config_error);
	sb->config_reason = NULL;
	manager_tally_update(m, sb);
}

/* "PATH:LINE:COL: MESSAGE (and N more)" for the first of diags. */
static char *first_error(const char *path, const DiagList *diags)
{
	size_t more = diags->n + diags->n_dropped - 1;
	char *s = NULL;

	if (diags->n == 0)
		return strdup("invalid");
	if (asprintf(&s, "%s:%u:%u: %s%s", path, diags->items[0].line, diags->items[0].column,
		     diags->items[0].message, more ? " (and more: see vmd validate)" : "") < 0)
		return NULL;
	return s;
}

/* path gives the name of sb, whose own file is another. */
static void refuse_second(const Sandbox *sb, const char *path)
{
	log_fields(LOG_ERR,
		   &(LogFields){ .sandbox = sb->name,
				 .result = "refused",
				 .message_id = LOG_MESSAGE_CONFIG_INVALID },
		   "%s is ignored: sandbox '%s' is defined by %s already", path, sb->name, sb->path);
}

/* The file at path is there now: (re)read it into its sandbox. */
static void load_file(Manager *m, const char *path, const char *name, const struct stat *st_hint)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	_cleanup_(sandbox_spec_freep) SandboxSpec *spec = NULL;
	_cleanup_free_ char *raw = NULL, *why = NULL;
	_cleanup_close_ int fd = -EBADF;
	const SpecLoadOptions opts = backend_spec_load_options(m->config.default_backend);
	Sandbox *sb = manager_sandbox(m, name, false);
	struct stat st;
	size_t len;
	int r;

	if (sb && sb->path && !streq(sb->path, path) && access(sb->path, F_OK) == 0) {
		/* Another file gives this name and is still there: it keeps it. */
		refuse_second(sb, path);
		return;
	}
	if (sb && sb->path && streq(sb->path, path) && st_hint && same_file(&sb->file_st, st_hint))
		return;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (errno == ENOENT)
			return; /* gone again: its removal event follows */
		r = -errno;
		(void)asprintf(&why, "%s: cannot read: %s", path, strerror(-r));
	} else if (!S_ISREG(st.st_mode))
		(void)asprintf(&why, "%s: not a regular file", path);
	else
		why = untrusted(m, &st);

	if (!sb && !(sb = manager_sandbox(m, name, true)))
		return;
	if (!sb->path || !streq(sb->path, path)) {
		free(sb->path);
		sb->path = strdup(path);
		sb->desired_since = now_usec(CLOCK_MONOTONIC); /* back, or newly here */
	}
	if (fd >= 0)
		sb->file_st = st;
	manager_mark_dirty(m, sb);

	if (why) {
		set_config_error(m, sb, "Untrusted", TAKE_PTR(why));
		return;
	}
	r = read_fd(fd, YTREE_MAX_BYTES + 1, &raw, &len);
	if (r >= 0)
		r = spec_load_buffer(path, raw, len, &opts, &spec, &diags);
	if (r < 0) {
		set_config_error(m, sb, "InvalidConfig",
				 r == -EINVAL ? first_error(path, &diags) : strdup(strerror(-r)));
		return;
	}

	clear_config_error(m, sb);
	if (sb->desired && spec_equal(sb->desired, spec))
		return;
	sandbox_spec_free(sb->desired);
	sb->desired = TAKE_PTR(spec);
	sb->generation++;
	sb->desired_since = now_usec(CLOCK_MONOTONIC);
	/* A new spec deserves a new try at once. */
	sb->failures = 0;
	sb->quick_exits = 0;
	sb->retry_at = 0;
	persist(m, sb, raw, len);
}

static void file_gone(Manager *m, Sandbox *sb)
{
	if (!sb->path)
		return;
	sb->path = mfree(sb->path);
	sb->desired_since = now_usec(CLOCK_MONOTONIC);
	if (sb->config_error) {
		sb->config_error = mfree(sb->config_error);
		manager_tally_update(m, sb);
	}
	manager_mark_dirty(m, sb);
}

/* A file that gives this name is there: a scan under way must not take it for gone. */
static void see(Manager *m, const char *name)
{
	Sandbox *sb = manager_sandbox(m, name, false);

	if (sb)
		sb->seen_scan = m->scan_id;
}

void manager_file_event(Manager *m, const char *path)
{
	_cleanup_free_ char *name = NULL;
	const char *base = strrchr(path, '/');
	Sandbox *sb;
	struct stat st;

	base = base ? base + 1 : path;
	if (!sandbox_dir_name_is_candidate(base) || spec_name_from_path(path, &name) < 0)
		return;
	if (stat(path, &st) == 0) {
		load_file(m, path, name, &st);
		see(m, name);
		return;
	}
	sb = manager_sandbox(m, name, false);
	if (sb && streq_ptr(sb->path, path))
		file_gone(m, sb);
}

struct Scan {
	SandboxDirIter *iter;
};

static Scan *scan_free(Scan *s)
{
	if (s)
		sandbox_dir_iter_free(s->iter);
	return mfree(s);
}

static int scan_one(Manager *m, const char *path, int error)
{
	_cleanup_free_ char *name = NULL;
	Sandbox *sb;
	struct stat st;

	if (error < 0) {
		log_fields(LOG_WARNING, &(LogFields){ .error = -error }, "cannot read %s", path);
		return 0;
	}
	if (spec_name_from_path(path, &name) < 0 || strlen(name) > SPEC_NAME_MAX)
		return 0;
	sb = manager_sandbox(m, name, false);
	if (sb && sb->seen_scan == m->scan_id && sb->path && !streq(sb->path, path)) {
		/* Two files, one name: the one that had it keeps it (the first seen if none). */
		refuse_second(sb, path);
		return 0;
	}
	if (stat(path, &st) == 0)
		load_file(m, path, name, &st);
	see(m, name);
	return 0;
}

/* The scan is over: r < 0 if the directory could not be read (whole). */
static void scan_finish(Manager *m, int r)
{
	m->scan = scan_free(m->scan);
	m->scan_complete = r >= 0;
	if (r < 0) {
		_cleanup_free_ char *why = NULL;

		/* Stop nothing: a missing directory is not an empty one. */
		if (asprintf(&why, "cannot read %s: %s", m->config.sandbox_dir, strerror(-r)) >= 0 &&
		    !streq_ptr(why, m->degraded)) {
			log_fields(LOG_ERR,
				   &(LogFields){ .error = -r, .message_id = LOG_MESSAGE_DAEMON },
				   "cannot read %s; stopping nothing until it is back",
				   m->config.sandbox_dir);
			free(m->degraded);
			m->degraded = TAKE_PTR(why);
		}
		return;
	}
	if (m->degraded)
		log_fields(LOG_INFO, &(LogFields){ .message_id = LOG_MESSAGE_DAEMON },
			   "%s can be read again", m->config.sandbox_dir);
	m->degraded = mfree(m->degraded);
}

int manager_scan_start(Manager *m)
{
	Scan *s;

	/* A directory that appeared or was replaced is locked before a file of it is read. */
	if (!m->read_only && manager_lock_sandbox_dir(m) == -EBUSY) {
		m->scan = scan_free(m->scan);
		m->scan_complete = false; /* nothing is taken for gone */
		if (m->event)
			(void)sd_event_exit(m->event, -EBUSY);
		return -EBUSY;
	}
	/* One under way starts again: what it saw may be stale by now. */
	m->scan = scan_free(m->scan);
	m->scan_id++;
	m->scan_complete = false;
	s = calloc(1, sizeof(Scan));
	if (!s || sandbox_dir_iter_new(m->config.sandbox_dir, &s->iter) < 0) {
		scan_free(s);
		return -ENOMEM;
	}
	m->scan = s;
	return 0;
}

int manager_scan_step(Manager *m, uint64_t budget_usec)
{
	uint64_t start = now_usec(CLOCK_MONOTONIC);
	const char *path;
	int error, r;

	if (!m->scan)
		return 0;
	do {
		r = sandbox_dir_iter_next(m->scan->iter, &path, &error);
		if (r == 0) {
			scan_finish(m, 0);
			return 0;
		}
		if (r > 0)
			r = scan_one(m, path, error);
		if (r < 0 && r != -EAGAIN) {
			scan_finish(m, r);
			return r;
		}
	} while (now_usec(CLOCK_MONOTONIC) - start < budget_usec);
	return 1;
}

void manager_scan_check_gone(Manager *m, Sandbox *sb)
{
	/* Whatever had a file and was not seen by a whole scan has none. */
	if (m->scan_complete && sb->path && sb->seen_scan != m->scan_id)
		file_gone(m, sb);
}

void manager_scan_done(Manager *m)
{
	m->scan = scan_free(m->scan);
}

int manager_scan(Manager *m)
{
	void *v;
	int r;

	r = manager_scan_start(m);
	while (r >= 0 && (r = manager_scan_step(m, UINT64_MAX)) > 0)
		;
	for (size_t i = 0; hashmap_next(m->sandboxes, &i, &v);)
		manager_scan_check_gone(m, v);
	return r;
}
