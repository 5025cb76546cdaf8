#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""make bench, QEMU part: vmd against a plain launcher of the very same QEMU command.

For N = 1 and N = 8 guests, side by side in one run:
  vmd:  sandbox files renamed into the watched directory -> every status.json says
        Running (vmd got QMP answering) -> every console shows VMD-GUEST-READY;
  raw:  the same argv (read from vmd's own QEMU) started directly by this script ->
        every QMP socket greets and answers qmp_capabilities and query-status, as vmd
        has it answer before it calls a VM running -> every console shows VMD-GUEST-READY.
Under TCG the first command waits for the vCPU thread to let go of QEMU's big lock, so
QMP-ready is some 50 ms after the greeting: a baseline without commands would flatter.
Figures are medians over REPS rounds, and their ratios; plus vmd's RSS with 8 VMs.
They are figures, not tests: the machine is shared and noisy.

Usage: bench-qemu.py VMD GUEST_DIR [REPS]
"""
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

VMD, GUEST = sys.argv[1], os.path.abspath(sys.argv[2])
REPS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
TIMEOUT = 180.0
SPEC = """apiVersion: vmd/v1
kind: Sandbox
spec:
  backend: qemu
  memory: 192Mi
  kernel: {guest}/vmlinux
  initrd: {guest}/initramfs.cpio
  cmdline: console=ttyS0 quiet
"""


def now():
    return time.monotonic()


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


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


def kill_recorded(run):
    """SIGKILL each QEMU vmd recorded under run (by its pid) and wait for it to go."""
    pids = []
    for name in os.listdir(run) if os.path.isdir(run) else []:
        try:
            with open(os.path.join(run, name, "vm.json")) as f:
                pids.append(json.load(f)["pid"])
        except (OSError, ValueError, KeyError):
            pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in pids:
        while os.path.exists("/proc/%d" % pid) and b"qemu" in read("/proc/%d/cmdline" % pid):
            time.sleep(0.01)


def rss_kib(pid):
    for line in read("/proc/%d/status" % pid).decode().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def vmd_round(n):
    """One round through vmd: (QMP-ready, guest-ready, RSS KiB, argv of one QEMU)."""
    top = tempfile.mkdtemp(prefix="vmd-bench-")
    sb, run, state = (os.path.join(top, d) for d in ("sandboxes", "run", "state"))
    os.mkdir(sb)
    notify = os.path.join(top, "notify")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(notify)
    env = dict(os.environ, NOTIFY_SOCKET=notify)
    daemon = subprocess.Popen(
        [VMD, "daemon", "--sandboxes", sb, "--run-dir", run, "--state-dir", state,
         "--qemu-accel", "tcg", "--log-target", "console", "--resync", "3600"],
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
            s = read(os.path.join(run, name, "status.json"))
            return b'"phase": "Running"' in s

        def booted(name):
            return b"VMD-GUEST-READY" in read(os.path.join(run, name, "console.log"))

        def drain():
            try:
                while ns.recv(4096):
                    pass
            except BlockingIOError:
                pass
            return False

        conds = {("qmp", name): (lambda name=name: drain() or running(name)) for name in names}
        conds.update({("guest", name): (lambda name=name: booted(name)) for name in names})
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
        daemon.send_signal(signal.SIGTERM)
        daemon.wait()
        kill_recorded(run)
        ns.close()
        shutil.rmtree(top, ignore_errors=True)


def recv_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed")
        buf += chunk
    return buf


def qmp_ready(path):
    """QMP-ready as vmd means it: greeting, capabilities, and query-status answered."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    try:
        s.connect(path)
        if b'"QMP"' not in recv_line(s):
            return False
        s.sendall(b'{"execute": "qmp_capabilities"}\n')
        recv_line(s)
        s.sendall(b'{"execute": "query-status"}\n')
        return b'"return"' in recv_line(s)
    except OSError:
        return False
    finally:
        s.close()


def raw_round(n, argv, vm_dir):
    """The same QEMU command, started directly, n times: (QMP-ready, guest-ready)."""
    top = tempfile.mkdtemp(prefix="vmd-bench-raw-")
    procs = []
    try:
        dirs = [os.path.join(top, "r%d" % i) for i in range(n)]
        for d in dirs:
            os.mkdir(d)
        t0 = now()
        for d in dirs:
            a = [x.replace(vm_dir, d).replace(vm_dir.replace(",", ",,"), d) for x in argv]
            procs.append(subprocess.Popen(a, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
        conds = {("qmp", d): (lambda d=d: qmp_ready(os.path.join(d, "qmp.sock"))) for d in dirs}
        conds.update({("guest", d): (lambda d=d: b"VMD-GUEST-READY" in read(os.path.join(d, "console.log")))
                      for d in dirs})
        done = wait_all(t0, conds)
        return (max(v for k, v in done.items() if k[0] == "qmp"),
                max(v for k, v in done.items() if k[0] == "guest"))
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(top, ignore_errors=True)


def main():
    print("QEMU under TCG, the test guest; medians of %d rounds, vmd and raw alternating" % REPS)
    print("%-3s %-28s %10s %10s %8s %8s" % ("N", "figure", "vmd", "raw", "ratio", "target"))
    for n in (1, 8):
        v_qmp, v_guest, r_qmp, r_guest, rss = [], [], [], [], []
        for _ in range(REPS):
            q, g, kib, argv, vm_dir = vmd_round(n)
            v_qmp.append(q)
            v_guest.append(g)
            rss.append(kib)
            q, g = raw_round(n, argv, vm_dir)
            r_qmp.append(q)
            r_guest.append(g)
        for figure, v, r, target in (("file -> QMP ready", v_qmp, r_qmp, 1.25),
                                     ("file -> guest ready marker", v_guest, r_guest, 1.02)):
            mv, mr = statistics.median(v), statistics.median(r)
            print("%-3d %-28s %8.0fms %8.0fms %7.2fx %7.2fx" % (n, figure, mv * 1000, mr * 1000,
                                                             mv / mr, target))
        if n == 8:
            print("    vmd RSS with 8 VMs: %.1f MiB (median)" % (statistics.median(rss) / 1024))


if __name__ == "__main__":
    main()
