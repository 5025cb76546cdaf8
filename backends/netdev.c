/* SPDX-License-Identifier: MIT */
/*
 * The network devices of a VM, made and opened by vmd, so that the VMM gets file
 * descriptors and needs no right to open or make network devices itself.
 *
 *   tap      a tap that exists (a persistent one, made by the operator); vmd attaches to it
 *            and never makes one: a missing tap is an error, not a new, unbridged device.
 *   bridge   a tap vmd makes and puts on the bridge, up. It is not persistent: it lives as
 *            long as a file descriptor of it is open, so it goes with the VMM.
 *   macvtap  a macvtap vmd makes on a link (mode bridge), with the guest's MAC, up; a
 *            macvtap outlives its descriptors, so vmd deletes it when the VMM is gone.
 *
 * A VMM that takes no descriptor and opens its tap by name (Firecracker, as an unprivileged
 * jail uid) gets a bridge's tap as a persistent one instead, owned by that uid
 * (TUNSETOWNER, TUNSETGROUP): the kernel lets an owner without CAP_NET_ADMIN attach to it
 * (drivers/net/tun.c, tun_not_capable()). vmd removes it when the VM is done with it.
 *
 * Links are changed through libnl-route-3, Debian's netlink library (libvirt and
 * NetworkManager use it), rather than rtnetlink messages written by hand; the tap itself
 * is made and opened with /dev/net/tun's TUNSETIFF, which has no netlink form. These are
 * calls to the kernel, answered at once; no VMM is waited on.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/link/macvtap.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "netdev.h"
#include "util.h"

static int fail(char *why, size_t size, int r, const char *fmt, ...) _printf_(4, 5);
static int fail(char *why, size_t size, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, size, fmt, ap);
	va_end(ap);
	return r;
}

static void nl_socket_freep(struct nl_sock **s)
{
	if (*s)
		nl_socket_free(*s);
}

static void rtnl_link_putp(struct rtnl_link **l)
{
	if (*l)
		rtnl_link_put(*l);
}

/* libnl's errors as errno, as far as they have one. */
static int nl_errno(int e)
{
	switch (e < 0 ? -e : e) {
	case NLE_EXIST:
		return -EEXIST;
	case NLE_OBJ_NOTFOUND:
	case NLE_NODEV:
		return -ENODEV;
	case NLE_PERM:
		return -EPERM;
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_BUSY:
		return -EBUSY;
	case NLE_INVAL:
		return -EINVAL;
	default:
		return -EIO;
	}
}

static int rtnl_open(struct nl_sock **ret)
{
	struct nl_sock *s = nl_socket_alloc();
	int r;

	if (!s)
		return -ENOMEM;
	r = nl_connect(s, NETLINK_ROUTE);
	if (r < 0) {
		nl_socket_free(s);
		return nl_errno(r);
	}
	*ret = s;
	return 0;
}

/* The link called name, of kind (NULL: any); -ENODEV if there is none, -EMEDIUMTYPE if of another. */
static int get_link(struct nl_sock *s, const char *name, const char *kind, struct rtnl_link **ret)
{
	struct rtnl_link *l = NULL;
	const char *type;
	int r;

	r = rtnl_link_get_kernel(s, 0, name, &l);
	if (r < 0)
		return nl_errno(r);
	type = rtnl_link_get_type(l);
	if (kind && (!type || !streq(type, kind))) {
		rtnl_link_put(l);
		return -EMEDIUMTYPE;
	}
	*ret = l;
	return 0;
}

/* Open (and, unless must_exist, make) the tap called name: a descriptor of it, or -errno. */
static int tap_open(const char *name, bool must_exist, char *why, size_t size)
{
	_cleanup_close_ int fd = -EBADF;
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };

	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return fail(why, size, -errno, "cannot open /dev/net/tun: %s", strerror(errno));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;

		if (e == EBUSY)
			return fail(why, size, -e, "tap '%s' is in use by another process", name);
		if (e == EINVAL)
			return fail(why, size, -e,
				    "'%s' is not a tap device (a tun, or another kind of link)",
				    name);
		if (e == EPERM)
			return fail(why, size, -e,
				    "not allowed to open tap '%s' (it belongs to another user)",
				    name);
		return fail(why, size, -e, "cannot open tap '%s': %s", name, strerror(e));
	}
	/* Only a persistent tap was there before: a new one goes again as fd is closed. */
	if (must_exist) {
		struct ifreq got = {};

		if (ioctl(fd, TUNGETIFF, &got) < 0)
			return fail(why, size, -errno, "cannot read tap '%s': %s", name,
				    strerror(errno));
		if (!(got.ifr_flags & IFF_PERSIST))
			return fail(
				why, size, -ENODEV,
				"tap '%s' does not exist: create it (ip tuntap add dev %s mode tap), or use type bridge and vmd makes one",
				name, name);
	}
	return TAKE_FD(fd);
}

