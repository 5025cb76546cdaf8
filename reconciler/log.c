/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <syslog.h>
#include <systemd/sd-journal.h>

#include "log.h"
#include "util.h"

/* Where sd_journal_sendv() sends: libsystemd has it hard-coded. */
#define JOURNAL_SOCKET "/run/systemd/journal/socket"

const char *const log_target_table[_LOG_TARGET_MAX] = {
	[LOG_TARGET_AUTO] = "auto",
	[LOG_TARGET_JOURNAL] = "journal",
	[LOG_TARGET_CONSOLE] = "console",
};

LogTarget log_target_from_string(const char *s)
{
	return (LogTarget)string_table_lookup(log_target_table, _LOG_TARGET_MAX, s);
}

/*
 * The one global besides const tables, as STYLE.md allows: where the log goes, and whether
 * the journal refused the last entry (then entries go to standard error until it takes one).
 */
static LogTarget log_target = LOG_TARGET_CONSOLE;
static bool journal_lost;

/* Whether stderr is the journal's stream (systemd sets JOURNAL_STREAM=dev:ino). */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
		return false;
	return st.st_dev == dev && st.st_ino == ino;
}

void log_setup(LogTarget target)
{
	if (target == LOG_TARGET_AUTO)
		target = stderr_is_journal() ? LOG_TARGET_JOURNAL : LOG_TARGET_CONSOLE;
	log_target = target;
}

static void add_field(char **parts, size_t *n, const char *fmt, ...) _printf_(3, 4);
static void add_field(char **parts, size_t *n, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&parts[*n], fmt, ap);
	va_end(ap);
	if (r >= 0)
		(*n)++;
}

static void log_console(const LogFields *f, const char *msg)
{
	if (f->sandbox)
		fprintf(stderr, "vmd: %s: %s%s%s\n", f->sandbox, msg, f->error ? ": " : "",
			f->error ? strerror(f->error) : "");
	else
		fprintf(stderr, "vmd: %s%s%s\n", msg, f->error ? ": " : "",
			f->error ? strerror(f->error) : "");
}

static int log_journal(int priority, const LogFields *f, const char *msg)
{
	char *parts[9] = {};
	struct iovec iov[ELEMENTSOF(parts)];
	size_t n = 0;
	int r;

	/* sd_journal_sendv() takes a missing socket for success ("fail silently"): look first. */
	if (access(JOURNAL_SOCKET, F_OK) < 0)
		return -errno;
	/* Empty fields are left out rather than sent empty. */
	if (f->sandbox)
		add_field(parts, &n, "MESSAGE=%s: %s", f->sandbox, msg);
	else
		add_field(parts, &n, "MESSAGE=%s", msg);
	add_field(parts, &n, "PRIORITY=%i", priority);
	add_field(parts, &n, "SYSLOG_IDENTIFIER=%s", "vmd");
	if (f->sandbox)
		add_field(parts, &n, "VMD_SANDBOX=%s", f->sandbox);
	if (f->backend)
		add_field(parts, &n, "VMD_BACKEND=%s", f->backend);
	if (f->action)
		add_field(parts, &n, "VMD_ACTION=%s", f->action);
	if (f->result)
		add_field(parts, &n, "VMD_RESULT=%s", f->result);
	if (f->error)
		add_field(parts, &n, "ERRNO=%i", f->error);
	add_field(parts, &n, "MESSAGE_ID=%s", f->message_id ?: LOG_MESSAGE_DAEMON);
	for (size_t i = 0; i < n; i++)
		iov[i] = (struct iovec){ parts[i], strlen(parts[i]) };
	r = sd_journal_sendv(iov, (int)n);
	for (size_t i = 0; i < n; i++)
		free(parts[i]);
	return r;
}

/*
 * To the journal; while it takes nothing (its socket gone, or nobody listening), to
 * standard error, said there once per outage rather than with every entry.
 */
static void log_to_journal(int priority, const LogFields *f, const char *msg)
{
	int r = log_journal(priority, f, msg);

	if (r < 0) {
		if (!journal_lost)
			fprintf(stderr,
				"vmd: cannot log to the journal: %s; logging to standard error until it is back\n",
				strerror(-r));
		journal_lost = true;
		log_console(f, msg);
		return;
	}
	if (journal_lost) {
		journal_lost = false;
		(void)log_journal(
			LOG_WARNING, &(LogFields){ .message_id = LOG_MESSAGE_DAEMON },
			"the journal takes entries again; what was logged meanwhile went to standard error");
	}
}

int log_fields(int priority, const LogFields *f, const char *fmt, ...)
{
	_cleanup_free_ char *raw = NULL, *msg = NULL, *sandbox = NULL;
	LogFields escaped = *f;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&raw, fmt, ap);
	va_end(ap);
	/*
	 * What a message quotes (a file's name, a VMM's words) may hold a newline, a terminal's
	 * escape or bytes that are not UTF-8: one entry stays one line of text.
	 */
	if (r < 0 || !(msg = text_escape(raw)) ||
	    (f->sandbox && !(sandbox = text_escape(f->sandbox))))
		return f->error ? -f->error : -ENOMEM;

	escaped.sandbox = sandbox;
	if (log_target == LOG_TARGET_JOURNAL)
		log_to_journal(priority, &escaped, msg);
	else
		log_console(&escaped, msg);
	return f->error ? -f->error : 0;
}
