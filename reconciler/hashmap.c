/* SPDX-License-Identifier: MIT */
#include <stdint.h>

#include "hashmap.h"
#include "util.h"

typedef struct Entry {
	const char *key; /* NULL: empty */
	void *value;
} Entry;

struct Hashmap {
	Entry *entries;
	size_t capacity; /* a power of two */
	size_t size;
};

static uint64_t hash(const char *s)
{
	return fnv1a64(FNV1A64_INIT, s, strlen(s));
}

Hashmap *hashmap_new(void)
{
	Hashmap *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->capacity = 16;
	h->entries = calloc(h->capacity, sizeof(Entry));
	if (!h->entries)
		return mfree(h);
	return h;
}

Hashmap *hashmap_free(Hashmap *h)
{
	if (h)
		free(h->entries);
	return mfree(h);
}

size_t hashmap_size(const Hashmap *h)
{
	return h ? h->size : 0;
}

static Entry *slot(const Hashmap *h, const char *key)
{
	size_t i = hash(key) & (h->capacity - 1);

	while (h->entries[i].key && !streq(h->entries[i].key, key))
		i = (i + 1) & (h->capacity - 1);
	return &h->entries[i];
}

void *hashmap_get(const Hashmap *h, const char *key)
{
	return h ? slot(h, key)->value : NULL;
}

static int grow(Hashmap *h)
{
	Entry *old = h->entries;
	size_t old_capacity = h->capacity;

	h->entries = calloc(old_capacity * 2, sizeof(Entry));
	if (!h->entries) {
		h->entries = old;
		return -ENOMEM;
	}
	h->capacity = old_capacity * 2;
	for (size_t i = 0; i < old_capacity; i++)
		if (old[i].key)
			*slot(h, old[i].key) = old[i];
	free(old);
	return 0;
}

int hashmap_put(Hashmap *h, const char *key, void *value)
{
	Entry *e;

	if ((h->size + 1) * 4 > h->capacity * 3 && grow(h) < 0)
		return -ENOMEM;
	e = slot(h, key);
	if (e->key)
		return -EEXIST;
	*e = (Entry){ key, value };
	h->size++;
	return 0;
}

void *hashmap_remove(Hashmap *h, const char *key)
{
	Entry *e = slot(h, key);
	void *value = e->value;
	size_t i, j;

	if (!e->key)
		return NULL;
	/* Backward-shift deletion keeps every probe chain unbroken. */
	i = (size_t)(e - h->entries);
	h->entries[i] = (Entry){};
	for (j = (i + 1) & (h->capacity - 1); h->entries[j].key; j = (j + 1) & (h->capacity - 1)) {
		size_t home = hash(h->entries[j].key) & (h->capacity - 1);

		/* Move j into the hole at i unless its home lies cyclically in (i, j]. */
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			h->entries[i] = h->entries[j];
			h->entries[j] = (Entry){};
			i = j;
		}
	}
	h->size--;
	return value;
}

bool hashmap_next(const Hashmap *h, size_t *i, void **ret_value)
{
	for (; h && *i < h->capacity; (*i)++)
		if (h->entries[*i].key) {
			*ret_value = h->entries[(*i)++].value;
			return true;
		}
	return false;
}