/* Put the link called name on master (ifindex; 0: none), and up. */
static int link_up(struct nl_sock *s, const char *name, int master, char *why, size_t size)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *l = NULL, *change = NULL;
	int r;

	r = get_link(s, name, NULL, &l);
	if (r < 0)
		return fail(why, size, r, "cannot find '%s' after making it: %s", name, strerror(-r));
	change = rtnl_link_alloc();
	if (!change)
		return -ENOMEM;
	if (master > 0)
		rtnl_link_set_master(change, master);
	rtnl_link_set_flags(change, IFF_UP);
	r = rtnl_link_change(s, l, change, 0);
	if (r < 0)
		return fail(why, size, nl_errno(r), "cannot bring '%s' up%s: %s", name,
			    master > 0 ? " on its bridge" : "", nl_geterror(r));
	return 0;
}

/* A netlink socket, and n's bridge, which must be one. */
static int bridge_of(const NetSpec *n, struct nl_sock **ret_sock, struct rtnl_link **ret_br,
		     char *why, size_t size)
{
	int r = rtnl_open(ret_sock);

	if (r < 0)
		return fail(why, size, r, "cannot talk to the kernel (netlink): %s", strerror(-r));
	r = get_link(*ret_sock, n->bridge, "bridge", ret_br);
	if (r == -ENODEV)
		return fail(why, size, r, "bridge '%s' does not exist", n->bridge);
	if (r == -EMEDIUMTYPE)
		return fail(why, size, r, "'%s' is not a bridge", n->bridge);
	if (r < 0)
		return fail(why, size, r, "cannot read bridge '%s': %s", n->bridge, strerror(-r));
	return 0;
}

static int bridge_tap(const NetSpec *n, char *why, size_t size)
{
	_cleanup_(nl_socket_freep) struct nl_sock *s = NULL;
	_cleanup_(rtnl_link_putp) struct rtnl_link *br = NULL;
	_cleanup_close_ int fd = -EBADF;
	int r;

	r = bridge_of(n, &s, &br, why, size);
	if (r < 0)
		return r;
	fd = tap_open(n->tap, false, why, size);
	if (fd < 0)
		return fd;
	r = link_up(s, n->tap, rtnl_link_get_ifindex(br), why, size);
	if (r < 0)
		return r;
	return TAKE_FD(fd);
}

/*
 * A macvtap's character device, opened through a node of vmd's own in dir, made from the
 * device number sysfs gives for it (sysfs shows the network namespace it was mounted in:
 * vmd's). Not /dev/tapN: devtmpfs is one for every network namespace, and its tapN is
 * whichever macvtap of that ifindex came first, in any of them.
 */
static int macvtap_open(const char *name, int ifindex, const char *dir, char *why, size_t size)
{
	_cleanup_free_ char *sys = NULL, *dev = NULL, *node = NULL;
	unsigned maj, min;
	int fd;

	if (asprintf(&sys, "/sys/class/net/%s/macvtap/tap%d/dev", name, ifindex) < 0 ||
	    asprintf(&node, "%s/.macvtap-%d", dir, ifindex) < 0)
		return -ENOMEM;
	if (read_file(sys, 64, &dev, NULL) < 0 || sscanf(dev, "%u:%u", &maj, &min) != 2)
		return fail(why, size, -ENODEV, "macvtap '%s' has no device number in %s", name, sys);
	(void)unlink(node);
	if (mknod(node, S_IFCHR | 0600, makedev(maj, min)) < 0)
		return fail(why, size, -errno, "cannot make a device node for macvtap '%s': %s",
			    name, strerror(errno));
	fd = open(node, O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		fd = fail(why, size, -errno, "cannot open macvtap '%s': %s", name, strerror(errno));
	(void)unlink(node);
	return fd;
}

static int macvtap(const NetSpec *n, const char *dir, char *why, size_t size)
{
	_cleanup_(nl_socket_freep) struct nl_sock *s = NULL;
	_cleanup_(rtnl_link_putp) struct rtnl_link *lower = NULL, *old = NULL, *mv = NULL,
						   *made = NULL;
	struct nl_addr *addr;
	int r;

	r = rtnl_open(&s);
	if (r < 0)
		return fail(why, size, r, "cannot talk to the kernel (netlink): %s", strerror(-r));
	r = get_link(s, n->link, NULL, &lower);
	if (r < 0)
		return fail(why, size, r, "link '%s' does not exist", n->link);
	/* One left by a VM that ended while vmd was not there to delete it. */
	if (get_link(s, n->tap, "macvtap", &old) >= 0)
		(void)rtnl_link_delete(s, old);
	mv = rtnl_link_macvtap_alloc();
	addr = nl_addr_build(AF_LLC, n->mac, 6);
	if (!mv || !addr) {
		nl_addr_put(addr);
		return -ENOMEM;
	}
	rtnl_link_set_name(mv, n->tap);
	rtnl_link_set_link(mv, rtnl_link_get_ifindex(lower));
	(void)rtnl_link_macvtap_set_mode(mv, MACVLAN_MODE_BRIDGE);
	rtnl_link_set_addr(mv, addr);
	nl_addr_put(addr);
	r = rtnl_link_add(s, mv, NLM_F_CREATE | NLM_F_EXCL);
	if (r < 0)
		return fail(why, size, nl_errno(r), "cannot make macvtap '%s' on '%s': %s", n->tap,
			    n->link, nl_geterror(r));
	r = link_up(s, n->tap, 0, why, size);
	if (r >= 0)
		r = get_link(s, n->tap, "macvtap", &made);
	if (r >= 0)
		r = macvtap_open(n->tap, rtnl_link_get_ifindex(made), dir, why, size);
	if (r < 0)
		(void)netdev_release(n);
	return r;
}

int netdev_open(const NetSpec *n, const char *dir, bool vhost, int *ret_tap, int *ret_vhost,
		char *why, size_t size)
{
	_cleanup_close_ int fd = -EBADF, vfd = -EBADF;

	switch (n->type) {
	case NET_TAP:
		fd = tap_open(n->tap, true, why, size);
		break;
	case NET_BRIDGE:
		fd = bridge_tap(n, why, size);
		break;
	case NET_MACVTAP:
		fd = macvtap(n, dir, why, size);
		break;
	default:
		return fail(why, size, -EINVAL, "network '%s' has no device of its own", n->id);
	}
	if (fd < 0)
		return fd;
	if (vhost) {
		vfd = open("/dev/vhost-net", O_RDWR | O_CLOEXEC | O_NOCTTY);
		if (vfd < 0 && errno != ENOENT && errno != ENODEV) {
			int e = errno;

			if (n->type == NET_MACVTAP)
				(void)netdev_release(n);
			return fail(why, size, -e, "cannot open /dev/vhost-net: %s", strerror(e));
		}
	}
	*ret_tap = TAKE_FD(fd);
	*ret_vhost = vfd >= 0 ? TAKE_FD(vfd) : -EBADF;
	return 0;
}

/* The tap called name exists (any tun/tap device of that name): 1, 0 if not, or -errno. */
static int tun_exists(struct nl_sock *s, const char *name)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *l = NULL;
	int r = get_link(s, name, "tun", &l);

	if (r == -ENODEV)
		return 0;
	return r < 0 ? r : 1;
}

