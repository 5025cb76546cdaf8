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
#include <sys/stat.h>

#include "spec.h"
#include "vmm-worker.h"
#include "vmm.h"

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
/* The base image of a disk (path, of format), checked as the loader did, read-only. */
int vmm_open_base(const char *what, const char *path, DiskFormat format, const FileIdentity *id,
		  char *why, size_t n);
/*
 * A sealed memfd copy of the regular file at path (*ret_st, unless NULL: the file's stat as
 * it was copied), or -errno with the words in why.
 */
int vmm_memfd_copy(const char *what, const char *path, struct stat *ret_st, char *why, size_t n);

/* Which of a VM's boot files: its slot in VmmVm.boot_files. */
typedef enum VmmBootSlot {
	VMM_BOOT_KERNEL,
	VMM_BOOT_INITRD,
	_VMM_BOOT_MAX,
} VmmBootSlot;
/*
 * The copies v's backend has now, each held (so that a files worker may name one, which
 * stays until the start uses it): *ret (NULL when none) of *ret_n. 0, or -ENOMEM.
 */
int vmm_boot_files_hold(VmmVm *v, VmmBootFile ***ret, size_t *ret_n);
/* Let go of what vmm_boot_files_hold() held, and free all. */
void vmm_boot_files_release(VmmVm *v, VmmBootFile **all, size_t n);
/*
 * In a worker: the regular file at path opened, *ret_st its fstat; if it is the file one of
 * known (1 + its index in *ret_match) is a copy of, 0 and no copy; else a sealed memfd
 * copy of it; or -errno with the words in why.
 */
int vmm_boot_copy(const char *what, const char *path, VmmBootFile *const *known, size_t n_known,
		  struct stat *ret_st, unsigned *ret_match, char *why, size_t n);
/* v holds bf, one of the copies, in slot, until vmm_boot_files_put(). */
void vmm_boot_file_use(VmmVm *v, VmmBootSlot slot, VmmBootFile *bf);
/*
 * The copy fd (taken) just made of the file of st (a worker made it: vmm-boot.c) is v's in
 * slot: the one shared with the other VMs if one of them made one of that file meanwhile
 * (fd is closed then), else added for them. 0, or -ENOMEM.
 */
int vmm_boot_file_add(VmmVm *v, VmmBootSlot slot, int fd, const struct stat *st);
/* A new fd (vmd's, close-on-exec) of v's copy in slot, or -errno with the words in why. */
int vmm_boot_file_fd(VmmVm *v, VmmBootSlot slot, const char *what, char *why, size_t n);
/* v is done with its boot files (it exited, or is freed): the last user's copy goes. */
void vmm_boot_files_put(VmmVm *v);

/*
 * The files step of a start (and of a hot-add whose VMM opens the disk by path itself):
 * vmm-boot.c. What the VMM is to get is listed (VmmVmType.files) as wants, which a worker
 * (vmm-worker.c) opens, copies or checks, in their order, and sends back; the spawn (or the
 * request) then only takes what is ready: the loop opens nothing that may wait.
 */
typedef enum VmmFileKind {
	VMM_FILE_OPEN,	 /* path, checked: vmm_open_checked(flags, device, id) */
	VMM_FILE_BASE,	 /* the base image path of a disk: vmm_open_base(format, id) */
	VMM_FILE_COPY,	 /* a sealed memfd copy of path: vmm_memfd_copy() */
	VMM_FILE_BOOT,	 /* the same, shared (the key is its VmmBootSlot): vmm_boot_file_add() */
	VMM_FILE_ACCESS, /* the VMM user may open path (of_previous: the fd of the want before) */
} VmmFileKind;

/* The index of the worker's record of the seed and credentials' copies (VmmFiles.spec). */
#define VMM_FILES_PROVISION UINT32_MAX

/* The keys of a start's files, for vmm_files_take(). */
enum {
	VMM_KEY_SEED = _VMM_BOOT_MAX,
	VMM_KEY_DISK = 8,				    /* + its index in the spec */
	VMM_KEY_BASE = VMM_KEY_DISK + SPEC_DISKS_MAX,	    /* + the index of its disk */
	VMM_KEY_CREDENTIAL = VMM_KEY_BASE + SPEC_DISKS_MAX, /* + its index */
	VMM_KEY_ACCESS = VMM_KEY_CREDENTIAL + SPEC_CREDENTIALS_MAX,
};

typedef struct VmmFileWant {
	VmmFileKind kind;
	unsigned key;
	char what[SPEC_ID_MAX + 32]; /* "disk 'root'", "kernel": in messages */
	char *path;
	int flags; /* OPEN, ACCESS: O_RDONLY or O_RDWR */
	DiskDevice device;
	FileIdentity id;
	DiskFormat format;
	bool of_previous;
	bool received;
	int fd; /* vmd's, once received and until taken; else -EBADF */
} VmmFileWant;

#define VMM_FILES_MAX (3 * SPEC_DISKS_MAX + SPEC_CREDENTIALS_MAX + 4)

typedef struct VmmFiles {
	VmmFileWant wants[VMM_FILES_MAX];
	size_t n;
	size_t done; /* received so far: wants[done] is at work */
	bool has_user;
	VmmUser user;	     /* ACCESS: as whom */
	int error;	     /* the first want that failed, said in the job's message */
	VmmBootFile **known; /* BOOT: the copies there were at its start, held for the worker */
	size_t n_known;
	/*
	 * A start's or a restore's: the seed (at seed, unless NULL) and the credentials'
	 * copies (in dir) of spec, which the worker writes first (provision.h), before the
	 * wants that read them.
	 */
	const SandboxSpec *spec;
	const char *dir;
	char *seed;
	bool provisioned; /* the worker said it wrote them */
	VmmWorker worker;
} VmmFiles;

/* Add a want of kind for path (copied): NULL without memory, or past VMM_FILES_MAX. */
VmmFileWant *vmm_files_add(VmmFiles *f, VmmFileKind kind, unsigned key, const char *what,
			   const char *path);
/* A disk's file, opened as vmm_open_disk() does (key: VMM_KEY_DISK + i). 0, or -errno. */
int vmm_files_add_disk(VmmFiles *f, const DiskSpec *d, unsigned key);
/* The base image under a disk's overlay (VMM_KEY_BASE + i). 0, or -errno. */
int vmm_files_add_base(VmmFiles *f, const DiskSpec *d, unsigned key);
/* A kernel or an initrd: its copy, or the one v's backend has of that file. 0, or -errno. */
int vmm_files_add_boot(VmmFiles *f, VmmBootSlot slot, const char *what, const char *path);
/*
 * Whether the VMM user may open path (writable: read-write), as the VMM will: the fd of the
 * want just before (of_previous), or the path itself. Nothing without a VMM user, or as root.
 */
int vmm_files_add_access(VmmFiles *f, const char *what, const char *path, bool writable,
			 bool of_previous);
/* The fd of key the files step got (taken: the caller's), or -ENOENT with the words in why. */
int vmm_files_take(VmmVm *v, unsigned key, const char *what, char *why, size_t n);
