/* SPDX-License-Identifier: MIT */
/*
 * The sandbox file's provisioning fields, spec.cloudInit and spec.credentials
 * (docs/sandbox-file.md, "Provisioning"): decoders for spec-yaml.c's table.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stddef.h>

#include "spec-yaml-provision.h"

/* Text of many lines (user-data, network-config): tabs and line ends allowed, no NUL. */
static void decode_text(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	char buf[80];

	if (n->type == YNODE_INVALID)
		return;
	if (n->type != YNODE_SCALAR) {
		decode_error(d, n, "expected a string, got %s", decode_show(n, buf));
		return;
	}
	if (strlen(n->value) != n->length) {
		decode_error(d, n, "contains a NUL character");
		return;
	}
	for (size_t i = 0; i < n->length; i++) {
		unsigned char c = (unsigned char)n->value[i];

		if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F) {
			decode_error(d, n, "contains a control character (U+%04X)", (unsigned)c);
			return;
		}
	}
	if (n->length > f->max) {
		decode_error(d, n, "too long: %zu bytes, at most %" PRIu64 " are allowed",
			     n->length, f->max);
		return;
	}
	(void)decode_dup(d, n->value, FIELD_AT(obj, f, char *));
}

/*
 * A mapping as YAML in flow style, which cloud-init's YAML reader takes as the file would
 * have said it: keys and quoted scalars as JSON strings (valid YAML), plain scalars that
 * YAML types (numbers, booleans, null) as they were written, so that "version: 2" stays a
 * number and "dhcp4: true" a boolean; other plain scalars quoted, since in flow style a
 * ',' or ']' in them would end them.
 */
static int flow_append(const YNode *n, FILE *f)
{
	if (n->type == YNODE_MAP || n->type == YNODE_SEQ) {
		size_t count = n->type == YNODE_MAP ? n->n_pairs : n->n_items;

		fputc(n->type == YNODE_MAP ? '{' : '[', f);
		for (size_t i = 0; i < count; i++) {
			int r;

			if (i > 0)
				fputs(", ", f);
			if (n->type == YNODE_MAP) {
				r = flow_append(n->pairs[i].key, f);
				fputs(": ", f);
				if (r >= 0)
					r = flow_append(n->pairs[i].value, f);
			} else
				r = flow_append(n->items[i], f);
			if (r < 0)
				return r;
		}
		fputc(n->type == YNODE_MAP ? '}' : ']', f);
		return 0;
	}
	if (n->type != YNODE_SCALAR)
		return -EINVAL;
	if (n->plain && n->length == 0)
		fputs("null", f);
	else if (n->plain &&
		 !IN_SET(yaml_implicit_type(n->value), YIMPLICIT_STRING, YIMPLICIT_SEXAGESIMAL))
		fputs(n->value, f);
	else {
		_cleanup_(json_decrefp) json_t *s = json_stringn(n->value, n->length);
		_cleanup_free_ char *q = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;

		if (!q)
			return -ENOMEM;
		fputs(q, f);
	}
	return 0;
}

static void decode_network_config(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	_cleanup_free_ char *buf = NULL;
	char sbuf[80];
	size_t len = 0;
	FILE *m;
	int r;

	if (n->type != YNODE_MAP) {
		if (n->type == YNODE_SEQ)
			decode_error(
				d, n,
				"expected a mapping (version: 2, ethernets: ...) or its text, got %s",
				decode_show(n, sbuf));
		else
			decode_text(d, n, f, obj);
		return;
	}
	m = open_memstream(&buf, &len);
	if (!m) {
		d->diags->error = -ENOMEM;
		return;
	}
	r = flow_append(n, m);
	fputc('\n', m);
	if (fclose(m) != 0 || r == -ENOMEM) {
		d->diags->error = -ENOMEM;
		return;
	}
	if (r < 0)
		return; /* an alias or a tag inside: reported already */
	*FIELD_AT(obj, f, char *) = TAKE_PTR(buf);
}

/* A list of strings, each decoded by one (a string, a path) into a strv. */
static void decode_strv(Decoder *d, const YNode *n, const Field *f, void *obj, const char *what,
			FieldDecode one)
{
	char ***l = FIELD_AT(obj, f, char **);
	char buf[80];

	if (n->type == YNODE_INVALID)
		return;
	if (n->type != YNODE_SEQ) {
		decode_error(d, n, "expected a list of %s, got %s", what, decode_show(n, buf));
		return;
	}
	if (n->n_items > SPEC_SSH_KEYS_MAX) {
		decode_error(d, n->items[SPEC_SSH_KEYS_MAX],
			     "more than %u %s; at most %u are allowed", SPEC_SSH_KEYS_MAX, what,
			     SPEC_SSH_KEYS_MAX);
		return;
	}
	for (size_t i = 0; i < n->n_items; i++) {
		Field item = { .max = f->max };
		_cleanup_free_ char *s = NULL;
		size_t old = decode_where_push(d, "[%zu]", i);

		one(d, n->items[i], &item, &s);
		decode_where_pop(d, old);
		if (s && strv_extendf(l, "%s", s) < 0) {
			d->diags->error = -ENOMEM;
			return;
		}
	}
}

