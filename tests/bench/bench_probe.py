#!/usr/bin/env python3
"""Benchmark: healthchecks/probe.py next to ``curl -fsS`` on the same loopback URL.

Not a test (nothing here fails on timing): it prints the figures for the issue's closing note.
Goal: the probe's median wall time <= 2x curl's, and its peak RSS <= 15 MiB.

Every command runs N times, interleaved with the others (so machine load hits all alike),
against real servers on 127.0.0.1 (tests/unit/loopback_servers.py). Per command it reports
  wall   median wall-clock time of spawn -> exit (os.posix_spawn + os.wait4),
  cpu    median user+sys CPU time of the child (wait4 rusage; much less sensitive to load),
  rss    peak resident set size. A directly spawned child's ru_maxrss includes the high-water
         mark it inherits from the (big) benchmark process at fork/exec time, so the figure is
         taken through GNU time (``/usr/bin/time -f %M``, a small parent doing the same wait4)
         when installed; otherwise the raw wait4 value is shown and marked ``*`` (an upper bound).
Commands, per Python interpreter:
  probe.py script    python3 -I -S probe.py ...             (the documented CLI form)
  probe.py cached    python3 -I -S -c "...import probe..."  (the backend healthcheck's form:
                     bytecode cached in __pycache__ next to probe.py, here a temporary copy)
  python3 -c pass    python3 -I -S -c pass                  (the interpreter's floor)
for the WOPI discovery check (``wopi``, ~32 KB discovery body) and the heartbeat (``http``).

Usage: tests/bench/bench_probe.py [--runs 50] [--python PATH ...]
Default interpreters: this one, and pyenv's 3.13 (the Drive image's) and 3.9 when installed.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit"))

from loopback_servers import LoopbackServer, discovery_xml, respond  # noqa: E402

PROBE = ROOT / "healthchecks" / "probe.py"
GNU_TIME = "/usr/bin/time"
GOAL_RATIO = 2.0
GOAL_RSS_MIB = 15.0
PYENV = ("/root/.pyenv/versions/3.13.0/bin/python3", "/root/.pyenv/versions/3.9.18/bin/python3")
CACHED = "import sys; sys.path.insert(0, {dir!r}); import probe; sys.exit(probe.main())"


def spawn(cmd):
    """Run cmd once, stdout/stderr to /dev/null: (exit code, wall s, cpu s, raw ru_maxrss MiB)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
        started = time.perf_counter()
        pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - started
    finally:
        os.close(devnull)
    return os.waitstatus_to_exitcode(status), wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def peak_rss(cmd):
    """Peak RSS in MiB through GNU time, or None when it is not installed."""
    if not os.access(GNU_TIME, os.X_OK):
        return None
    out = subprocess.run([GNU_TIME, "-f", "%M", *cmd], capture_output=True, text=True)
    return int(out.stderr.strip().splitlines()[-1]) / 1024


def bench(commands, runs):
    """commands: {label: argv}, run interleaved. Returns {label: dict of figures}."""
    walls = {k: [] for k in commands}
    cpus = {k: [] for k in commands}
    raw_rss = dict.fromkeys(commands, 0.0)
    codes = {k: set() for k in commands}
    for cmd in commands.values():  # warm-up: page cache, bytecode cache
        spawn(cmd)
    for _ in range(runs):
        for label, cmd in commands.items():
            code, wall, cpu, rss = spawn(cmd)
            walls[label].append(wall)
            cpus[label].append(cpu)
            raw_rss[label] = max(raw_rss[label], rss)
            codes[label].add(code)
    result = {}
    for label, cmd in commands.items():
        rss = [peak_rss(cmd) for _ in range(5)]
        accurate = None not in rss
        result[label] = {
            "wall": statistics.median(walls[label]),
            "cpu": statistics.median(cpus[label]),
            "rss": max(rss) if accurate else raw_rss[label],
            "rss_exact": accurate,
            "codes": sorted(codes[label]),
        }
    return result


