#!/usr/bin/env python3
"""The lab: deploy the lasuite-drive stack (unpatched model, or patched) on this machine's Swarm.

CLI (``python3 tests/lab/lab.py …``, used by ``make demo``, ``make demo-down`` and
tests/lab/run-stack-tests.sh):

    bundle --variant patched|unpatched [--stack NAME] [--set KEY=VAL …]
        assemble build/recipe-<variant>/ (another --stack than the default:
        build/stacks/<stack>/recipe-<variant>/) as abra would see the recipe directory: the unpatched
        model (tests/lab/recipe-unpatched/); for "patched", recipe/apply.py is run on that copy
        (compose.robust.yml, robust/<the five scripts>, the abra.sh and .env.sample blocks, the
        healthchecks the overlay replaces removed from compose.yml); plus tests/lab/compose.lab.yml;
        write its .env; print the deploy command.
    up --variant patched|unpatched [--stack NAME] [--set KEY=VAL …] [--timeout S]
        ensure the engine and the images (idempotent, cached), create the external secrets and
        the lab's proxy network, `docker stack deploy`, wait for convergence (bounded, with
        progress), run the post-deploy step (abra.sh `migrate`, as `abra app cmd` would), print
        a table (service, replicas, health, seconds to healthy from `docker stack deploy`,
        failed tasks), then the logged-in check. Leaves the stack up.
    down [--stack NAME] [--all]
        remove the stack, wait until its containers and networks are gone, remove its volumes,
        secrets and the lab network (runs are independent); images and engine stay.
    status [--stack NAME]     the table, now.
    login [--stack NAME]      the OIDC login check (tests/stack/login_client.py in the backend).
    findings [--stack NAME]   what the known failure modes look like on this stack (WOPI
                              configured?, media owner and writability, permission errors in
                              logs, failed backend tasks).

Library: ``deploy()``, ``wait_converged()``, ``exec_in()``, ``logs()``, ``containers()``,
``down()``, ``login_check()``, ``wopi_state()``, ``findings()`` for the lab scenario tests.

Every docker call goes through the ``docker`` CLI (``$LAB_DOCKER``, else the engine's own client
/opt/lasuite-lab/bin/docker, else ``docker`` on PATH). Deploy is exactly
``docker stack deploy -c compose.yml [-c compose.robust.yml] -c compose.lab.yml STACK`` run in
the bundle directory, with the environment abra would export (.env + abra.sh, which for "patched"
carries the block recipe/apply.py appended from recipe/abra.robust.sh).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "tests" / "lab"
UNPATCHED = LAB / "recipe-unpatched"
RECIPE = ROOT / "recipe"
BUILD = ROOT / "build"
STATE_DIR = BUILD / "lab-state"
LOGIN_CLIENT = ROOT / "tests" / "stack" / "login_client.py"
ENSURE_ENGINE = LAB / "engine" / "ensure-engine.sh"
BUILD_IMAGES = LAB / "images" / "build.sh"
APPLY = RECIPE / "apply.py"

VARIANTS = ("patched", "unpatched")
DEFAULT_STACK = {"patched": "drivelab", "unpatched": "drivelab_unpatched"}
# The five container-side scripts of the patch set: name in robust/ -> source in the repository.
# (Kept for importers; the patched bundle gets them from recipe/apply.py, which reads the overlay.)
ROBUST_SCRIPTS = {
    "probe.py": ROOT / "healthchecks" / "probe.py",
    "drive_entrypoint.py": ROOT / "entrypoints" / "drive_entrypoint.py",
    "wopi_gate.py": ROOT / "entrypoints" / "wopi_gate.py",
    "lazy_oidc.py": ROOT / "entrypoints" / "lazy_oidc.py",
    "drive_robust_settings.py": ROOT / "entrypoints" / "drive_robust_settings.py",
}
LAB_LABEL = "lasuite-lab.stack"
BACKEND = "backend"
APP_USER = "1001:127"


class LabError(RuntimeError):
    """A lab step failed; the message says which and why."""


def say(msg: str) -> None:
    print(f"[lab] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------
# docker CLI
# ------------------------------------------------------------------------------------------------
def docker_bin() -> str:
    if os.environ.get("LAB_DOCKER"):
        return os.environ["LAB_DOCKER"]
    own = Path("/opt/lasuite-lab/bin/docker")
    if own.exists():
        return str(own)
    found = shutil.which("docker")
    if not found:
        raise LabError("no docker client: run tests/lab/engine/ensure-engine.sh first")
    return found


def docker(*args: str, check: bool = True, input: str | None = None, env: dict | None = None,
           cwd: Path | None = None, timeout: float | None = 120) -> subprocess.CompletedProcess:
    """Run the docker CLI, capture text output; LabError with stderr when check and it fails."""
    cmd = [docker_bin(), *args]
    try:
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, env=env, cwd=cwd,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {shlex.join(cmd)}") from exc
    if check and proc.returncode != 0:
        raise LabError(f"`{shlex.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------
# environment (.env files, interpolation)
# ------------------------------------------------------------------------------------------------
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as abra reads a .env (comments and blank lines skipped, quotes stripped)."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _ENV_LINE.match(line)
        if not m:
            continue
        key, value = m.group(1), m.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = re.sub(r"\s+#.*$", "", value)
        env[key] = value
    return env


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """${VAR} and ${VAR:-default} (enough for the names of secrets and configs)."""
    def sub(m):
        value = env.get(m.group(1))
        if value:
            return value
        return interpolate(m.group(2), env) if m.group(2) is not None else ""
    return _VAR.sub(sub, text)


def parse_overrides(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise LabError(f"--set expects KEY=VAL, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value
    return out


# ------------------------------------------------------------------------------------------------
# bundle
# ------------------------------------------------------------------------------------------------
@dataclass
class Bundle:
    variant: str
    stack: str
    path: Path
    env: dict[str, str]
    compose_files: list[str]
    notes: list[str] = field(default_factory=list)

    def deploy_cmd(self) -> list[str]:
        cmd = [docker_bin(), "stack", "deploy", "--resolve-image", "never"]
        for f in self.compose_files:
            cmd += ["-c", f]
        return [*cmd, self.stack]

    def full_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}


def _hash_version(path: Path) -> str:
    return "h" + hashlib.sha256(path.read_bytes()).hexdigest()[:10]


def robust_compose_files(sample: Path | None = None) -> list[str]:
    """The chain the patch set documents for abra: COMPOSE_FILE in `sample` (default
    recipe/env.robust.sample; also when commented out, as a template), else
    compose.yml:compose.robust.yml."""
    sample = sample or RECIPE / "env.robust.sample"
    if sample.is_file():  # the last one: apply.py appends the patch set's block at the end
        for line in reversed(sample.read_text().splitlines()):
            m = re.match(r"^\s*#?\s*COMPOSE_FILE=(.+)$", line)
            if m:
                value = m.group(1).strip().strip("'\"")
                return [f for f in value.split(":") if f]
    return ["compose.yml", "compose.robust.yml"]


def apply_patch(recipe_dir: Path) -> str:
    """Run recipe/apply.py on a recipe directory, as the recipe maintainer does; its summary line."""
    proc = subprocess.run([sys.executable, str(APPLY), str(recipe_dir)], capture_output=True, text=True,
                          check=False, timeout=120)
    if proc.returncode != 0:
        raise LabError(f"recipe/apply.py {recipe_dir} failed ({proc.returncode}): "
                       f"{(proc.stderr or proc.stdout).strip()[-1000:]}")
    return proc.stdout.strip()


def bundle(variant: str, stack: str | None = None, overrides: dict[str, str] | None = None,
           out: Path | None = None) -> Bundle:
    """Assemble build/recipe-<variant>/ and compute the environment abra would deploy with.

    patched = the unpatched model with recipe/apply.py run on it (the upstream PR's result)."""
    if variant not in VARIANTS:
        raise LabError(f"variant must be one of {VARIANTS}, not {variant!r}")
    stack = stack or DEFAULT_STACK[variant]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", stack):
        raise LabError(f"invalid stack name {stack!r}")
    if out is None:  # one directory per stack: lab stacks may be deployed side by side
        out = BUILD / f"recipe-{variant}" if stack == DEFAULT_STACK[variant] else \
            BUILD / "stacks" / stack / f"recipe-{variant}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    notes: list[str] = []

    for src in sorted(UNPATCHED.iterdir()):
        if src.is_file():
            shutil.copy2(src, out / src.name)
    files = ["compose.yml"]
    if variant == "patched":
        notes.append(apply_patch(out))
        # The COMPOSE_FILE the patched .env.sample documents (commented out there, as a template).
        files = robust_compose_files(out / ".env.sample")
        missing = [f for f in files if not (out / f).is_file()]
        if missing:
            raise LabError(f"COMPOSE_FILE of the patched .env.sample names missing files: {missing}")
    env_parts = [out / ".env.sample"]
    shutil.copy2(LAB / "compose.lab.yml", out / "compose.lab.yml")
    shutil.copytree(LAB / "lab-configs", out / "lab-configs",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    files.append("compose.lab.yml")
    env_parts.append(LAB / "lab.env")

    env: dict[str, str] = {}
    for part in env_parts:
        env.update(parse_env_file(part))
    env.update(overrides or {})
    env["STACK_NAME"] = stack
    env["COMPOSE_FILE"] = ":".join(files)

    # abra sources abra.sh (and, with the overlay, abra.robust.sh) for the config versions.
    scripts = [s for s in ("abra.sh", "abra.robust.sh") if (out / s).is_file()]
    if scripts:
        source = "; ".join(f". ./{s}" for s in scripts)
        proc = subprocess.run(["bash", "-c", f"set -a; {source}; env -0"], cwd=out, capture_output=True,
                              env={**os.environ, **env}, check=False)
        if proc.returncode != 0:
            raise LabError(f"sourcing {' and '.join(scripts)} failed: {proc.stderr.decode()[-1000:]}")
        for item in proc.stdout.decode().split("\0"):
            key, sep, value = item.partition("=")
            if sep and key.endswith("_VERSION") and os.environ.get(key) != value:
                env[key] = value
    # Lab-only configs are versioned by content (the lab overlay is not an abra recipe).
    for path in sorted((out / "lab-configs").iterdir()):
        env.setdefault("LAB_" + path.name.replace(".py", "").upper() + "_VERSION", _hash_version(path))
    if variant == "patched":
        for name in ROBUST_SCRIPTS:
            var = name.replace(".", "_").upper() + "_VERSION"
            if not env.get(var):
                env[var] = _hash_version(out / "robust" / name)
                notes.append(f"{var} not exported by abra.robust.sh: using content hash {env[var]}")

    # Every ${X_VERSION} the compose files name must be set, or Swarm gets a config name ending in "_".
    for f in files:
        for var in sorted(set(re.findall(r"\$\{([A-Z0-9_]+_VERSION)\}", (out / f).read_text()))):
            if not env.get(var):
                raise LabError(f"{f} names ${{{var}}} but neither .env nor abra*.sh sets it")

    with open(out / ".env", "w") as fh:
        fh.write(f"# generated by tests/lab/lab.py bundle --variant {variant} --stack {stack}\n")
        for key in sorted(env):
            fh.write(f"{key}={shlex.quote(env[key])}\n")
    return Bundle(variant, stack, out, env, files, notes)


# ------------------------------------------------------------------------------------------------
# engine, images, prerequisites
# ------------------------------------------------------------------------------------------------
def _run_script(path: Path, what: str) -> None:
    if not path.is_file():
        raise LabError(f"{path.relative_to(ROOT)} is missing ({what})")
    say(f"{what}: bash {path.relative_to(ROOT)}")
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(path)], check=False)
    if proc.returncode != 0:
        raise LabError(f"{what} failed (exit {proc.returncode}); see the output above")
    say(f"{what}: done in {time.monotonic() - t0:.0f}s")


