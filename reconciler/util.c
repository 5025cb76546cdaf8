/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <time.h>

#include "util.h"

ssize_t string_table_lookup(const char *const *table, size_t n, const char *s)
{
	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (table[i] && streq(table[i], s))
			return (ssize_t)i;
	return -EINVAL;
}

size_t edit_distance(const char *a, const char *b, size_t limit)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[64];

	/* Only short identifiers are compared; anything longer is simply "far". */
	if (lb >= ELEMENTSOF(row) || la >= 64)
		return limit + 1;
	if ((la > lb ? la - lb : lb - la) > limit)
		return limit + 1;

	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0], best;

		row[0] = i;
		best = row[0];
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t cost = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < cost)
				cost = up + 1;
			if (row[j - 1] + 1 < cost)
				cost = row[j - 1] + 1;
			diag = up;
			row[j] = cost;
			if (cost < best)
				best = cost;
		}
		if (best > limit)
			return limit + 1;
	}
	return row[lb] > limit ? limit + 1 : row[lb];
}

/* Length of the well-formed UTF-8 sequence at p (at most n bytes), or 0 if it is not one. */
static size_t utf8_sequence_length(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	size_t len;
	unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		if (c == 0xE0)
			lo = 0xA0; /* overlong */
		else if (c == 0xED)
			hi = 0x9F; /* surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		if (c == 0xF0)
			lo = 0x90; /* overlong */
		else if (c == 0xF4)
			hi = 0x8F; /* above U+10FFFF */
	} else
		return 0;

	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;
	return len;
}

size_t utf8_first_invalid(const char *buf, size_t len)
{
	const unsigned char *p = (const unsigned char *)buf;
	size_t i = 0;

	while (i < len) {
		size_t l = utf8_sequence_length(p + i, len - i);

		if (l == 0)
			return i;
		i += l;
	}
	return len;
}

/*
 * The next unit of s as text_escape() shows it: a character as it is, or the bytes of a
 * control character (with controls) or of what is not UTF-8 as \xNN each. Returns how
 * many bytes of s it took (at least 1) and writes the unit, NUL-terminated, to out.
 */
static size_t escape_unit(const unsigned char *s, size_t n, bool controls, char out[static 9])
{
	size_t l = utf8_sequence_length(s, n);
	/* C0, DEL, and C1 (U+0080 to U+009F, which UTF-8 writes 0xC2 0x80 to 0xC2 0x9F) */
	bool control = controls && (l == 1 ? s[0] < 0x20 || s[0] == 0x7F
					   : l == 2 && s[0] == 0xC2 && s[1] < 0xA0);

	if (l == 0) {
		snprintf(out, 9, "\\x%02X", s[0]);
		return 1;
	}
	if (control) {
		for (size_t i = 0; i < l; i++)
			snprintf(out + 4 * i, 9 - 4 * i, "\\x%02X", s[i]);
		return l;
	}
	memcpy(out, s, l);
	out[l] = '\0';
	return l;
}

static char *escape(const char *s, bool controls)
{
	size_t n = strlen(s), o = 0;
	char *buf = malloc(n * 4 + 1);

	if (!buf)
		return NULL;
	for (size_t i = 0; i < n;) {
		char unit[9];

		i += escape_unit((const unsigned char *)s + i, n - i, controls, unit);
		o = stpcpy(buf + o, unit) - buf;
	}
	buf[o] = '\0';
	return buf;
}

char *text_escape(const char *s)
{
	return escape(s, true);
}

char *utf8_escape(const char *s)
{
	return escape(s, false);
}

void text_escape_append(char *buf, size_t size, const char *s, size_t max)
{
	size_t n = strlen(s), o = strlen(buf), added = 0;

	for (size_t i = 0; i < n;) {
		char unit[9];
		size_t k = escape_unit((const unsigned char *)s + i, n - i, true, unit),
		       l = strlen(unit);

		if (added + l > max || o + l + 1 > size)
			break;
		memcpy(buf + o, unit, l + 1);
		o += l;
		added += l;
		i += k;
	}
}

void text_position(const char *buf, size_t off, unsigned *ret_line, unsigned *ret_column)
{
	unsigned line = 1, column = 1;

	for (size_t i = 0; i < off; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c == '\n') {
			line++;
			column = 1;
		} else if ((c & 0xC0) != 0x80)
			column++;
	}
	*ret_line = line;
	*ret_column = column;
}

