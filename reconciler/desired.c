/* SPDX-License-Identifier: MIT */
/*
 * What the sandbox directory asks for. Files are hints-driven (manager_file_event) and
 * rescanned in full (manager_scan at once, or manager_scan_step in slices); either way a
 * file is read only when its identity (device, inode, size, times) changed. The last
 * valid spec of every sandbox is kept in <state-dir>/sandboxes/NAME.json, so that an
 * invalid edit, or a restart of vmd while a file is invalid, changes nothing.
 *
 * A file is opened beneath the sandbox directory and judged (sandbox-file.h) before a byte
 * of it is read: one that leads outside is never opened, one that is not trusted never
 * read. A file whose name is no sandbox's is no sandbox: it is reported once and counted
 * in STATUS= (Manager.ignored).
 */
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <sys/stat.h>

#include "events.h"
#include "log.h"
#include "manager.h"
#include "ordering.h"
#include "sandbox-dir.h"
#include "spec-json.h"
#include "spec-yaml.h"
#include "yaml-tree.h"

static char *persisted_path(Manager *m, const char *name)
{
	char *p = NULL;

	return asprintf(&p, "%s/sandboxes/%s.json", m->config.state_dir, name) < 0 ? NULL : p;
}

/* A failed write to the state dir is tried again after 1 s, doubling up to a minute. */
#define PERSIST_RETRY_FIRST_USEC (1000ull * 1000)
#define PERSIST_RETRY_MAX_USEC (60ull * 1000 * 1000)

/*
 * Keep the last valid spec of a sandbox, later: the copy matters only at a restart of vmd,
 * so it is written at idle priority (manager_write_persisted) and never delays an action.
 * While writes fail, it waits for the next retry.
 */
static void persist(Manager *m, Sandbox *sb, const char *raw, size_t len)
{
	/* Shown, never read back: escaped where it is not UTF-8, which JSON takes alone. */
	_cleanup_free_ char *file = NULL;
	json_t *j;
	char *text;

	if (m->read_only || !(file = utf8_escape(sb->path)))
		return;
	j = json_pack("{s:I, s:s, s:s%}", "generation", (json_int_t)sb->generation, "file", file,
		      "yaml", raw, len);
	text = j ? json_dumps(j, JSON_SORT_KEYS) : NULL;
	json_decref(j);
	if (!text)
		return;
	free(sb->persist_text);
	sb->persist_text = text;
	/* Waiting already: it keeps its place, and the newer text is written. */
	if (!list_contains(&m->persist_queue, &sb->persist_node))
		list_append(&m->persist_queue, &sb->persist_node);
	if (m->state_write_error) {
		sb->persist_failed = true; /* written at the next retry */
		return;
	}
	if (m->persist_event)
		(void)sd_event_source_set_enabled(m->persist_event, SD_EVENT_ONESHOT);
}

static int persist_retry_fired(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata)
{
	Manager *m = userdata;

	(void)sd_event_source_set_enabled(m->persist_event, SD_EVENT_ONESHOT);
	return 0;
}

/*
 * A write to the state dir failed: say so once (the daemon's STATUS= and the journal, and
 * each sandbox whose copy it is, in its status.json, which lives in the run dir), and try
 * again later. Until then nothing is written: the next retry writes every copy waiting.
 */
static void state_write_failed(Manager *m, const char *dir, int r)
{
	uint64_t delay = PERSIST_RETRY_FIRST_USEC;
	_cleanup_free_ char *why = NULL;

	for (unsigned i = 0; i < m->state_write_failures && delay < PERSIST_RETRY_MAX_USEC; i++)
		delay *= 2;
	delay = MIN(delay, PERSIST_RETRY_MAX_USEC);
	m->state_write_failures++;
	if (asprintf(&why, "cannot write the last valid specs to %s: %s", dir, strerror(-r)) < 0)
		return;
	if (!streq_ptr(why, m->state_write_error))
		log_fields(
			LOG_ERR, &(LogFields){ .error = -r, .message_id = LOG_MESSAGE_DAEMON },
			"cannot write the last valid specs to %s; %s", dir,
			m->stopping
				? "stopping with it unwritten"
				: "retrying with a backoff (a vmd restarted meanwhile leaves such VMs as they run)");
	free(m->state_write_error);
	m->state_write_error = TAKE_PTR(why);
	if (m->stopping || !m->event)
		return;
	if (!m->persist_retry)
		(void)sd_event_add_time_relative(m->event, &m->persist_retry, CLOCK_MONOTONIC,
						 delay, 100 * 1000, persist_retry_fired, m);
	else {
		(void)sd_event_source_set_time_relative(m->persist_retry, delay);
		(void)sd_event_source_set_enabled(m->persist_retry, SD_EVENT_ONESHOT);
	}
	if (m->ready)
		manager_notify_status(m);
}