def ensure_engine() -> None:
    _run_script(ENSURE_ENGINE, "engine")


def build_images() -> None:
    _run_script(BUILD_IMAGES, "images")


def _external_secrets(b: Bundle) -> list[str]:
    """Names of the external secrets the compose files declare (abra: `abra app secret generate`)."""
    from ruamel.yaml import YAML  # noqa: PLC0415  (only the tooling venv has it)

    names = []
    for f in b.compose_files:
        data = YAML(typ="safe").load((b.path / f).read_text()) or {}
        for key, spec in (data.get("secrets") or {}).items():
            if isinstance(spec, dict) and spec.get("external"):
                names.append(interpolate(spec.get("name") or key, b.env))
    return names


def ensure_secrets(b: Bundle) -> None:
    existing = set(docker("secret", "ls", "--format", "{{.Name}}").stdout.split())
    for name in _external_secrets(b):
        if name in existing:
            continue
        docker("secret", "create", "--label", f"{LAB_LABEL}={b.stack}", name, "-",
               input=secrets.token_urlsafe(32))
        say(f"secret {name} created (random)")


def ensure_networks(b: Bundle) -> None:
    name = f"{b.stack}_proxy"
    if docker("network", "inspect", name, check=False).returncode != 0:
        docker("network", "create", "--driver", "overlay", "--internal", "--attachable",
               "--label", f"{LAB_LABEL}={b.stack}", name)
        say(f"network {name} created (stands in for traefik's proxy network)")


