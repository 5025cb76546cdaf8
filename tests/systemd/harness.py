#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""vmd's package under a real systemd: a debootstrapped Debian 12 booted with systemd-nspawn.

    tests/systemd/harness.py --deb build/deb/vmd_0.1.0_amd64.deb --cache build/systemd

A minimal bookworm (debootstrap --variant=minbase, with systemd, dbus and vmd's runtime
libraries) is cached under --cache, keyed by what it includes. Each run boots it with
`systemd-nspawn --register=no --keep-unit -b --volatile=overlay` (the cached tree is never
changed), works inside with `nsenter -t PID -a`, and runs CHECKS in order, printing one line
each: "ok NAME (1.2 s)" or "not ok NAME: why". A check that fails ends the run; the ones
after it are "not ok NAME: not reached". Where nspawn cannot run here (not root, no network
to debootstrap from, no container support), it prints "SKIP: why" and exits 77.
tests/test-systemd.c runs it in make check and turns each line into a cmocka test.

The last checks run a QEMU guest (tests/guest, $VMD_GUEST, under TCG): its VMM in a scope
of its own with the limits reconciler/vm-scope.c computes (systemctl show), as vmd-vm with
no capability (/proc/PID/status), registered with
systemd-machined (machinectl), kept with its scope by a restart of vmd, by systemctl kill
vmd and by the watchdog, in a new scope (registered again) after QEMU is killed and
restarted; a second guest that fills its memory past its scope's MemoryMax is OOM-killed in
its own scope, vmd and the first run on, and it is restarted; and the first is shut down
through its power button when the container powers off. On a host of cgroup v1 the
container gets a cgroup of its own in the memory, pids, cpu and cpuacct hierarchies,
writable in it, so that its systemd sets the scopes' limits there (Container.v1_writable).

To extend it: add a function taking the Run and append it to CHECKS; its runtime packages
go in ROOTFS_PACKAGES (a new key rebuilds the cache). The container is stopped by its
nspawn pid, even when a check fails.
"""
import argparse
import ctypes
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

SUITE = "bookworm"
# systemd as PID 1, and what vmd's package depends on (dpkg -i installs no dependency).
ROOTFS_PACKAGES = [
    "systemd", "systemd-sysv", "dbus",
    "libyaml-0-2", "libjansson4", "libcurl4", "libinotifytools0", "libnl-route-3-200", "libisofs6",
    "procps",
    # systemd-machined and machinectl: vmd registers each VM (the qemu-machine check)
    "systemd-container",
    # the QEMU guest of the last checks (TCG: the container has no /dev/kvm)
    "qemu-system-x86",
]
SKIP = 77
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Fail(Exception):
    pass


class Skip(Exception):
    pass


def log(msg):
    print(f"# {msg}", flush=True)


def debian_mirror():
    """The Debian mirror this host's apt uses (deb822 or one-line sources), else Debian's."""
    if os.environ.get("VMD_DEBIAN_MIRROR"):
        return os.environ["VMD_DEBIAN_MIRROR"]
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.sources")) \
        + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for path in files:
        try:
            text = open(path).read()
        except OSError:
            continue
        for m in re.finditer(r"^\s*(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text, re.M):
            uri = m.group(1)
            if re.search(r"/debian/?$", uri):
                return uri.rstrip("/")
    return "http://deb.debian.org/debian"


def reachable(url):
    try:
        with urllib.request.urlopen(url, timeout=15) as r:
            return r.status == 200
    except Exception:
        return False


def rootfs(cache):
    """The cached bookworm tree, debootstrapped first if it is missing or its key changed."""
    mirror = debian_mirror()
    key = f"{SUITE} minbase {','.join(ROOTFS_PACKAGES)}"
    name = f"{SUITE}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    root = os.path.join(cache, name)
    if os.path.exists(os.path.join(root, ".vmd-rootfs-done")):
        log(f"root file system: {root} (cached)")
        return root
    if not reachable(f"{mirror}/dists/{SUITE}/Release"):
        raise Skip(f"no network to {mirror}: cannot debootstrap {SUITE}")
    tmp = root + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(cache, exist_ok=True)
    start = time.monotonic()
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(ROOTFS_PACKAGES)}",
           SUITE, tmp, mirror]
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0:
        raise Fail(f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    open(os.path.join(tmp, ".vmd-rootfs-done"), "w").write(key + "\n")
    # Older trees of other keys go: each is some 250 MB.
    for old in glob.glob(os.path.join(cache, f"{SUITE}-*")):
        if old != tmp:
            shutil.rmtree(old, ignore_errors=True)
    os.rename(tmp, root)
    log(f"root file system: {root} (debootstrapped from {mirror} in "
        f"{time.monotonic() - start:.1f} s)")
    return root


def repack(deb, workdir, suffix):
    """The same package with a higher version (VERSION+suffix): an upgrade to install."""
    tree = os.path.join(workdir, "repack")
    shutil.rmtree(tree, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-R", deb, tree], check=True)
    control = os.path.join(tree, "DEBIAN", "control")
    text = open(control).read()
    version = re.search(r"^Version: (\S+)$", text, re.M).group(1) + suffix
    open(control, "w").write(re.sub(r"^Version: \S+$", f"Version: {version}", text,
                                    flags=re.M))
    out = os.path.join(workdir, f"vmd_{version}.deb")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", tree, out], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.rmtree(tree)
    return out, version


def _die_with_parent():
    # The container goes with this harness, however it ends.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# The cgroup v1 controllers whose limits the container's systemd sets for a scope: memory
# (MemoryMax= as memory.limit_in_bytes), pids (TasksMax= as pids.max), cpu (CPUWeight= as
# cpu.shares, CPUQuota= as cpu.cfs_quota_us); and cpuacct, which systemd 252 wants
# writable with cpu: with cpu alone, it made no cpu cgroup of the scope (on a host that
# mounts the two apart).
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")


def v1_hierarchy(controller):
    """/sys/fs/cgroup/CONTROLLER if this host mounts it as a cgroup v1 hierarchy, else None."""
    path = f"/sys/fs/cgroup/{controller}"
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers") or \
            not os.path.exists(os.path.join(path, "cgroup.procs")):
        return None
    return path


def own_cgroup(controller):
    """This process's cgroup in a v1 hierarchy, as /proc/self/cgroup says."""
    for line in open("/proc/self/cgroup"):
        _, names, path = line.rstrip("\n").split(":", 2)
        if controller in names.split(","):
            return path
    return None


