/* SPDX-License-Identifier: MIT */
/* The QEMU command line: what the spec becomes, and that no value can add an option. */
#include <stdio.h>

#include "diag.h"
#include "helpers.h"
#include "qemu.h"
#include "spec-yaml.h"

static SandboxSpec *load(const char *text)
{
	SpecLoadOptions opts = { .default_backend = BACKEND_QEMU };
	DiagList diags = {};
	SandboxSpec *s = NULL;

	assert_int_equal(spec_load_buffer("/etc/vmd/sandboxes/vm-1.yaml", text, strlen(text), &opts,
					  &s, &diags),
			 0);
	diag_list_done(&diags);
	return s;
}

/* The argument after the n-th (from 0) occurrence of opt, or NULL. */
static const char *after(char **argv, const char *opt, unsigned n)
{
	for (size_t i = 0; argv[i]; i++)
		if (streq(argv[i], opt) && n-- == 0)
			return argv[i + 1];
	return NULL;
}

static bool has(char **argv, const char *arg)
{
	for (size_t i = 0; argv[i]; i++)
		if (streq(argv[i], arg))
			return true;
	return false;
}

static char **build(const SandboxSpec *s, QemuAccel accel, const char *dir)
{
	unsigned disk_ports[SPEC_DISKS_MAX], net_ports[SPEC_NETWORKS_MAX];
	int net_fds[SPEC_NETWORKS_MAX], vhost_fds[SPEC_NETWORKS_MAX];
	int disk_fds[SPEC_DISKS_MAX], base_fds[SPEC_DISKS_MAX], cred_fds[SPEC_CREDENTIALS_MAX];
	QemuLaunch l = {
		.binary = "/usr/bin/qemu-system-x86_64",
		.accel = accel,
		.dir = dir,
		.serial_fd = 4,
		.qmp_fd = 6,
		.agent_fd = 5,
		.spec = s,
		.disk_ports = disk_ports,
		.net_ports = net_ports,
		.n_ports = (unsigned)(s->n_disks + s->n_networks + QEMU_SPARE_PORTS),
		.net_fds = net_fds,
		.vhost_fds = vhost_fds,
		.disk_fds = disk_fds,
		.base_fds = base_fds,
		.credential_fds = cred_fds,
		.kernel_fd = 7,
		.initrd_fd = 8,
		.seed_fd = 9,
	};
	char **argv = NULL;

	/* As QEMU would have them from vmd (qemu-fds.c): disks 30..., their images 40... */
	for (size_t i = 0; i < s->n_disks; i++) {
		disk_ports[i] = (unsigned)i;
		disk_fds[i] = 30 + (int)i;
		base_fds[i] = s->disks[i].image ? 40 + (int)i : -1;
	}
	for (size_t i = 0; i < s->n_credentials; i++)
		cred_fds[i] = 50 + (int)i;
	/* As QEMU would have them from vmd (netdev.c): 10, 11...; vhost for the third. */
	for (size_t i = 0; i < s->n_networks; i++) {
		net_ports[i] = (unsigned)(s->n_disks + i);
		net_fds[i] = s->networks[i].type == NET_USER ? -1 : 10 + (int)i;
		vhost_fds[i] = i == 2 ? 20 : -1;
	}
	assert_int_equal(qemu_build_argv(&l, &argv), 0);
	return argv;
}

static void test_escape(void **state _unused_)
{
	char *e = qemu_opt_escape("/a,b,,c,");

	assert_string_equal(e, "/a,,b,,,,c,,");
	free(e);
	e = qemu_opt_escape("");
	assert_string_equal(e, "");
	free(e);
}