static void decode_ssh_key(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	if (n->type == YNODE_SCALAR && n->length == 0)
		decode_error(
			d, n,
			"is empty: expected a public key, such as \"ssh-ed25519 AAAA... user@host\"");
	else
		decode_string(d, n, f, obj);
}

static void decode_ssh_keys(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	decode_strv(d, n, f, obj, "public keys", decode_ssh_key);
}

static void decode_ssh_key_files(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	decode_strv(d, n, f, obj, "paths", decode_path);
}

static bool meta_data_key_check(Decoder *d, const YNode *k)
{
	if (streq(k->value, "public-keys"))
		decode_error(
			d, k,
			"'public-keys' is written by vmd from sshAuthorizedKeys; list the keys there");
	else if (streq(k->value, "network-interfaces"))
		decode_error(d, k,
			     "'network-interfaces' is the old ENI format; say it in networkConfig");
	else
		return true;
	return false;
}

static void decode_meta_data(Decoder *d, const YNode *n, const Field *f _unused_, void *obj)
{
	static const StringMap meta = { .what = "metaData",
					.many = "keys",
					.max = SPEC_META_DATA_MAX,
					.key_max = SPEC_META_KEY_MAX,
					.value_max = SPEC_META_VALUE_MAX,
					.key_check = meta_data_key_check };
	CloudInitSpec *c = obj;

	spec_decode_string_map(d, n, &meta, &c->meta_data, &c->n_meta_data);
}

static const Field cloud_init_fields[] = {
	{ "userData", decode_text, offsetof(CloudInitSpec, user_data), .max = SPEC_USER_DATA_MAX },
	{ "userDataFile", decode_path, offsetof(CloudInitSpec, user_data_file), .max = SPEC_PATH_MAX },
	{ "metaData", decode_meta_data, 0 },
	{ "networkConfig", decode_network_config, offsetof(CloudInitSpec, network_config),
	  .max = SPEC_USER_DATA_MAX },
	{ "sshAuthorizedKeys", decode_ssh_keys, offsetof(CloudInitSpec, ssh_keys),
	  .max = SPEC_SSH_KEY_MAX },
	{ "sshAuthorizedKeysFiles", decode_ssh_key_files, offsetof(CloudInitSpec, ssh_key_files),
	  .max = SPEC_PATH_MAX },
};

void spec_decode_cloud_init(Decoder *d, const YNode *n, const Field *f _unused_, void *obj)
{
	SandboxSpec *s = obj;
	const YNode *file;

	s->cloud_init = calloc(1, sizeof(CloudInitSpec));
	if (!s->cloud_init) {
		d->diags->error = -ENOMEM;
		return;
	}
	/* "cloudInit: {}" and "cloudInit:" alike: a seed with the defaults only. */
	if (n->type == YNODE_SCALAR && n->plain && n->length == 0)
		return;
	decode_fields(d, n, n, cloud_init_fields, ELEMENTSOF(cloud_init_fields), s->cloud_init);
	file = n->type == YNODE_MAP ? ynode_map_get(n, "userDataFile") : NULL;
	if (file && ynode_map_get(n, "userData")) {
		size_t old = decode_where_push(d, ".userDataFile");

		decode_error(d, file,
			     "userData and userDataFile are two ways to say one thing; keep one");
		decode_where_pop(d, old);
	}
}

static void decode_credential_name(Decoder *d, const YNode *n, const Field *f, void *obj)
{
	char buf[80];
	const char *s;

	if (!decode_get_string(d, n, &s))
		return;
	if (!spec_credential_name_is_valid(s)) {
		decode_error(
			d, n,
			"%s is not a valid credential name: expected 1 to %u printable ASCII characters without '/' or ':', not '.' or '..'",
			decode_show(n, buf), SPEC_CREDENTIAL_NAME_MAX);
		return;
	}
	strcpy(FIELD_AT(obj, f, char), s);
}

static const Field credential_fields[] = {
	{ "name", decode_credential_name, offsetof(CredentialSpec, name), .required = true },
	{ "fromFile", decode_path, offsetof(CredentialSpec, from_file), .required = true,
	  .max = SPEC_PATH_MAX },
};

static const ListDesc credential_list = {
	.what = "credential",
	.fields = credential_fields,
	.n_fields = ELEMENTSOF(credential_fields),
	.item_size = sizeof(CredentialSpec),
	.max = SPEC_CREDENTIALS_MAX,
	.unique = { "name" },
};

void spec_decode_credentials(Decoder *d, const YNode *n, const Field *f _unused_, void *obj)
{
	SandboxSpec *s = obj;
	size_t len = n->type == YNODE_SEQ ? MIN(n->n_items, (size_t)SPEC_CREDENTIALS_MAX) : 0;

	s->credentials = calloc(len ?: 1, sizeof(CredentialSpec));
	if (!s->credentials) {
		d->diags->error = -ENOMEM;
		return;
	}
	s->n_credentials = decode_list(d, n, &credential_list, s->credentials);
}