/* TUNSETPERSIST on, with owner and group (-1: none; the kernel takes no -1), or off. */
static int set_persist(int fd, uid_t uid, gid_t gid, bool on)
{
	if (on && uid != (uid_t)-1 && ioctl(fd, TUNSETOWNER, (unsigned long)uid) < 0)
		return -errno;
	if (on && gid != (gid_t)-1 && ioctl(fd, TUNSETGROUP, (unsigned long)gid) < 0)
		return -errno;
	return ioctl(fd, TUNSETPERSIST, (unsigned long)on) < 0 ? -errno : 0;
}

int netdev_persistent_tap(const NetSpec *n, uid_t uid, gid_t gid, char *why, size_t size)
{
	_cleanup_(nl_socket_freep) struct nl_sock *s = NULL;
	_cleanup_(rtnl_link_putp) struct rtnl_link *br = NULL;
	_cleanup_close_ int fd = -EBADF;
	int r, existed;

	if (n->type != NET_BRIDGE)
		return fail(why, size, -EINVAL, "network '%s' is not on a bridge", n->id);
	r = bridge_of(n, &s, &br, why, size);
	if (r < 0)
		return r;
	existed = tun_exists(s, n->tap);
	/* vmd (root) may attach to a tap of the jail's uid; one in use is another's. */
	fd = tap_open(n->tap, false, why, size);
	if (fd < 0)
		return fd;
	r = set_persist(fd, uid, gid, true);
	if (r < 0)
		return fail(why, size, r, "cannot make tap '%s' persistent for uid %d: %s", n->tap,
			    (int)uid, strerror(-r));
	r = link_up(s, n->tap, rtnl_link_get_ifindex(br), why, size);
	if (r < 0 && existed <= 0)
		(void)set_persist(fd, uid, gid, false); /* gone as fd is closed */
	return r;
}

int netdev_persistent_tap_remove(const NetSpec *n)
{
	_cleanup_(nl_socket_freep) struct nl_sock *s = NULL;
	_cleanup_close_ int fd = -EBADF;
	char why[256];
	int r;

	if (n->type != NET_BRIDGE)
		return 0;
	r = rtnl_open(&s);
	if (r < 0)
		return r;
	r = tun_exists(s, n->tap);
	if (r <= 0)
		return r;
	/* Not persistent any more: it goes with its last descriptor, this one if no VMM's. */
	fd = tap_open(n->tap, false, why, sizeof(why));
	if (fd < 0)
		return fd;
	r = ioctl(fd, TUNSETPERSIST, 0UL) < 0 ? -errno : 1;
	return r;
}

int netdev_release(const NetSpec *n)
{
	_cleanup_(nl_socket_freep) struct nl_sock *s = NULL;
	_cleanup_(rtnl_link_putp) struct rtnl_link *l = NULL;
	int r;

	/* A bridge's tap goes with its last descriptor; a tap of the operator's stays. */
	if (n->type != NET_MACVTAP)
		return 0;
	r = rtnl_open(&s);
	if (r < 0)
		return r;
	if (get_link(s, n->tap, "macvtap", &l) < 0)
		return 0;
	r = rtnl_link_delete(s, l);
	return r < 0 ? nl_errno(r) : 1;
}