# ------------------------------------------------------------------------------------------------
# state of a stack
# ------------------------------------------------------------------------------------------------
@dataclass
class ServiceState:
    name: str                 # short name (backend)
    running: int = 0
    desired: int = 0
    healthy: int = 0          # running containers that are healthy or have no healthcheck
    health: str = "-"         # summary: healthy / starting / unhealthy / none / mixed
    containers: list = field(default_factory=list)

    @property
    def converged(self) -> bool:
        return self.desired > 0 and self.running >= self.desired and self.healthy >= self.desired

    def summary(self) -> str:
        return f"{self.running}/{self.desired} {self.health}"


def services(stack: str) -> dict[str, int]:
    """Short service name -> desired replicas."""
    out = docker("service", "ls", "--filter", f"label=com.docker.stack.namespace={stack}",
                 "--format", "{{json .}}").stdout
    result = {}
    for row in json_lines(out):
        name = row["Name"][len(stack) + 1:] if row["Name"].startswith(stack + "_") else row["Name"]
        m = re.match(r"\s*(\d+)/(\d+)", row.get("Replicas", ""))
        result[name] = int(m.group(2)) if m else 1
    return result


def inspect(ids: list[str]) -> list[dict]:
    if not ids:
        return []
    proc = docker("inspect", *ids, check=False)
    try:
        return json.loads(proc.stdout or "[]")
    except ValueError:
        return []


