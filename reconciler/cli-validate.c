/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <sys/stat.h>

#include "backend.h"
#include "cli.h"
#include "hashmap.h"
#include "sandbox-dir.h"
#include "spec-yaml.h"

typedef struct Seen {
	char *path;
	char name[]; /* the hashmap's key */
} Seen;

typedef struct Validate {
	SpecLoadOptions opts;
	bool json;
	json_t *files; /* with --json */
	unsigned n_files;
	unsigned n_invalid;
	Hashmap *seen; /* name -> Seen: the names given so far, to refuse two files for one */
} Validate;

static void validate_done(Validate *v)
{
	void *s;

	for (size_t i = 0; hashmap_next(v->seen, &i, &s);) {
		free(((Seen *)s)->path);
		free(s);
	}
	hashmap_free(v->seen);
	json_decref(v->files);
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

static const char *load_strerror(int r)
{
	if (r == -EBADFD)
		return "not a regular file";
	return strerror(-r);
}

static void report_json(Validate *v, const char *path, const SandboxSpec *spec,
			const DiagList *diags, int io_error)
{
	json_t *errors = json_array(), *file;

	for (size_t i = 0; i < diags->n; i++)
		json_array_append_new(errors,
				      json_pack("{s:i, s:i, s:s}", "line", diags->items[i].line,
						"column", diags->items[i].column, "message",
						diags->items[i].message));
	if (io_error < 0)
		json_array_append_new(errors, json_pack("{s:s}", "message", load_strerror(io_error)));
	file = json_pack("{s:s, s:b, s:o}", "path", path, "valid", spec != NULL, "errors", errors);
	if (spec) {
		json_object_set_new(file, "name", json_string(spec->name));
		json_object_set_new(file, "backend",
				    json_string(backend_kind_to_string(spec->backend)));
	}
	json_array_append_new(v->files, file);
}

static void validate_one(Validate *v, const char *path, int io_error)
{
	_cleanup_(sandbox_spec_freep) SandboxSpec *spec = NULL;
	_cleanup_(diag_list_done) DiagList diags = {};
	const char *other;
	int r = io_error;

	v->n_files++;
	if (r == 0)
		r = spec_load_file(path, &v->opts, &spec, &diags);
	if (r == 0) {
		other = seen_name(v, spec->name, path);
		if (other) {
			diag_add(&diags, 1, 1,
				 "sandbox '%s' is also defined by '%s'; a sandbox has one file",
				 spec->name, other);
			spec = sandbox_spec_free(spec);
		}
	}
	if (!spec)
		v->n_invalid++;

	if (v->json) {
		report_json(v, path, spec, &diags, r == -EINVAL ? 0 : r);
		return;
	}
	if (spec) {
		printf("%s: ok (sandbox '%s', backend %s)\n", path, spec->name,
		       backend_kind_to_string(spec->backend));
		return;
	}
	if (r < 0 && r != -EINVAL)
		fprintf(stderr, "%s: error: cannot read: %s\n", path, load_strerror(r));
	diag_list_print(&diags, path, stderr);
}

static int walk_one(const char *path, int error, void *userdata)
{
	validate_one(userdata, path, error);
	return 0;
}

static void validate_path(Validate *v, const char *path)
{
	unsigned before = v->n_files;
	struct stat st;
	int r;

	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		validate_one(v, path, 0);
		return;
	}
	r = sandbox_dir_walk(path, walk_one, v);
	if (r < 0) {
		validate_one(v, path, r);
		return;
	}
	if (v->n_files == before && !v->json)
		fprintf(stderr, "%s: no sandbox files (*.yaml, *.yml)\n", path);
}

static void validate_help(FILE *f)
{
	fprintf(f, "Usage: vmd validate [--json] [--default-backend NAME] PATH...\n"
		   "\n"
		   "Check sandbox files, or every sandbox file under a directory, without\n"
		   "touching any VM. Exit status: 0 all valid, 1 any invalid, 2 usage error.\n"
		   "\n"
		   "  --json                  print the results as JSON on standard output\n"
		   "  --default-backend NAME  backend of files without spec.backend (default qemu)\n"
		   "  -h, --help              show this help\n");
}

int verb_validate(int argc, char **argv)
{
	static const struct option options[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "default-backend", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	_cleanup_(validate_done) Validate v = { .opts = backend_spec_load_options(BACKEND_QEMU) };
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		switch (c) {
		case 'j':
			v.json = true;
			break;
		case 'b':
			v.opts.default_backend = backend_kind_from_string(optarg);
			if (v.opts.default_backend < 0) {
				fprintf(stderr,
					"vmd validate: unknown backend '%s'; expected qemu, cloud-hypervisor, firecracker or noop\n",
					optarg);
				return EXIT_USAGE;
			}
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

	v.seen = hashmap_new();
	if (!v.seen || (v.json && !(v.files = json_array())))
		return EXIT_INVALID;
	for (int i = optind; i < argc; i++)
		validate_path(&v, argv[i]);

	if (v.json) {
		json_t *out = json_pack("{s:b, s:O}", "valid", v.n_invalid == 0, "files", v.files);

		json_dumpf(out, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(out);
	}
	return v.n_invalid == 0 ? EXIT_OK : EXIT_INVALID;
}