int first_control_char(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7F)
			return c;
	}
	return -1;
}

int parse_decimal_u64(const char *s, size_t len, uint64_t *ret)
{
	uint64_t v = 0;

	if (len == 0)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*ret = v;
	return 0;
}

int mul_u64(uint64_t a, uint64_t b, uint64_t *ret)
{
	if (a != 0 && b > UINT64_MAX / a)
		return -ERANGE;
	*ret = a * b;
	return 0;
}

PathProblem path_check(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (first_control_char(s, n) >= 0)
		return PATH_CONTROL_CHAR;
	if (s[0] != '/')
		return PATH_NOT_ABSOLUTE;
	if (n > max)
		return PATH_TOO_LONG;
	if (n > 1 && s[n - 1] == '/')
		return PATH_TRAILING_SLASH;

	for (const char *p = s + 1; *p;) {
		size_t l = strcspn(p, "/");

		if (l == 0)
			return PATH_EMPTY_COMPONENT;
		if (l == 1 && p[0] == '.')
			return PATH_DOT_COMPONENT;
		if (l == 2 && p[0] == '.' && p[1] == '.')
			return PATH_DOTDOT_COMPONENT;
		p += l;
		if (*p == '/')
			p++;
	}
	return PATH_OK;
}

#define ATOMIC_TEMPORARY ".tmp-"
#define ATOMIC_TEMPORARY_RANDOM 6 /* mkostemp()'s XXXXXX */

int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, bool sync)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = -EBADF;
	const char *p = data;
	int r;

	if (asprintf(&tmp, "%s" ATOMIC_TEMPORARY "XXXXXX", path) < 0)
		return -ENOMEM;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (size_t done = 0; done < len;) {
		ssize_t k = write(fd, p + done, len - done);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = -errno;
			goto fail;
		}
		done += (size_t)k;
	}
	if (fchmod(fd, mode) < 0 || (sync && fsync(fd) < 0) || rename(tmp, path) < 0) {
		r = -errno;
		goto fail;
	}
	return 0;
fail:
	(void)unlink(tmp);
	return r;
}

bool is_atomic_temporary(const char *name)
{
	size_t n = strlen(name), tail = strlen(ATOMIC_TEMPORARY) + ATOMIC_TEMPORARY_RANDOM;
	const char *r = name + n - ATOMIC_TEMPORARY_RANDOM;

	if (n <= tail || strncmp(name + n - tail, ATOMIC_TEMPORARY, strlen(ATOMIC_TEMPORARY)) != 0)
		return false;
	/* glibc's alphabet for XXXXXX */
	return strspn(r, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") ==
	       ATOMIC_TEMPORARY_RANDOM;
}

int remove_atomic_temporaries(int dir_fd, const char *path)
{
	int fd = openat(dir_fd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), n = 0;
	struct dirent *e;
	DIR *d;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -ENOMEM;
	}
	while ((e = readdir(d)))
		if (is_atomic_temporary(e->d_name) && unlinkat(dirfd(d), e->d_name, 0) == 0)
			n++;
	closedir(d);
	return n;
}

