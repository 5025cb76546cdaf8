/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A VM's serial console, as the daemon keeps it. The VMM's serial port is a Unix socket in
 * the VM's runtime dir (serial.sock) that vmd creates and listens on for the VMM: QEMU gets
 * the listening fd at spawn (-chardev socket,fd=N,server=on), so it opens nothing in the
 * run dir itself. The daemon is the VMM's one client: it connects from its event loop,
 * keeps everything the guest prints in console.log, capped (console.log.1 holds the part
 * before), and serves console.sock, where `vmd console` attaches: one client at a time,
 * whose keystrokes go to the guest and who sees what the guest prints, while the logging
 * goes on. A second client is told who holds it ("busy PID") and closed.
 *
 * While no vmd is connected (between a kill of vmd and the next one's adoption), QEMU
 * drops what the guest prints: that part is missing from the log.
 */

#include <stdint.h>
#include <systemd/sd-event.h>
#include <sys/types.h>

#include "macro.h"

#define CONSOLE_SERIAL "serial.sock"  /* the VMM's end, made by vmd */
#define CONSOLE_SOCKET "console.sock" /* where vmd console attaches, served by the daemon */
#define CONSOLE_LOG "console.log"
#define CONSOLE_LOG_OLD "console.log.1"
#define CONSOLE_LOG_SIZE_DEFAULT (1024ull * 1024)
#define CONSOLE_LOG_SIZE_MIN (8ull * 1024)
#define CONSOLE_ESCAPE 0x1d /* Ctrl-]: vmd console detaches */

/*
 * The handshake on console.sock: the daemon's first line is CONSOLE_HELLO_OK (attached:
 * raw bytes both ways from then on) or CONSOLE_HELLO_BUSY followed by the pid of the client
 * that holds it, and the connection is closed.
 */
#define CONSOLE_HELLO_OK "ok\n"
#define CONSOLE_HELLO_BUSY "busy "

/*
 * The capped log: console.log and console.log.1 together never hold more than size bytes.
 * console.log takes at most size / 2; when the next write would pass that, it becomes
 * console.log.1 (replacing the one before) and a new console.log begins.
 */
typedef struct ConsoleLog {
	int fd;
	char *path, *old;
	uint64_t size;	   /* of console.log now */
	uint64_t cap_each; /* of each file */
	int error;	   /* the last write's, reported once */
} ConsoleLog;

/* Open (append to) dir's console.log, with size (0: the default) for both files. */
int console_log_open(const char *dir, uint64_t size, ConsoleLog *ret);
/* Log n bytes, rotating as needed: 0 or -errno (what could not be written is dropped). */
int console_log_write(ConsoleLog *l, const void *buf, size_t n);
void console_log_close(ConsoleLog *l);

typedef struct Console Console;

/*
 * Keep name's console in dir: connect to dir's serial.sock (and again whenever the
 * connection breaks), log to console.log with log_size (0: the default), serve console.sock.
 */
int console_new(sd_event *e, const char *name, const char *dir, uint64_t log_size, Console **ret);
/* Stop: the log is closed, a client attached is disconnected, console.sock removed. */
Console *console_free(Console *c);
DEFINE_POINTER_CLEANUP(Console, console_free)
/*
 * The VMM listens now (Cloud Hypervisor's socket exists once vm.create is done): connect
 * at once rather than at the next retry, so that nothing the guest prints at its boot
 * goes before vmd is there. Nothing if connected already.
 */
void console_connect_now(Console *c);
/* The bytes it passed either way since it began (suspendAfterIdle: idle.c). */
uint64_t console_bytes(const Console *c);
/* The pid of the client attached, 0 if none. */
pid_t console_client(const Console *c);
