/* SPDX-License-Identifier: MIT */
/*
 * spec.cloudInit and spec.credentials in the JSON form of a spec (spec-json.c): what the
 * file says, paths and inline text; never a file's contents, so never a credential's value.
 */
#include <inttypes.h>
#include <stdio.h>

#include "spec-json.h"

static json_t *strv_to_json(char *const *l)
{
	json_t *a = json_array();

	for (size_t i = 0; a && l && l[i]; i++)
		if (json_array_append_new(a, json_string(l[i])) < 0)
			return json_decref(a), NULL;
	return a;
}

static json_t *cloud_init_to_json(const CloudInitSpec *c)
{
	_cleanup_(json_decrefp) json_t *j = json_object(), *meta = json_object();
	int r = 0;

	if (!j || !meta)
		return NULL;
	for (size_t i = 0; i < c->n_meta_data; i++)
		r |= json_object_set_new(meta, c->meta_data[i].key,
					 json_string(c->meta_data[i].value));
	if (c->user_data)
		r |= json_object_set_new(j, "userData", json_string(c->user_data));
	if (c->user_data_file)
		r |= json_object_set_new(j, "userDataFile", json_string(c->user_data_file));
	r |= json_object_set_new(j, "metaData", TAKE_PTR(meta));
	if (c->network_config)
		r |= json_object_set_new(j, "networkConfig", json_string(c->network_config));
	r |= json_object_set_new(j, "sshAuthorizedKeys", strv_to_json(c->ssh_keys));
	r |= json_object_set_new(j, "sshAuthorizedKeysFiles", strv_to_json(c->ssh_key_files));
	if (c->files_hash[0])
		r |= json_object_set_new(j, "filesHash", json_string(c->files_hash));
	return r == 0 ? TAKE_PTR(j) : NULL;
}

int spec_provision_to_json(const SandboxSpec *s, json_t *j)
{
	json_t *creds;
	int r = 0;

	if (s->cloud_init) {
		json_t *c = cloud_init_to_json(s->cloud_init);

		if (!c)
			return -ENOMEM;
		r |= json_object_set_new(j, "cloudInit", c);
	}
	if (s->n_credentials == 0)
		return r < 0 ? -ENOMEM : 0;
	creds = json_array();
	if (!creds)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_credentials; i++)
		r |= json_array_append_new(creds,
					   json_pack("{s:s, s:s}", "name", s->credentials[i].name,
						     "fromFile", s->credentials[i].from_file));
	r |= json_object_set_new(j, "credentials", creds);
	return r < 0 ? -ENOMEM : 0;
}

static int dup_string(const json_t *j, const char *key, char **ret)
{
	const json_t *v = json_object_get(j, key);

	if (!v)
		return 0;
	if (!json_is_string(v))
		return -EINVAL;
	*ret = strdup(json_string_value(v));
	return *ret ? 0 : -ENOMEM;
}

static int strv_from_json(const json_t *a, char ***ret)
{
	size_t i;
	json_t *v;

	if (!a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > SPEC_SSH_KEYS_MAX)
		return -EINVAL;
	json_array_foreach(a, i, v)
	{
		if (!json_is_string(v))
			return -EINVAL;
		if (strv_extendf(ret, "%s", json_string_value(v)) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int copy_hash(const json_t *v, char ret[static 17])
{
	const char *h = json_string_value(v);

	if (!h || strlen(h) != 16 || strspn(h, "0123456789abcdef") != 16)
		return -EINVAL;
	memcpy(ret, h, 17);
	return 0;
}

static int cloud_init_from_json(const json_t *j, CloudInitSpec **ret)
{
	_cleanup_(cloud_init_spec_freep) CloudInitSpec *c = calloc(1, sizeof(CloudInitSpec));
	int r;

	if (!c)
		return -ENOMEM;
	if (!json_is_object(j))
		return -EINVAL;
	r = dup_string(j, "userData", &c->user_data);
	if (r == 0)
		r = dup_string(j, "userDataFile", &c->user_data_file);
	if (r == 0)
		r = dup_string(j, "networkConfig", &c->network_config);
	if (r == 0 && json_object_get(j, "metaData"))
		r = spec_labels_from_json(json_object_get(j, "metaData"), SPEC_META_DATA_MAX,
					  &c->meta_data, &c->n_meta_data);
	if (r == 0)
		r = strv_from_json(json_object_get(j, "sshAuthorizedKeys"), &c->ssh_keys);
	if (r == 0)
		r = strv_from_json(json_object_get(j, "sshAuthorizedKeysFiles"), &c->ssh_key_files);
	if (r == 0 && json_object_get(j, "filesHash"))
		r = copy_hash(json_object_get(j, "filesHash"), c->files_hash);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(c);
	return 0;
}

static int credentials_from_json(const json_t *a, SandboxSpec *s)
{
	size_t i;
	json_t *c;

	if (!a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > SPEC_CREDENTIALS_MAX)
		return -EINVAL;
	s->credentials = calloc(json_array_size(a) ?: 1, sizeof(CredentialSpec));
	if (!s->credentials)
		return -ENOMEM;
	json_array_foreach(a, i, c)
	{
		CredentialSpec *cred = &s->credentials[s->n_credentials++];
		const char *name = json_string_value(json_object_get(c, "name"));
		int r;

		if (!name || !spec_credential_name_is_valid(name))
			return -EINVAL;
		strcpy(cred->name, name);
		r = dup_string(c, "fromFile", &cred->from_file);
		if (r < 0)
			return r;
		if (!cred->from_file)
			return -EINVAL;
	}
	return 0;
}

int spec_provision_from_json(const json_t *j, SandboxSpec *s)
{
	const json_t *c = json_object_get(j, "cloudInit");
	int r;

	if (c) {
		r = cloud_init_from_json(c, &s->cloud_init);
		if (r < 0)
			return r;
	}
	return credentials_from_json(json_object_get(j, "credentials"), s);
}

bool spec_provision_equal(const SandboxSpec *a, const SandboxSpec *b)
{
	_cleanup_(json_decrefp) json_t *ja = NULL, *jb = NULL;

	/* What most sandboxes are, without a JSON object made each time the planner asks. */
	if (!a->cloud_init && !b->cloud_init && a->n_credentials == 0 && b->n_credentials == 0)
		return true;
	ja = json_object();
	jb = json_object();
	return ja && jb && spec_provision_to_json(a, ja) >= 0 &&
	       spec_provision_to_json(b, jb) >= 0 && json_equal(ja, jb);
}

static uint64_t hash_file(uint64_t h, const char *path)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r;

	h = fnv1a64(h, path, strlen(path) + 1);
	r = read_regular_file(path, SPEC_USER_DATA_MAX, &text, &len);
	if (r < 0)
		return fnv1a64(h, &r, sizeof(r));
	return fnv1a64(h, text, len);
}

void spec_provision_hash_files(SandboxSpec *s)
{
	CloudInitSpec *c = s->cloud_init;
	uint64_t h = FNV1A64_INIT;

	if (!c || (!c->user_data_file && strv_length(c->ssh_key_files) == 0))
		return;
	if (c->user_data_file)
		h = hash_file(h, c->user_data_file);
	for (size_t i = 0; c->ssh_key_files && c->ssh_key_files[i]; i++)
		h = hash_file(h, c->ssh_key_files[i]);
	snprintf(c->files_hash, sizeof(c->files_hash), "%016" PRIx64, h);
}