static void state_write_recovered(Manager *m)
{
	log_fields(LOG_INFO, &(LogFields){ .message_id = LOG_MESSAGE_DAEMON },
		   "the state dir takes writes again after %u failed attempts",
		   m->state_write_failures);
	m->state_write_error = mfree(m->state_write_error);
	m->state_write_failures = 0;
	if (m->ready)
		manager_notify_status(m);
}

/* Its copy failed to be written (or is written after all): its status says so. */
static void set_persist_failed(Manager *m, Sandbox *sb, bool failed)
{
	if (sb->persist_failed == failed)
		return;
	sb->persist_failed = failed;
	manager_mark_dirty(m, sb);
}

size_t manager_write_persisted(Manager *m, uint64_t budget_usec)
{
	_cleanup_free_ char *dir = NULL;
	uint64_t start = now_usec(CLOCK_MONOTONIC);
	Sandbox *first_failed = NULL;
	bool written = false;
	int r, failed = 0;

	if (!m->persist_queue.first)
		return 0;
	if (asprintf(&dir, "%s/sandboxes", m->config.state_dir) < 0)
		return m->persist_queue.size;
	r = mkdir_p(dir, 0700);
	if (r < 0) {
		state_write_failed(m, dir, r);
		return m->persist_queue.size;
	}
	/*
	 * Oldest first, each taken off the front: a slice costs what it writes, however many
	 * wait. One that fails goes to the back, so that one bad file does not hold up the
	 * others; the slice ends when it comes round again.
	 */
	while (m->persist_queue.first && now_usec(CLOCK_MONOTONIC) - start < budget_usec) {
		Sandbox *sb = list_entry(m->persist_queue.first, Sandbox, persist_node);
		_cleanup_free_ char *path = NULL;

		if (sb == first_failed)
			break;
		path = persisted_path(m, sb->name);
		/*
		 * Atomic, not synced: an fsync (or a syncfs) can stall the loop for seconds on a
		 * busy disk. A rename survives restarts of vmd; after a power loss a torn copy is
		 * refused by the loader and ignored, which loses only the fallback for a file
		 * that is invalid at that boot.
		 */
		r = path ? write_file_atomic(path, sb->persist_text, strlen(sb->persist_text), 0600,
					     false)
			 : -ENOMEM;
		list_remove(&m->persist_queue, &sb->persist_node);
		if (r < 0) {
			list_append(&m->persist_queue, &sb->persist_node);
			set_persist_failed(m, sb, true);
			if (!first_failed) {
				first_failed = sb;
				failed = r;
			}
			continue;
		}
		sb->persist_text = mfree(sb->persist_text);
		set_persist_failed(m, sb, false);
		written = true;
	}
	if (failed < 0)
		state_write_failed(m, dir, failed);
	else if (written && m->state_write_error)
		state_write_recovered(m);
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
			spec_provision_hash_files(spec);
			sb->desired = spec;
			host_ports_claim(m, sb);
			ordering_update(m, sb);
			sb->spec_from_state_dir = true;
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

typedef struct IgnoredFile {
	unsigned idx; /* in Manager.ignored_order */
	uint64_t seen_scan;
	char path[]; /* the hashmap's key */
} IgnoredFile;

static int ignored_compare(const void *a, const void *b)
{
	return strcmp(((const IgnoredFile *)a)->path, ((const IgnoredFile *)b)->path);
}

/* A candidate whose name is no sandbox's: it gets no sandbox and no run-dir entry; said once. */
static void ignore_file(Manager *m, const char *path, const char *stem)
{
	IgnoredFile *f;

	if ((!m->ignored && !(m->ignored = hashmap_new())) ||
	    (!m->ignored_order && !(m->ignored_order = prioq_new(ignored_compare))))
		return;
	f = hashmap_get(m->ignored, path);
	if (f) {
		f->seen_scan = m->scan_id;
		return;
	}
	f = calloc(1, sizeof(*f) + strlen(path) + 1);
	if (!f)
		return;
	strcpy(f->path, path);
	f->seen_scan = m->scan_id;
	if (hashmap_put(m->ignored, f->path, f) < 0 || prioq_put(m->ignored_order, f, &f->idx) < 0) {
		(void)hashmap_remove(m->ignored, f->path);
		free(f);
		return;
	}
	log_fields(LOG_WARNING,
		   &(LogFields){ .result = "ignored", .message_id = LOG_MESSAGE_CONFIG_INVALID },
		   "ignoring %s: '%s' is not a valid sandbox name (1 to %u lowercase letters, digits and '-', starting and ending with a letter or digit); rename the file",
		   path, stem, SPEC_NAME_MAX);
	if (m->ready)
		manager_notify_status(m); /* no sandbox is dirty for it: STATUS= says it now */
}

static void unignore_file(Manager *m, const char *path)
{
	IgnoredFile *f = m->ignored ? hashmap_remove(m->ignored, path) : NULL;

	if (!f)
		return;
	prioq_remove(m->ignored_order, &f->idx);
	free(f);
	if (m->ready)
		manager_notify_status(m);
}

/* After a whole scan: what it did not find is gone. */
static void forget_unseen_ignored(Manager *m)
{
	_cleanup_free_ IgnoredFile **gone = NULL;
	size_t n = 0;
	void *v;

	if (hashmap_size(m->ignored) == 0 ||
	    !(gone = calloc(hashmap_size(m->ignored), sizeof(IgnoredFile *))))
		return;
	for (size_t i = 0; hashmap_next(m->ignored, &i, &v);)
		if (((IgnoredFile *)v)->seen_scan != m->scan_id)
			gone[n++] = v;
	for (size_t i = 0; i < n; i++)
		unignore_file(m, gone[i]->path);
}

size_t manager_ignored(const Manager *m, const char **ret_first)
{
	const IgnoredFile *f = m->ignored_order ? prioq_peek(m->ignored_order) : NULL;

	*ret_first = f ? f->path : NULL;
	return hashmap_size(m->ignored);
}

void manager_free_ignored(Manager *m)
{
	void *v;

	for (size_t i = 0; hashmap_next(m->ignored, &i, &v);)
		free(v);
	m->ignored = hashmap_free(m->ignored);
	m->ignored_order = prioq_free(m->ignored_order);
}

static void set_config_error(Manager *m, Sandbox *sb, const char *reason, char *error)
{
	/* Kept as it is shown (status.json, STATUS=, the journal): paths escaped. */
	char *shown = error ? text_escape(error) : NULL;

	if (shown) {
		free(error);
		error = shown;
	}
	if (!streq_ptr(sb->config_error, error)) {
		log_fields(LOG_ERR,
			   &(LogFields){ .sandbox = sb->name,
					 .result = "refused",
					 .message_id = LOG_MESSAGE_CONFIG_INVALID },
			   "%s; keeping the last valid spec, touching nothing", error);
		events_file(m, sb, "invalid", error);
	}
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

/* Whether the file at path (another one than is being read) is there, trusted or not. */
static bool file_is_there(Manager *m, SandboxRoot *root, const char *path)
{
	_cleanup_(sandbox_file_done) SandboxFile f = SANDBOX_FILE_INIT;
	const char *rel = sandbox_dir_relative(m->config.sandbox_dir, path);

	return rel && sandbox_file_resolve(root, rel, &f) != -ENOENT;
}

/*
 * Refused for what is around its content (not trusted, leads outside, a port another
 * sandbox holds, an after: closing a cycle): judged anew each time it is looked at.
 */
static bool is_refused(const Sandbox *sb)
{
	return sb->config_reason &&
	       (streq(sb->config_reason, "Untrusted") || streq(sb->config_reason, "PathEscape") ||
		streq(sb->config_reason, "PortConflict") ||
		streq(sb->config_reason, "DependencyCycle"));
}

/*
 * Its file is as vmd read it, and valid: a commit that left it so (or that HEAD named only
 * after vmd read it) is the revision its spec comes from now. A version link's flip makes
 * a new file, read anew.
 */
static void recheck_revision(Manager *m, Sandbox *sb)
{
	_cleanup_free_ char *rev = NULL;
	SourceRevisionKind kind;

	if (sb->config_error || sb->source_kind != SOURCE_REVISION_GIT)
		return;
	source_revision_of_path(sb->path, &kind, &rev);
	if (kind == sb->source_kind && streq_ptr(rev, sb->source_revision))
		return;
	free(sb->source_revision);
	sb->source_revision = TAKE_PTR(rev);
	sb->source_kind = kind;
	manager_mark_dirty(m, sb);
}

/*
 * The file at path, rel in root, gives name: (re)read it into its sandbox. -ENOENT if it
 * is not there (a dangling symlink neither).
 */
static int load_file(Manager *m, SandboxRoot *root, const char *path, const char *rel,
		     const char *name)
{
	_cleanup_(diag_list_done) DiagList diags = {};
	_cleanup_(sandbox_spec_freep) SandboxSpec *spec = NULL;
	_cleanup_(sandbox_file_done) SandboxFile file = SANDBOX_FILE_INIT;
	_cleanup_free_ char *raw = NULL, *why = NULL;
	const SpecLoadOptions opts = backend_spec_load_options(m->config.default_backend);
	Sandbox *sb = manager_sandbox(m, name, false);
	bool behind;
	size_t len;
	int r;

	if (sb && sb->path && !streq(sb->path, path) && file_is_there(m, root, sb->path)) {
		/* Another file gives this name and is still there: it keeps it. */
		refuse_second(sb, path);
		return 0;
	}
	/* A file read already, that did not change and is still trusted, is not read again. */
	r = sandbox_file_resolve(root, rel, &file);
	if (r >= 0 && file.verdict == SANDBOX_FILE_TRUSTED && sb && streq_ptr(sb->path, path) &&
	    !is_refused(sb) && same_file(&sb->file_st, &file.st)) {
		recheck_revision(m, sb);
		return 0;
	}
	if (r >= 0 && file.verdict == SANDBOX_FILE_TRUSTED)
		r = sandbox_file_open(root, rel, &file);
	if (r == -ENOENT)
		return r;
	if (r == -EAGAIN)
		return 0; /* changing as it was read: its next event reads it */
	if (r < 0)
		set_format(&why, "%s: cannot read: %s", path, strerror(-r));
	else if (file.verdict != SANDBOX_FILE_TRUSTED)
		why = TAKE_PTR(file.why);

	if (!sb && !(sb = manager_sandbox(m, name, true)))
		return 0;
	if (!sb->path || !streq(sb->path, path)) {
		free(sb->path);
		sb->path = strdup(path);
		sb->desired_since = now_usec(CLOCK_MONOTONIC); /* back, or newly here */
		deletion_guard_update(m, sb);
	}
	if (r >= 0)
		sb->file_st = file.st;
	manager_mark_dirty(m, sb);

	if (why) {
		set_config_error(m, sb,
				 r < 0 ? "Untrusted" : sandbox_file_verdict_to_string(file.verdict),
				 TAKE_PTR(why));
		return 0;
	}
	r = read_fd(file.fd, YTREE_MAX_BYTES + 1, &raw, &len);
	sb->file_hashed = r >= 0;
	if (r >= 0)
		sb->file_hash = fnv1a64(FNV1A64_INIT, raw, len);
	if (r >= 0)
		r = spec_load_buffer(path, raw, len, &opts, &spec, &diags);
	if (r >= 0)
		spec_provision_hash_files(spec); /* an edited userDataFile is a new spec */
	if (r < 0) {
		set_config_error(m, sb, "InvalidConfig",
				 r == -EINVAL ? first_error(path, &diags) : strdup(strerror(-r)));
		return 0;
	}
	/* Valid alone, but for a host port another sandbox forwards. */
	why = host_ports_conflict(m, sb, spec, path);
	if (why) {
		set_config_error(m, sb, "PortConflict", TAKE_PTR(why));
		return 0;
	}
	/* Nor for an after: that would close a cycle with the others' (ordering.c). */
	why = ordering_cycle(m, sb, spec, path);
	if (why) {
		set_config_error(m, sb, "DependencyCycle", TAKE_PTR(why));
		return 0;
	}

	clear_config_error(m, sb);
	/* The revision of what was read now: of the spec in force, whichever generation it is. */
	free(sb->source_revision);
	source_revision(path, file.fd, &sb->source_kind, &sb->source_revision);
	/*
	 * The VM runs a newer spec than the state dir kept (its write failed, or vmd died
	 * first): this file is a new generation after the VM's, whatever it says.
	 */
	behind = sb->spec_stale || sb->generation < sb->observed.generation;
	sb->spec_from_state_dir = false;
	sb->spec_stale = false;
	if (sb->desired && spec_equal(sb->desired, spec) && !behind)
		return 0;
	sandbox_spec_free(sb->desired);
	sb->desired = TAKE_PTR(spec);
	host_ports_claim(m, sb);
	ordering_update(m, sb);
	/* Generations never go backwards, not even below what the VM was given. */
	sb->generation = MAX(sb->generation, sb->observed.generation) + 1;
	sb->desired_since = now_usec(CLOCK_MONOTONIC);
	/* A new spec deserves a new try at once. */
	sb->failures = 0;
	sb->quick_exits = 0;
	sb->retry_at = 0;
	events_file(m, sb, "loaded", NULL);
	persist(m, sb, raw, len);
	return 0;
}

static void file_gone(Manager *m, Sandbox *sb)
{
	if (!sb->path)
		return;
	events_file(m, sb, "removed", NULL);
	sb->path = mfree(sb->path);
	sb->desired_since = now_usec(CLOCK_MONOTONIC);
	deletion_guard_update(m, sb);
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
	_cleanup_(sandbox_root_freep) SandboxRoot *root = NULL;
	_cleanup_free_ char *name = NULL;
	const char *base = strrchr(path, '/'),
		   *rel = sandbox_dir_relative(m->config.sandbox_dir, path);
	Sandbox *sb;
	struct stat st;

	base = base ? base + 1 : path;
	if (!rel || !sandbox_dir_name_is_candidate(base) || spec_name_from_path(path, &name) < 0)
		return;
	if (!spec_name_is_valid(name)) {
		if (lstat(path, &st) == 0)
			ignore_file(m, path, name);
		else
			unignore_file(m, path);
		return;
	}
	/* Opened (and judged) again for each event: it may have been swapped (git-sync). */
	if (sandbox_root_open(m->config.sandbox_dir, &m->config.trust, &root) < 0)
		return; /* a pass says why: the watcher asks for one when the directory goes */
	if (load_file(m, root, path, rel, name) != -ENOENT) {
		see(m, name);
		return;
	}
	sb = manager_sandbox(m, name, false);
	if (sb && streq_ptr(sb->path, path))
		file_gone(m, sb);
}

struct Scan {
	SandboxRoot *root; /* opened once for the whole pass */
	int error;	   /* why it could not be opened */
	SandboxDirIter *iter;
};

static Scan *scan_free(Scan *s)
{
	if (s) {
		sandbox_dir_iter_free(s->iter);
		sandbox_root_free(s->root);
	}
	return mfree(s);
}

static int scan_one(Manager *m, const char *path, int error)
{
	_cleanup_free_ char *name = NULL;
	const char *rel = sandbox_dir_relative(m->config.sandbox_dir, path);
	Sandbox *sb;

	if (error < 0) {
		log_fields(LOG_WARNING,
			   &(LogFields){ .error = -error, .message_id = LOG_MESSAGE_CONFIG_INVALID },
			   "cannot read %s", path);
		return 0;
	}
	if (!rel || spec_name_from_path(path, &name) < 0)
		return 0;
	if (!spec_name_is_valid(name)) {
		ignore_file(m, path, name);
		return 0;
	}
	sb = manager_sandbox(m, name, false);
	if (sb && sb->seen_scan == m->scan_id && sb->path && !streq(sb->path, path)) {
		/* Two files, one name: the one that had it keeps it (the first seen if none). */
		refuse_second(sb, path);
		return 0;
	}
	(void)load_file(m, m->scan->root, path, rel, name);
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
	forget_unseen_ignored(m);
}

/* Which directory this scan reads: the path may lead to another one now (a mount over it). */
static void note_dir(Manager *m)
{
	_cleanup_free_ char *real = realpath(m->config.sandbox_dir, NULL);
	struct stat st;

	if (real && stat(real, &st) == 0 && S_ISDIR(st.st_mode))
		deletion_guard_scanned(m, real, &st);
}

int manager_scan_start(Manager *m)
{
	Scan *s;

	note_dir(m);
	/*
	 * A directory that appeared is locked before a file of it is read; one that replaced it
	 * once the guard takes it as the one. Not before: the lock's fd would pin a mount over
	 * the directory, and its unmount is what lets the guard go.
	 */
	if (!m->read_only && (!m->guard.dir_replaced || m->config.max_deletions.off) &&
	    manager_lock_sandbox_dir(m) == -EBUSY) {
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
	if (!s)
		return -ENOMEM;
	/* Cannot be opened: the first step says so, as one that cannot read it would. */
	s->error = sandbox_root_open(m->config.sandbox_dir, &m->config.trust, &s->root);
	if (s->error == -ENOMEM ||
	    (s->error >= 0 &&
	     sandbox_dir_iter_new(m->config.sandbox_dir, sandbox_root_fd(s->root), &s->iter) < 0)) {
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
	if (m->scan->error < 0) {
		r = m->scan->error;
		scan_finish(m, r);
		return r;
	}
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
