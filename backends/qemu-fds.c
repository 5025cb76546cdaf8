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
 * their VMM: the opens, the checks and the copies are vmm-files.c's, the same for every VMM.
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "disk-image.h"
#include "provision.h"
#include "qemu-vm.h"
#include "util.h"

int qemu_open_base(const DiskSpec *d, char *why, size_t n)
{
	_cleanup_free_ char *bad = NULL;
	char what[SPEC_ID_MAX + 16];
	uint64_t size;
	int fd, r;

	snprintf(what, sizeof(what), "disk '%s'", d->id);
	fd = vmm_open_checked(what, d->image, O_RDONLY, DISK_DEVICE_FILE, &d->checked, why, n);
	if (fd < 0)
		return fd;
	/* Of the format it was checked to be, still: a header rewritten since is refused. */
	r = disk_image_check_fd(fd, d->image_format, &size, &bad);
	if (r < 0) {
		snprintf(why, n, "%s: image %s %s", what, d->image, bad ?: strerror(-r));
		close(fd);
		return r;
	}
	return fd;
}

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

static int pass_boot_file(QemuVm *v, VmmBootSlot slot, const char *what, const char *path, int *ret)
{
	char why[512];
	int fd = vmm_boot_file(&v->vm, slot, what, path, why, sizeof(why));

	return pass_open(v, fd, why, ret);
}

static int pass_copy(QemuVm *v, const char *what, const char *path, int *ret)
{
	char why[512];
	int fd = vmm_memfd_copy(what, path, why, sizeof(why));

	return pass_open(v, fd, why, ret);
}

int qemu_prepare_files(QemuVm *v)
{
	const SandboxSpec *s = v->vm.config;
	char why[512];
	int r = 0;

	v->kernel_fd = v->initrd_fd = v->seed_fd = -1;
	for (size_t i = 0; i < s->n_disks && r >= 0; i++) {
		const DiskSpec *d = &s->disks[i];

		v->base_fds[i] = -1;
		r = pass_open(v, vmm_open_disk(d, why, sizeof(why)), why, &v->disk_fds[i]);
		if (r >= 0 && d->image)
			r = pass_open(v, qemu_open_base(d, why, sizeof(why)), why, &v->base_fds[i]);
	}
	if (r >= 0 && s->kernel)
		r = pass_boot_file(v, VMM_BOOT_KERNEL, "kernel", s->kernel, &v->kernel_fd);
	if (r >= 0 && s->initrd)
		r = pass_boot_file(v, VMM_BOOT_INITRD, "initrd", s->initrd, &v->initrd_fd);
	for (size_t i = 0; i < s->n_credentials && r >= 0; i++) {
		_cleanup_free_ char *copy = NULL;

		if (asprintf(&copy, "%s/" PROVISION_CREDENTIALS "/%s", v->vm.dir,
			     s->credentials[i].name) < 0)
			return -ENOMEM;
		r = pass_copy(v, "credential", copy, &v->credential_fds[i]);
	}
	if (r >= 0 && s->cloud_init) {
		_cleanup_free_ char *seed = vmm_vm_path(v->vm.b, v->vm.name, PROVISION_SEED);

		if (!seed)
			return -ENOMEM;
		r = pass_open(v,
			      vmm_open_checked("the seed", seed, O_RDONLY, DISK_DEVICE_FILE,
					       &(FileIdentity){}, why, sizeof(why)),
			      why, &v->seed_fd);
	}
	return r;
}
