/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the loader must refuse or accept any bytes without a crash or a leak. */
#include <stdint.h>

#include "backend.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const BackendKind backends[] = { BACKEND_QEMU, BACKEND_CLOUD_HYPERVISOR,
						BACKEND_FIRECRACKER, BACKEND_NOOP };
	SandboxSpec *spec = NULL;
	DiagList diags = {};
	/* The first byte picks the default backend, so that its rules are reached too. */
	SpecLoadOptions opts =
		backend_spec_load_options(backends[size ? data[0] % ELEMENTSOF(backends) : 0]);
	int r;

	r = spec_load_buffer("fuzz.yaml", (const char *)data, size, &opts, &spec, &diags);
	if ((r == 0) != (spec != NULL) || (r == -EINVAL && diag_list_is_empty(&diags)))
		__builtin_trap();
	sandbox_spec_free(spec);
	diag_list_done(&diags);
	return 0;
}
