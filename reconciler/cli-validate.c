/* SPDX-License-Identifier: MIT */
/*
 * vmd validate: the loader's verdict on sandbox files and, for those in the daemon's
 * sandbox directory (--sandboxes), whether the daemon would read them at all, judged by
 * the daemon's own functions (sandbox-file.h) with its --trusted-uid and --trusted-gid.
 * Elsewhere (a checkout, a CI workspace) owners and modes say nothing of what the daemon
 * will be given: a warning says that they are not judged. Escapes are refused everywhere:
 * a directory given is walked as the daemon walks its own.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <sys/stat.h>

#include "after-spec.h"
#include "backend.h"
#include "cli.h"
#include "hashmap.h"
#include "sandbox-dir.h"
#include "sandbox-file.h"
#include "host-ports.h"
#include "spec-yaml.h"
#include "yaml-tree.h"

typedef struct Seen {
	char *path;
	char name[]; /* the hashmap's key */
} Seen;

typedef struct Validate {
	SpecLoadOptions opts;
	bool json;
	json_t *files;	  /* with --json */
	json_t *warnings; /* with --json */
	unsigned n_files;
	unsigned n_invalid;
	Hashmap *seen;	/* name -> Seen: the names given so far, to refuse two files for one */
	Hashmap *ports; /* "tcp/2222" -> Seen of the file that forwards it first */
	const char *sandbox_dir; /* the daemon's */
	char *sandbox_dir_real;	 /* its real path; NULL if it has none */
	Trust trust;
	SandboxRoot *daemon_root; /* sandbox_dir, opened (and judged) for the first file in it */
	int daemon_root_error;
	AfterGraph after; /* the valid files with an after:, judged across files at the end */
	bool dir_given;	  /* a PATH is a directory: names in after: are checked against it */
} Validate;

/* A PATH given, walked: where its files are opened from. */
typedef struct Walked {
	Validate *v;
	const char *dir;    /* the PATH */
	const char *prefix; /* its place in the daemon's directory ("" for that), or NULL */
	SandboxRoot *root;  /* the daemon's directory, or the PATH outside it */
} Walked;

static void validate_done(Validate *v)
{
	void *s;

	for (size_t i = 0; hashmap_next(v->seen, &i, &s);) {
		free(((Seen *)s)->path);
		free(s);
	}
	hashmap_free(v->seen);
	for (size_t i = 0; hashmap_next(v->ports, &i, &s);) {
		free(((Seen *)s)->path);
		free(s);
	}
	hashmap_free(v->ports);
	json_decref(v->files);
	json_decref(v->warnings);
	free(v->sandbox_dir_real);
	sandbox_root_free(v->daemon_root);
	after_graph_done(&v->after);
}

/* The file that already gave this name, or NULL after recording it for path. */
static const char *seen_name(Validate *v, const char *name, const char *path)
{
	Seen *s = hashmap_get(v->seen, name);

	if (s)
		return s->path;
	s = malloc(sizeof(Seen) + strlen(name) + 1);
	if (!s)
		return NULL;
	strcpy(s->name, name);
	s->path = strdup(path);
	if (!s->path || hashmap_put(v->seen, s->name, s) < 0) {
		free(s->path);
		free(s);
	}
	return NULL;
}

/*
 * A host port of spec another file forwards already, as the daemon refuses it
 * (host-ports.c): one diagnostic, true. Otherwise spec's ports are recorded for path.
 */
static bool port_conflict(Validate *v, const SandboxSpec *spec, const char *path, DiagList *diags)
{
	char key[HOST_PORT_KEY_MAX];

	for (size_t i = 0; i < spec->n_networks; i++)
		for (size_t k = 0; k < spec->networks[i].n_ports; k++) {
			const PortSpec *p = &spec->networks[i].ports[k];
			_cleanup_free_ char *text = NULL;
			Seen *s;

			host_port_key(p, key);
			s = v->ports ? hashmap_get(v->ports, key) : NULL;
			if (!s)
				continue;
			text = host_port_conflict_text(i, k, key, s->name + strlen(s->name) + 1,
						       s->path);
			diag_add(diags, p->line, p->column, "%s",
				 text ?: "host port forwarded twice");
			return true;
		}
	for (size_t i = 0; i < spec->n_networks; i++)
		for (size_t k = 0; k < spec->networks[i].n_ports; k++) {
			Seen *s;

			host_port_key(&spec->networks[i].ports[k], key);
			if ((!v->ports && !(v->ports = hashmap_new())) ||
			    !(s = malloc(sizeof(Seen) + strlen(key) + strlen(spec->name) + 2)))
				return false;
			strcpy(s->name, key);
			strcpy(s->name + strlen(key) + 1, spec->name); /* the owner, after the key */
			s->path = strdup(path);
			if (!s->path || hashmap_put(v->ports, s->name, s) < 0) {
				free(s->path);
				free(s);
			}
		}
	return false;
}

