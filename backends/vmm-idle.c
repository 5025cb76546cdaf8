/* SPDX-License-Identifier: MIT */
/*
 * suspendAfterIdle, for the VMM backends (reconciler/idle.c samples it): what a VM did
 * lately, as one count that grows. Its console's bytes both ways (console.c counts them as
 * it passes them: no timer per byte), and the packets on the tap of each NIC that has one
 * (tap, bridge, macvtap: the device is the VM's alone), from the kernel's counters in
 * /sys/class/net/TAP/statistics. A user network (the VMM's own NAT) has no device vmd can
 * read: its traffic is not seen, only the console's (docs/sandbox-file.md). A VMM that
 * writes its console to console.log itself (Firecracker's serial_out_path or stdout, a
 * VMM adopted from a vmd before serial sockets) has no Console of vmd's: the size of that
 * file stands in for its bytes (typing to it is not possible there).
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "console.h"
#include "util.h"
#include "vmm-vm.h"

static uint64_t counter(const char *tap, const char *which)
{
	_cleanup_free_ char *path = NULL, *text = NULL;

	if (asprintf(&path, "/sys/class/net/%s/statistics/%s", tap, which) < 0 ||
	    read_file(path, 32, &text, NULL) < 0)
		return 0; /* gone with its VMM, or not yet there: nothing to count */
	return strtoull(text, NULL, 10);
}

uint64_t vmm_net_packets(const SandboxSpec *spec)
{
	uint64_t n = 0;

	for (size_t i = 0; i < spec->n_networks; i++) {
		const NetSpec *net = &spec->networks[i];

		if (net->type == NET_USER || !net->tap[0])
			continue;
		n += counter(net->tap, "rx_packets") + counter(net->tap, "tx_packets");
	}
	return n;
}

/* What its console passed: vmd's count, or the size of the console.log its VMM writes. */
static uint64_t console_activity(VmmVm *v)
{
	_cleanup_free_ char *log = NULL;
	struct stat st;

	if (v->console)
		return console_bytes(v->console);
	log = vmm_vm_path(v->b, v->name, CONSOLE_LOG);
	return log && stat(log, &st) == 0 ? (uint64_t)st.st_size : 0;
}

int vmm_vm_activity(Backend *b, const char *name, uint64_t *ret)
{
	VmmVm *v = vmm_vm_get(b, name);

	if (!v || !v->config)
		return -ENOENT;
	*ret = vmm_net_packets(v->config) + console_activity(v);
	return 0;
}
