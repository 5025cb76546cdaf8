/* SPDX-License-Identifier: MIT */
#pragma once

#include <systemd/sd-event.h>

/*
 * Watches the sandbox directory and its subfolders, and its parent (so that the directory
 * being deleted, re-created, replaced or symlink-swapped is seen), and the mount table (so
 * that a mount over it, which no inotify event tells, is seen too: the new directory is
 * watched and everything read again). Events are hints: fn is called on the event loop
 * with the path of a sandbox file that may have changed, or with NULL when everything must
 * be read again (queue overflow, the directory replaced or mounted over, a Kubernetes
 * ..data swap, a subfolder created or removed).
 *
 * libinotifytools keeps one process-wide instance with no fd to poll; it lives in a thread
 * of its own, in this file only, which wakes the event loop through an eventfd.
 *
 * When inotify itself is out of reach (the user's inotify instances or watches used up:
 * the sysctls fs.inotify.max_user_instances and max_user_watches), nothing is watched:
 * state_fn is called on the loop with the error (-EMFILE, -ENOSPC, -ENFILE, -ENOMEM), and
 * with 0 once watches are set up again; the caller polls meanwhile, and asks for another
 * try with watcher_retry(). watcher_error() tells the state at any time.
 */

typedef struct Watcher Watcher;
typedef void (*WatcherFn)(void *userdata, const char *path);
typedef void (*WatcherStateFn)(void *userdata, int error);

int watcher_new(const char *dir, WatcherFn fn, WatcherStateFn state_fn, void *userdata,
		sd_event *event, Watcher **ret);
Watcher *watcher_free(Watcher *w);
/* 0 while watching (or waiting for the directory to appear), else why inotify is out of reach. */
int watcher_error(Watcher *w);
/* inotify was out of reach: try to set up the watches again (from the watcher's thread). */
void watcher_retry(Watcher *w);
/* The sysctl that limits what error ran out of, or NULL. */
const char *watcher_error_sysctl(int error);