static const char *load_strerror(int r)
{
	if (r == -EBADFD)
		return "not a regular file";
	return strerror(-r);
}

/* What one file came to. */
typedef struct Verdict {
	const char *reason; /* Valid, InvalidConfig, Untrusted, PathEscape, NameConflict, Unreadable */
	char *refusal;	    /* Untrusted, PathEscape: why, escaped */
	int io_error;
} Verdict;

static json_t *report_json(Validate *v, const char *path, const SandboxSpec *spec,
			   const DiagList *diags, const Verdict *verdict)
{
	/* JSON escapes control characters itself; what is not UTF-8 it cannot take. */
	_cleanup_free_ char *shown = utf8_escape(path);
	json_t *errors = json_array(), *file;

	for (size_t i = 0; i < diags->n; i++)
		json_array_append_new(errors,
				      json_pack("{s:i, s:i, s:s}", "line", diags->items[i].line,
						"column", diags->items[i].column, "message",
						diags->items[i].message));
	if (verdict->refusal)
		json_array_append_new(errors, json_pack("{s:s}", "message", verdict->refusal));
	else if (verdict->io_error < 0)
		json_array_append_new(
			errors, json_pack("{s:s}", "message", load_strerror(verdict->io_error)));
	file = json_pack("{s:s, s:b, s:s, s:o}", "path", shown, "valid", spec != NULL, "reason",
			 verdict->reason, "errors", errors);
	if (spec) {
		json_object_set_new(file, "name", json_string(spec->name));
		json_object_set_new(file, "backend",
				    json_string(backend_kind_to_string(spec->backend)));
	}
	json_array_append_new(v->files, file);
	return file;
}

/*
 * Load path: opened as rel beneath root (judged, if root was opened with a Trust), or by
 * its path when root is NULL.
 */
static int load(Validate *v, const char *path, SandboxRoot *root, const char *rel,
		SandboxSpec **ret, DiagList *diags, Verdict *verdict)
{
	_cleanup_(sandbox_file_done) SandboxFile file = SANDBOX_FILE_INIT;
	_cleanup_free_ char *raw = NULL;
	size_t len;
	int r;

	if (!root)
		return spec_load_file(path, &v->opts, ret, diags);
	r = sandbox_file_open(root, rel, &file);
	if (r < 0)
		return r;
	if (file.verdict != SANDBOX_FILE_TRUSTED) {
		/* Not read, as the daemon would not read it. */
		verdict->reason = sandbox_file_verdict_to_string(file.verdict);
		verdict->refusal = text_escape(file.why);
		return verdict->refusal ? -EPERM : -ENOMEM;
	}
	r = read_fd(file.fd, YTREE_MAX_BYTES + 1, &raw, &len);
	if (r < 0)
		return r;
	return spec_load_buffer(path, raw, len, &v->opts, ret, diags);
}

static void say_ok(const char *shown, const SandboxSpec *spec)
{
	printf("%s: ok (sandbox '%s', backend %s)\n", shown, spec->name,
	       backend_kind_to_string(spec->backend));
}

/*
 * The files with an after:, across all the files given (the daemon refuses a file that
 * closes a cycle; with a directory given, a name no file gives is an error too): each
 * said now, valid or not.
 */
static void validate_after(Validate *v)
{
	after_graph_check(&v->after, v->dir_given);
	for (size_t i = 0; i < v->after.n; i++) {
		AfterNode *node = &v->after.nodes[i];
		json_t *errors = node->userdata ? json_object_get(node->userdata, "errors") : NULL;

		if (diag_list_is_empty(&node->diags) && node->diags.error == 0) {
			if (!v->json)
				say_ok(node->path, node->spec);
			continue;
		}
		v->n_invalid++;
		if (!v->json) {
			diag_list_print(&node->diags, node->path, stderr);
			continue;
		}
		json_object_set_new(node->userdata, "valid", json_false());
		json_object_set_new(node->userdata, "reason",
				    json_string(node->reason ?: "InvalidConfig"));
		for (size_t k = 0; k < node->diags.n; k++)
			json_array_append_new(errors, json_pack("{s:i, s:i, s:s}", "line",
								node->diags.items[k].line, "column",
								node->diags.items[k].column, "message",
								node->diags.items[k].message));
	}
}

