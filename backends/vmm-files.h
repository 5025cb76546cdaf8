/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * vmm-files.c: how vmd opens what it hands to a VMM, for every VMM (issue 16,
 * docs/backends.md "What QEMU opens", "What a VMM opens itself, and what it gets"): a file
 * the loader checked is opened as that very file and of the kind the spec says, or refused
 * with the same words for every VMM; a file a VMM only reads (a kernel, an initrd, a seed, a
 * credential) goes as a sealed memfd copy; the copy of a kernel or an initrd is one for
 * every guest that boots from that file, whatever its VMM (VmmBackend.boot_files).
 */

#include <stddef.h>

#include "spec.h"

typedef struct VmmVm VmmVm;
typedef struct VmmBootFile VmmBootFile;

/*
 * path opened with flags (O_RDONLY, O_RDWR) as the file id says the loader checked (an
 * empty id: any file), of the kind device says: the fd, or -errno with the words (naming
 * what and path) in why. A FIFO does not block the open.
 */
int vmm_open_checked(const char *what, const char *path, int flags, DiskDevice device,
		     const FileIdentity *id, char *why, size_t n);
/* A disk's file (or the copy of its image, vmd's own), read-write unless readOnly. */
int vmm_open_disk(const DiskSpec *d, char *why, size_t n);
/* A sealed memfd copy of the regular file at path, or -errno with the words in why. */
int vmm_memfd_copy(const char *what, const char *path, char *why, size_t n);

/* Which of a VM's boot files: its slot in VmmVm.boot_files. */
typedef enum VmmBootSlot {
	VMM_BOOT_KERNEL,
	VMM_BOOT_INITRD,
	_VMM_BOOT_MAX,
} VmmBootSlot;
/*
 * The sealed memfd of the file at path as it is now, shared with every VM of v's backend
 * that boots from it (made if none does): v holds it in slot until vmm_boot_files_put().
 * A new fd of it (vmd's, close-on-exec), or -errno with the words in why.
 */
int vmm_boot_file(VmmVm *v, VmmBootSlot slot, const char *what, const char *path, char *why,
		  size_t n);
/* v is done with its boot files (it exited, or is freed): the last user's copy goes. */
void vmm_boot_files_put(VmmVm *v);