def containers(stack: str, service: str | None = None, running: bool = True) -> list[dict]:
    """`docker inspect` of the stack's task containers (of one service), newest first."""
    label = f"com.docker.swarm.service.name={stack}_{service}" if service else \
        f"com.docker.stack.namespace={stack}"
    args = ["ps", "-q", "--no-trunc", "--filter", f"label={label}"]
    if not running:
        args.insert(1, "-a")
    data = inspect(docker(*args).stdout.split())
    return sorted(data, key=lambda c: c.get("Created", ""), reverse=True)


def stack_state(stack: str) -> dict[str, ServiceState]:
    desired = services(stack)
    states = {name: ServiceState(name, desired=n) for name, n in desired.items()}
    for c in containers(stack):
        labels = c["Config"].get("Labels") or {}
        name = labels.get("com.docker.swarm.service.name", "")[len(stack) + 1:]
        st = states.get(name)
        if st is None or c["State"].get("Status") != "running":
            continue
        st.running += 1
        st.containers.append(c)
        health = (c["State"].get("Health") or {}).get("Status")
        if health in (None, "healthy"):
            st.healthy += 1
    for st in states.values():
        kinds = {(c["State"].get("Health") or {}).get("Status", "none") for c in st.containers}
        st.health = kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "-")
    return states