static void validate_one(Validate *v, const char *path, SandboxRoot *root, const char *rel,
			 int io_error)
{
	_cleanup_(sandbox_spec_freep) SandboxSpec *spec = NULL;
	_cleanup_(diag_list_done) DiagList diags = {};
	_cleanup_free_ char *shown = text_escape(path);
	Verdict verdict = { .reason = "Valid" };
	json_t *file = NULL;
	bool deferred = false;
	const char *other;
	int r = io_error;

	if (!shown)
		return;
	v->n_files++;
	if (r == 0)
		r = load(v, path, root, rel, &spec, &diags, &verdict);
	if (r == 0) {
		other = seen_name(v, spec->name, shown);
		if (other) {
			diag_add(&diags, 1, 1,
				 "sandbox '%s' is also defined by '%s'; a sandbox has one file",
				 spec->name, other);
			spec = sandbox_spec_free(spec);
			verdict.reason = "NameConflict";
		} else if (port_conflict(v, spec, shown, &diags)) {
			spec = sandbox_spec_free(spec);
			verdict.reason = "PortConflict";
		}
	} else if (!verdict.refusal) {
		verdict.reason = r == -EINVAL	? "InvalidConfig"
				 : r == -EBADFD ? "Untrusted" /* as the daemon says of a FIFO */
						: "Unreadable";
		verdict.io_error = r == -EINVAL ? 0 : r;
	}
	if (!spec)
		v->n_invalid++;

	if (v->json)
		file = report_json(v, path, spec, &diags, &verdict);
	if (spec && spec->n_after > 0) {
		/* Judged once every file is read (validate_after()): said then. */
		deferred = true;
		if (after_graph_add(&v->after, TAKE_PTR(spec), shown, file) < 0)
			v->n_invalid++;
	} else if (after_graph_note_name(&v->after, path) < 0)
		v->n_invalid++;

	if (v->json || deferred)
		; /* said, or to be said once every file is read */
	else if (spec)
		say_ok(shown, spec);
	else if (verdict.refusal)
		fprintf(stderr, "%s: error: %s\n", shown, verdict.refusal);
	else {
		if (verdict.io_error < 0)
			fprintf(stderr, "%s: error: cannot read: %s\n", shown,
				load_strerror(verdict.io_error));
		diag_list_print(&diags, shown, stderr);
	}
	free(verdict.refusal);
}

static void warn(Validate *v, const char *path, const char *fmt, ...) _printf_(3, 4);
static void warn(Validate *v, const char *path, const char *fmt, ...)
{
	_cleanup_free_ char *shown = text_escape(path), *msg = NULL, *line = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r < 0 || !shown || asprintf(&line, "%s: warning: %s", shown, msg) < 0)
		return;
	if (v->json)
		json_array_append_new(v->warnings, json_string(line));
	else
		fprintf(stderr, "%s\n", line);
}

/*
 * Where path (a directory if is_dir) is in the daemon's sandbox directory: its place there
 * ("" for the directory itself), or NULL if it is not in it. By real paths: the daemon
 * reads through any symlink to its directory.
 */
static char *daemon_relative(const Validate *v, const char *path, bool is_dir)
{
	_cleanup_free_ char *dir = NULL, *real_dir = NULL, *real = NULL;
	const char *slash = strrchr(path, '/'), *rel;

	if (!v->sandbox_dir_real)
		return NULL;
	if (is_dir)
		real = realpath(path, NULL);
	else {
		dir = slash ? strndup(path, (size_t)(slash - path) + 1) : strdup(".");
		real_dir = dir ? realpath(dir, NULL) : NULL;
		if (!real_dir || asprintf(&real, "%s/%s", real_dir, slash ? slash + 1 : path) < 0)
			real = NULL;
	}
	if (!real)
		return NULL;
	if (streq(real, v->sandbox_dir_real))
		return strdup("");
	rel = sandbox_dir_relative(v->sandbox_dir_real, real);
	return rel && *rel ? strdup(rel) : NULL;
}

/* The daemon's directory, opened and judged once; NULL with the error in *ret_error. */
static SandboxRoot *daemon_root(Validate *v, int *ret_error)
{
	if (!v->daemon_root && v->daemon_root_error == 0)
		v->daemon_root_error = sandbox_root_open(v->sandbox_dir, &v->trust, &v->daemon_root);
	*ret_error = v->daemon_root_error < 0 ? v->daemon_root_error : 0;
	return v->daemon_root;
}

