#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""make bench, state: suspended: what a wake costs beside a cold boot, and what it saves.

Through one vmd per round (a fresh daemon, fresh dirs), REPS rounds (default 3):
  cold boot: a sandbox file dropped into the watched directory -> VMD-GUEST-READY on the
             guest's console;
  save:      the file edited to state: suspended -> status.json says Suspended (the state
             on disk, synced, its QEMU gone); the snapshot's size beside the guest's memory;
  wake:      the file edited to state: running -> status.json says Running (the restored
             guest's vCPUs run again: a restored guest is ready as it runs), and, beside
             it, to its first VMD-GUEST-TICK on the new QEMU's console (its own clock going
             on: up to a second later, as it ticks every second).
  template:  (startFrom: snapshot) a sandbox whose first boot saved its template, stopped,
             then its file edited to state: running -> status.json says Running, restored
             from its template (no boot), and to its first tick on the new QEMU's console.
Then N sandboxes (default 8) at once: the host memory their QEMUs use running (the sum of
their RSS) beside suspended (no QEMU: 0, and their snapshots on disk). Printed as the
median and min-max of each figure and the ratio wake / cold boot (target 0.25). A figure,
not a test: the machine is shared and noisy. QEMU under TCG, the test guest, as
bench-qemu.py, whose helpers this uses: every QEMU is killed by its pid when a round ends.

Usage: bench-suspend.py VMD GUEST_DIR [REPS [N]]
"""
import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("bench_qemu", os.path.join(HERE, "bench-qemu.py"))
bq = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bq)

VMD, GUEST = bq.VMD, bq.GUEST
REPS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
N = int(sys.argv[4]) if len(sys.argv) > 4 else 8
TARGET = 0.25
MEMORY_MIB = 192


class Daemon:
    """A vmd on fresh dirs under top, ready (READY=1); stop() kills every QEMU it ran."""

    def __init__(self, top):
        self.sb, self.run, self.state = (os.path.join(top, d) for d in ("sandboxes", "run", "state"))
        for d in (self.sb, self.run, self.state):
            shutil.rmtree(d, ignore_errors=True)
        os.mkdir(self.sb)
        notify = os.path.join(top, "notify")
        if os.path.exists(notify):
            os.unlink(notify)
        self.ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.ns.bind(notify)
        self.proc = subprocess.Popen(
            [VMD, "daemon", "--sandboxes", self.sb, "--run-dir", self.run, "--state-dir",
             self.state, "--qemu-accel", "tcg", "--log-target", "console", "--vmm-user", "root",
             "--resync", "3600", "--grace", "0"],
            env=dict(os.environ, NOTIFY_SOCKET=notify), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ns.settimeout(30)
        while b"READY=1" not in self.ns.recv(4096):
            pass
        # Nobody reads what comes next: closed, not left to fill up (sd_notify would block).
        self.ns.close()
        os.unlink(notify)

    def put(self, name, state, extra=""):
        tmp = os.path.join(self.sb, ".%s.tmp" % name)
        with open(tmp, "w") as f:
            f.write(bq.SPEC.format(guest=GUEST) + "  state: %s\n" % state + extra)
        os.rename(tmp, os.path.join(self.sb, name + ".yaml"))

    def status(self, name):
        try:
            with open(os.path.join(self.run, name, "status.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def console(self, name):
        return os.path.join(self.run, name, "console.log")

    def stop(self):
        with bq.NoInterrupt():
            qemus = set(bq.children_of(self.proc.pid)) | set(bq.recorded_pids(self.run))
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait()
            qemus |= {p for p in bq.children_of(os.getpid()) if bq.is_qemu(p)}
            bq.kill_qemus(sorted(qemus))


def phase(d, name, want):
    return lambda: d.status(name).get("phase") == want


def running(d, name):
    def cond():
        s = d.status(name)
        return s.get("phase") == "Running" and s.get("snapshot") is None and any(
            c.get("type") == "Running" and c.get("status") == "True" for c in s.get("conditions", []))
    return cond


def new_console_ticks(path, old_inode):
    """The console of a QEMU started after old_inode's shows a tick."""
    def cond():
        try:
            if os.stat(path).st_ino == old_inode:
                return False
        except OSError:
            return False
        return b"VMD-GUEST-TICK" in bq.read(path)
    return cond