def failed_tasks(stack: str) -> dict[str, list[str]]:
    """Short service name -> errors of its tasks that ended in failure (restarts, crash loops)."""
    proc = docker("stack", "ps", stack, "--no-trunc", "--format", "{{json .}}", check=False)
    out: dict[str, list[str]] = {}
    for row in json_lines(proc.stdout):
        name = row.get("Name", "").split(".")[0]
        short = name[len(stack) + 1:] if name.startswith(stack + "_") else name
        state = row.get("CurrentState", "")
        ended_badly = row.get("Error") and row.get("DesiredState") == "Shutdown"
        if state.startswith(("Failed", "Rejected")) or ended_badly:
            out.setdefault(short, []).append(row.get("Error") or state)
    return out


# ------------------------------------------------------------------------------------------------
# deploy / wait / down
# ------------------------------------------------------------------------------------------------
@dataclass
class Deployment:
    bundle: Bundle
    t0: float                                    # time.time() right before `docker stack deploy`
    healthy_after: dict[str, float] = field(default_factory=dict)

    @property
    def stack(self) -> str:
        return self.bundle.stack


def _supports_detach() -> bool:
    proc = docker("stack", "deploy", "--help", check=False)
    return "--detach" in proc.stdout


def deploy(variant: str, stack: str | None = None, overrides: dict[str, str] | None = None,
           prepare: bool = True) -> Deployment:
    """Bundle, (engine + images when prepare), secrets, network, `docker stack deploy`."""
    if prepare:
        ensure_engine()
        build_images()
    b = bundle(variant, stack, overrides)
    for note in b.notes:
        say(f"note: {note}")
    ensure_secrets(b)
    ensure_networks(b)
    cmd = b.deploy_cmd()
    if _supports_detach():
        cmd.insert(3, "--detach=true")
    say(f"deploy ({variant}) in {b.path.relative_to(ROOT)}: {shlex.join(cmd[1:])}")
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=b.path, env=b.full_env(), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LabError(f"docker stack deploy failed: {proc.stderr.strip() or proc.stdout.strip()}")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    (STATE_DIR / f"{b.stack}.json").write_text(json.dumps(
        {"variant": variant, "t0": t0, "bundle": str(b.path), "env": b.env}, indent=1))
    return Deployment(b, t0)


def load_deployment(stack: str) -> dict:
    path = STATE_DIR / f"{stack}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def wait_converged(stack: str, t0: float | None = None, timeout: float = 600, settle: float = 5,
                   interval: float = 1.0, progress=say) -> dict[str, float]:
    """Wait until every service of the stack runs its replicas, healthy where a healthcheck exists,
    and has stayed so for `settle` seconds. Returns short service name -> seconds from t0 to healthy.
    Raises LabError (with the state of every service) at the deadline."""
    t0 = t0 if t0 is not None else time.time()
    since: dict[str, float] = {}
    last_line, last_print = "", 0.0
    deadline = time.monotonic() + timeout
    while True:
        now = time.time()
        try:
            states = stack_state(stack)
        except LabError as exc:
            states = {}
            progress(f"  (docker: {exc})")
        for name, st in states.items():
            if st.converged:
                since.setdefault(name, now)
            else:
                since.pop(name, None)
        line = "  ".join(f"{n} {st.summary()}" for n, st in sorted(states.items()))
        if progress and (line != last_line or time.monotonic() - last_print > 15):
            progress(f"[{now - t0:5.0f}s] {line or 'no services yet'}")
            last_line, last_print = line, time.monotonic()
        if states and all(st.converged for st in states.values()) and \
                now - max(since.values()) >= settle:
            return {name: since[name] - t0 for name in states}
        if time.monotonic() > deadline:
            bad = [f"{n} {st.summary()}" for n, st in sorted(states.items()) if not st.converged]
            raise LabError(f"stack {stack} did not converge within {timeout:.0f}s; not ready: "
                           + (", ".join(bad) or "no services"))
        time.sleep(interval)


