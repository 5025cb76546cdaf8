#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""make bench, QEMU part: vmd against a plain launcher of the very same QEMU command.

For N = 1 and N = 8 guests, side by side in one run:
  vmd:  sandbox files renamed into the watched directory -> every status.json says
        Running (vmd got QMP answering) -> every console shows VMD-GUEST-READY;
  raw:  the same argv (read from vmd's own QEMU) started directly by this script, all N
        at once, with all N QMP handshakes driven concurrently from one selectors loop:
        greeting, qmp_capabilities, query-status answered, as vmd has it answer before
        it calls a VM running; if the argv has -S, cont right after, as vmd sends it, and
        QMP-ready is when cont is answered -> every console shows VMD-GUEST-READY.
Under TCG the first command waits for the vCPU thread to let go of QEMU's big lock, so
QMP-ready is some 50 ms after the greeting: a baseline without commands would flatter.
A raw side that waited for each guest in turn would serialise the N handshakes and hide
any serialisation in vmd, hence the one loop.

Each figure is REPS rounds (default 7), vmd and raw alternating; printed as the median
and the min-max of each side, and the ratio of the medians; plus vmd's RSS with 8 VMs.
They are figures, not tests: the machine is shared and noisy. Every QEMU either side
started is killed by its pid when a round ends, however it ends (Ctrl-C included): this
script is the subreaper of vmd's QEMUs, so none outlives it.

Usage: bench-qemu.py VMD GUEST_DIR [REPS]
"""
import ctypes
import errno
import json
import os
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

VMD, GUEST = sys.argv[1], os.path.abspath(sys.argv[2])
REPS = int(sys.argv[3]) if len(sys.argv) > 3 else 7
TIMEOUT = 180.0
PR_SET_CHILD_SUBREAPER = 36
SPEC = """apiVersion: vmd/v1
kind: Sandbox
spec:
  backend: qemu
  memory: 192Mi
  kernel: {guest}/vmlinux
  initrd: {guest}/initramfs.cpio
  cmdline: console=ttyS0 quiet
"""
TARGETS = {"qmp": 1.25, "guest": 1.02}


def now():
    return time.monotonic()


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


class Console:
    """A console log, read as it grows: whether VMD-GUEST-READY is in it yet."""

    def __init__(self, path):
        self.path, self.seen, self.tail = path, 0, b""

    def ready(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.seen)
                data = f.read()
        except OSError:
            return False
        self.seen += len(data)
        self.tail = (self.tail + data)[-64:]
        return b"VMD-GUEST-READY" in self.tail or b"VMD-GUEST-READY" in data


def wait_all(t0, conds):
    """Poll every millisecond; return when each condition first held, counted from t0."""
    done = {}
    while len(done) < len(conds):
        for key, cond in conds.items():
            if key not in done and cond():
                done[key] = now() - t0
        if now() - t0 > TIMEOUT:
            raise SystemExit("bench-qemu: timed out waiting for %s" % sorted(set(conds) - set(done)))
        time.sleep(0.001)
    return done


# Processes: every QEMU is found and killed by its pid


def children_of(ppid):
    """The pids whose parent is ppid (from /proc/*/stat)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = read("/proc/%s/stat" % name)
        if stat:
            fields = stat[stat.rfind(b")") + 2:].split()
            if len(fields) > 1 and int(fields[1]) == ppid:
                out.append(int(name))
    return out


def is_qemu(pid):
    return b"qemu" in read("/proc/%d/cmdline" % pid)


def kill_qemus(pids):
    """SIGKILL each of pids that is still a QEMU, and reap it (a child of this script)."""
    for pid in pids:
        if is_qemu(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            while os.path.exists("/proc/%d" % pid) and is_qemu(pid):
                time.sleep(0.01)


def recorded_pids(run):
    """The pid of each QEMU vmd recorded under run."""
    pids = []
    for name in os.listdir(run) if os.path.isdir(run) else []:
        try:
            with open(os.path.join(run, name, "vm.json")) as f:
                pids.append(json.load(f)["pid"])
        except (OSError, ValueError, KeyError):
            pass
    return pids


class NoInterrupt:
    """Ctrl-C waits while the QEMUs of a round are killed; it is raised again after."""

    def __enter__(self):
        self.hit = False
        self.old = signal.signal(signal.SIGINT, lambda *_: setattr(self, "hit", True))
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.old)
        if self.hit and exc[0] is None:
            raise KeyboardInterrupt


def rss_kib(pid):
    for line in read("/proc/%d/status" % pid).decode().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# The vmd side


def vmd_round(n):
    """One round through vmd: (QMP-ready, guest-ready, RSS KiB, argv of one QEMU, its dir)."""
    top = tempfile.mkdtemp(prefix="vmd-bench-")
    sb, run, state = (os.path.join(top, d) for d in ("sandboxes", "run", "state"))
    os.mkdir(sb)
    notify = os.path.join(top, "notify")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(notify)
    env = dict(os.environ, NOTIFY_SOCKET=notify)
    daemon = subprocess.Popen(
        [VMD, "daemon", "--sandboxes", sb, "--run-dir", run, "--state-dir", state,
         "--qemu-accel", "tcg", "--log-target", "console", "--vmm-user", "root", "--resync", "3600"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ns.settimeout(30)
        while b"READY=1" not in ns.recv(4096):
            pass
        ns.setblocking(False)
        names = ["b%d" % i for i in range(n)]
        for name in names:
            with open(os.path.join(sb, ".%s.tmp" % name), "w") as f:
                f.write(SPEC.format(guest=GUEST))

        def running(name):
            return b'"phase": "Running"' in read(os.path.join(run, name, "status.json"))

        def drain():
            try:
                while ns.recv(4096):
                    pass
            except BlockingIOError:
                pass
            return False

        consoles = {name: Console(os.path.join(run, name, "console.log")) for name in names}
        conds = {("qmp", name): (lambda name=name: drain() or running(name)) for name in names}
        conds.update({("guest", name): consoles[name].ready for name in names})
        t0 = now()
        for name in names:
            os.rename(os.path.join(sb, ".%s.tmp" % name), os.path.join(sb, name + ".yaml"))
        done = wait_all(t0, conds)
        rss = rss_kib(daemon.pid)
        with open(os.path.join(run, names[0], "vm.json")) as f:
            pid = json.load(f)["pid"]
        argv = read("/proc/%d/cmdline" % pid).split(b"\0")[:-1]
        return (max(v for k, v in done.items() if k[0] == "qmp"),
                max(v for k, v in done.items() if k[0] == "guest"), rss,
                [a.decode() for a in argv], os.path.join(run, names[0]))
    finally:
        with NoInterrupt():
            # vmd leaves its VMs running when it stops; they come to this script then.
            qemus = set(children_of(daemon.pid)) | set(recorded_pids(run))
            daemon.send_signal(signal.SIGTERM)
            daemon.wait()
            qemus |= {p for p in children_of(os.getpid()) if is_qemu(p)}
            kill_qemus(sorted(qemus))
            ns.close()
            shutil.rmtree(top, ignore_errors=True)


# The raw side: N QEMUs at once, their QMP handshakes in one loop


class RawQmp:
    """One QEMU's QMP handshake, as vmd does it, driven by events."""

    STEPS = ("greeting", "qmp_capabilities", "query-status", "cont")

    def __init__(self, path, with_cont):
        self.path, self.sock, self.buf = path, None, b""
        self.steps = list(self.STEPS if with_cont else self.STEPS[:-1])
        self.next_id = 0

    def try_connect(self, sel):
        """Connect once the socket is there; False while it is not (yet)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            s.connect(self.path)
        except OSError as e:
            s.close()
            if e.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN):
                return False
            raise
        self.sock = s
        sel.register(s, selectors.EVENT_READ, self)
        return True

    def on_readable(self):
        """Take what came; True once the last step is answered."""
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return False
        if not data:
            raise SystemExit("bench-qemu: %s closed during the handshake" % self.path)
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            msg = json.loads(line)
            if "event" in msg:
                continue
            if self.steps[0] == "greeting":
                if "QMP" not in msg:
                    continue
            elif msg.get("id") != self.next_id:
                continue
            elif "return" not in msg:
                raise SystemExit("bench-qemu: %s: %s failed: %s" % (self.path, self.steps[0], msg))
            self.steps.pop(0)
            if not self.steps:
                return True
            self.next_id += 1
            self.sock.sendall(b'{"execute": "%s", "id": %d}\n' % (self.steps[0].encode(), self.next_id))
        return False

    def close(self):
        if self.sock:
            self.sock.close()


def raw_round(n, argv, vm_dir):
    """The same QEMU command, started directly, n at once: (QMP-ready, guest-ready)."""
    top = tempfile.mkdtemp(prefix="vmd-bench-raw-")
    procs, qmps = [], []
    sel = selectors.DefaultSelector()
    try:
        dirs = [os.path.join(top, "r%d" % i) for i in range(n)]
        for d in dirs:
            os.mkdir(d)
        with_cont = "-S" in argv
        t0 = now()
        for d in dirs:
            a = [x.replace(vm_dir.replace(",", ",,"), d.replace(",", ",,")).replace(vm_dir, d) for x in argv]
            # vmd hands QEMU its serial socket as fd 4 and logs it itself; started
            # directly, QEMU writes the same console to a file instead.
            a = ["file,id=vmd-serial,path=%s" % os.path.join(d, "console.log").replace(",", ",,")
                 if x.startswith("socket,id=vmd-serial,") else x for x in a]
            procs.append(subprocess.Popen(a, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
        qmps = [RawQmp(os.path.join(d, "qmp.sock"), with_cont) for d in dirs]
        consoles = [Console(os.path.join(d, "console.log")) for d in dirs]
        unconnected, qmp_done, guest_done = set(range(n)), {}, {}
        while len(qmp_done) < n or len(guest_done) < n:
            for i in list(unconnected):
                if qmps[i].try_connect(sel):
                    unconnected.discard(i)
            for key, _ in sel.select(0.001):
                q = key.data
                if q.on_readable():
                    qmp_done[qmps.index(q)] = now() - t0
                    sel.unregister(q.sock)
            for i, c in enumerate(consoles):
                if i not in guest_done and c.ready():
                    guest_done[i] = now() - t0
            if now() - t0 > TIMEOUT:
                raise SystemExit("bench-qemu: raw round timed out")
        return max(qmp_done.values()), max(guest_done.values())
    finally:
        with NoInterrupt():
            for q in qmps:
                q.close()
            sel.close()
            kill_qemus([p.pid for p in procs])
            shutil.rmtree(top, ignore_errors=True)


def summary(xs):
    return "%6.0f ms (%4.0f-%4.0f)" % (statistics.median(xs) * 1000, min(xs) * 1000, max(xs) * 1000)


def become_subreaper(name):
    """vmd's QEMUs outlive vmd by design; they must come here, not to init, to be reaped."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit("%s: prctl(PR_SET_CHILD_SUBREAPER): %s" % (name, os.strerror(ctypes.get_errno())))


def main():
    become_subreaper("bench-qemu")
    print("QEMU under TCG, the test guest; %d rounds per figure, vmd and raw alternating" % REPS)
    print("median (min-max) of each side; ratio of the medians")
    print("%-3s %-27s %-22s %-22s %6s %7s" % ("N", "figure", "vmd", "raw", "ratio", "target"))
    for n in (1, 8):
        v = {"qmp": [], "guest": []}
        r = {"qmp": [], "guest": []}
        rss = []
        for _ in range(REPS):
            q, g, kib, argv, vm_dir = vmd_round(n)
            v["qmp"].append(q)
            v["guest"].append(g)
            rss.append(kib)
            q, g = raw_round(n, argv, vm_dir)
            r["qmp"].append(q)
            r["guest"].append(g)
        for key, figure in (("qmp", "file -> QMP ready"), ("guest", "file -> guest ready marker")):
            ratio = statistics.median(v[key]) / statistics.median(r[key])
            print("%-3d %-27s %-22s %-22s %5.2fx %6.2fx" % (n, figure, summary(v[key]), summary(r[key]),
                                                           ratio, TARGETS[key]))
        if n == 8:
            print("    vmd RSS with 8 VMs: %.1f MiB (median)" % (statistics.median(rss) / 1024))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
