"""Helpers shared by tests/stack's conftest and tests (a plain module: two conftest.py files in
one pytest run would shadow each other under the name ``conftest``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
LOGIN_CLIENT = HERE / "login_client.py"


# ------------------------------------------------------------------------------------------------
# docker from the host
# ------------------------------------------------------------------------------------------------
class Docker:
    """The docker CLI, from the host."""

    def __init__(self, binary: str):
        self.binary = binary

    def run(self, *args, check=True, input=None, timeout=120) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.binary, *args], capture_output=True, text=True, input=input,
                              timeout=timeout)
        if check and proc.returncode != 0:
            pytest.fail(f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-1000:]}")
        return proc

    def inspect(self, *ids) -> list[dict]:
        if not ids:
            return []
        return json.loads(self.run("inspect", *ids).stdout)

    def services(self, stack) -> dict[str, int]:
        """Short service name -> desired replicas."""
        out = self.run("service", "ls", "--filter", f"label=com.docker.stack.namespace={stack}",
                       "--format", "{{json .}}").stdout
        result = {}
        for line in out.splitlines():
            row = json.loads(line)
            m = re.match(r"\s*(\d+)/(\d+)", row.get("Replicas", ""))
            result[row["Name"][len(stack) + 1:]] = int(m.group(2)) if m else 1
        return result

    def containers(self, stack, service, all_=False) -> list[dict]:
        """Inspected task containers of <stack>_<service>, newest first (running only by default)."""
        label = f"label=com.docker.swarm.service.name={stack}_{service}"
        args = ["ps", "-q", "--no-trunc", "--filter", label]
        if all_:
            args.insert(1, "-a")
        data = self.inspect(*self.run(*args).stdout.split())
        return sorted(data, key=lambda c: c.get("Created", ""), reverse=True)


def docker_binary(opt):
    if opt:
        return opt
    if os.environ.get("LAB_DOCKER"):
        return os.environ["LAB_DOCKER"]
    if Path("/opt/lasuite-lab/bin/docker").exists():
        return "/opt/lasuite-lab/bin/docker"
    found = shutil.which("docker")
    if not found:
        pytest.fail("no docker CLI on this host")
    return found


def health_of(container: dict) -> str | None:
    """None when the container has no healthcheck."""
    return (container["State"].get("Health") or {}).get("Status")


def parse_ts(text: str) -> float:
    """Docker's RFC 3339 timestamps (nanoseconds, Z or offset) -> epoch seconds."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text.strip())
    if not m:
        raise ValueError(f"unexpected timestamp {text!r}")
    base = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    return base.timestamp() + (float("0." + m.group(2)) if m.group(2) else 0.0)


def stack_snapshot(docker, stack, desired: dict[str, int]) -> dict[str, dict]:
    """Per service: desired, running containers, and their health."""
    snap = {}
    for name, n in desired.items():
        running = [c for c in docker.containers(stack, name) if c["State"].get("Status") == "running"]
        snap[name] = {
            "desired": n,
            "running": len(running),
            "health": [health_of(c) for c in running],
            "ok": len(running) >= n and all(health_of(c) in (None, "healthy") for c in running),
        }
    return snap



def exec_python(docker, container_id: str, script: str, *args: str, user: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a Python script inside a container, fed on stdin (`docker exec -i … python3 - ARGS`)."""
    extra = ["-u", user] if user else []
    return docker.run("exec", "-i", *extra, container_id, "python3", "-", *args, input=script,
                      check=False, timeout=timeout)
