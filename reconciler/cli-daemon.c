/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <stdio.h>
#include <sys/stat.h>

#include "cli.h"
#include "console.h"
#include "log.h"
#include "manager.h"
#include "qemu.h"
#include "vmm.h"

static void daemon_help(FILE *f)
{
	fprintf(f,
		"Usage: vmd daemon [OPTIONS]\n"
		"\n"
		"Watch the sandbox directory and keep the VMs in the state its files describe.\n"
		"\n"
		"  --sandboxes DIR          sandbox files (default /etc/vmd/sandboxes)\n"
		"  --run-dir DIR            runtime state and status files (default /run/vmd)\n"
		"  --state-dir DIR          the last valid spec of each sandbox (default /var/lib/vmd)\n"
		"  --default-backend NAME   for files without spec.backend (default qemu)\n"
		"  --backend-override NAME  run every sandbox on this backend (noop: to try vmd out)\n"
		"  --resync SECONDS         read everything again this often (default 60)\n"
		"  --grace SECONDS          how long a file must stay gone or changed before vmd\n"
		"                           stops, restarts or hot-removes anything (default 2)\n"
		"  --trusted-uid UID        also read files and folders owned by this user (repeatable)\n"
		"  --trusted-gid GID        also read files and folders this group can write (repeatable)\n"
		"  --max-deletions LIMIT    stop nothing, and wait for vmd approve-deletions, when\n"
		"                           the files of more sandboxes than this go at once:\n"
		"                           N, P%% (of those with a VM), N,P%% or off (default 1,50%%)\n"
		"  --qemu-binary PATH       the QEMU to run (default qemu-system-x86_64 in $PATH)\n"
		"  --qemu-accel ACCEL       kvm, tcg or auto: kvm where it works (default auto)\n"
		"  --cloud-hypervisor-binary PATH\n"
		"                           the Cloud Hypervisor to run (default cloud-hypervisor)\n"
		"  --firecracker-binary PATH\n"
		"                           the Firecracker to run (default firecracker)\n"
		"  --jailer PATH            start Firecracker through this jailer, with:\n"
		"  --jailer-uid UID, --jailer-gid GID\n"
		"                           the ids Firecracker runs as (required with --jailer)\n"
		"  --jailer-chroot-base DIR where the jails are (default /srv/jailer)\n"
		"  --vmm-user USER          who QEMU, Cloud Hypervisor and an unjailed Firecracker\n"
		"                           run as: a user name or UID:GID (default vmd-vm; root\n"
		"                           only when said)\n"
		"  --allow-overcommit       start VMs that need more memory or vCPUs than the host has\n"
		"  --max-disruptions N      restarts for spec changes in flight at once, each until\n"
		"                           its sandbox is Ready again (default 1; 0: no limit)\n"
		"  --rollback               roll back a new generation that is not Ready in time,\n"
		"                           for files without spec.rollback\n"
		"  --console-log-size SIZE  what vmd keeps of each serial console (QEMU), console.log\n"
		"                           and console.log.1 together: bytes, or Ki, Mi, Gi\n"
		"                           (default 1Mi, at least 8Ki)\n"
		"  --log-target TARGET      auto, journal or console (default auto)\n"
		"  --metrics-file PATH      write Prometheus metrics there after passes (for\n"
		"                           node_exporter's textfile collector)\n"
		"  --dhcp-leases PATH       a dnsmasq lease file: guests' addresses by MAC, with\n"
		"                           the host's neighbour table\n"
		"  -h, --help               show this help\n"
		"\n"
		"Supported VMM versions: Cloud Hypervisor >= v52.0, Firecracker >= 1.13\n"
		"(docs/backends.md).\n");
}

int parse_backend_arg(const char *verb, const char *arg, BackendKind *ret)
{
	BackendKind k = backend_kind_from_string(arg);

	if (k < 0) {
		fprintf(stderr,
			"vmd %s: unknown backend '%s'; expected qemu, cloud-hypervisor, firecracker or noop\n",
			verb, arg);
		return -EINVAL;
	}
	*ret = k;
	return 0;
}

void manager_config_defaults(ManagerConfig *c)
{
	*c = (ManagerConfig){
		.sandbox_dir = "/etc/vmd/sandboxes",
		.run_dir = "/run/vmd",
		.state_dir = "/var/lib/vmd",
		.default_backend = BACKEND_QEMU,
		.backend_override = _BACKEND_KIND_INVALID,
		.resync_usec = 60ull * 1000000,
		.grace_usec = 2ull * 1000000,
		.max_deletions = DELETION_LIMIT_DEFAULT,
		.max_disruptions = 1,
		.backend_options.jailer_uid = (uid_t)-1,
		.backend_options.jailer_gid = (gid_t)-1,
	};
}