def round_(top):
    d = Daemon(top)
    try:
        console = bq.Console(d.console("b"))
        t0 = bq.now()
        d.put("b", "running")
        boot = bq.wait_all(t0, {"ready": console.ready})["ready"]
        bq.wait_all(bq.now(), {"tick": lambda: b"VMD-GUEST-TICK 2" in bq.read(d.console("b"))})
        t0 = bq.now()
        d.put("b", "suspended")
        save = bq.wait_all(t0, {"saved": phase(d, "b", "Suspended")})["saved"]
        size = d.status("b")["snapshot"]["size"]
        inode = os.stat(d.console("b")).st_ino
        t0 = bq.now()
        d.put("b", "running")
        woken = bq.wait_all(t0, {"running": running(d, "b"),
                                 "tick": new_console_ticks(d.console("b"), inode)})
        return boot, save, woken["running"], woken["tick"], size
    finally:
        d.stop()


TEMPLATE = "  startFrom: snapshot\n"


def started_from(d, name, prefix):
    def cond():
        s = d.status(name)
        return running(d, name)() and (s.get("startedFrom") or "").startswith(prefix)
    return cond


def template_round(top):
    """startFrom: snapshot: file -> running, restored from its template, after a stop."""
    d = Daemon(top)
    try:
        d.put("t", "running", TEMPLATE)
        bq.wait_all(bq.now(), {"saved": started_from(d, "t", "booted; its template was saved")})
        d.put("t", "stopped", TEMPLATE)
        bq.wait_all(bq.now(), {"stopped": phase(d, "t", "Stopped")})
        inode = os.stat(d.console("t")).st_ino
        t0 = bq.now()
        d.put("t", "running", TEMPLATE)
        got = bq.wait_all(t0, {"running": started_from(d, "t", "restored from its template"),
                               "tick": new_console_ticks(d.console("t"), inode)})
        return got["running"], got["tick"]
    finally:
        d.stop()


def memory_round(top):
    """N sandboxes running, then suspended: their QEMUs' RSS (KiB) and snapshots' bytes."""
    d = Daemon(top)
    try:
        names = ["m%d" % i for i in range(N)]
        for name in names:
            d.put(name, "running")
        bq.wait_all(bq.now(), {n: (lambda n=n: b"VMD-GUEST-TICK 1" in bq.read(d.console(n)))
                               for n in names})
        running = sum(bq.rss_kib(d.status(n).get("pid", 0)) for n in names)
        for name in names:
            d.put(name, "suspended")
        bq.wait_all(bq.now(), {n: phase(d, n, "Suspended") for n in names})
        left = [p for p in bq.children_of(d.proc.pid) if bq.is_qemu(p)]
        suspended = sum(bq.rss_kib(p) for p in left)
        disk = sum(d.status(n)["snapshot"]["size"] for n in names)
        return running, suspended, disk
    finally:
        d.stop()


def main():
    bq.become_subreaper("bench-suspend")
    top = tempfile.mkdtemp(prefix="vmd-bench-suspend-")
    try:
        boots, saves, wakes, ticks, sizes = [], [], [], [], []
        for _ in range(REPS):
            boot, save, wake, tick, size = round_(top)
            boots.append(boot)
            saves.append(save)
            wakes.append(wake)
            ticks.append(tick)
            sizes.append(size)
        tstarts, tticks = [], []
        for _ in range(REPS):
            start, tick = template_round(top)
            tstarts.append(start)
            tticks.append(tick)
        running, suspended, disk = memory_round(top)
        ratio = statistics.median(wakes) / statistics.median(boots)
        print("state: suspended, QEMU under TCG, the test guest (%d MiB); %d rounds" %
              (MEMORY_MIB, REPS))
        print("%-46s %-22s %6s %7s" % ("figure", "median (min-max)", "ratio", "target"))
        print("%-46s %-22s" % ("file -> guest ready, cold boot", bq.summary(boots)))
        print("%-46s %-22s %5.2fx %6.2fx" % ("file -> guest running again, wake", bq.summary(wakes),
                                              ratio, TARGET))
        print("%-46s %-22s" % ("file -> its next tick (1 s ticks), wake", bq.summary(ticks)))
        print("%-46s %-22s %5.2fx %6.2fx" % ("file -> running, from its template",
                                              bq.summary(tstarts),
                                              statistics.median(tstarts) / statistics.median(boots),
                                              TARGET))
        print("%-46s %-22s" % ("file -> its next tick, from its template", bq.summary(tticks)))
        print("%-46s %-22s" % ("file -> Suspended (saved, synced, QEMU gone)", bq.summary(saves)))
        print("snapshot size: median %.1f MiB of the guest's %d MiB" %
              (statistics.median(sizes) / (1 << 20), MEMORY_MIB))
        print("%d sandboxes: QEMU RSS %.1f MiB running, %.1f MiB suspended (%.2fx; %.1f MiB of snapshots on disk)"
              % (N, running / 1024, suspended / 1024, suspended / max(running, 1), disk / (1 << 20)))
        sys.stdout.flush()
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