class Container:
    """One boot of the cached tree; the pids of nspawn and of the container's PID 1."""

    def __init__(self, root, workdir):
        self.root, self.workdir = root, workdir
        self.nspawn = None
        self.leader = None
        self.log_path = os.path.join(workdir, "nspawn.log")
        self.machine = f"vmd-test-{os.getpid()}"
        self.debs = os.path.join(workdir, "debs")
        self.out = os.path.join(workdir, "out")  # outlives the container's volatile tree
        # On a host of cgroup v1: the container's own cgroup in each of V1_CONTROLLERS
        # (controller: path under /sys/fs/cgroup/CONTROLLER), made for it and removed after.
        self.v1 = {}

    def v1_cgroups(self):
        """A cgroup of the container's own in each v1 hierarchy of V1_CONTROLLERS, under
        this harness's (never the hierarchy's root, which the host's own units share)."""
        for ctl in V1_CONTROLLERS:
            top, own = v1_hierarchy(ctl), own_cgroup(ctl)
            if not top or own is None:
                continue
            rel = os.path.join(own, self.machine).lstrip("/")
            os.makedirs(os.path.join(top, rel), exist_ok=True)
            self.v1[ctl] = rel

    def _enter_cgroups(self):
        """In nspawn's child, before its exec: into the container's own cgroups."""
        _die_with_parent()
        for ctl, rel in self.v1.items():
            with open(os.path.join("/sys/fs/cgroup", ctl, rel, "cgroup.procs"), "w") as f:
                f.write("0")

    def v1_writable(self):
        """The container's v1 hierarchies of V1_CONTROLLERS made writable, as a host's
        are to its systemd: nspawn mounts them read-only (only name=systemd is
        writable), so the container's systemd leaves them alone, and checks which it can
        write only when it starts (its PID 1 re-executed here). The cgroup namespace keeps
        the container within its own cgroup of each (v1_cgroups)."""
        for ctl in self.v1:
            subprocess.run(["nsenter", "-t", str(self.leader), "-m", "--", "mount", "-o",
                            "remount,bind,rw", f"/sys/fs/cgroup/{ctl}"], check=True,
                           capture_output=True)
        if self.v1:
            self.run(["systemctl", "daemon-reexec"], timeout=60)
            self.run(["systemctl", "is-system-running", "--wait"], check=False, timeout=90)
            log("cgroup v1 " + ", ".join(f"{k} (/sys/fs/cgroup/{k}/{v})"
                                         for k, v in self.v1.items())
                + ": writable in the container")

    def remove_cgroups(self):
        """The container's v1 cgroups, deepest first, once its processes are gone."""
        for ctl, rel in self.v1.items():
            top = os.path.join("/sys/fs/cgroup", ctl, rel)
            for _ in range(50):
                for d, _, _ in os.walk(top, topdown=False):
                    try:
                        os.rmdir(d)
                    except OSError:
                        pass
                if not os.path.exists(top):
                    break
                time.sleep(0.1)

    def probe(self):
        """Whether nspawn can run a container here at all: skip if not."""
        r = subprocess.run(["systemd-nspawn", "--register=no", "--keep-unit", "-q",
                            f"--machine={self.machine}-probe", "--volatile=overlay", "-D",
                            self.root, "/bin/true"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise Skip(f"systemd-nspawn cannot run a container here: {r.stderr.strip()}")

    def boot(self):
        logf = open(self.log_path, "w")
        self.nspawn = subprocess.Popen(
            ["systemd-nspawn", "--register=no", "--keep-unit", "-b", "--volatile=overlay",
             "--console=passive", f"--machine={self.machine}", f"--bind-ro={self.debs}:/mnt/debs",
             f"--bind={self.out}:/mnt/out", "-D", self.root],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            preexec_fn=self._enter_cgroups)
        deadline = time.monotonic() + 30
        while self.leader is None:
            if self.nspawn.poll() is not None:
                raise Fail(f"systemd-nspawn exited with {self.nspawn.returncode}:\n"
                           + self.console())
            if time.monotonic() > deadline:
                raise Fail("no container PID 1 under systemd-nspawn within 30 s")
            self.leader = self._find_leader()
            time.sleep(0.1)
        # nspawn's child becomes systemd by exec, and its bus comes up later still: until
        # then is-system-running answers nothing ("Failed to connect to bus").
        deadline = time.monotonic() + 90
        state, err = "", ""
        while state not in ("running", "degraded"):
            if time.monotonic() > deadline or state not in ("", "initializing", "starting"):
                raise Fail(f"the container's systemd is {state!r}:\n{err}\n"
                           + self.console())
            if self._comm() != "systemd":
                time.sleep(0.1)
                continue
            r = self.run(["systemctl", "is-system-running", "--wait"], check=False, timeout=90)
            state, err = r.stdout.strip(), r.stderr
            if not state:
                time.sleep(0.2)
        if state == "degraded":
            log("degraded: " + self.run(["systemctl", "--failed", "--no-legend"]).stdout)

    def _comm(self):
        try:
            return open(f"/proc/{self.leader}/comm").read().strip()
        except OSError:
            return None

    def _find_leader(self):
        """The child of nspawn that is PID 1 of its own pid namespace."""
        try:
            children = open(f"/proc/{self.nspawn.pid}/task/{self.nspawn.pid}/children").read()
        except OSError:
            return None
        for pid in children.split():
            try:
                status = open(f"/proc/{pid}/status").read()
            except OSError:
                continue
            m = re.search(r"^NSpid:\s+\d+\s+1$", status, re.M)
            if m:
                return int(pid)
        return None

    def run(self, argv, check=True, timeout=60, input=None):
        """argv inside the container (every namespace of its PID 1), no shell."""
        env = {"PATH": PATH, "LANG": "C.UTF-8", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0",
               "DEBIAN_FRONTEND": "noninteractive"}
        r = subprocess.run(["nsenter", "-t", str(self.leader), "-a", "--"] + argv, env=env,
                           input=input, capture_output=True, text=True, timeout=timeout,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise Fail(f"{' '.join(argv)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def write(self, path, text, mode="0644"):
        self.run(["install", "-D", "-m", mode, "/dev/stdin", path], input=text)

    def unit(self, *props):
        r = self.run(["systemctl", "show", "vmd.service"] + [f"--property={p}" for p in props])
        return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)

    def console(self):
        try:
            return open(self.log_path, errors="replace").read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        """Power the container off (SIGTERM to nspawn), by pid; SIGKILL if it lingers."""
        if not self.nspawn:
            return
        if self.nspawn.poll() is None:
            self.nspawn.terminate()
            try:
                self.nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                if self.leader:
                    try:
                        os.kill(self.leader, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.nspawn.kill()
                self.nspawn.wait()
        if self.leader:
            try:
                os.kill(self.leader, 0)
                os.kill(self.leader, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.nspawn = None


def wait_for(what, cond, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def status_of(c, name):
    """vmd status --json for one sandbox, or None."""
    r = c.run(["vmd", "status", "--json"], check=False)
    if r.returncode != 0:
        return None
    for s in json.loads(r.stdout or "[]"):
        if s.get("name") == name:
            return s
    return None


def running(c, name):
    s = status_of(c, name)
    return s if s and s.get("phase") == "Running" else None


NOOP = """# The real-systemd test's sandbox: no VMM, a record vmd keeps and adopts.
apiVersion: vmd/v1
kind: Sandbox
spec:
  backend: noop
  memory: 64Mi
"""


class Run:
    """What the checks share: the container, the packages, what they saw."""

    def __init__(self, c, deb, upgrade, upgrade_version, src):
        self.c, self.deb, self.upgrade, self.upgrade_version = c, deb, upgrade, upgrade_version
        self.src = src  # the source tree, for make install
        self.vm = None  # sandbox x's status when it first ran
        self.qemu = None  # the pid of sandbox g's QEMU
        self.scope = None  # the InvocationID of its vmd-g.scope


def check_install(t):
    c = t.c
    c.run(["dpkg", "-i", f"/mnt/debs/{os.path.basename(t.deb)}"], timeout=120)
    enabled = c.run(["systemctl", "is-enabled", "vmd.service"], check=False).stdout.strip()
    if enabled != "enabled":
        raise Fail(f"vmd.service is {enabled!r} after installation, not enabled")
    wait_for("vmd.service active after installation",
             lambda: c.unit("ActiveState")["ActiveState"] == "active")


def check_start(t):
    c = t.c
    c.run(["systemctl", "stop", "vmd.service"])
    if c.unit("ActiveState")["ActiveState"] != "inactive":
        raise Fail("vmd.service is not inactive after systemctl stop")
    c.run(["systemctl", "start", "vmd.service"], timeout=60)
    u = c.unit("ActiveState", "StatusText", "Type")
    if u["ActiveState"] != "active" or not u["StatusText"]:
        raise Fail(f"after systemctl start: {u}")
    log(f"STATUS={u['StatusText']}")


# docs/daemon.md: the unit's exposure, as test-units measures it offline; here, running.
EXPOSURE_MAX = 4.0


def check_security(t):
    """systemd-analyze security vmd, in the container, rates the running unit 4.0 or lower."""
    out = t.c.run(["systemd-analyze", "security", "--no-pager", "vmd.service"]).stdout
    m = re.search(r"Overall exposure level for vmd\.service: ([0-9.]+)", out)
    if not m:
        raise Fail(f"no exposure level in: {out}")
    log(f"exposure {m.group(1)}")
    if float(m.group(1)) > EXPOSURE_MAX:
        raise Fail(f"exposure {m.group(1)}, more than {EXPOSURE_MAX}")


def journal(c, *match):
    return c.run(["journalctl", "-u", "vmd.service", "-o", "cat", "--no-pager"] + list(match)
                 ).stdout


def check_reload(t):
    c = t.c
    before = c.unit("MainPID")["MainPID"]
    reloads = journal(c).count("reloaded: ")
    c.run(["systemctl", "reload", "vmd.service"], timeout=60)
    u = c.unit("ActiveState", "MainPID", "NRestarts")
    if u["ActiveState"] != "active" or u["MainPID"] != before or u["NRestarts"] != "0":
        raise Fail(f"after systemctl reload (MainPID was {before}): {u}")
    # It read the files again (its log may reach the journal after systemctl returns).
    wait_for("vmd's reloaded: in the journal",
             lambda: journal(c).count("reloaded: ") == reloads + 1, timeout=10)


def check_sandbox(t):
    c = t.c
    c.write("/etc/vmd/sandboxes/x.yaml", NOOP)
    t.vm = wait_for("sandbox x Running in vmd status", lambda: running(c, "x"))
    table = c.run(["vmd", "status"]).stdout
    if not re.search(r"^x\s+noop\s+Running\s+yes\s+yes\s+0\b", table, re.M):
        raise Fail(f"vmd status does not show x Running:\n{table}")


def same_vm(t, after):
    """x still runs the VM it ran at first: same start, same pid, no restart."""
    s = wait_for(f"sandbox x Running {after}", lambda: running(t.c, "x"))
    for k in ("startedAt", "pid"):
        if s.get(k) != t.vm.get(k):
            raise Fail(f"{after}: x's {k} is {s.get(k)!r}, was {t.vm.get(k)!r}")
    if s.get("restarts") != 0:
        raise Fail(f"{after}: x has {s.get('restarts')} restarts")


def check_restart(t):
    c = t.c
    before = c.unit("MainPID")["MainPID"]
    c.run(["systemctl", "restart", "vmd.service"], timeout=60)
    u = c.unit("ActiveState", "MainPID", "NRestarts")
    if u["ActiveState"] != "active" or u["MainPID"] == before:
        raise Fail(f"after systemctl restart (MainPID was {before}): {u}")
    same_vm(t, "after systemctl restart vmd")


def check_upgrade(t):
    c = t.c
    before = c.unit("MainPID")["MainPID"]
    c.run(["dpkg", "-i", f"/mnt/debs/{os.path.basename(t.upgrade)}"], timeout=120)
    v = c.run(["dpkg-query", "-W", "-f=${Version}", "vmd"]).stdout
    if v != t.upgrade_version:
        raise Fail(f"vmd {v} installed after the upgrade to {t.upgrade_version}")
    u = wait_for("vmd.service active after the upgrade",
                 lambda: (lambda u: u if u["ActiveState"] == "active" else None)(
                     c.unit("ActiveState", "MainPID")))
    if u["MainPID"] == before:
        raise Fail("the upgrade did not restart vmd: the old binary runs on")
    same_vm(t, "after the package's upgrade")


def check_journal(t):
    out = journal(t.c, "VMD_SANDBOX=x")
    story = ["start: spec.state is running", "re-adopted its running VM"]
    for line in story:
        if line not in out:
            raise Fail(f"no '{line}' in journalctl -u vmd VMD_SANDBOX=x:\n{out}")
    # One start, then one adoption by each new vmd: the restart and the upgrade.
    if out.count("start: spec.state is running") != 1 or out.count("re-adopted") != 2:
        raise Fail(f"journalctl -u vmd VMD_SANDBOX=x tells another story:\n{out}")


def check_remove(t):
    c = t.c
    r = c.run(["dpkg", "-r", "vmd"], timeout=120)
    if "these keep running, unmanaged: x" not in r.stderr:
        raise Fail(f"dpkg -r vmd did not say which VMs keep running:\n{r.stdout}{r.stderr}")
    if c.run(["systemctl", "is-active", "vmd.service"], check=False).stdout.strip() == "active":
        raise Fail("vmd.service still active after dpkg -r vmd")
    for path in ("/run/vmd/x/noop.json", "/var/lib/vmd", "/etc/vmd/sandboxes/x.yaml"):
        if c.run(["test", "-e", path], check=False).returncode != 0:
            raise Fail(f"dpkg -r vmd removed {path}")
    # Installed again, vmd adopts the VM it left.
    c.run(["dpkg", "-i", f"/mnt/debs/{os.path.basename(t.upgrade)}"], timeout=120)
    same_vm(t, "after removal and installation again")


def check_purge(t):
    c = t.c
    c.run(["dpkg", "-P", "vmd"], timeout=120)
    if c.run(["test", "-e", "/var/lib/vmd"], check=False).returncode == 0:
        raise Fail("dpkg -P vmd left /var/lib/vmd")
    if c.run(["test", "-e", "/etc/vmd/sandboxes/x.yaml"], check=False).returncode != 0:
        raise Fail("dpkg -P vmd removed the operator's /etc/vmd/sandboxes/x.yaml")
    if c.run(["systemctl", "cat", "vmd.service"], check=False).returncode == 0:
        raise Fail("vmd.service still known to systemd after purge")


def check_make_install(t):
    """The README's other way: make install under /usr/local, systemctl enable --now vmd."""
    c, work = t.c, os.path.dirname(os.path.dirname(t.upgrade))
    debroot, dest = os.path.join(work, "debroot"), os.path.join(work, "debs", "local")
    subprocess.run(["dpkg-deb", "-x", t.deb, debroot], check=True)
    r = subprocess.run(["make", "-s", "--no-print-directory", "-C", t.src, "install",
                        f"DESTDIR={dest}", f"VMD_BINARY={debroot}/usr/bin/vmd"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise Fail(f"make install: {r.stdout}{r.stderr}")
    c.run(["cp", "-a", "/mnt/debs/local/.", "/"])
    c.run(["systemctl", "daemon-reload"])
    c.run(["systemctl", "enable", "--now", "vmd.service"], timeout=60)
    u = c.unit("ActiveState", "FragmentPath", "ExecStart")
    if u["ActiveState"] != "active" or u["FragmentPath"] != \
            "/usr/local/lib/systemd/system/vmd.service" or "/usr/local/bin/vmd" not in u["ExecStart"]:
        raise Fail(f"after make install and systemctl enable --now vmd: {u}")
    # The VM the removed package left is adopted by this vmd too.
    same_vm(t, "after make install")


GUEST = """# The real-systemd test's QEMU guest (tests/guest), under TCG.
apiVersion: vmd/v1
kind: Sandbox
spec:
  backend: qemu
  memory: 192Mi
  kernel: /mnt/debs/guest/vmlinux
  initrd: /mnt/debs/guest/initramfs.cpio
  cmdline: console=ttyS0 quiet
  stopTimeout: 60s
  resources:
    cpuWeight: 200
    cpuQuota: 400%
    ioWeight: 50
"""


def is_ready(s):
    return s and any(c.get("type") == "Ready" and c.get("status") == "True"
                     for c in s.get("conditions", []))


def guest_pid(t):
    s = wait_for("sandbox g Running and Ready",
                 lambda: (lambda s: s if is_ready(s) else None)(running(t.c, "g")), timeout=120)
    return s["pid"]


def alive(c, pid):
    return c.run(["test", "-d", f"/proc/{pid}"], check=False).returncode == 0


MiB = 1 << 20
# GUEST's scope as reconciler/vm-scope.c computes it: 192 MiB, 1 vCPU, its spec.resources.
GUEST_SCOPE = {
    "MemoryMax": str(192 * MiB + 1024 * MiB + 192 * MiB // 8),  # guest + 1 GiB + guest/8
    "TasksMax": str(128 + 4 * 1),
    "CPUWeight": "200",
    "CPUQuotaPerSecUSec": "4s",
    "IOWeight": "50",
    "DevicePolicy": "closed",
    "Slice": "machine.slice",
    "ActiveState": "active",
}


def scope(c, *props, unit="vmd-g.scope"):
    r = c.run(["systemctl", "show", unit] + [f"--property={p}" for p in props])
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def in_scope(c, pid):
    """pid runs in vmd-g.scope, which has GUEST_SCOPE's limits; its InvocationID."""
    cg = c.run(["cat", f"/proc/{pid}/cgroup"]).stdout
    if "/machine.slice/vmd-g.scope" not in cg:
        raise Fail(f"QEMU (pid {pid}) is not in vmd-g.scope: {cg}")
    u = scope(c, *GUEST_SCOPE, "DeviceAllow", "InvocationID", "MainPID")
    for k, v in GUEST_SCOPE.items():
        if u.get(k) != v:
            raise Fail(f"vmd-g.scope's {k} is {u.get(k)!r}, not {v!r}: {u}")
    if "/dev/kvm rw" not in u.get("DeviceAllow", ""):
        raise Fail(f"vmd-g.scope's DeviceAllow has no /dev/kvm rw: {u}")
    kernel_limits(c, "vmd-g.scope", GUEST_SCOPE)
    return u["InvocationID"]


# In force, not only said: the kernel's own limits of a scope's cgroup, as systemd writes
# them for GUEST_SCOPE's properties: on cgroup v2, and on v1 (systemd maps MemoryMax= to
# memory.limit_in_bytes, TasksMax= to pids.max, CPUWeight= to cpu.shares at 1024 per 100,
# CPUQuota= to cpu.cfs_quota_us of its default 100 ms period).
V2_FILES = (("memory.max", "MemoryMax", int), ("pids.max", "TasksMax", int),
            ("cpu.weight", "CPUWeight", int))
V1_FILES = (("memory", "memory.limit_in_bytes", "MemoryMax", int),
            ("pids", "pids.max", "TasksMax", int),
            ("cpu", "cpu.shares", "CPUWeight", lambda w: int(w) * 1024 // 100),
            ("cpu", "cpu.cfs_quota_us", "CPUQuotaPerSecUSec",
             lambda q: int(q.rstrip("s")) * 100000))


def kernel_limits(c, unit, want):
    """unit's cgroup has want's limits in the kernel: v2's files where the container has
    the v2 controllers, else v1's in each hierarchy the container can write (Container.v1);
    said plainly where it has neither."""
    controllers = c.run(["cat", "/sys/fs/cgroup/cgroup.controllers"], check=False).stdout.split()
    if {"memory", "pids", "cpu"} <= set(controllers):
        files = [(f"/sys/fs/cgroup/machine.slice/{unit}/{f}", str(conv(want[p])))
                 for f, p, conv in V2_FILES]
    else:
        files = [(f"/sys/fs/cgroup/{ctl}/machine.slice/{unit}/{f}", str(conv(want[p])))
                 for ctl, f, p, conv in V1_FILES if ctl in c.v1]
    if not files:
        log(f"neither cgroup v2 controllers ({controllers}) nor writable v1 hierarchies in the "
            "container: the scope's limits are checked as systemd has them, not in the kernel")
    for path, value in files:
        got = c.run(["cat", path], check=False).stdout.strip()
        if got != value:
            raise Fail(f"{path} is {got!r}, not {value!r}")


def machine(c):
    """vmd-g as systemd-machined lists it: its class, service, leader and unit; or None."""
    r = c.run(["machinectl", "show", "vmd-g", "--property=Class", "--property=Service",
               "--property=Leader", "--property=Unit"], check=False)
    if r.returncode != 0:
        return None
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def registered(c, pid):
    want = {"Class": "vm", "Service": "vmd", "Leader": str(pid), "Unit": "vmd-g.scope"}
    try:
        m = wait_for("vmd-g in systemd-machined", lambda: (lambda m: m if m == want else None)(
            machine(c)), timeout=10)
    except Fail as e:
        raise Fail(f"{e}: machinectl show vmd-g says {machine(c)}, not {want}")
    listed = c.run(["machinectl", "list", "--no-legend"]).stdout
    if not re.search(r"^vmd-g\s+vm\s+vmd\b", listed, re.M):
        raise Fail(f"machinectl list does not list vmd-g (class vm, service vmd):\n{listed}")
    return m


def check_qemu_scope(t):
    """A QEMU guest's VMM runs in vmd-g.scope of machine.slice, with its limits."""
    c = t.c
    c.write("/etc/vmd/sandboxes/g.yaml", GUEST)
    t.qemu = guest_pid(t)
    t.scope = in_scope(c, t.qemu)


def check_qemu_user(t):
    """The guest's QEMU runs as vmd-vm (the unit says no --vmm-user), with no capability."""
    c = t.c
    uid = c.run(["id", "-u", "vmd-vm"]).stdout.strip()
    gid = c.run(["id", "-g", "vmd-vm"]).stdout.strip()
    status = c.run(["cat", f"/proc/{t.qemu}/status"]).stdout
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    want = {"Uid": "\t".join([uid] * 4), "Gid": "\t".join([gid] * 4),
            "CapEff": "0000000000000000", "CapPrm": "0000000000000000", "NoNewPrivs": "1"}
    for k, v in want.items():
        if fields.get(k, "").strip() != v:
            raise Fail(f"QEMU (pid {t.qemu}) has {k} {fields.get(k, '').strip()!r}, not {v!r}")


def check_qemu_machine(t):
    """systemd-machined knows the guest: machinectl list shows vmd-g, class vm."""
    registered(t.c, t.qemu)


def check_qemu_restart(t):
    """systemctl restart vmd: the same QEMU, 0 restarts, no left-over process warning."""
    c = t.c
    since = c.run(["date", "+%Y-%m-%d %H:%M:%S"]).stdout.strip()
    c.run(["systemctl", "restart", "vmd.service"], timeout=60)
    pid = guest_pid(t)
    s = status_of(c, "g")
    if pid != t.qemu or s.get("restarts") != 0:
        raise Fail(f"after systemctl restart vmd: g's pid {pid} (was {t.qemu}), {s}")
    out = c.run(["journalctl", "--no-pager", "--since", since]).stdout
    if "left-over process" in out:
        raise Fail(f"systemd warned of a left-over process:\n{out}")
    if in_scope(c, pid) != t.scope:
        raise Fail("after systemctl restart vmd: vmd-g.scope is another scope")
    registered(c, pid)


def check_qemu_crash(t):
    """A QEMU killed is restarted (restartPolicy) in a new vmd-g.scope, registered again."""
    booted = readies(t.c)
    t.c.run(["kill", "-KILL", str(t.qemu)])
    restarted(t, booted)


def restarted(t, booted):
    """g's QEMU, gone, restarted in a new vmd-g.scope with its limits, registered, up
    (its console's VMD-GUEST-READY lines more than booted)."""
    c = t.c
    pid = wait_for("a new QEMU for g", lambda: (lambda p: p if p != t.qemu else None)(
        guest_pid(t)), timeout=120)
    invocation = wait_for("vmd-g.scope for the new QEMU", lambda: (
        lambda u: u["InvocationID"] if "/vmd-g.scope" in c.run(
            ["cat", f"/proc/{pid}/cgroup"]).stdout else None)(scope(c, "InvocationID")))
    if invocation == t.scope or in_scope(c, pid) == t.scope:
        raise Fail("the restarted QEMU runs in the crashed one's scope")
    registered(c, pid)
    t.qemu, t.scope = pid, invocation
    # Up, as the first was by the poweroff check: a guest still booting has no power button.
    wait_for("the new guest's VMD-GUEST-READY", lambda: readies(c) > booted, timeout=120)


def readies(c):
    """How many boots of g's guest came up: its console's VMD-GUEST-READY lines."""
    r = c.run(["sh", "-c", "cat /run/vmd/g/console.log.1 /run/vmd/g/console.log 2>/dev/null"],
              check=False)
    return r.stdout.count("VMD-GUEST-READY")


def check_kill(t):
    """systemctl kill vmd signals vmd alone: the guest runs on, and the next vmd adopts it."""
    c = t.c
    c.run(["systemctl", "kill", "vmd.service"])
    wait_for("vmd.service to stop", lambda: c.run(
        ["systemctl", "is-active", "vmd.service"], check=False).stdout.strip() != "active")
    if not alive(c, t.qemu):
        raise Fail("systemctl kill vmd killed the guest's QEMU")
    c.run(["systemctl", "start", "vmd.service"], timeout=60)
    if guest_pid(t) != t.qemu:
        raise Fail("the guest was not adopted after systemctl kill vmd")


def check_watchdog(t):
    """A vmd that stops answering (SIGSTOP) is restarted by the watchdog; the guest stays."""
    c = t.c
    c.write("/etc/systemd/system/vmd.service.d/watchdog.conf",
            "[Service]\nWatchdogSec=2s\nTimeoutAbortSec=2s\n")
    c.run(["systemctl", "daemon-reload"])
    c.run(["systemctl", "restart", "vmd.service"], timeout=60)
    u = c.unit("MainPID", "NRestarts")
    c.run(["kill", "-STOP", u["MainPID"]])
    wait_for("the watchdog to restart vmd", lambda: (lambda v: v if v["ActiveState"] == "active"
                                                    and v["MainPID"] not in ("0", u["MainPID"])
                                                    else None)(
        c.unit("ActiveState", "MainPID", "NRestarts")), timeout=60)
    if int(c.unit("NRestarts")["NRestarts"]) <= int(u["NRestarts"]):
        raise Fail("vmd was not restarted by systemd (NRestarts did not grow)")
    if guest_pid(t) != t.qemu:
        raise Fail("the guest was not adopted after the watchdog restarted vmd")
    c.run(["rm", "/etc/systemd/system/vmd.service.d/watchdog.conf"])
    c.run(["systemctl", "daemon-reload"])


def copy_of(c, name):
    """A file the container copied into its out dir, or "(no copy)"."""
    try:
        return open(os.path.join(c.out, name), errors="replace").read()
    except OSError:
        return "(no copy)"


# The guest of the qemu-oom check: 512 MiB, of which it touches 80% (tests/guest/init's
# vmd.fill), some 410 MiB, and QEMU's RSS with it.
OOM_GUEST = GUEST.replace("memory: 192Mi", "memory: 512Mi").replace(
    "cmdline: console=ttyS0 quiet", "cmdline: console=ttyS0 quiet vmd.fill=80")
# vmd's MemoryMax= of it (reconciler/vm-scope.c), and the lower one an administrator gives
# vmd-m.scope in a drop-in, which its VMM's RSS passes as the guest fills its memory: with
# vmd's own, 1 GiB above the guest's RAM (QEMU's TCG cache), the guest cannot pass it.
OOM_SCOPE_MAX = 512 * MiB + 1024 * MiB + 512 * MiB // 8
OOM_DROPIN = "/etc/systemd/system/vmd-m.scope.d/50-oom.conf"


def oom_kills(c, unit):
    """The kernel's OOM kills of a QEMU in the container's unit's cgroup (its log, read on
    the host: it names the memory cgroup where the limit was hit)."""
    root = c.v1.get("memory")
    memcg = f"oom_memcg=/{root}/machine.slice/{unit}," if root is not None else f"/{unit},"
    log_ = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    return [line for line in log_.splitlines() if "oom-kill:" in line and memcg in line
            and "task=qemu-system-x86" in line]


def console_of(c, name):
    return c.run(["sh", "-c", f"cat /run/vmd/{name}/console.log.1 /run/vmd/{name}/console.log "
                  "2>/dev/null"], check=False).stdout


def check_qemu_oom(t):
    """A guest whose VMM passes its scope's MemoryMax is OOM-killed in its own scope: vmd
    (same pid) and the other guest (g, same QEMU) run on, and restartPolicy starts it again
    (a new QEMU, Running and Ready) in a new scope with vmd's own limit."""
    c = t.c
    if "memory" not in c.v1 and "memory" not in c.run(
            ["cat", "/sys/fs/cgroup/cgroup.controllers"], check=False).stdout.split():
        raise Fail("the container has no memory controller to confine a guest in (neither "
                   "cgroup v2's nor a writable v1 hierarchy)")
    vmd = c.unit("MainPID")["MainPID"]
    before = len(oom_kills(c, "vmd-m.scope"))
    c.write(OOM_DROPIN, "[Scope]\nMemoryMax=320M\n")
    c.run(["systemctl", "daemon-reload"])
    try:
        c.write("/etc/vmd/sandboxes/m.yaml", OOM_GUEST)
        first = wait_for("sandbox m Running", lambda: running(c, "m"), timeout=120)["pid"]
        try:
            wait_for("vmd-m.scope with the drop-in's MemoryMax", lambda: scope(
                c, "MemoryMax", unit="vmd-m.scope").get("MemoryMax") == str(320 * MiB))
        except Fail as e:
            raise Fail(f"{e}: {scope(c, 'MemoryMax', 'ActiveState', unit='vmd-m.scope')}")
        kills = wait_for("the kernel's OOM kill of m's QEMU in vmd-m.scope", lambda: (
            lambda k: k if len(k) > before else None)(oom_kills(c, "vmd-m.scope")), timeout=180)
        log(kills[-1])
        if "VMD-GUEST-FILL 80%" not in console_of(c, "m"):
            raise Fail("m's guest was killed before it filled its memory:\n"
                       + console_of(c, "m")[-1500:])
        u = c.unit("ActiveState", "MainPID")
        if u != {"ActiveState": "active", "MainPID": vmd}:
            raise Fail(f"vmd after m's OOM kill: {u} (its pid was {vmd})")
        if not alive(c, t.qemu) or guest_pid(t) != t.qemu:
            raise Fail(f"g's QEMU (pid {t.qemu}) did not survive m's OOM kill")
        try:
            wait_for("vmd's m: VM exited with status 137 (SIGKILL)",
                     lambda: "m: VM exited with status 137" in journal(c))
        except Fail as e:
            raise Fail(f"{e}:\n{journal(c)[-2000:]}")
    finally:
        c.run(["rm", "-f", OOM_DROPIN])
        c.run(["systemctl", "daemon-reload"])
    # Restarted (maybe more than once, while the drop-in was still there): a new QEMU in a
    # scope of vmd's limit, where the same guest fills its memory and runs on.
    wait_for("m's guest restarted and filled", lambda: "VMD-GUEST-FILLED" in console_of(c, "m"),
             timeout=180)
    s = wait_for("m Running and Ready", lambda: (lambda s: s if is_ready(s) else None)(
        running(c, "m")), timeout=60)
    if s["pid"] == first or s.get("restarts", 0) < 1:
        raise Fail(f"m was not restarted after its OOM kill: {s} (its first pid {first})")
    kernel_limits(c, "vmd-m.scope", {**GUEST_SCOPE, "MemoryMax": str(OOM_SCOPE_MAX)})
    now = running(c, "m")
    if not alive(c, s["pid"]) or not now or now["pid"] != s["pid"]:
        raise Fail(f"m's restarted QEMU (pid {s['pid']}) did not run on within vmd's own "
                   f"limit: {now}")
    c.run(["rm", "/etc/vmd/sandboxes/m.yaml"])
    wait_for("m gone", lambda: status_of(c, "m") is None and not alive(c, s["pid"]), timeout=90)


def check_poweroff(t):
    """Powering the host off shuts the guest down (its power button) before the end."""
    c = t.c
    c.run(["sh", "-c", "tail -n +1 -F /run/vmd/g/console.log > /mnt/out/console.copy 2>/dev/null &"])
    c.run(["sh", "-c", "journalctl -f -n 0 -o short-monotonic > /mnt/out/journal.copy 2>&1 &"])
    c.run(["systemctl", "poweroff"], check=False)
    try:
        c.nspawn.wait(timeout=180)
    except subprocess.TimeoutExpired:
        seen, journal = copy_of(c, "console.copy"), copy_of(c, "journal.copy")
        raise Fail("the container did not power off within 180 s; the guest's console ended with:\n"
                   + seen[-1500:] + "\nand the container's journal with:\n" + journal[-6000:])
    seen = open(os.path.join(c.out, "console.copy"), errors="replace").read()
    for line in ("VMD-GUEST-POWER-BUTTON", "VMD-GUEST-POWEROFF"):
        if line not in seen:
            # What vmd made of the SIGTERM ("the host shuts down", "VMs keep running").
            journal = copy_of(c, "journal.copy")
            raise Fail(f"the guest's console shows no {line} at the host's poweroff:\n"
                       + seen[-2000:] + "\nand the container's journal:\n"
                       + "\n".join(l for l in journal.splitlines() if "vmd" in l)[-4000:])


CHECKS = [
    ("install", check_install),
    ("start", check_start),
    ("security", check_security),
    ("reload", check_reload),
    ("sandbox", check_sandbox),
    ("restart", check_restart),
    ("upgrade", check_upgrade),
    ("journal", check_journal),
    ("remove", check_remove),
    ("purge", check_purge),
    ("make-install", check_make_install),
    ("qemu-scope", check_qemu_scope),
    ("qemu-user", check_qemu_user),
    ("qemu-machine", check_qemu_machine),
    ("qemu-restart", check_qemu_restart),
    ("kill", check_kill),
    ("watchdog", check_watchdog),
    ("qemu-crash", check_qemu_crash),
    ("qemu-oom", check_qemu_oom),
    ("poweroff", check_poweroff),  # the last: the container is gone after it
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deb", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--src", default=os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), help="the source tree (make install)")
    ap.add_argument("--list", action="store_true", help="print the checks' names")
    a = ap.parse_args()
    if a.list:
        print("\n".join(n for n, _ in CHECKS))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    start = time.monotonic()
    workdir = os.path.join(a.cache, "work")
    c = None
    try:
        if os.geteuid() != 0:
            raise Skip("systemd-nspawn needs root")
        for tool in ("debootstrap", "systemd-nspawn", "nsenter", "dpkg-deb"):
            if not shutil.which(tool):
                raise Fail(f"no {tool} (scripts/install-deps installs it)")
        root = rootfs(os.path.abspath(a.cache))
        shutil.rmtree(workdir, ignore_errors=True)
        os.makedirs(os.path.join(workdir, "debs"))
        os.makedirs(os.path.join(workdir, "out"))
        guest = os.environ.get("VMD_GUEST", os.path.join(a.src, "build", "guest"))
        if not os.path.exists(os.path.join(guest, "vmlinux")):
            raise Fail(f"no test guest in {guest} (make build/guest/vmlinux)")
        shutil.copytree(guest, os.path.join(workdir, "debs", "guest"))
        deb = shutil.copy(a.deb, os.path.join(workdir, "debs"))
        upgrade, version = repack(a.deb, os.path.join(workdir, "debs"), "+upgrade1")
        c = Container(root, workdir)
        c.probe()
        c.v1_cgroups()
        boot = time.monotonic()
        c.boot()
        c.v1_writable()
        log(f"booted in {time.monotonic() - boot:.1f} s")
        t = Run(c, deb, upgrade, version, a.src)
        failed = None
        for name, fn in CHECKS:
            if failed:
                print(f"not ok {name}: not reached ({failed} failed)", flush=True)
                continue
            t0 = time.monotonic()
            try:
                fn(t)
                print(f"ok {name} ({time.monotonic() - t0:.1f} s)", flush=True)
            except (Fail, subprocess.SubprocessError) as e:
                failed = name
                msg = str(e).replace("\n", "\n# ")
                print(f"not ok {name}: {msg}", flush=True)
                journal = c.run(["journalctl", "-u", "vmd.service", "--no-pager", "-n", "40"],
                                check=False).stdout
                log("journalctl -u vmd:\n# " + journal.replace("\n", "\n# "))
        return 1 if failed else 0
    except Skip as e:
        print(f"SKIP: {e}", flush=True)
        return SKIP
    except Fail as e:
        print(f"not ok setup: {e}", flush=True)
        return 1
    finally:
        if c:
            c.stop()
            c.remove_cgroups()
        shutil.rmtree(workdir, ignore_errors=True)
        log(f"took {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
