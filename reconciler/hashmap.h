/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * A map from strings to pointers, open addressing with linear probing. It does not own
 * keys or values: a key must live as long as its entry (keep it inside the value).
 */

typedef struct Hashmap Hashmap;

Hashmap *hashmap_new(void);
Hashmap *hashmap_free(Hashmap *h);
size_t hashmap_size(const Hashmap *h);
void *hashmap_get(const Hashmap *h, const char *key);
/* -EEXIST if key is there already, -ENOMEM. */
int hashmap_put(Hashmap *h, const char *key, void *value);
/* The value removed, or NULL. */
void *hashmap_remove(Hashmap *h, const char *key);
/* Iterate: start with *i = 0; returns false at the end. Do not change the map meanwhile. */
bool hashmap_next(const Hashmap *h, size_t *i, void **ret_value);
