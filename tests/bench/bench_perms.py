#!/usr/bin/env python3
"""Benchmark: the entrypoint's ownership pass against the shell one-liners it replaces.

Run as root (it chowns a tree it creates itself, in a fresh temporary directory):

    python3 tests/bench/bench_perms.py [--files 100000] [--repeat 7] [--dir /var/tmp] [--python PY]

Two comparisons on the same tree, timed as whole processes (interpreter start included, as at a
container start), runs interleaved, page cache warm for both sides:

  already right: drive_entrypoint.py (FIX_PERMS_PATHS=tree, command `true`)
                 vs  find TREE ! -user U -exec chown U:G {} +
  first fix:     drive_entrypoint.py on a tree entirely owned by 0:0
                 vs  chown -R U:G TREE      (the tree is reset to 0:0 before every run, untimed)

Everything runs at nice -20 to keep a shared machine's other load out of the comparison.
The entrypoint runs with its default number of workers and, for comparison, with FIX_PERMS_JOBS=1.
Prints medians and the ratio entrypoint / reference (goals: <= 1.5x find, <= 1.2x chown -R).
Nothing is asserted: this is a measurement, not a test.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "entrypoints" / "drive_entrypoint.py"
UID, GID = 1001, 127


def make_tree(root, files):
    """files regular files in a two-level tree (dirs of 100 files), Drive-media-like names."""
    per_dir, per_top = 100, 50
    made = 0
    top = 0
    while made < files:
        for sub in range(per_top):
            if made >= files:
                break
            d = root / f"item{top:03d}" / f"{sub:04d}-5c1e0a7e"
            d.mkdir(parents=True)
            for i in range(min(per_dir, files - made)):
                fd = os.open(d / f"file-{i:03d}.odt", os.O_CREAT | os.O_WRONLY, 0o644)
                os.close(fd)
            made += min(per_dir, files - made)
        top += 1


def timed(cmd, env=None):
    """(wall seconds, CPU seconds user+system of the process and its children)."""
    subprocess.run(["sync"], check=True)  # no writeback of the previous step inside the timing
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--dir", default="/var/tmp", help="where to create the tree (its filesystem is measured)")
    default_py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    ap.add_argument("--python", default=default_py, help=f"interpreter for the entrypoint ({default_py})")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_perms: run as root (it changes file owners)")
    for tool in ("find", "chown"):
        if not shutil.which(tool):
            sys.exit(f"bench_perms: {tool} not found")

    # Both sides run at the highest priority: on a shared machine this keeps other users' load
    # out of the comparison as far as possible (it does not favour either side).
    os.setpriority(os.PRIO_PROCESS, 0, -20)
    base = Path(tempfile.mkdtemp(prefix="bench-perms-", dir=args.dir))
    tree = base / "tree"
    tree.mkdir()
    try:
        t0 = time.perf_counter()
        make_tree(tree, args.files)
        print(f"tree: {args.files} files under {tree} ({time.perf_counter() - t0:.1f}s to create)")
        ours_cmd = [args.python, str(ENTRYPOINT), "--", "true"]
        env = dict(os.environ, FIX_PERMS_PATHS=str(tree), APP_UID=str(UID), APP_GID=str(GID))
        env1 = dict(env, FIX_PERMS_JOBS="1")
        find_cmd = ["find", str(tree), "!", "-user", str(UID), "-exec", "chown", f"{UID}:{GID}", "{}", "+"]
        chown_cmd = ["chown", "-R", f"{UID}:{GID}", str(tree)]
        reset_cmd = ["chown", "-R", "0:0", str(tree)]

        right = {"entrypoint": [], "entrypoint jobs=1": [], "find ! -user -exec chown": []}
        subprocess.run(chown_cmd, check=True)
        timed(ours_cmd, env)  # warm the caches
        for _ in range(args.repeat):
            right["find ! -user -exec chown"].append(timed(find_cmd))
            right["entrypoint"].append(timed(ours_cmd, env))
            right["entrypoint jobs=1"].append(timed(ours_cmd, env1))

        first = {"entrypoint": [], "entrypoint jobs=1": [], "chown -R": []}
        for _ in range(args.repeat):
            for name, cmd, e in (
                ("chown -R", chown_cmd, None),
                ("entrypoint", ours_cmd, env),
                ("entrypoint jobs=1", ours_cmd, env1),
            ):
                subprocess.run(reset_cmd, check=True)
                first[name].append(timed(cmd, e))

        cpus = len(os.sched_getaffinity(0))
        load = os.getloadavg()[0]
        print(f"python: {args.python}; CPUs usable: {cpus}; load average at the end: {load:.2f}")
        print(f"medians of {args.repeat} runs, seconds; wall clock (the goal) and CPU time user+sys")
        for title, results, ref in (
            ("already-right tree", right, "find ! -user -exec chown"),
            ("first fix (all wrong)", first, "chown -R"),
        ):
            ref_wall = statistics.median(w for w, _c in results[ref])
            ref_cpu = statistics.median(c for _w, c in results[ref])
            print(f"\n{title}:{'wall':>22s} {'ratio':>7s} {'cpu':>8s} {'ratio':>7s}")
            for name, runs in results.items():
                wall = statistics.median(w for w, _c in runs)
                cpu = statistics.median(c for _w, c in runs)
                print(f"  {name:26s} {wall:8.3f} {wall / ref_wall:6.2f}x {cpu:8.3f} {cpu / ref_cpu:6.2f}x")
        print("\nratio = entrypoint / reference (find: already-right tree; chown -R: first fix)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
