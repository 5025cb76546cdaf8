/* SPDX-License-Identifier: MIT */
/*
 * The QEMU command line, built as an argv array from a spec: never through a shell. Values
 * that go into key=value options (paths, interface names) are escaped as QEMU's option
 * parser wants, so that no value can end its option or add another; values that are whole
 * arguments (-kernel, -append) are passed as they are.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "guest-agent.h"
#include "provision.h"
#include "qemu.h"

const char *const qemu_accel_table[_QEMU_ACCEL_MAX] = {
	[QEMU_ACCEL_AUTO] = "auto",
	[QEMU_ACCEL_KVM] = "kvm",
	[QEMU_ACCEL_TCG] = "tcg",
};
DEFINE_STRING_TABLE(qemu_accel, QemuAccel, _QEMU_ACCEL_MAX)

char *qemu_opt_escape(const char *s)
{
	size_t n = 0;
	char *r, *p;

	for (const char *c = s; *c; c++)
		n += *c == ',' ? 2 : 1;
	r = p = malloc(n + 1);
	if (!r)
		return NULL;
	for (const char *c = s; *c; c++) {
		*p++ = *c;
		if (*c == ',')
			*p++ = ',';
	}
	*p = '\0';
	return r;
}

/* Append "-opt" and a formatted value. */
_printf_(3, 4) static int arg(char ***argv, const char *opt, const char *fmt, ...)
{
	_cleanup_free_ char *v = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&v, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	r = strv_extendf(argv, "%s", opt);
	return r < 0 ? r : strv_extendf(argv, "%s", v);
}

/* -add-fd of fd (as QEMU has it) into fdset set: /dev/fdset/SET opens a dup of it. */
static int add_fd(char ***argv, int fd, unsigned set, const char *opaque_prefix, const char *id)
{
	if (fd < 0)
		return -EBADF; /* never a path: QEMU opens none of the host's files */
	return arg(argv, "-add-fd", "fd=%d,set=%u,opaque=%s%s", fd, set, opaque_prefix, id);
}

/*
 * An overlay's base image, read-only under it: named by vmd, so that QEMU never opens the
 * backing file its qcow2 header names.
 */
static int add_base(char ***argv, const DiskSpec *d, unsigned port, int fd)
{
	int r;

	if ((r = add_fd(argv, fd, QEMU_FDSET_BASE + port, QEMU_DISK_BASE_OPAQUE, d->id)) < 0 ||
	    (r = arg(argv, "-blockdev",
		     "driver=file,node-name=" QEMU_DISK_BASE_FILE
		     "%u,filename=/dev/fdset/%u,read-only=on",
		     port, QEMU_FDSET_BASE + port)) < 0)
		return r;
	return arg(argv, "-blockdev",
		   "driver=%s,node-name=" QEMU_DISK_BASE "%u,file=" QEMU_DISK_BASE_FILE
		   "%u,read-only=on",
		   disk_format_to_string(d->image_format), port, port);
}

static int add_disk(char ***argv, const DiskSpec *d, unsigned port, int fd, int base_fd)
{
	_cleanup_free_ char *backing = NULL;
	const char *ro = d->read_only ? "on" : "off";
	int r;

	if (d->image && (r = add_base(argv, d, port, base_fd)) < 0)
		return r;
	if (d->image && asprintf(&backing, ",backing=" QEMU_DISK_BASE "%u", port) < 0)
		return -ENOMEM;
	/* driver=file and an explicit format: QEMU probes nothing a guest could forge. */
	if ((r = add_fd(argv, fd, QEMU_FDSET_DISK + port, QEMU_DISK_DEVICE, d->id)) < 0 ||
	    (r = arg(argv, "-blockdev",
		     "driver=%s,node-name=" QEMU_DISK_FILE "%u,filename=/dev/fdset/%u,read-only=%s",
		     d->device == DISK_DEVICE_BLOCK ? "host_device" : "file", port,
		     QEMU_FDSET_DISK + port, ro)) < 0 ||
	    (r = arg(argv, "-blockdev",
		     "driver=%s,node-name=" QEMU_DISK_NODE "%u,file=" QEMU_DISK_FILE
		     "%u%s,read-only=%s",
		     disk_format_to_string(d->format), port, port, backing ?: "", ro)) < 0 ||
	    (r = arg(argv, "-device",
		     "virtio-blk-pci,id=" QEMU_DISK_DEVICE "%s,drive=" QEMU_DISK_NODE
		     "%u,bus=" QEMU_PORT "%u,addr=0",
		     d->id, port, port)) < 0)
		return r;
	return 0;
}