int read_fd(int fd, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, size = 0;

	for (;;) {
		ssize_t k;

		if (len == size) {
			size_t want = size ? size * 2 : 4096;
			char *b;

			if (size >= max)
				break;
			if (want > max)
				want = max;
			b = realloc(buf, want + 1);
			if (!b)
				return -ENOMEM;
			buf = b;
			size = want;
		}
		k = read(fd, buf + len, size - len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break;
		len += (size_t)k;
	}
	if (!buf && !(buf = malloc(1)))
		return -ENOMEM;
	buf[len] = '\0';
	*ret_len = len;
	*ret = TAKE_PTR(buf);
	return 0;
}

/* All of fd, at most max bytes (-EFBIG beyond). */
static int read_whole(int fd, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	int r;

	r = read_fd(fd, max + 1, &buf, &len);
	if (r < 0)
		return r;
	if (len > max)
		return -EFBIG;
	if (ret_len)
		*ret_len = len;
	*ret = TAKE_PTR(buf);
	return 0;
}

int read_file(const char *path, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	return fd < 0 ? -errno : read_whole(fd, max, ret, ret_len);
}

int read_regular_file(const char *path, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EBADFD;
	return read_whole(fd, max, ret, ret_len);
}

int process_argv(pid_t pid, char ***ret)
{
	_cleanup_free_ char *cmdline = NULL;
	char path[64], **argv, *strings;
	size_t len = 0, n = 0, k = 0;
	int r;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	/* As long as the kernel lets an argv be (ARG_MAX): a VMM's is a few KiB. */
	r = read_file(path, 2 << 20, &cmdline, &len);
	if (r < 0)
		return r == -ENOENT ? -ESRCH : r;
	for (size_t i = 0; i < len; i += strlen(cmdline + i) + 1)
		n++;
	/* One allocation: the pointers, then the strings they point at. */
	argv = malloc((n + 1) * sizeof(char *) + len + 1);
	if (!argv)
		return -ENOMEM;
	strings = (char *)(argv + n + 1);
	memcpy(strings, cmdline, len + 1);
	for (size_t i = 0; i < len; i += strlen(strings + i) + 1)
		argv[k++] = strings + i;
	argv[k] = NULL;
	*ret = argv;
	return 0;
}

/* A Unix stream socket, non-blocking, and path's address in *sa: the fd, or -errno. */
static int unix_socket(const char *path, struct sockaddr_un *sa)
{
	int fd;

	*sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	return fd < 0 ? -errno : fd;
}

int unix_connect(const char *path)
{
	struct sockaddr_un sa;
	_cleanup_close_ int fd = unix_socket(path, &sa);

	if (fd < 0)
		return fd;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	return TAKE_FD(fd);
}

int open_path_nofollow(const char *path)
{
	_cleanup_close_ int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	_cleanup_free_ char *full = NULL;
	char target[PATH_MAX];
	struct stat st;
	ssize_t n;

	if (fd < 0 || fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISLNK(st.st_mode))
		return TAKE_FD(fd);
	n = readlinkat(fd, "", target, sizeof(target) - 1);
	if (n < 0)
		return -errno;
	target[n] = '\0';
	if (target[0] != '/') {
		const char *slash = strrchr(path, '/');

		if (asprintf(&full, "%.*s%s", slash ? (int)(slash - path + 1) : 0, path, target) < 0)
			return -ENOMEM;
	}
	close(fd);
	fd = open(full ?: target, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return -errno;
	return S_ISLNK(st.st_mode) ? -ELOOP : TAKE_FD(fd);
}

int open_nofollow(const char *path, int flags)
{
	_cleanup_close_ int fd = open_path_nofollow(path);
	char self[64];
	struct stat st;
	int r;

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL; /* a FIFO there would block the open */
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	r = open(self, flags | O_CLOEXEC | O_NOCTTY);
	return r < 0 ? -errno : r;
}

int unix_connect_nofollow(const char *path)
{
	_cleanup_close_ int fd = open_path_nofollow(path);
	char self[64];
	struct stat st;

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISSOCK(st.st_mode))
		return -ENOTSOCK;
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	return unix_connect(self);
}

int unix_listen(const char *path, mode_t mode)
{
	struct sockaddr_un sa;
	_cleanup_close_ int fd = unix_socket(path, &sa);

	if (fd < 0)
		return fd;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, mode) < 0 ||
	    listen(fd, 8) < 0)
		return -errno;
	return TAKE_FD(fd);
}

int mkdir_p(const char *path, mode_t mode)
{
	_cleanup_free_ char *p = strdup(path);
	struct stat st;
	int r;

	if (!p)
		return -ENOMEM;
	for (char *s = strchr(p + 1, '/');; s = strchr(s + 1, '/')) {
		if (s)
			*s = '\0';
		r = mkdir(p, mode) < 0 ? -errno : 0;
		if (r < 0 && r != -EEXIST)
			return r;
		/*
		 * Made now: the mode asked for, not what the umask (077 in the daemon) left of it.
		 * A setgid bit inherited from the parent stays: files made here keep its group.
		 */
		if (r == 0 && stat(p, &st) == 0 &&
		    (st.st_mode & 07777) != (mode | (st.st_mode & S_ISGID)))
			(void)chmod(p, mode | (st.st_mode & S_ISGID));
		if (!s)
			return 0;
		*s = '/';
	}
}