/* A numeric uid or gid, not root's 0 (the jailer is there to drop root). */
static int parse_id(const char *verb, const char *opt, const char *arg, uint32_t *ret)
{
	char *end = NULL;
	unsigned long v = strtoul(arg, &end, 10);

	if (!*arg || *end || v == 0 || v >= UINT32_MAX) {
		fprintf(stderr, "vmd %s: %s takes a numeric id other than 0, not '%s'\n", verb, opt,
			arg);
		return -EINVAL;
	}
	*ret = (uint32_t)v;
	return 1;
}

int cli_trust_option(const char *verb, int c, const char *arg, Trust *trust)
{
	const char *opt = c == 'u' ? "--trusted-uid" : "--trusted-gid";
	char *end = NULL;
	unsigned long v;
	int r;

	if (c != 'u' && c != 'w')
		return 0;
	errno = 0;
	v = strtoul(arg, &end, 10);
	if (!*arg || *end || arg[0] == '-' || errno || v >= UINT32_MAX) {
		fprintf(stderr, "vmd %s: %s takes a numeric id, not '%s'\n", verb, opt, arg);
		return -EINVAL;
	}
	r = c == 'u' ? trust_add_uid(trust, (uid_t)v) : trust_add_gid(trust, (gid_t)v);
	if (r < 0) {
		fprintf(stderr, "vmd %s: %s is given more than %u times\n", verb, opt, TRUST_IDS_MAX);
		return -EINVAL;
	}
	return 1;
}

int cli_manager_options_check(const char *verb, const ManagerConfig *config)
{
	const BackendOptions *o = &config->backend_options;

	if (o->jailer_binary && (o->jailer_uid == (uid_t)-1 || o->jailer_gid == (gid_t)-1)) {
		fprintf(stderr, "vmd %s: --jailer needs --jailer-uid and --jailer-gid\n", verb);
		return -EINVAL;
	}
	return 0;
}

int cli_manager_option(const char *verb, int c, const char *arg, ManagerConfig *config)
{
	int r = cli_trust_option(verb, c, arg, &config->trust);

	if (r != 0)
		return r;
	switch (c) {
	case 's':
		config->sandbox_dir = arg;
		return 1;
	case 'r':
		config->run_dir = arg;
		return 1;
	case 'S':
		config->state_dir = arg;
		return 1;
	case 'b':
		return parse_backend_arg(verb, arg, &config->default_backend) < 0 ? -EINVAL : 1;
	case 'o':
		return parse_backend_arg(verb, arg, &config->backend_override) < 0 ? -EINVAL : 1;
	case 'Q':
		config->backend_options.qemu_binary = arg;
		return 1;
	case 'A':
		if (qemu_accel_from_string(arg) < 0) {
			fprintf(stderr,
				"vmd %s: unknown --qemu-accel '%s'; expected kvm, tcg or auto\n",
				verb, arg);
			return -EINVAL;
		}
		config->backend_options.qemu_accel = arg;
		return 1;
	case 'C':
		config->backend_options.cloud_hypervisor_binary = arg;
		return 1;
	case 'F':
		config->backend_options.firecracker_binary = arg;
		return 1;
	case 'J':
		config->backend_options.jailer_binary = arg;
		return 1;
	case 'U':
	case 'G':
		return parse_id(verb, c == 'U' ? "--jailer-uid" : "--jailer-gid", arg,
				c == 'U' ? &config->backend_options.jailer_uid
					 : &config->backend_options.jailer_gid);
	case 'B':
		if (arg[0] != '/') {
			fprintf(stderr,
				"vmd %s: --jailer-chroot-base takes an absolute path, not '%s'\n",
				verb, arg);
			return -EINVAL;
		}
		config->backend_options.jailer_chroot_base = arg;
		return 1;
	case 'O':
		config->allow_overcommit = true;
		return 1;
	default:
		return 0;
	}
}

/* A size in bytes, or with a unit: "64Ki", "1Mi", "2Gi". */
static int parse_console_size(const char *arg, uint64_t *ret)
{
	static const struct {
		const char *unit;
		unsigned shift;
	} units[] = { { "", 0 }, { "Ki", 10 }, { "Mi", 20 }, { "Gi", 30 } };
	size_t digits = strspn(arg, "0123456789");
	uint64_t v;

	for (size_t i = 0; i < ELEMENTSOF(units); i++)
		if (digits > 0 && streq(arg + digits, units[i].unit) &&
		    parse_decimal_u64(arg, digits, &v) >= 0 && v <= (UINT64_MAX >> units[i].shift) &&
		    (v << units[i].shift) >= CONSOLE_LOG_SIZE_MIN) {
			*ret = v << units[i].shift;
			return 0;
		}
	fprintf(stderr,
		"vmd daemon: --console-log-size takes bytes or a size such as 64Ki or 1Mi, at least 8Ki, not '%s'\n",
		arg);
	return -EINVAL;
}

/*
 * The --vmm-user (default vmd-vm), resolved at start: a user that does not exist is a start
 * error, unless no VMM runs (--backend-override noop).
 */