/*
 * The seed, read-only raw on virtio-blk (the guest needs nothing else to read it), on the
 * root bus: it is never hot-plugged, so it takes no root port.
 */
static int add_seed(char ***argv, int fd)
{
	int r;

	if ((r = add_fd(argv, fd, QEMU_FDSET_SEED, QEMU_SEED_DEVICE, "")) < 0 ||
	    (r = arg(argv, "-blockdev",
		     "driver=file,node-name=" QEMU_SEED_FILE ",filename=/dev/fdset/%u,read-only=on",
		     QEMU_FDSET_SEED)) < 0 ||
	    (r = arg(argv, "-blockdev",
		     "driver=raw,node-name=" QEMU_SEED_NODE ",file=" QEMU_SEED_FILE
		     ",read-only=on")) < 0)
		return r;
	return arg(argv, "-device", "virtio-blk-pci,id=" QEMU_SEED_DEVICE ",drive=" QEMU_SEED_NODE);
}

/*
 * A credential, as systemd reads it from fw_cfg: QEMU reads vmd's memfd of its copy, so that
 * only its name is on the command line, never its value.
 */
static int add_credential(char ***argv, const CredentialSpec *c, int fd)
{
	_cleanup_free_ char *name = qemu_opt_escape(c->name);

	if (!name)
		return -ENOMEM;
	if (fd < 0)
		return -EBADF;
	return arg(argv, "-fw_cfg", "name=" QEMU_CREDENTIAL_PREFIX "%s,file=/proc/self/fd/%d", name,
		   fd);
}

char *qemu_hostfwds(const NetSpec *n)
{
	char *all = strdup("");

	for (size_t i = 0; all && i < n->n_ports; i++) {
		_cleanup_free_ char *one = spec_port_format(&n->ports[i]), *old = all;

		all = one && asprintf(&all, "%s,hostfwd=%s", old, one) >= 0 ? all : NULL;
	}
	return all;
}

static int add_net(char ***argv, const NetSpec *n, unsigned port, int fd, int vhost_fd)
{
	_cleanup_free_ char *tap = qemu_opt_escape(n->tap);
	const uint8_t *m = n->mac;
	int r;

	if (!tap)
		return -ENOMEM;
	/* vmd opened the device (netdev.c): QEMU neither opens nor makes one, by name. */
	if (n->type != NET_USER && fd >= 0 && vhost_fd >= 0)
		r = arg(argv, "-netdev", "tap,id=" QEMU_NETDEV "%s,fd=%d,vhost=on,vhostfd=%d",
			n->id, fd, vhost_fd);
	else if (n->type != NET_USER && fd >= 0)
		r = arg(argv, "-netdev", "tap,id=" QEMU_NETDEV "%s,fd=%d", n->id, fd);
	else if (n->type != NET_USER)
		return -EBADF; /* never a name: QEMU would make a tap that is missing, unbridged */
	else {
		_cleanup_free_ char *fwd = qemu_hostfwds(n);

		if (!fwd)
			return -ENOMEM;
		r = arg(argv, "-netdev", "user,id=" QEMU_NETDEV "%s%s", n->id, fwd);
	}
	if (r >= 0)
		r = arg(argv, "-device",
			"virtio-net-pci,id=" QEMU_NET_DEVICE "%s,netdev=" QEMU_NETDEV
			"%s,mac=%02x:%02x:%02x:%02x:%02x:%02x,bus=" QEMU_PORT "%u,addr=0",
			n->id, n->id, m[0], m[1], m[2], m[3], m[4], m[5], port);
	return r;
}