def down(stack: str, timeout: float = 240, progress=say) -> None:
    """Remove the stack and everything the lab made for it (volumes, secrets, proxy network)."""
    t_start = time.monotonic()
    if services(stack):
        docker("stack", "rm", stack, check=False)
        progress(f"stack {stack} removed; waiting for its containers and networks to go")
    deadline = time.monotonic() + timeout
    ns = f"label=com.docker.stack.namespace={stack}"
    while True:
        left_c = docker("ps", "-aq", "--filter", ns).stdout.split()
        left_n = docker("network", "ls", "-q", "--filter", ns).stdout.split()
        if not left_c and not left_n:
            break
        if time.monotonic() > deadline:
            raise LabError(f"stack {stack}: {len(left_c)} containers and {len(left_n)} networks still "
                           f"there after {timeout:.0f}s")
        time.sleep(1)
    for vol in docker("volume", "ls", "-q", "--filter", ns).stdout.split():
        for attempt in range(10):
            if docker("volume", "rm", vol, check=False).returncode == 0:
                break
            time.sleep(1 + attempt)
        else:
            raise LabError(f"volume {vol} could not be removed")
    lab = f"label={LAB_LABEL}={stack}"
    for name in docker("secret", "ls", "-q", "--filter", lab).stdout.split():
        docker("secret", "rm", name, check=False)
    for name in docker("network", "ls", "-q", "--filter", lab).stdout.split():
        docker("network", "rm", name, check=False)
    (STATE_DIR / f"{stack}.json").unlink(missing_ok=True)
    progress(f"stack {stack} is gone ({time.monotonic() - t_start:.0f}s); images and engine kept")


def lab_stacks() -> list[str]:
    """Stacks the lab created (they carry the lab's secrets/network labels or a state file)."""
    names = {p.stem for p in STATE_DIR.glob("*.json")} if STATE_DIR.exists() else set()
    fmt = f'{{{{.Label "{LAB_LABEL}"}}}}'
    out = docker("network", "ls", "--filter", f"label={LAB_LABEL}", "--format", fmt, check=False).stdout
    names.update(x for x in out.split() if x)
    return sorted(names)


# ------------------------------------------------------------------------------------------------
# exec / logs
# ------------------------------------------------------------------------------------------------
def container_id(stack: str, service: str) -> str:
    cs = containers(stack, service)
    if not cs:
        raise LabError(f"no running container for {stack}_{service}")
    return cs[0]["Id"]


def exec_in(stack: str, service: str, cmd: list[str] | str, user: str | None = None,
            input: str | None = None, check: bool = False,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """`docker exec` in the newest running container of the service (a string runs under /bin/sh -c)."""
    args = ["exec"]
    if input is not None:
        args.append("-i")
    if user:
        args += ["-u", user]
    argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    return docker(*args, container_id(stack, service), *argv, input=input, check=check, timeout=timeout)


def logs(stack: str, service: str, since: str | None = None, tail: str = "all") -> str:
    """Logs of every task of the service (dead ones included), stdout and stderr merged."""
    args = ["service", "logs", "--raw", "--no-trunc", "--tail", tail]
    if since:
        args += ["--since", since]
    proc = docker(*args, f"{stack}_{service}", check=False, timeout=60)
    return proc.stdout + proc.stderr


def abra_cmd(b_path: Path, stack: str, service: str, function: str,
             *args: str) -> subprocess.CompletedProcess:
    """What `abra app cmd <app> <service> <function>` does: run abra.sh's function in the container."""
    script = (b_path / "abra.sh").read_text() + "\n" + shlex.join([function, *args]) + "\n"
    return exec_in(stack, service, ["sh", "-s"], input=script, timeout=300)


def post_deploy(stack: str, b_path: Path, attempts: int = 5, progress=say) -> None:
    """The post-deploy step an operator runs today: `abra app cmd <app> backend migrate`."""
    for attempt in range(1, attempts + 1):
        proc = abra_cmd(b_path, stack, BACKEND, "migrate")
        if proc.returncode == 0:
            progress("post-deploy: backend migrate ok")
            return
        progress(f"post-deploy: migrate failed (attempt {attempt}): {proc.stderr.strip()[-300:]}")
        time.sleep(3 * attempt)
    raise LabError("post-deploy migrate failed")


def host_header(stack: str) -> str:
    """The public host name the backend accepts (first of DJANGO_ALLOWED_HOSTS in its container)."""
    env = containers(stack, BACKEND)[0]["Config"].get("Env") or []
    for item in env:
        if item.startswith("DJANGO_ALLOWED_HOSTS="):
            return item.split("=", 1)[1].split(",")[0].strip()
    raise LabError("backend has no DJANGO_ALLOWED_HOSTS")


def login_check(stack: str, user: str = "alice", password: str = "") -> dict:
    """Run tests/stack/login_client.py inside the backend; its JSON result."""
    args = ["--host-header", host_header(stack), "--user", user, "--password", password]
    proc = exec_in(stack, BACKEND, ["python3", "-", *args], input=LOGIN_CLIENT.read_text(), timeout=120)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"ok": False, "error": f"login client exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}


WOPI_STATE_PY = """
import json
from wopi.utils import get_wopi_configuration
c = get_wopi_configuration() or {}
ext = c.get("extensions") or {}
print(json.dumps({"configured": bool(ext or c.get("mimetypes")), "extensions": len(ext),
                  "odt": (ext.get("odt") or {}).get("launch_url")}))
"""


def wopi_state(stack: str) -> dict:
    """The backend's cached WOPI configuration (Drive's cache key, read through Django)."""
    proc = exec_in(stack, BACKEND, ["python3", "manage.py", "shell", "-c", WOPI_STATE_PY], user=APP_USER,
                   timeout=60)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"configured": None, "error": proc.stderr.strip()[-500:]}