uint64_t fnv1a64(uint64_t h, const void *s, size_t len)
{
	const unsigned char *p = s;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

void format_size(uint64_t bytes, char buf[static 32])
{
	static const char *const units[] = { "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
	size_t u = 0;

	if (bytes < 1024) {
		snprintf(buf, 32, "%llu", (unsigned long long)bytes);
		return;
	}
	while (u + 1 < ELEMENTSOF(units) && bytes >> (10 * (u + 2)) > 0)
		u++;
	if (bytes % (1ull << (10 * (u + 1))) == 0)
		snprintf(buf, 32, "%llu%s", (unsigned long long)(bytes >> (10 * (u + 1))), units[u]);
	else
		snprintf(buf, 32, "%.1f%s", (double)bytes / (double)(1ull << (10 * (u + 1))),
			 units[u]);
}

uint64_t now_usec(clockid_t clock)
{
	struct timespec ts;

	(void)clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int by_string(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char *join_sorted_unique(const char **items, size_t n)
{
	_cleanup_free_ const char **v = n ? reallocarray(NULL, n, sizeof(*items)) : NULL;
	size_t len = 0, k = 0;
	char *s, *p;

	if (!v)
		return NULL;
	memcpy(v, items, n * sizeof(*items));
	qsort(v, n, sizeof(*v), by_string);
	for (size_t i = 0; i < n; i++)
		if (i == 0 || !streq(v[i], v[k - 1]))
			v[k++] = v[i], len += strlen(v[i]) + 1;
	s = p = malloc(len);
	if (!s)
		return NULL;
	for (size_t i = 0; i < k; i++)
		p = stpcpy(p, v[i]), *p++ = i + 1 < k ? ',' : '\0';
	return s;
}

char *list_union(const char *a, const char *b)
{
	_cleanup_free_ char *all = NULL;
	_cleanup_free_ const char **items = NULL;
	size_t n = 0, max = 1;

	if (asprintf(&all, "%s,%s", a ?: "", b ?: "") < 0)
		return NULL;
	for (const char *p = all; *p; p++)
		max += *p == ',';
	items = calloc(max, sizeof(*items));
	if (!items)
		return NULL;
	for (char *p = all, *next; p; p = next) {
		next = strchr(p, ',');
		if (next)
			*next++ = '\0';
		if (*p)
			items[n++] = p;
	}
	return join_sorted_unique(items, n);
}

char **strv_free(char **l)
{
	if (l)
		for (char **p = l; *p; p++)
			free(*p);
	return mfree(l);
}

size_t strv_length(char *const *l)
{
	size_t n = 0;

	while (l && l[n])
		n++;
	return n;
}

bool strv_contains(char *const *l, const char *s)
{
	for (size_t i = 0; l && l[i]; i++)
		if (streq(l[i], s))
			return true;
	return false;
}

void set_vformat(char **p, const char *fmt, va_list ap)
{
	char *m = NULL;

	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	free(*p);
	*p = m;
}

void set_format(char **p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_vformat(p, fmt, ap);
	va_end(ap);
}

int strv_extendf(char ***l, const char *fmt, ...)
{
	size_t n = strv_length(*l);
	char **nl, *s = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	nl = reallocarray(*l, n + 2, sizeof(char *));
	if (!nl) {
		free(s);
		return -ENOMEM;
	}
	nl[n] = s;
	nl[n + 1] = NULL;
	*l = nl;
	return 0;
}

pid_t flock_holder(int fd)
{
	_cleanup_free_ char *locks = NULL;
	struct stat st;
	int r;

	if (fstat(fd, &st) < 0)
		return -errno;
	r = read_file("/proc/locks", 16 << 20, &locks, NULL);
	if (r < 0)
		return r;
	for (char *line = locks; line && *line;) {
		char *nl = strchr(line, '\n'), type[16];
		unsigned maj, min;
		unsigned long ino;
		int pid;

		/* "1: FLOCK  ADVISORY  WRITE 4711 fd:01:123456 0 EOF"; a waiter's line has "->". */
		if (sscanf(line, "%*d: %15s %*s %*s %d %x:%x:%lu", type, &pid, &maj, &min, &ino) == 5 &&
		    streq(type, "FLOCK") && maj == major(st.st_dev) && min == minor(st.st_dev) &&
		    ino == st.st_ino && pid > 0 && pid != getpid())
			return pid;
		line = nl ? nl + 1 : NULL;
	}
	return 0;
}

size_t utf8_length(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}
