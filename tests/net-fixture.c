/* SPDX-License-Identifier: MIT */
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/mount.h>

#include "helpers.h"
#include "net-fixture.h"
#include "util.h"

void net_ip(const char *first, ...)
{
	_cleanup_(test_run_done) TestRun r = {};
	char *argv[16] = { (char *)"/usr/sbin/ip", (char *)first };
	size_t n = 2;
	va_list ap;

	va_start(ap, first);
	while (n < ELEMENTSOF(argv) - 1 && (argv[n] = va_arg(ap, char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	test_run(&r, argv);
	if (r.status != 0)
		fail_msg("ip %s %s %s %s: %s", argv[1], argv[2], argv[3] ?: "", argv[4] ?: "", r.err);
}

int net_namespace(const char *who)
{
	if (unshare(CLONE_NEWNET | CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("sysfs", "/sys", "sysfs", 0, NULL) < 0) {
		int e = errno;

		fprintf(stderr, "%s: cannot make a network namespace: %s\n", who, strerror(e));
		return -e;
	}
	net_ip("link", "set", "lo", "up", NULL, NULL);
	return 0;
}

char *net_attr(const char *ifname, const char *attr)
{
	_cleanup_free_ char *p = NULL;
	char *text = NULL;

	assert_true(asprintf(&p, "/sys/class/net/%s/%s", ifname, attr) > 0);
	if (read_file(p, 4096, &text, NULL) < 0)
		return NULL;
	text[strcspn(text, "\n")] = '\0';
	return text;
}

bool net_link_exists(const char *ifname)
{
	_cleanup_free_ char *p = NULL;

	assert_true(asprintf(&p, "/sys/class/net/%s", ifname) > 0);
	return access(p, F_OK) == 0;
}

char *net_master_of(const char *ifname)
{
	_cleanup_free_ char *p = NULL;
	char target[PATH_MAX];
	ssize_t n;

	assert_true(asprintf(&p, "/sys/class/net/%s/master", ifname) > 0);
	n = readlink(p, target, sizeof(target) - 1);
	if (n < 0)
		return NULL;
	target[n] = '\0';
	return strdup(strrchr(target, '/') + 1);
}

void net_wait_link_gone(const char *ifname)
{
	for (unsigned i = 0; i < 1000 && net_link_exists(ifname); i++)
		usleep(50 * 1000);
	if (net_link_exists(ifname))
		fail_msg("%s is still there", ifname);
}

unsigned net_tap_fds(pid_t pid)
{
	_cleanup_free_ char *dir = NULL;
	unsigned n = 0;

	assert_true(asprintf(&dir, "/proc/%d/fd", (int)pid) > 0);
	for (int fd = 0; fd < 1024; fd++) {
		_cleanup_free_ char *p = NULL;
		char target[PATH_MAX];
		ssize_t len;

		assert_true(asprintf(&p, "%s/%d", dir, fd) > 0);
		len = readlink(p, target, sizeof(target) - 1);
		if (len < 0)
			continue;
		target[len] = '\0';
		len = (ssize_t)strlen(target);
		if ((len >= 12 && streq(target + len - 12, "/dev/net/tun")) ||
		    strstr(target, ".macvtap-"))
			n++;
	}
	return n;
}

bool net_holds_tap(pid_t pid, const char *tap)
{
	_cleanup_free_ char *want = NULL;

	assert_true(asprintf(&want, "iff:\t%s\n", tap) > 0);
	for (int fd = 0; fd < 1024; fd++) {
		_cleanup_free_ char *p = NULL, *info = NULL;

		assert_true(asprintf(&p, "/proc/%d/fdinfo/%d", (int)pid, fd) > 0);
		if (read_file(p, 4096, &info, NULL) >= 0 && strstr(info, want))
			return true;
	}
	return false;
}