def findings(stack: str, media: str = "/data/media") -> dict:
    """The known failure modes, observed on a deployed stack."""
    out: dict = {}
    out["wopi"] = wopi_state(stack)
    st = exec_in(stack, BACKEND, ["stat", "-c", "%u:%g", media])
    out["media_owner"] = st.stdout.strip() or st.stderr.strip()
    wr = exec_in(stack, BACKEND, f"touch {media}/.lab-write-test && rm -f {media}/.lab-write-test",
                 user=APP_USER)
    out["media_writable_by_app"] = wr.returncode == 0
    if wr.returncode:
        out["media_write_error"] = wr.stderr.strip()[-200:]
    text = logs(stack, BACKEND)
    out["backend_permission_errors"] = [ln for ln in text.splitlines()
                                        if "Permission denied" in ln or "Errno 13" in ln][:5]
    out["backend_oidc_boot_failures"] = sum("cannot resolve the OIDC provider" in ln
                                            for ln in text.splitlines())
    out["failed_tasks"] = failed_tasks(stack)
    return out


# ------------------------------------------------------------------------------------------------
# output
# ------------------------------------------------------------------------------------------------
def table(stack: str, healthy_after: dict[str, float] | None = None) -> str:
    states = stack_state(stack)
    failed = failed_tasks(stack)
    rows = [("service", "replicas", "health", "healthy after", "failed tasks")]
    for name in sorted(states):
        st = states[name]
        secs = (healthy_after or {}).get(name)
        rows.append((f"{stack}_{name}", f"{st.running}/{st.desired}", st.health,
                     f"{secs:.0f}s" if secs is not None else "-", str(len(failed.get(name, [])))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def explain(stack: str, lines: int = 15) -> None:
    """Why a stack did not converge: failed tasks and the log tail of every service not ready."""
    failed = failed_tasks(stack)
    for name, st in sorted(stack_state(stack).items()):
        if st.converged:
            continue
        say(f"--- {stack}_{name}: {st.summary()}; failed tasks: {failed.get(name, [])[-3:]}")
        for line in logs(stack, name, tail=str(lines)).splitlines()[-lines:]:
            print(f"    {line}", flush=True)


def cmd_up(args) -> int:
    overrides = parse_overrides(args.set)
    stack = args.stack or DEFAULT_STACK[args.variant]
    if not args.no_prepare:
        ensure_engine()
        build_images()
    if services(stack):
        say(f"stack {stack} exists: removing it first (runs are independent)")
        down(stack)
    dep = deploy(args.variant, stack, overrides, prepare=False)
    say(f"waiting for convergence (deadline {args.timeout:.0f}s)")
    try:
        dep.healthy_after = wait_converged(stack, dep.t0, timeout=args.timeout)
        converged = True
    except LabError as exc:
        say(str(exc))
        converged = False
    print(table(stack, dep.healthy_after), flush=True)
    if not converged:
        explain(stack)
    if converged:
        say(f"all services healthy {max(dep.healthy_after.values()):.0f}s after `docker stack deploy`")
    rc = 0 if converged else 1
    if converged:
        post_deploy(stack, dep.bundle.path)
    if converged and not args.no_login_check:
        result = login_check(stack)
        if result.get("ok"):
            me = result.get("me") or {}
            say(f"logged-in check: OIDC login as alice OK, /api/v1.0/users/me/ -> 200 "
                f"({me.get('email') or me.get('sub') or me})")
        else:
            say(f"logged-in check FAILED: {result.get('error')}; steps: {result.get('steps')}")
            rc = 1
    here = Path(sys.argv[0]).resolve()
    rel = here.relative_to(ROOT) if here.is_relative_to(ROOT) else here
    say(f"logged-in check, again: python3 {rel} login --stack {stack}")
    say(f"what each failure mode looks like here: python3 {rel} findings --stack {stack}")
    say(f"remove: python3 {rel} down --stack {stack}   (make demo-down)")
    return rc


def _stack_arg(args) -> str:
    """--stack, else the demo's stack (never guessed: other people's lab stacks may be up)."""
    return args.stack or DEFAULT_STACK["patched"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    def common(p, variant=False):
        p.add_argument("--stack", help="stack name (default drivelab / drivelab_unpatched)")
        if variant:
            p.add_argument("--variant", choices=VARIANTS, default="patched")
            p.add_argument("--set", action="append", metavar="KEY=VAL",
                           help="override a .env value (repeatable), e.g. COLLABORA_SILENT_SECONDS=90")
        return p

    common(sub.add_parser("bundle", help="assemble build/recipe-<variant>/"), variant=True)
    up = common(sub.add_parser("up", help="deploy and wait"), variant=True)
    up.add_argument("--timeout", type=float, default=float(os.environ.get("LAB_TIMEOUT", 600)))
    up.add_argument("--no-prepare", action="store_true", help="skip ensure-engine.sh and images/build.sh")
    up.add_argument("--no-login-check", action="store_true")
    dn = common(sub.add_parser("down", help="remove the stack, its volumes and secrets"))
    dn.add_argument("--all", action="store_true", help="every stack the lab created")
    common(sub.add_parser("status", help="the table, now"))
    lg = common(sub.add_parser("login", help="OIDC login check inside the backend"))
    lg.add_argument("--user", default="alice")
    common(sub.add_parser("findings", help="the failure modes, observed"))
    common(sub.add_parser("wopi", help="the backend's cached WOPI configuration"))
    args = parser.parse_args(argv)

    try:
        if args.cmd == "bundle":
            b = bundle(args.variant, args.stack, parse_overrides(args.set))
            for note in b.notes:
                say(f"note: {note}")
            say(f"bundle in {b.path}")
            print(f"cd {b.path} && set -a && . ./.env && set +a && {shlex.join(b.deploy_cmd())}")
            return 0
        if args.cmd == "up":
            return cmd_up(args)
        if args.cmd == "down":
            for stack in (lab_stacks() if args.all else [_stack_arg(args)]):
                down(stack)
            return 0
        stack = _stack_arg(args)
        if args.cmd == "status":
            dep = load_deployment(stack)
            print(f"stack {stack} ({dep.get('variant', '?')})")
            print(table(stack))
            return 0
        if args.cmd == "login":
            result = login_check(stack, user=args.user)
            print(json.dumps(result, indent=1))
            return 0 if result.get("ok") else 1
        if args.cmd == "findings":
            print(json.dumps(findings(stack), indent=1))
            return 0
        if args.cmd == "wopi":
            print(json.dumps(wopi_state(stack), indent=1))
            return 0
    except LabError as exc:
        print(f"[lab] ERROR: {exc}", file=sys.stderr, flush=True)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
