/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>

#include "spec-check.h"

/* The child of n that step (a name, or "[N]") at *p names, or NULL; moves *p past it. */
static const YNode *step(const YNode *n, const char **p)
{
	char name[64];
	size_t len;

	if (**p == '[') {
		char *end;
		unsigned long i = strtoul(*p + 1, &end, 10);

		assert(end > *p + 1 && *end == ']');
		*p = end + 1;
		return n->type == YNODE_SEQ && i < n->n_items ? n->items[i] : NULL;
	}
	len = strcspn(*p, ".[");
	assert(len > 0 && len < sizeof(name));
	memcpy(name, *p, len);
	name[len] = '\0';
	*p += len;
	return ynode_map_get(n, name);
}

/* The deepest node on the way to field; *ret_found: whether it is field's own. */
static const YNode *walk(const YNode *root, const char *field, bool *ret_found)
{
	const YNode *n = root;
	const char *p = field;

	*ret_found = false;
	if (!n)
		return NULL;
	while (*p) {
		const YNode *next = step(n, &p);

		if (!next)
			return n;
		n = next;
		if (*p == '.')
			p++;
	}
	*ret_found = true;
	return n;
}

const YNode *spec_check_find(const SpecCheck *c, const char *field)
{
	bool found;
	const YNode *n = walk(c->root, field, &found);

	return found ? n : NULL;
}

void spec_check_error(SpecCheck *c, const char *field, const char *fmt, ...)
{
	bool found;
	const YNode *n = walk(c->root, field, &found);
	va_list ap;

	c->refused = true;
	va_start(ap, fmt);
	diag_addv(c->diags, n ? n->line : 1, n ? n->column : 1, field, fmt, ap);
	va_end(ap);
}

void spec_check_missing(SpecCheck *c, const char *field, const char *fmt, ...)
{
	const char *dot = strrchr(field, '.'), *name = dot ? dot + 1 : field;
	_cleanup_free_ char *parent_field = dot ? strndup(field, (size_t)(dot - field)) : NULL;
	const YNode *parent;
	char prefix[160];
	va_list ap;

	assert(!strchr(name, '['));
	c->refused = true;
	if (dot && !parent_field) {
		c->diags->error = -ENOMEM;
		return;
	}
	parent = parent_field ? spec_check_find(c, parent_field) : c->root;
	if (!parent || parent->type != YNODE_MAP || ynode_map_get(parent, name))
		return;

	snprintf(prefix, sizeof(prefix), "%s%smissing field '%s'", parent_field ?: "",
		 parent_field ? ": " : "", name);
	va_start(ap, fmt);
	diag_addv(c->diags, parent->line, parent->column, prefix, fmt, ap);
	va_end(ap);
}

const char *spec_check_backend(const SandboxSpec *spec, char buf[static SPEC_CHECK_BACKEND_MAX])
{
	snprintf(buf, SPEC_CHECK_BACKEND_MAX, "backend '%s'%s", backend_kind_to_string(spec->backend),
		 spec->backend_explicit ? "" : " (the default backend)");
	return buf;
}
