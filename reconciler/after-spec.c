/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "after-spec.h"
#include "hashmap.h"
#include "yaml-decode.h"

void decode_after(Decoder *d, const YNode *n, const Field *f _unused_, void *obj)
{
	SandboxSpec *s = obj;
	char buf[80];

	if (n->type == YNODE_INVALID)
		return;
	if (n->type != YNODE_SEQ) {
		decode_error(d, n, "expected a list of sandbox names, such as [db, cache], got %s",
			     decode_show(n, buf));
		return;
	}
	if (n->n_items > SPEC_AFTER_MAX) {
		decode_error(d, n->items[SPEC_AFTER_MAX],
			     "more than %u sandboxes; at most %u are allowed", SPEC_AFTER_MAX,
			     SPEC_AFTER_MAX);
		return;
	}
	free(s->after);
	s->n_after = 0;
	s->after = n->n_items ? calloc(n->n_items, sizeof(AfterSpec)) : NULL;
	if (n->n_items && !s->after) {
		d->diags->error = -ENOMEM;
		return;
	}
	for (size_t i = 0; i < n->n_items; i++) {
		const YNode *item = n->items[i];
		size_t old = decode_where_push(d, "[%zu]", i);
		const char *name;
		bool twice = false;

		if (!decode_get_string(d, item, &name))
			; /* said why */
		else if (!spec_name_is_valid(name))
			decode_error(
				d, item,
				"%s is not a sandbox name: expected 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit",
				decode_show(item, buf));
		else {
			for (size_t k = 0; k < s->n_after && !twice; k++)
				twice = streq(s->after[k].name, name);
			if (twice)
				decode_error(d, item, "'%s' is named twice; name it once", name);
			else {
				AfterSpec *a = &s->after[s->n_after++];

				strcpy(a->name, name);
				a->line = item->line;
				a->column = item->column;
			}
		}
		decode_where_pop(d, old);
	}
}

void spec_after_check_self(const SandboxSpec *s, DiagList *diags)
{
	for (size_t i = 0; i < s->n_after; i++)
		if (s->name[0] && streq(s->after[i].name, s->name))
			diag_add(diags, s->after[i].line, s->after[i].column,
				 "spec.after: '%s' is this sandbox itself: it cannot wait for itself",
				 s->name);
}

bool spec_after_has(const SandboxSpec *s, const char *name)
{
	for (size_t i = 0; s && i < s->n_after; i++)
		if (streq(s->after[i].name, name))
			return true;
	return false;
}

int spec_after_to_json(const SandboxSpec *s, json_t *j)
{
	json_t *a;
	int r = 0;

	if (s->n_after == 0) /* absent in the copies of vmd before it */
		return 0;
	a = json_array();
	if (!a)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_after; i++)
		r |= json_array_append_new(a, json_string(s->after[i].name));
	return r | json_object_set_new(j, "after", a);
}

int spec_after_from_json(const json_t *j, SandboxSpec *s)
{
	const json_t *a = json_object_get(j, "after"), *v;
	size_t i;

	if (!a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > SPEC_AFTER_MAX)
		return -EINVAL;
	s->after = json_array_size(a) ? calloc(json_array_size(a), sizeof(AfterSpec)) : NULL;
	if (json_array_size(a) && !s->after)
		return -ENOMEM;
	json_array_foreach(a, i, v)
	{
		if (!json_is_string(v) || !spec_name_is_valid(json_string_value(v)))
			return -EINVAL;
		strcpy(s->after[s->n_after++].name, json_string_value(v));
	}
	return 0;
}

/* A sandbox on the way being searched: its spec, its file, the next of its edges to follow. */
typedef struct Frame {
	const SandboxSpec *spec;
	const char *path;
	size_t next;
} Frame;

/* "spec.after[K]: a cycle of after: PATH:L:C a after b, ...; ...": every edge on the way. */
static int cycle_text(const Frame *way, size_t n, char **ret)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return -ENOMEM;
	fprintf(f, "spec.after[%zu]: a cycle of after:", way[0].next - 1);
	for (size_t i = 0; i < n; i++) {
		const AfterSpec *e = &way[i].spec->after[way[i].next - 1];

		fprintf(f, "%s %s:%u:%u %s after %s", i ? "," : "", way[i].path, e->line, e->column,
			way[i].spec->name, e->name);
	}
	fputs("; none of them would ever start: remove one of these names", f);
	if (fclose(f) != 0)
		return -ENOMEM;
	*ret = TAKE_PTR(text);
	return 1;
}