int qemu_build_argv(const QemuLaunch *l, char ***ret)
{
	_cleanup_(strv_freep) char **argv = NULL;
	const SandboxSpec *s = l->spec;
	int r;

	if (l->n_ports > QEMU_PORTS_MAX)
		return -E2BIG;
	if ((r = strv_extendf(&argv, "%s", l->binary)) < 0 ||
	    (r = arg(&argv, "-name", "guest=%s", s->name)) < 0 ||
	    (r = arg(&argv, "-machine", "%s", "q35")) < 0)
		return r;
	if (l->accel != QEMU_ACCEL_TCG && (r = arg(&argv, "-accel", "%s", "kvm")) < 0)
		return r;
	if (l->accel != QEMU_ACCEL_KVM && (r = arg(&argv, "-accel", "%s", "tcg")) < 0)
		return r;
	/* vCPUs stopped until vmd has checked QMP and says cont: QMP answers at once. */
	if ((r = strv_extendf(&argv, "-S")) < 0 || (r = strv_extendf(&argv, "-nodefaults")) < 0 ||
	    (r = strv_extendf(&argv, "-no-user-config")) < 0 ||
	    (r = arg(&argv, "-display", "%s", "none")) < 0 ||
	    (r = arg(&argv, "-smp", "%u", s->vcpus)) < 0)
		return r;
	/* The loader takes whole mebibytes only. */
	if ((r = arg(&argv, "-m", "%" PRIu64 "M", s->memory >> 20)) < 0)
		return r;
	/* vmd's memfds of them: QEMU reads them by path only, and has no access to the host's. */
	if ((s->kernel && l->kernel_fd < 0) || (s->initrd && l->initrd_fd < 0))
		return -EBADF;
	if (s->kernel && (r = arg(&argv, "-kernel", "/proc/self/fd/%d", l->kernel_fd)) < 0)
		return r;
	if (s->initrd && (r = arg(&argv, "-initrd", "/proc/self/fd/%d", l->initrd_fd)) < 0)
		return r;
	if (s->cmdline && (r = arg(&argv, "-append", "%s", s->cmdline)) < 0)
		return r;
	/* vmd made the sockets and listens on them for QEMU: QEMU makes no socket in the run dir. */
	if ((r = arg(&argv, "-chardev", "socket,id=vmd-serial,fd=%d,server=on,wait=off",
		     l->serial_fd)) < 0 ||
	    (r = arg(&argv, "-serial", "%s", "chardev:vmd-serial")) < 0 ||
	    (r = arg(&argv, "-chardev", "socket,id=vmd-qmp,fd=%d,server=on,wait=off", l->qmp_fd)) < 0 ||
	    (r = arg(&argv, "-mon", "%s", "chardev=vmd-qmp,mode=control")) < 0 ||
	    (r = arg(&argv, "-sandbox", "%s",
		     "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny")) < 0)
		return r;

	/* Every device sits alone on a root port of its own: that is what makes it hot-pluggable. */
	for (unsigned i = 0; i < l->n_ports; i++) {
		r = arg(&argv, "-device",
			"pcie-root-port,id=" QEMU_PORT "%u,bus=pcie.0,chassis=%u,addr=0x%x.%u%s", i,
			i + 1, 0x10 + i / 8, i % 8, i % 8 == 0 ? ",multifunction=on" : "");
		if (r < 0)
			return r;
	}
	if ((s->n_disks && (!l->disk_fds || !l->base_fds)) ||
	    (s->n_credentials && !l->credential_fds))
		return -EBADF;
	for (size_t i = 0; i < s->n_disks; i++)
		if ((r = add_disk(&argv, &s->disks[i], l->disk_ports[i], l->disk_fds[i],
				  l->base_fds[i])) < 0)
			return r;
	for (size_t i = 0; i < s->n_networks; i++)
		if ((r = add_net(&argv, &s->networks[i], l->net_ports[i],
				 l->net_fds ? l->net_fds[i] : -1,
				 l->vhost_fds ? l->vhost_fds[i] : -1)) < 0)
			return r;
	/* The guest agent's port, on a socket vmd made and listens on, as the serial port's. */
	if (s->guest_agent &&
	    ((r = arg(&argv, "-chardev", "socket,id=vmd-agent,fd=%d,server=on,wait=off",
		      l->agent_fd)) < 0 ||
	     (r = arg(&argv, "-device", "%s", "virtio-serial-pci,id=vmd-agent-serial")) < 0 ||
	     (r = arg(&argv, "-device",
		      "virtserialport,bus=vmd-agent-serial.0,chardev=vmd-agent,name=%s",
		      GUEST_AGENT_PORT)) < 0))
		return r;
	if (s->cloud_init && (r = add_seed(&argv, l->seed_fd)) < 0)
		return r;
	if (l->vmgenid &&
	    (r = arg(&argv, "-device", "%s", "vmgenid,id=" QEMU_VMGENID_DEVICE ",guid=auto")) < 0)
		return r;
	if (l->incoming && (r = arg(&argv, "-incoming", "%s", "defer")) < 0)
		return r;
	for (size_t i = 0; i < s->n_credentials; i++)
		if ((r = add_credential(&argv, &s->credentials[i], l->credential_fds[i])) < 0)
			return r;
	*ret = TAKE_PTR(argv);
	return 0;
}
