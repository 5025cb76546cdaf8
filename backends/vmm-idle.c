/* SPDX-License-Identifier: MIT */
/*
 * suspendAfterIdle, for the VMM backends (reconciler/idle.c samples it): what a VM did
 * lately, as one count that grows. Its console's bytes both ways (console.c counts them as
 * it passes them: no timer per byte), and the packets on the tap of each NIC that has one
 * (tap, bridge, macvtap: the device is the VM's alone), from the kernel's counters in
 * /sys/class/net/TAP/statistics. A user network (the VMM's own NAT) has no device vmd can
 * read: its traffic is not seen, only the console's (docs/sandbox-file.md).
 */
#include <stdio.h>
#include <stdlib.h>

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

int vmm_vm_activity(Backend *b, const char *name, uint64_t *ret)
{
	VmmVm *v = vmm_vm_get(b, name);

	if (!v || !v->config)
		return -ENOENT;
	*ret = vmm_net_packets(v->config) + (v->console ? console_bytes(v->console) : 0);
	return 0;
}
