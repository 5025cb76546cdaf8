#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""make bench, disks from images: what making the sandbox's overlay costs a start.

Two sides through the same vmd, in one run, REPS rounds each (default 5), alternating:
  image: a sandbox file whose disk is `image:` a 1 GiB sparse raw base image, dropped
         into the watched directory of a fresh daemon (a fresh state dir: the overlay is
         made in that start, qemu-img create in the start's image phase) -> the guest's
         VMD-GUEST-READY on its console;
  path:  the same with `path:` a pre-made 1 GiB sparse raw disk instead.
Printed as the median and min-max of each side and the ratio of the medians (target
1.05x). A figure, not a test: the machine is shared and noisy. QEMU under TCG, the test
guest. Every QEMU is killed by its pid when a round ends, as in bench-qemu.py, whose
helpers this uses.

Usage: bench-image.py VMD GUEST_DIR [REPS]
"""
import importlib.util
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
REPS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
SIZE = 1 << 30
TARGET = 1.05
SPEC = bq.SPEC + "  disks:\n    - {{id: root, {disk}}}\n"


def sparse_file(path, marker):
    with open(path, "wb") as f:
        f.write(marker)
        f.truncate(SIZE)


def round_(top, disk):
    """One start of one sandbox through a fresh daemon: file dropped -> guest ready (s)."""
    sb, run, state = (os.path.join(top, d) for d in ("sandboxes", "run", "state"))
    for d in (sb, run, state):
        shutil.rmtree(d, ignore_errors=True)
    os.mkdir(sb)
    notify = os.path.join(top, "notify")
    if os.path.exists(notify):
        os.unlink(notify)
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(notify)
    daemon = subprocess.Popen(
        [VMD, "daemon", "--sandboxes", sb, "--run-dir", run, "--state-dir", state,
         "--qemu-accel", "tcg", "--log-target", "console", "--vmm-user", "root", "--resync", "3600"],
        env=dict(os.environ, NOTIFY_SOCKET=notify), stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ns.settimeout(30)
        while b"READY=1" not in ns.recv(4096):
            pass
        tmp = os.path.join(sb, ".b.tmp")
        with open(tmp, "w") as f:
            f.write(SPEC.format(guest=GUEST, disk=disk))
        console = bq.Console(os.path.join(run, "b", "console.log"))
        t0 = bq.now()
        os.rename(tmp, os.path.join(sb, "b.yaml"))
        return bq.wait_all(t0, {"guest": console.ready})["guest"]
    finally:
        with bq.NoInterrupt():
            qemus = set(bq.children_of(daemon.pid)) | set(bq.recorded_pids(run))
            daemon.send_signal(signal.SIGTERM)
            daemon.wait()
            qemus |= {p for p in bq.children_of(os.getpid()) if bq.is_qemu(p)}
            bq.kill_qemus(sorted(qemus))
            ns.close()


def main():
    bq.become_subreaper("bench-image")
    top = tempfile.mkdtemp(prefix="vmd-bench-image-")
    try:
        base, premade = os.path.join(top, "base.raw"), os.path.join(top, "premade.raw")
        sparse_file(base, b"BASE")
        sparse_file(premade, b"BASE")
        sides = {"image": "image: %s, imageFormat: raw, size: 1Gi" % base,
                 "path": "path: %s" % premade}
        times = {k: [] for k in sides}
        for _ in range(REPS):
            for key, disk in sides.items():
                times[key].append(round_(top, disk))
        ratio = statistics.median(times["image"]) / statistics.median(times["path"])
        print("disks from images, QEMU under TCG; %d rounds per side, alternating" % REPS)
        print("%-42s %-22s %-22s %6s %7s" % ("figure", "image (overlay made)", "path (pre-made)",
                                             "ratio", "target"))
        print("%-42s %-22s %-22s %5.2fx %6.2fx" % ("file -> guest ready, 1 GiB sparse raw base",
                                                 bq.summary(times["image"]),
                                                 bq.summary(times["path"]), ratio, TARGET))
        sys.stdout.flush()
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
