/* SPDX-License-Identifier: MIT */
/*
 * vmd console NAME: the terminal on a VM's serial console, through the socket the daemon
 * serves (console.sock, console.h), like `virsh console`: raw mode, Ctrl-] detaches, the
 * terminal restored on every way out (detach, the connection closing, SIGTERM, SIGHUP,
 * SIGINT). vmd console NAME --log prints what the daemon kept of it.
 */
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "console.h"
#include "util.h"

#define HELLO_TIMEOUT_MS 10000

static void console_help(FILE *f)
{
	fprintf(f, "Usage: vmd console [--run-dir DIR] [--log] NAME\n"
		   "\n"
		   "Attach the terminal to sandbox NAME's serial console (Ctrl-] detaches),\n"
		   "or with --log print what vmd kept of it (console.log.1, then console.log).\n"
		   "\n"
		   "  --run-dir DIR  the daemon's run dir (default /run/vmd)\n"
		   "  --log          print the console's log and exit\n"
		   "  -h, --help     show this help\n");
}

/* Copy path to stdout: 1 if it was there, 0 if not, -errno. */
static int cat_file(const char *path)
{
	/* A VMM's own console.log (its dir, vmm/) may be a link it put there: never followed. */
	_cleanup_close_ int fd = open_nofollow(path, O_RDONLY);
	char buf[65536];
	ssize_t n;

	if (fd < 0)
		return fd == -ENOENT ? 0 : fd;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
			return -EIO;
	return n < 0 ? -errno : 1;
}

static int print_log(const char *dir, const char *name)
{
	const char *const files[] = { CONSOLE_LOG_OLD, CONSOLE_LOG };
	int found = 0, r;

	for (size_t i = 0; i < ELEMENTSOF(files); i++) {
		_cleanup_free_ char *p = NULL;

		if (asprintf(&p, "%s/%s", dir, files[i]) < 0)
			return EXIT_INVALID;
		r = cat_file(p);
		if (r < 0) {
			fprintf(stderr, "vmd console: cannot read %s: %s\n", p, strerror(-r));
			return EXIT_INVALID;
		}
		found += r;
	}
	if (fflush(stdout) != 0)
		return EXIT_INVALID;
	if (!found) {
		fprintf(stderr, "vmd console: no console log of '%s' in %s\n", name, dir);
		return EXIT_INVALID;
	}
	return EXIT_OK;
}

/* The daemon's first line, blocking for at most HELLO_TIMEOUT_MS: its length, or -errno. */
static int read_hello(int fd, char *buf, size_t size)
{
	size_t n = 0;

	while (n + 1 < size) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t k;

		if (poll(&p, 1, HELLO_TIMEOUT_MS) <= 0)
			return -ETIMEDOUT;
		/* One byte at a time: what follows the line is the guest's. */
		k = read(fd, buf + n, 1);
		if (k < 0 && IN_SET(errno, EAGAIN, EINTR))
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -ECONNRESET;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = '\0';
	return (int)n;
}

/* Connect to name's console.sock and take the console: the fd, or -errno (reported). */
static int attach(const char *dir, const char *name)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_close_ int fd = -EBADF;
	char hello[64];
	int r;

	if (asprintf(&path, "%s/" CONSOLE_SOCKET, dir) < 0)
		return -ENOMEM;
	fd = unix_connect_nofollow(path);
	if (fd < 0) {
		fprintf(stderr,
			"vmd console: cannot reach the console of '%s' at %s: %s (is vmd running it, on QEMU?)\n",
			name, path, strerror(-fd));
		return fd;
	}
	r = read_hello(fd, hello, sizeof(hello));
	if (r >= 0 && streq(hello, CONSOLE_HELLO_OK))
		return TAKE_FD(fd);
	if (r >= 0 && strncmp(hello, CONSOLE_HELLO_BUSY, strlen(CONSOLE_HELLO_BUSY)) == 0) {
		fprintf(stderr,
			"vmd console: the console of '%s' is in use by pid %d; one terminal at a time (Ctrl-] detaches that one)\n",
			name, atoi(hello + strlen(CONSOLE_HELLO_BUSY)));
		return -EBUSY;
	}
	fprintf(stderr, "vmd console: the daemon did not hand over the console of '%s': %s\n", name,
		r < 0 ? strerror(-r) : "unexpected answer");
	return r < 0 ? r : -EPROTO;
}

/* Write all of n bytes to a blocking or non-blocking fd: 0 or -errno. */
static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN) {
			struct pollfd w = { .fd = fd, .events = POLLOUT };

			(void)poll(&w, 1, -1);
			continue;
		}
		if (k <= 0)
			return k < 0 ? -errno : -EIO;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Keystrokes to the guest, up to Ctrl-]: 1 to detach, 0 to go on, -errno. */
