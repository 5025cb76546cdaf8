/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include "spec.h"

/*
 * What a guest is provisioned with at boot (docs/sandbox-file.md, "Provisioning"): the
 * NoCloud seed of spec.cloudInit, an ISO 9660 image written with libisofs, and copies of
 * spec.credentials' files for the VMM to read. Both are made in the VM's runtime dir
 * before each start, from the host files as they are then, and are small (each input is
 * capped at 1 MiB), so that making them is bounded work.
 */

#define PROVISION_SEED "seed.iso"	    /* in the runtime dir */
#define PROVISION_CREDENTIALS "credentials" /* a directory in the runtime dir, 0700 */
#define PROVISION_SEED_VOLUME "cidata"	    /* the volume id NoCloud looks for */
/* More than any seed's files (1 MiB of user-data and of network-config) and their tables. */
#define PROVISION_SEED_MAX (8u << 20)

/* The files of a seed, as they go into the image. */
typedef struct SeedFiles {
	char *user_data; /* what userData or userDataFile says; "" when neither */
	size_t user_data_len;
	char *meta_data;      /* JSON, which cloud-init reads as the YAML it is */
	char *network_config; /* NULL when spec.cloudInit has none */
} SeedFiles;

void seed_files_done(SeedFiles *f);

/*
 * The seed's files for s (which has a cloud_init): the host files it names are read now.
 * meta-data has instance-id "<name>-<16 hex digits of a hash of the seed's inputs>" and
 * local-hostname "<name>" unless metaData says otherwise, and public-keys from
 * sshAuthorizedKeys and the lines of sshAuthorizedKeysFiles. -errno, why says what.
 */
int seed_files_make(const SandboxSpec *s, SeedFiles *ret, char *why, size_t why_size);

/* The ISO 9660 image of f (Rock Ridge and Joliet names, volume id cidata), in memory. */
int seed_image(const SeedFiles *f, char **ret, size_t *ret_len);

/* seed_files_make() and seed_image() of s into path, atomically, mode 0600. */
int seed_write(const SandboxSpec *s, const char *path, char *why, size_t why_size);

/*
 * Copy each of s's credentials' files to DIR/credentials/NAME, mode 0600, so that the VMM
 * reads a copy that vmd made (and can hand to an unprivileged VMM), never the file itself.
 * The directory is made anew each time. -errno, why names the credential.
 */
int credentials_copy(const SandboxSpec *s, const char *dir, char *why, size_t why_size);

/*
 * Remove the credentials' copies from dir: once the VMM has started, it has read them
 * (QEMU reads -fw_cfg files while it starts, before its QMP answers). 0 when none.
 */
int credentials_remove(const char *dir);

/* Remove what seed_write() and credentials_copy() left in dir; 0 when there is nothing. */
int provision_remove(const char *dir);