def big_discovery():
    """A discovery document about the size of Collabora's (hundreds of actions, ~32 KB)."""
    actions = "".join(
        f'<action default="true" ext="e{i}" name="{"edit" if i % 2 else "view"}" '
        f'urlsrc="http://127.0.0.1:9980/browser/0123abcd/cool.html?"/>'
        for i in range(300)
    )
    return discovery_xml().replace("</net-zone>", f'<app name="more">{actions}</app></net-zone>')


def python_version(python):
    out = subprocess.run(
        [python, "-I", "-S", "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True
    )
    return ".".join(out.stdout.decode().split())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--python", action="append", help="interpreter for the probe (repeatable)")
    args = parser.parse_args()
    curl = shutil.which("curl")
    if curl is None:
        sys.exit("curl not found")
    pythons = args.python or [p for p in (sys.executable, *PYENV) if os.path.exists(p)]
    body = big_discovery()
    print(
        f"{args.runs} runs per command, interleaved; discovery body {len(body)} bytes; {os.cpu_count()} CPUs;"
    )
    print(
        f"load average {os.getloadavg()[0]:.2f}; "
        f"rss via {'GNU time' if os.access(GNU_TIME, os.X_OK) else 'wait4'}"
    )
    header = (
        f"{'command':<38} {'wall ms':>8} {'cpu ms':>7} {'rss MiB':>8} {'wall/curl':>10} {'cpu/curl':>9}  exit"
    )
    worst = {"ratio": 0.0, "rss": 0.0}
    with (
        tempfile.TemporaryDirectory() as tmp,
        LoopbackServer(respond(200, body, content_type="text/xml")) as wopi,
    ):
        with LoopbackServer(respond(200, "")) as heartbeat:
            cached_dir = Path(tmp) / "robust"
            cached_dir.mkdir()
            shutil.copy(PROBE, cached_dir / "probe.py")
            cases = {
                "wopi": (["wopi", wopi.url("/hosting/discovery")], [wopi.url("/hosting/discovery")]),
                "http": (
                    ["http", heartbeat.url("/__lbheartbeat__"), "--host", "drive.test"],
                    ["-H", "Host: drive.test", heartbeat.url("/__lbheartbeat__")],
                ),
            }
            for python in pythons:
                version = python_version(python)
                print(f"\n== Python {version} ({python})\n{header}")
                for case, (probe_args, curl_args) in cases.items():
                    commands = {
                        f"curl -fsS ({case})": [curl, "-fsS", "-o", "/dev/null", *curl_args],
                        f"probe.py script {case}": [python, "-I", "-S", str(PROBE), *probe_args],
                        f"probe.py cached {case}": [
                            python,
                            "-I",
                            "-S",
                            "-c",
                            CACHED.format(dir=str(cached_dir)),
                            *probe_args,
                        ],
                        "python3 -I -S -c pass": [python, "-I", "-S", "-c", "pass"],
                    }
                    results = bench(commands, args.runs)
                    base = results[f"curl -fsS ({case})"]
                    for label, r in results.items():
                        wall_ratio = r["wall"] / base["wall"]
                        cpu_ratio = r["cpu"] / base["cpu"] if base["cpu"] else float("nan")
                        mark = "" if r["rss_exact"] else "*"
                        print(
                            f"{label:<38} {r['wall'] * 1000:>8.1f} {r['cpu'] * 1000:>7.1f} "
                            f"{r['rss']:>7.1f}{mark:1} {wall_ratio:>9.2f}x {cpu_ratio:>8.2f}x  {r['codes']}"
                        )
                        if label.startswith("probe.py"):
                            key = label.split()[1]
                            worst[key] = max(worst.get(key, 0.0), wall_ratio)
                            worst["rss"] = max(worst["rss"], r["rss"])
    print()
    for form in ("script", "cached"):
        ratio = worst.get(form, 0.0)
        verdict = "within" if ratio <= GOAL_RATIO and worst["rss"] <= GOAL_RSS_MIB else "ABOVE"
        print(
            f"probe.py {form}: worst median wall {ratio:.2f}x curl"
            f" -> {verdict} the goal (<= {GOAL_RATIO:.0f}x)"
        )
    print(f"worst peak RSS of the probe: {worst['rss']:.1f} MiB (goal <= {GOAL_RSS_MIB:.0f} MiB)")


if __name__ == "__main__":
    main()
