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
 */

typedef struct Watcher Watcher;
typedef void (*WatcherFn)(void *userdata, const char *path);

int watcher_new(const char *dir, WatcherFn fn, void *userdata, sd_event *event, Watcher **ret);
Watcher *watcher_free(Watcher *w);