static int walk_one(const char *path, int error, void *userdata)
{
	_cleanup_free_ char *rel = NULL;
	Walked *w = userdata;
	const char *in_dir = sandbox_dir_relative(w->dir, path);

	if (error == 0) {
		if (!in_dir)
			error = -EINVAL; /* the walk gives only what is below w->dir */
		else if (w->prefix && *w->prefix && asprintf(&rel, "%s/%s", w->prefix, in_dir) < 0)
			rel = NULL;
		else if (!(w->prefix && *w->prefix))
			rel = strdup(in_dir);
		if (error == 0 && !rel)
			error = -ENOMEM;
	}
	validate_one(w->v, path, w->root, rel, error);
	return 0;
}

static void validate_path(Validate *v, const char *path)
{
	_cleanup_(sandbox_root_freep) SandboxRoot *outside = NULL;
	_cleanup_free_ char *rel = NULL;
	unsigned before = v->n_files;
	Walked w = { .v = v, .dir = path };
	struct stat st;
	bool is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
	int r = 0;

	v->dir_given |= is_dir;
	rel = daemon_relative(v, path, is_dir);
	if (!rel)
		warn(v, path,
		     "not in the daemon's sandbox directory %s (--sandboxes): owners and modes are not judged here; the daemon judges them where it reads the files",
		     v->sandbox_dir);
	if (rel)
		w.root = daemon_root(v, &r);
	if (!is_dir) {
		validate_one(v, path, w.root, rel, r);
		return;
	}
	if (!rel)
		r = sandbox_root_open(path, NULL, &outside);
	w.root = w.root ?: outside;
	w.prefix = rel;
	if (r >= 0)
		r = sandbox_dir_walk(path, walk_one, &w);
	if (r < 0) {
		validate_one(v, path, NULL, NULL, r);
		return;
	}
	if (v->n_files == before && !v->json)
		fprintf(stderr, "%s: no sandbox files (*.yaml, *.yml)\n", path);
}

static void validate_help(FILE *f)
{
	fprintf(f,
		"Usage: vmd validate [--json] [--default-backend NAME] [--sandboxes DIR]\n"
		"                    [--trusted-uid UID]... [--trusted-gid GID]... [--skip-images]\n"
		"                    PATH...\n"
		"\n"
		"Check sandbox files, or every sandbox file under a directory, without\n"
		"touching any VM. Files in the daemon's sandbox directory are also judged as\n"
		"the daemon judges them (owners, modes, symlinks): give it the daemon's options.\n"
		"Exit status: 0 all valid, 1 any invalid, 2 usage error.\n"
		"\n"
		"  --json                  print the results as JSON on standard output\n"
		"  --default-backend NAME  backend of files without spec.backend (default qemu)\n"
		"  --sandboxes DIR         the daemon's sandbox directory (default /etc/vmd/sandboxes)\n"
		"  --trusted-uid UID       the daemon's --trusted-uid (repeatable)\n"
		"  --trusted-gid GID       the daemon's --trusted-gid (repeatable)\n"
		"  --skip-images           do not open the disks' images (a host without them)\n"
		"  -h, --help              show this help\n");
}

int verb_validate(int argc, char **argv)
{
	static const struct option options[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "default-backend", required_argument, NULL, 'b' },
		{ "sandboxes", required_argument, NULL, 's' },
		{ "skip-images", no_argument, NULL, 'I' },
		CLI_TRUST_OPTIONS,
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	_cleanup_(validate_done) Validate v = {
		.opts = backend_spec_load_options(BACKEND_QEMU),
		.sandbox_dir = "/etc/vmd/sandboxes",
	};
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		r = cli_trust_option("validate", c, optarg, &v.trust);
		if (r < 0)
			return EXIT_USAGE;
		if (r > 0)
			continue;
		switch (c) {
		case 'j':
			v.json = true;
			break;
		case 'b':
			if (parse_backend_arg("validate", optarg, &v.opts.default_backend) < 0)
				return EXIT_USAGE;
			break;
		case 's':
			v.sandbox_dir = optarg;
			break;
		case 'I':
			v.opts.skip_images = true;
			break;
		case 'h':
			validate_help(stdout);
			return EXIT_OK;
		default:
			validate_help(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "vmd validate: no PATH given\n");
		validate_help(stderr);
		return EXIT_USAGE;
	}

	v.sandbox_dir_real = realpath(v.sandbox_dir, NULL);
	v.seen = hashmap_new();
	if (!v.seen || (v.json && (!(v.files = json_array()) || !(v.warnings = json_array()))))
		return EXIT_INVALID;
	for (int i = optind; i < argc; i++)
		validate_path(&v, argv[i]);
	validate_after(&v);

	if (v.json) {
		json_t *out = json_pack("{s:b, s:O, s:O}", "valid", v.n_invalid == 0, "files",
					v.files, "warnings", v.warnings);

		json_dumpf(out, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(out);
	}
	return v.n_invalid == 0 ? EXIT_OK : EXIT_INVALID;
}