static int resolve_vmm_user(const char *arg, ManagerConfig *config)
{
	VmmUser u;
	int r = vmm_user_parse(arg, &u);

	if (r == -ENOENT && config->backend_override == BACKEND_NOOP)
		return 0;
	if (r < 0) {
		fprintf(stderr,
			r == -ENOENT
				? "vmd daemon: --vmm-user '%s': no such user (the package makes vmd-vm through sysusers.d; or give UID:GID, or root)\n"
				: "vmd daemon: --vmm-user takes a user name or UID:GID, not '%s'\n",
			arg);
		return -EINVAL;
	}
	config->backend_options.vmm_user_set = true;
	config->backend_options.vmm_uid = u.uid;
	config->backend_options.vmm_gid = u.gid;
	return 0;
}

static int parse_seconds(const char *opt, const char *arg, uint64_t *ret)
{
	char *end = NULL;
	double v = strtod(arg, &end);

	if (!end || *end || end == arg || v < 0 || v > 86400) {
		fprintf(stderr, "vmd daemon: %s takes seconds from 0 to 86400, not '%s'\n", opt, arg);
		return -EINVAL;
	}
	*ret = (uint64_t)(v * 1000000);
	return 0;
}

/* --max-disruptions: a whole number, 0 for no limit. */
static int parse_max_disruptions(const char *arg, unsigned *ret)
{
	size_t digits = strspn(arg, "0123456789");
	uint64_t v;

	if (digits == 0 || arg[digits] || parse_decimal_u64(arg, digits, &v) < 0 || v > 1000000) {
		fprintf(stderr,
			"vmd daemon: --max-disruptions takes a number from 0 (no limit) to 1000000, not '%s'\n",
			arg);
		return -EINVAL;
	}
	*ret = (unsigned)v;
	return 0;
}

int verb_daemon(int argc, char **argv)
{
	static const struct option options[] = {
		CLI_MANAGER_OPTIONS,
		{ "resync", required_argument, NULL, 'y' },
		{ "grace", required_argument, NULL, 'g' },
		{ "max-deletions", required_argument, NULL, 'm' },
		{ "log-target", required_argument, NULL, 'l' },
		{ "metrics-file", required_argument, NULL, 'P' },
		{ "dhcp-leases", required_argument, NULL, 'L' },
		{ "console-log-size", required_argument, NULL, 'c' },
		{ "vmm-user", required_argument, NULL, 'V' },
		{ "max-disruptions", required_argument, NULL, 'D' },
		{ "rollback", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	ManagerConfig config;
	LogTarget target = LOG_TARGET_AUTO;
	const char *vmm_user = "vmd-vm";
	_cleanup_(manager_freep) Manager *m = NULL;
	int c, r;

	manager_config_defaults(&config);
	optind = 0;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		r = cli_manager_option("daemon", c, optarg, &config);
		if (r < 0)
			return EXIT_USAGE;
		if (r > 0)
			continue;
		switch (c) {
		case 'y':
			if (parse_seconds("--resync", optarg, &config.resync_usec) < 0)
				return EXIT_USAGE;
			if (config.resync_usec < 1000000)
				config.resync_usec = 1000000;
			break;
		case 'g':
			if (parse_seconds("--grace", optarg, &config.grace_usec) < 0)
				return EXIT_USAGE;
			break;
		case 'm':
			if (deletion_limit_from_string(optarg, &config.max_deletions) < 0) {
				fprintf(stderr,
					"vmd daemon: --max-deletions takes N, P%%, N,P%% or off, not '%s'\n",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'c':
			if (parse_console_size(optarg, &config.backend_options.console_log_size) < 0)
				return EXIT_USAGE;
			break;
		case 'l':
			target = log_target_from_string(optarg);
			if (target < 0) {
				fprintf(stderr,
					"vmd daemon: unknown log target '%s'; expected auto, journal or console\n",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'L':
			config.dhcp_leases = optarg;
			break;
		case 'P':
			config.metrics_file = optarg;
			break;
		case 'V':
			vmm_user = optarg;
			break;
		case 'D':
			if (parse_max_disruptions(optarg, &config.max_disruptions) < 0)
				return EXIT_USAGE;
			break;
		case 'R':
			config.rollback = true;
			break;
		case 'h':
			daemon_help(stdout);
			return EXIT_OK;
		default:
			daemon_help(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vmd daemon: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (cli_manager_options_check("daemon", &config) < 0 ||
	    resolve_vmm_user(vmm_user, &config) < 0)
		return EXIT_USAGE;

	/*
	 * Nothing vmd makes is for others unless it says so: status.json 0640 in 0750 folders,
	 * the state dir 0700 with files 0600 (given explicitly); the umask covers the rest,
	 * such as the VMMs' sockets and consoles.
	 */
	(void)umask(077);
	log_setup(target);
	r = manager_new(&config, &m);
	if (r < 0)
		return EXIT_INVALID;
	r = manager_run(m);
	return r < 0 ? EXIT_INVALID : EXIT_OK;
}
