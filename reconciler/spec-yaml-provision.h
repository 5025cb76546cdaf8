/* SPDX-License-Identifier: MIT */
#pragma once

#include "spec.h"
#include "yaml-decode.h"

/* spec.cloudInit and spec.credentials into a SandboxSpec (obj), for spec-yaml.c's table. */
void spec_decode_cloud_init(Decoder *d, const YNode *n, const Field *f, void *obj);
void spec_decode_credentials(Decoder *d, const YNode *n, const Field *f, void *obj);

/* A mapping of strings to strings (metadata.labels, spec.cloudInit.metaData). */
typedef struct StringMap {
	const char *what,
		*many; /* "label", "labels": "label key 'x' is longer...", "has 65 labels" */
	size_t max, key_max, value_max;
	/* More rules for a key: false when it reported one broken. NULL: none. */
	bool (*key_check)(Decoder *d, const YNode *key);
} StringMap;

void spec_decode_string_map(Decoder *d, const YNode *n, const StringMap *m, Label **ret,
			    size_t *ret_n);