static void test_full_spec(void **state _unused_)
{
	SandboxSpec *s =
		load("apiVersion: vmd/v1\n"
		     "kind: Sandbox\n"
		     "spec:\n"
		     "  vcpus: 2\n"
		     "  memory: 512Mi\n"
		     "  kernel: /k/vmlinux\n"
		     "  initrd: /k/initrd\n"
		     "  cmdline: \"console=ttyS0 a=b,c -append x\"\n"
		     "  disks:\n"
		     "    - {id: root, path: /d/root.qcow2, format: qcow2}\n"
		     "    - {id: data, path: /d/data.img, readOnly: true}\n"
		     "  networks:\n"
		     "    - {id: net0, type: tap, tap: vmd-web1, mac: \"52:54:00:12:34:56\"}\n"
		     "    - {id: net1, type: user}\n");
	char **argv = build(s, QEMU_ACCEL_TCG, "/run/vmd/vm-1");

	assert_string_equal(argv[0], "/usr/bin/qemu-system-x86_64");
	assert_string_equal(after(argv, "-name", 0), "guest=vm-1");
	assert_string_equal(after(argv, "-machine", 0), "q35");
	assert_string_equal(after(argv, "-accel", 0), "tcg");
	assert_null(after(argv, "-accel", 1));
	assert_true(has(argv, "-nodefaults"));
	assert_true(has(argv, "-no-user-config"));
	assert_false(has(argv, "-daemonize"));
	assert_string_equal(after(argv, "-display", 0), "none");
	assert_string_equal(after(argv, "-smp", 0), "2");
	assert_string_equal(after(argv, "-m", 0), "512M");
	/* vmd's memfds of them: QEMU opens no path of the host's. */
	assert_string_equal(after(argv, "-kernel", 0), "/proc/self/fd/7");
	assert_string_equal(after(argv, "-initrd", 0), "/proc/self/fd/8");
	/* One argument, as written: QEMU does not parse it, nor does a shell. */
	assert_string_equal(after(argv, "-append", 0), "console=ttyS0 a=b,c -append x");
	/* The serial console: the socket vmd made, passed listening (no path QEMU opens). */
	assert_string_equal(after(argv, "-chardev", 0),
			    "socket,id=vmd-serial,fd=4,server=on,wait=off");
	/* QMP's too: QEMU binds no socket in the run dir. */
	assert_string_equal(after(argv, "-chardev", 1), "socket,id=vmd-qmp,fd=6,server=on,wait=off");
	assert_string_equal(after(argv, "-mon", 0), "chardev=vmd-qmp,mode=control");
	/* No pid file: QEMU writes nothing in the run dir (vmd finds it by its stderr). */
	assert_null(after(argv, "-pidfile", 0));
	assert_string_equal(after(argv, "-sandbox", 0),
			    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");

	/* 4 devices + 8 spare ports, 8 functions a slot. */
	assert_string_equal(
		after(argv, "-device", 0),
		"pcie-root-port,id=vmd-port0,bus=pcie.0,chassis=1,addr=0x10.0,multifunction=on");
	assert_string_equal(after(argv, "-device", 7),
			    "pcie-root-port,id=vmd-port7,bus=pcie.0,chassis=8,addr=0x10.7");
	assert_string_equal(
		after(argv, "-device", 8),
		"pcie-root-port,id=vmd-port8,bus=pcie.0,chassis=9,addr=0x11.0,multifunction=on");
	assert_string_equal(after(argv, "-device", 11),
			    "pcie-root-port,id=vmd-port11,bus=pcie.0,chassis=12,addr=0x11.3");

	/* Each disk's file, opened by vmd, in an fdset of its port's: QEMU opens a dup. */
	assert_string_equal(after(argv, "-add-fd", 0), "fd=30,set=1,opaque=disk-root");
	assert_string_equal(after(argv, "-add-fd", 1), "fd=31,set=2,opaque=disk-data");
	assert_null(after(argv, "-add-fd", 2));
	assert_string_equal(after(argv, "-blockdev", 0),
			    "driver=file,node-name=vmd-file0,filename=/dev/fdset/1,read-only=off");
	assert_string_equal(after(argv, "-blockdev", 1),
			    "driver=qcow2,node-name=vmd-disk0,file=vmd-file0,read-only=off");
	assert_string_equal(after(argv, "-device", 12),
			    "virtio-blk-pci,id=disk-root,drive=vmd-disk0,bus=vmd-port0,addr=0");
	assert_string_equal(after(argv, "-blockdev", 2),
			    "driver=file,node-name=vmd-file1,filename=/dev/fdset/2,read-only=on");
	assert_string_equal(after(argv, "-blockdev", 3),
			    "driver=raw,node-name=vmd-disk1,file=vmd-file1,read-only=on");
	assert_string_equal(after(argv, "-device", 13),
			    "virtio-blk-pci,id=disk-data,drive=vmd-disk1,bus=vmd-port1,addr=0");
	/* vmd opened the tap: QEMU gets its descriptor, never a name to open or make. */
	assert_string_equal(after(argv, "-netdev", 0), "tap,id=netdev-net0,fd=10");
	assert_string_equal(
		after(argv, "-device", 14),
		"virtio-net-pci,id=net-net0,netdev=netdev-net0,mac=52:54:00:12:34:56,bus=vmd-port2,addr=0");
	assert_string_equal(after(argv, "-netdev", 1), "user,id=netdev-net1");
	assert_non_null(strstr(after(argv, "-device", 15), "id=net-net1,netdev=netdev-net1,mac="));
	assert_non_null(strstr(after(argv, "-device", 15), ",bus=vmd-port3,addr=0"));
	assert_null(after(argv, "-device", 16));
	for (size_t i = 0; argv[i]; i++)
		assert_null(strstr(argv[i], "/d/"));
	strv_free(argv);
	sandbox_spec_free(s);
}

static void test_accel(void **state _unused_)
{
	SandboxSpec *s = load("apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  memory: 1Gi\n"
			      "  kernel: /k\n");
	char **argv = build(s, QEMU_ACCEL_AUTO, "/r");

	/* auto: KVM, and TCG where KVM is not there; QEMU takes the first that works. */
	assert_string_equal(after(argv, "-accel", 0), "kvm");
	assert_string_equal(after(argv, "-accel", 1), "tcg");
	assert_string_equal(after(argv, "-m", 0), "1024M");
	assert_null(after(argv, "-initrd", 0));
	assert_null(after(argv, "-append", 0));
	strv_free(argv);
	argv = build(s, QEMU_ACCEL_KVM, "/r");
	assert_string_equal(after(argv, "-accel", 0), "kvm");
	assert_null(after(argv, "-accel", 1));
	strv_free(argv);
	sandbox_spec_free(s);
}

/* tests/spec/good/comma-path.yaml: commas doubled, so a path cannot add an option. */
static void test_commas(void **state _unused_)
{
	SpecLoadOptions opts = { .default_backend = BACKEND_QEMU };
	DiagList diags = {};
	SandboxSpec *s = NULL;
	char **argv;

	assert_int_equal(
		spec_load_file(test_src("tests/spec/good/comma-path.yaml"), &opts, &s, &diags), 0);
	argv = build(s, QEMU_ACCEL_TCG, "/run/a,b");
	/* No path is on the command line at all, commas or not: descriptors only. */
	assert_string_equal(after(argv, "-kernel", 0), "/proc/self/fd/7");
	assert_string_equal(after(argv, "-blockdev", 0),
			    "driver=file,node-name=vmd-file0,filename=/dev/fdset/1,read-only=off");
	assert_string_equal(after(argv, "-blockdev", 1),
			    "driver=raw,node-name=vmd-disk0,file=vmd-file0,read-only=off");
	for (size_t i = 0; argv[i]; i++)
		assert_null(strstr(argv[i], "/var/lib/vmd"));
	strv_free(argv);
	sandbox_spec_free(s);
	diag_list_done(&diags);
}

static void test_too_many_ports(void **state _unused_)
{
	SandboxSpec *s = load("apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  memory: 64Mi\n"
			      "  kernel: /k\n");
	QemuLaunch l = { .binary = "/q", .dir = "/r", .spec = s, .n_ports = QEMU_PORTS_MAX + 1 };
	char **argv = NULL;

	assert_int_equal(qemu_build_argv(&l, &argv), -E2BIG);
	assert_null(argv);
	sandbox_spec_free(s);
}

/*
 * The VM generation ID: a fresh boot has it (a new GUID in each QEMU: guid=auto); a wake
 * of a save without it (a vmd before) has none, or the stream would not load.
 */
static void test_vmgenid(void **state _unused_)
{
	SandboxSpec *s = load("apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  memory: 64Mi\n"
			      "  kernel: /k\n");
	QemuLaunch l = { .binary = "/q", .dir = "/r", .spec = s, .kernel_fd = 7, .vmgenid = true };
	char **argv = NULL;
	size_t n = 0;

	assert_int_equal(qemu_build_argv(&l, &argv), 0);
	for (size_t i = 0; argv[i]; i++)
		n += streq(argv[i], "vmgenid,id=" QEMU_VMGENID_DEVICE ",guid=auto") &&
		     streq(argv[i - 1], "-device");
	assert_int_equal(n, 1);
	strv_free(argv);

	l.vmgenid = false;
	l.incoming = true;
	assert_int_equal(qemu_build_argv(&l, &argv), 0);
	assert_string_equal(after(argv, "-incoming", 0), "defer");
	for (size_t i = 0; argv[i]; i++)
		assert_null(strstr(argv[i], "vmgenid"));
	strv_free(argv);
	sandbox_spec_free(s);
}

/* Bridge and macvtap networks get their descriptors too, vhost with its own; none: refused. */
static void test_net_fds(void **state _unused_)
{
	SandboxSpec *s = load(
		"apiVersion: vmd/v1\n"
		"kind: Sandbox\n"
		"spec:\n"
		"  vcpus: 1\n"
		"  memory: 128Mi\n"
		"  kernel: /k/vmlinux\n"
		"  networks:\n"
		"    - {id: a, type: bridge, bridge: br0}\n"
		"    - id: b\n"
		"      type: user\n"
		"      ports: [{host: 2222, guest: 22}, {host: 53, guest: 5353, protocol: udp, address: 0.0.0.0}]\n"
		"    - {id: c, type: macvtap, link: eth0}\n");
	char **argv = build(s, QEMU_ACCEL_KVM, "/run/vmd/vm-1");
	unsigned ports[] = { 0, 1, 2 };
	QemuLaunch l = { .binary = "/q",
			 .dir = "/d",
			 .spec = s,
			 .net_ports = ports,
			 .n_ports = 3 + QEMU_SPARE_PORTS };

	assert_string_equal(after(argv, "-netdev", 0), "tap,id=netdev-a,fd=10");
	/* Forwarded ports, on the loopback unless the file says otherwise. */
	assert_string_equal(
		after(argv, "-netdev", 1),
		"user,id=netdev-b,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=udp:0.0.0.0:53-:5353");
	assert_string_equal(after(argv, "-netdev", 2), "tap,id=netdev-c,fd=12,vhost=on,vhostfd=20");
	strv_free(argv);
	argv = NULL;
	/* Without a descriptor QEMU would open, or make, a tap by its name: never. */
	assert_int_equal(qemu_build_argv(&l, &argv), -EBADF);
	assert_null(argv);
	sandbox_spec_free(s);
}

/* guestAgent: its port, on the socket vmd made; none without it. */
static void test_guest_agent(void **state _unused_)
{
	const char *text = "apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  memory: 128Mi\n"
			   "  kernel: /k/vmlinux\n";
	_cleanup_free_ char *with = NULL;
	SandboxSpec *s = load(text);
	char **argv = build(s, QEMU_ACCEL_TCG, "/run/vmd/vm-1");

	assert_null(after(argv, "-chardev", 2));
	assert_false(has(argv, "virtio-serial-pci,id=vmd-agent-serial"));
	strv_free(argv);
	sandbox_spec_free(s);

	assert_true(asprintf(&with, "%s  guestAgent: true\n", text) > 0);
	s = load(with);
	argv = build(s, QEMU_ACCEL_TCG, "/run/vmd/vm-1");
	assert_string_equal(after(argv, "-chardev", 2),
			    "socket,id=vmd-agent,fd=5,server=on,wait=off");
	assert_true(has(argv, "virtio-serial-pci,id=vmd-agent-serial"));
	assert_true(has(argv, "virtserialport,bus=vmd-agent-serial.0,chardev=vmd-agent,"
			      "name=org.qemu.guest_agent.0"));
	strv_free(argv);
	sandbox_spec_free(s);
}

/*
 * The seed: read-only raw on virtio-blk, named so that no disk can clash with it. The
 * credentials: by fw_cfg from vmd's copies, names and paths only; commas escaped.
 */
static void test_provision(void **state _unused_)
{
	SandboxSpec *s = load("apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  memory: 64Mi\n"
			      "  kernel: /k\n  disks: [{id: vmd-seed, path: /d/seed}]\n"
			      "  cloudInit: {userData: x}\n"
			      "  credentials:\n"
			      "    - {name: web.password, fromFile: /etc/vmd/secrets/pw}\n"
			      "    - {name: \"a,b\", fromFile: /etc/vmd/secrets/ab}\n");
	unsigned disk_ports[] = { 0 };
	int disk_fds[] = { 30 }, base_fds[] = { -1 }, cred_fds[] = { 50, 51 };
	QemuLaunch l = { .binary = "/q",
			 .dir = "/run/vmd/vm-1",
			 .spec = s,
			 .disk_ports = disk_ports,
			 .n_ports = 1,
			 .disk_fds = disk_fds,
			 .base_fds = base_fds,
			 .credential_fds = cred_fds,
			 .kernel_fd = 7,
			 .initrd_fd = -1,
			 .seed_fd = 9 };
	CloudInitSpec *ci;
	char **argv = NULL;

	assert_int_equal(qemu_build_argv(&l, &argv), 0);
	/* A disk with the id vmd-seed is the user's, under the disks' own names. */
	assert_string_equal(after(argv, "-blockdev", 0),
			    "driver=file,node-name=vmd-file0,filename=/dev/fdset/1,read-only=off");
	/* The seed vmd wrote, opened read-only by vmd: its own fdset. */
	assert_string_equal(after(argv, "-add-fd", 1), "fd=9,set=100,opaque=vmd-seed");
	assert_string_equal(
		after(argv, "-blockdev", 2),
		"driver=file,node-name=vmd-seed-file,filename=/dev/fdset/100,read-only=on");
	assert_string_equal(after(argv, "-blockdev", 3),
			    "driver=raw,node-name=vmd-seed-node,file=vmd-seed-file,read-only=on");
	assert_string_equal(after(argv, "-device", 2),
			    "virtio-blk-pci,id=vmd-seed,drive=vmd-seed-node");
	assert_string_equal(after(argv, "-fw_cfg", 0),
			    "name=opt/io.systemd.credentials/web.password,file=/proc/self/fd/50");
	assert_string_equal(after(argv, "-fw_cfg", 1),
			    "name=opt/io.systemd.credentials/a,,b,file=/proc/self/fd/51");
	/* The host's files themselves are never QEMU's to open. */
	for (size_t i = 0; argv[i]; i++)
		assert_null(strstr(argv[i], "/etc/vmd/secrets"));
	strv_free(argv);
	argv = NULL;

	/* A seed without its descriptor: no command line (QEMU is never given a path). */
	l.seed_fd = -1;
	assert_int_equal(qemu_build_argv(&l, &argv), -EBADF);
	assert_null(argv);

	/* Without cloudInit and credentials: neither. */
	ci = TAKE_PTR(s->cloud_init);
	s->n_credentials = 0;
	assert_int_equal(qemu_build_argv(&l, &argv), 0);
	assert_null(after(argv, "-fw_cfg", 0));
	assert_null(after(argv, "-blockdev", 2));
	assert_null(after(argv, "-add-fd", 1));
	strv_free(argv);
	s->n_credentials = 2;
	s->cloud_init = ci;
	sandbox_spec_free(s);
}

/*
 * An overlay (a disk from an image, as vmm_image_resolve() names its copy): its base image
 * is a read-only node of vmd's fd, the overlay's backing: QEMU never opens the path its
 * qcow2 header names. A disk without its descriptor has no command line.
 */
static void test_overlay(void **state _unused_)
{
	SandboxSpec *s = load("apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  memory: 64Mi\n"
			      "  kernel: /k\n  disks:\n    - {id: data, path: /d/data}\n");
	DiskSpec *d;
	char **argv;

	d = &s->disks[0];
	d->image = strdup("/img/base.qcow2");
	d->format = DISK_FORMAT_QCOW2;
	d->image_format = DISK_FORMAT_QCOW2;
	assert_non_null(d->image);
	argv = build(s, QEMU_ACCEL_TCG, "/r");
	assert_string_equal(after(argv, "-add-fd", 0), "fd=40,set=101,opaque=disk-base-data");
	assert_string_equal(after(argv, "-add-fd", 1), "fd=30,set=1,opaque=disk-data");
	assert_string_equal(after(argv, "-blockdev", 0),
			    "driver=file,node-name=vmd-bfile0,filename=/dev/fdset/101,read-only=on");
	assert_string_equal(after(argv, "-blockdev", 1),
			    "driver=qcow2,node-name=vmd-base0,file=vmd-bfile0,read-only=on");
	assert_string_equal(
		after(argv, "-blockdev", 3),
		"driver=qcow2,node-name=vmd-disk0,file=vmd-file0,backing=vmd-base0,read-only=off");
	for (size_t i = 0; argv[i]; i++)
		assert_null(strstr(argv[i], "/img/"));
	strv_free(argv);

	/* device: block: QEMU's host_device driver, on vmd's fd all the same. */
	free(d->image);
	d->image = NULL;
	d->format = DISK_FORMAT_RAW;
	d->device = DISK_DEVICE_BLOCK;
	argv = build(s, QEMU_ACCEL_TCG, "/r");
	assert_string_equal(
		after(argv, "-blockdev", 0),
		"driver=host_device,node-name=vmd-file0,filename=/dev/fdset/1,read-only=off");
	strv_free(argv);
	argv = NULL;

	{
		unsigned ports[] = { 0 };
		int fds[] = { -1 }, bases[] = { -1 };
		QemuLaunch l = { .binary = "/q",
				 .spec = s,
				 .disk_ports = ports,
				 .n_ports = 1,
				 .disk_fds = fds,
				 .base_fds = bases,
				 .kernel_fd = 7 };

		assert_int_equal(qemu_build_argv(&l, &argv), -EBADF);
		assert_null(argv);
		l.disk_fds = NULL;
		assert_int_equal(qemu_build_argv(&l, &argv), -EBADF);
		l.disk_fds = fds;
		fds[0] = 30;
		l.kernel_fd = -1;
		assert_int_equal(qemu_build_argv(&l, &argv), -EBADF);
		assert_null(argv);
	}
	sandbox_spec_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_provision), cmocka_unit_test(test_escape),
		cmocka_unit_test(test_full_spec), cmocka_unit_test(test_accel),
		cmocka_unit_test(test_commas),	  cmocka_unit_test(test_too_many_ports),
		cmocka_unit_test(test_net_fds),	  cmocka_unit_test(test_guest_agent),
		cmocka_unit_test(test_overlay),	  cmocka_unit_test(test_vmgenid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