int after_find_cycle(const SandboxSpec *start, const char *start_path, AfterLookup lookup,
		     void *userdata, size_t *ret_edge, char **ret)
{
	_cleanup_free_ Frame *way = NULL;
	Hashmap *seen = NULL;
	size_t n = 0, size = 0;
	int r = 0;

	if (start->n_after == 0)
		return 0;
	seen = hashmap_new();
	if (!seen)
		return -ENOMEM;
	/*
	 * Depth first, without recursion (a chain may be as long as there are sandboxes): a
	 * sandbox searched to its end once leads back to start from nowhere.
	 */
	way = malloc(sizeof(Frame));
	if (!way) {
		r = -ENOMEM;
		goto done;
	}
	size = 1;
	way[n++] = (Frame){ start, start_path, 0 };
	while (n > 0) {
		Frame *f = &way[n - 1];
		const SandboxSpec *next;
		const char *path = NULL;
		const AfterSpec *e;

		if (f->next >= f->spec->n_after) {
			n--;
			continue;
		}
		e = &f->spec->after[f->next++];
		if (streq(e->name, start->name)) {
			r = cycle_text(way, n, ret);
			if (r > 0)
				*ret_edge = way[0].next - 1;
			break;
		}
		if (hashmap_get(seen, e->name) || !(next = lookup(userdata, e->name, &path)))
			continue;
		if (hashmap_put(seen, next->name, (void *)next) < 0) {
			r = -ENOMEM;
			break;
		}
		if (n == size) {
			Frame *more = reallocarray(way, size * 2, sizeof(Frame));

			if (!more) {
				r = -ENOMEM;
				break;
			}
			way = more;
			size *= 2;
		}
		way[n++] = (Frame){ next, path ?: "its last valid spec", 0 };
	}
done:
	hashmap_free(seen);
	return r;
}

/* name (a key that lives as long as g) -> v: the index of its node + 1, or UINTPTR_MAX. */
static int graph_put(AfterGraph *g, const char *key, uintptr_t v)
{
	if (!g->names && !(g->names = hashmap_new()))
		return -ENOMEM;
	(void)hashmap_remove(g->names, key);
	return hashmap_put(g->names, key, (void *)v);
}

int after_graph_note_name(AfterGraph *g, const char *path)
{
	_cleanup_free_ char *name = NULL;

	if (spec_name_from_path(path, &name) < 0 || !spec_name_is_valid(name))
		return 0;
	if (g->names && hashmap_get(g->names, name))
		return 0; /* the first file's */
	if (strv_extendf(&g->name_keys, "%s", name) < 0)
		return -ENOMEM;
	return graph_put(g, g->name_keys[strv_length(g->name_keys) - 1], UINTPTR_MAX);
}

int after_graph_add(AfterGraph *g, SandboxSpec *spec, const char *path, void *userdata)
{
	AfterNode *more = reallocarray(g->nodes, g->n + 1, sizeof(AfterNode));

	if (!more) {
		sandbox_spec_free(spec);
		return -ENOMEM;
	}
	g->nodes = more;
	g->nodes[g->n++] = (AfterNode){ .spec = spec, .path = strdup(path), .userdata = userdata };
	if (!g->nodes[g->n - 1].path)
		return -ENOMEM;
	return graph_put(g, spec->name, g->n);
}

static const SandboxSpec *graph_lookup(void *userdata, const char *name, const char **ret_path)
{
	AfterGraph *g = userdata;
	uintptr_t v = (uintptr_t)hashmap_get(g->names, name);

	if (v == 0 || v == UINTPTR_MAX)
		return NULL;
	*ret_path = g->nodes[v - 1].path;
	return g->nodes[v - 1].spec;
}

void after_graph_check(AfterGraph *g, bool check_names)
{
	for (size_t i = 0; i < g->n; i++) {
		AfterNode *node = &g->nodes[i];
		_cleanup_free_ char *cycle = NULL;
		size_t edge = 0;
		int r;

		for (size_t k = 0; check_names && k < node->spec->n_after; k++) {
			const AfterSpec *e = &node->spec->after[k];

			if (hashmap_get(g->names, e->name))
				continue;
			diag_add(&node->diags, e->line, e->column,
				 "spec.after[%zu]: no file gives sandbox '%s': it would wait for it to be Ready, and never start",
				 k, e->name);
			node->reason = "UnknownDependency";
		}
		r = after_find_cycle(node->spec, node->path, graph_lookup, g, &edge, &cycle);
		if (r == -ENOMEM)
			node->diags.error = r;
		if (r <= 0)
			continue;
		diag_add(&node->diags, node->spec->after[edge].line, node->spec->after[edge].column,
			 "%s", cycle);
		node->reason = "DependencyCycle";
	}
}

void after_graph_done(AfterGraph *g)
{
	for (size_t i = 0; i < g->n; i++) {
		sandbox_spec_free(g->nodes[i].spec);
		free(g->nodes[i].path);
		diag_list_done(&g->nodes[i].diags);
	}
	free(g->nodes);
	hashmap_free(g->names);
	strv_free(g->name_keys);
	*g = (AfterGraph){};
}
