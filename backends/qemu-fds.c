/* SPDX-License-Identifier: MIT */
/*
 * What QEMU opens, vmd opens (issue 16, docs/backends.md "What QEMU opens"): QEMU runs as
 * the VMM user, which needs no access to any of the host's files. Each disk's file and the
 * base image under an overlay are opened here, checked to be the file the loader checked
 * (spec.h FileIdentity) and of the kind the spec says, and go to QEMU in an fdset
 * (-add-fd, /dev/fdset/N: QEMU 7.2 util/osdep.c qemu_open_internal() takes a dup of the
 * set's fd of the access mode it asks for, monitor/fds.c monitor_fdset_dup_fd_add()). The
 * kernel, the initrd and the credentials, which QEMU reads by path only (hw/i386/x86.c
 * x86_load_linux(), softmmu/vl.c parse_fw_cfg()), are copied into sealed memfds that QEMU
 * reads as /proc/self/fd/N: the reopen of a magic link checks the inode's mode, and a
 * memfd's is vmd's to give. QEMU keeps the kernel and the initrd mapped for as long as it
 * runs (hw/core/loader.c: ROMs of a GMappedFile, copied again at each reset): the memfds
 * are sealed whole, and one of a kernel is shared by the guests that boot from it, whatever
 * their VMM: the opens, the checks and the copies are vmm-files.c's, the same for every VMM,
 * made by the start's files step in a worker (vmm-boot.c): the spawn takes what it got.
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "provision.h"
#include "qemu-vm.h"
#include "util.h"

/* fd (taken), or why it is none, to v's QEMU: *ret, the number it has there. */
static int pass_open(QemuVm *v, int fd, const char *why, int *ret)
{
	if (fd < 0) {
		backend_set_error(v->vm.b, "%s", why);
		return fd;
	}
	*ret = vmm_vm_pass_fd(&v->vm, fd);
	return *ret < 0 ? *ret : 0;
}

/* What the files step got for key (qemu_files()), to v's QEMU: *ret. */
static int pass_taken(QemuVm *v, unsigned key, const char *what, int *ret)
{
	char why[512];

	return pass_open(v, vmm_files_take(&v->vm, key, what, why, sizeof(why)), why, ret);
}

static int pass_boot_file(QemuVm *v, VmmBootSlot slot, const char *what, int *ret)
{
	char why[512];

	return pass_open(v, vmm_boot_file_fd(&v->vm, slot, what, why, sizeof(why)), why, ret);
}

int qemu_files(VmmVm *vm, VmmJob *j, VmmFiles *f)
{
	const SandboxSpec *s = vm->config;
	_cleanup_free_ char *seed = NULL;
	VmmFileWant *w;
	int r = 0;

	/* A disk hot-added: its file, which qemu-hotplug.c's request takes. */
	if (j->type == BACKEND_OP_DISK_ADD)
		return vmm_files_add_disk(f, &j->disk, VMM_KEY_DISK);
	if (!IN_SET(j->type, BACKEND_OP_START, BACKEND_OP_RESTORE))
		return 0;
	for (size_t i = 0; i < s->n_disks && r >= 0; i++) {
		r = vmm_files_add_disk(f, &s->disks[i], VMM_KEY_DISK + (unsigned)i);
		if (r >= 0 && s->disks[i].image)
			r = vmm_files_add_base(f, &s->disks[i], VMM_KEY_BASE + (unsigned)i);
	}
	if (r >= 0 && s->kernel)
		r = vmm_files_add_boot(f, VMM_BOOT_KERNEL, "kernel", s->kernel);
	if (r >= 0 && s->initrd)
		r = vmm_files_add_boot(f, VMM_BOOT_INITRD, "initrd", s->initrd);
	for (size_t i = 0; i < s->n_credentials && r >= 0; i++) {
		_cleanup_free_ char *copy = NULL;

		if (asprintf(&copy, "%s/" PROVISION_CREDENTIALS "/%s", vm->dir,
			     s->credentials[i].name) < 0 ||
		    !vmm_files_add(f, VMM_FILE_COPY, VMM_KEY_CREDENTIAL + (unsigned)i, "credential",
				   copy))
			return -ENOMEM;
	}
	if (r < 0 || !s->cloud_init)
		return r;
	seed = vmm_vm_path(vm->b, vm->name, PROVISION_SEED);
	w = seed ? vmm_files_add(f, VMM_FILE_OPEN, VMM_KEY_SEED, "the seed", seed) : NULL;
	if (!w)
		return -ENOMEM;
	w->device = DISK_DEVICE_FILE;
	return 0;
}

int qemu_prepare_files(QemuVm *v)
{
	const SandboxSpec *s = v->vm.config;
	char what[SPEC_ID_MAX + 16];
	int r = 0;

	v->kernel_fd = v->initrd_fd = v->seed_fd = -1;
	for (size_t i = 0; i < s->n_disks && r >= 0; i++) {
		snprintf(what, sizeof(what), "disk '%s'", s->disks[i].id);
		v->base_fds[i] = -1;
		r = pass_taken(v, VMM_KEY_DISK + (unsigned)i, what, &v->disk_fds[i]);
		if (r >= 0 && s->disks[i].image)
			r = pass_taken(v, VMM_KEY_BASE + (unsigned)i, what, &v->base_fds[i]);
	}
	if (r >= 0 && s->kernel)
		r = pass_boot_file(v, VMM_BOOT_KERNEL, "kernel", &v->kernel_fd);
	if (r >= 0 && s->initrd)
		r = pass_boot_file(v, VMM_BOOT_INITRD, "initrd", &v->initrd_fd);
	for (size_t i = 0; i < s->n_credentials && r >= 0; i++)
		r = pass_taken(v, VMM_KEY_CREDENTIAL + (unsigned)i, "credential",
			       &v->credential_fds[i]);
	if (r >= 0 && s->cloud_init)
		r = pass_taken(v, VMM_KEY_SEED, "the seed", &v->seed_fd);
	return r;
}