static int from_terminal(int sock)
{
	char buf[4096], *esc;
	ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
	int r;

	if (n < 0)
		return IN_SET(errno, EAGAIN, EINTR) ? 0 : -errno;
	if (n == 0)
		return 1; /* stdin ended: nothing more to type */
	esc = memchr(buf, CONSOLE_ESCAPE, (size_t)n);
	r = write_all(sock, buf, esc ? (size_t)(esc - buf) : (size_t)n);
	return r < 0 ? r : esc ? 1 : 0;
}

/* The guest's output to the terminal: 0, or -ECONNRESET once the daemon closed. */
static int to_terminal(int sock)
{
	char buf[4096];
	ssize_t n = read(sock, buf, sizeof(buf));

	if (n < 0)
		return IN_SET(errno, EAGAIN, EINTR) ? 0 : -errno;
	if (n == 0)
		return -ECONNRESET;
	return write_all(STDOUT_FILENO, buf, (size_t)n);
}

/*
 * Copy both ways until Ctrl-], the end of either side, or a signal: 1 detached (Ctrl-],
 * the end of stdin), -EINTR for a signal, or -errno (-ECONNRESET, -EPIPE: the daemon
 * closed).
 */
static int relay(int sock, int sig_fd)
{
	struct pollfd p[3] = {
		{ .fd = STDIN_FILENO, .events = POLLIN },
		{ .fd = sock, .events = POLLIN },
		{ .fd = sig_fd, .events = POLLIN },
	};
	int r = 0;

	while (r == 0) {
		if (poll(p, ELEMENTSOF(p), -1) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (p[2].revents)
			return -EINTR;
		if (p[1].revents)
			r = to_terminal(sock);
		if (r == 0 && p[0].revents)
			r = from_terminal(sock);
	}
	return r;
}

/* After the terminal is restored: how it ended, in words, and the exit status. */
static int relay_end(int r, const char *name)
{
	if (r > 0)
		fprintf(stderr, "\nDetached from the console of '%s'.\n", name);
	else if (IN_SET(-r, ECONNRESET, EPIPE))
		fprintf(stderr,
			"\nvmd console: the console of '%s' closed (the VM stopped, or vmd did)\n",
			name);
	else if (r != -EINTR)
		fprintf(stderr, "\nvmd console: %s\n", strerror(-r));
	return r > 0 ? EXIT_OK : EXIT_INVALID;
}

static int run_console(const char *dir, const char *name)
{
	_cleanup_close_ int sock = -EBADF, sig_fd = -EBADF;
	struct termios saved, raw;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
	sigset_t mask;
	int r;

	sock = attach(dir, name);
	if (sock < 0)
		return EXIT_INVALID;
	/* A signal ends the relay like a detach, so that the terminal is restored. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGQUIT);
	/* A daemon gone under a write is told by the write's -EPIPE, not by a signal. */
	(void)signal(SIGPIPE, SIG_IGN);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 ||
	    (sig_fd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
		fprintf(stderr, "vmd console: %s\n", strerror(errno));
		return EXIT_INVALID;
	}
	if (tty) {
		raw = saved;
		cfmakeraw(&raw);
		if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) < 0)
			tty = false;
	}
	/* Said once the terminal is raw (hence \r\n), so that whoever reads it knows it is. */
	fprintf(stderr, "Connected to the console of '%s'; Ctrl-] detaches.%s\n", name,
		tty ? "\r" : "");
	r = relay(sock, sig_fd);
	if (tty)
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
	/* And the end once it is restored. */
	return relay_end(r, name);
}

int verb_console(int argc, char **argv)
{
	static const struct option options[] = {
		{ "run-dir", required_argument, NULL, 'r' },
		{ "log", no_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	const char *run_dir = "/run/vmd";
	_cleanup_free_ char *dir = NULL;
	bool log = false;
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		switch (c) {
		case 'r':
			run_dir = optarg;
			break;
		case 'l':
			log = true;
			break;
		case 'h':
			console_help(stdout);
			return EXIT_OK;
		default:
			console_help(stderr);
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "vmd console: expected one NAME\n");
		return EXIT_USAGE;
	}
	/* A sandbox's name, never a path that leads out of the run dir. */
	if (!spec_name_is_valid(argv[optind])) {
		fprintf(stderr, "vmd console: '%s' is no sandbox name\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (asprintf(&dir, "%s/%s", run_dir, argv[optind]) < 0)
		return EXIT_INVALID;
	return log ? print_log(dir, argv[optind]) : run_console(dir, argv[optind]);
}
