"""Install tier: what a fresh deploy of lasuite-drive must look like.

1. every service converged: its replicas run, healthy where it has a healthcheck;
2. gunicorn (backend) and celery run as the app user; no root process but the init; no permission
   error in the backend's log;
3. the media volume is owned by the app user and writable by it;
4. a test user completes an OIDC login through the real provider, then GET /users/me/ is 200;
5. Collabora is reported healthy only after its WOPI discovery answers 200 (observed on a
   restart of Collabora: this test is disruptive and runs last).
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from stackhelpers import LOGIN_CLIENT, exec_python, health_of, parse_ts, stack_snapshot

PROC_SCRIPT = r"""
import json, os
procs = {}
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        with open(f"/proc/{pid}/status") as fh:
            fields = dict(line.split(":", 1) for line in fh.read().splitlines() if ":" in line)
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        continue
    procs[pid] = {
        "ppid": int(fields["PPid"]),
        "uids": [int(x) for x in fields["Uid"].split()],
        "gids": [int(x) for x in fields["Gid"].split()],
        "groups": [int(x) for x in fields.get("Groups", "").split()],
        "name": fields["Name"].strip(),
        "cmd": cmd[:200],
    }
print(json.dumps(procs))
"""


def _process_tree(host) -> tuple[dict, list[dict]]:
    """(pid 1, its descendants). Processes started by `docker exec` (ours, healthchecks) are
    children of pid 0, not of pid 1, so they are outside this tree."""
    res = host.run("python3 -c %s", PROC_SCRIPT)
    assert res.rc == 0, f"cannot list processes in the container: {res.stderr}"
    procs = {int(k): v for k, v in json.loads(res.stdout).items()}
    children: dict[int, list[int]] = {}
    for pid, p in procs.items():
        children.setdefault(p["ppid"], []).append(pid)
    tree, todo = [], list(children.get(1, []))
    while todo:
        pid = todo.pop()
        tree.append({"pid": pid, **procs[pid]})
        todo.extend(children.get(pid, []))
    return {"pid": 1, **procs[1]}, tree


def _init_names():
    return ("docker-init", "tini", "dumb-init", "catatonit")


# 1 -----------------------------------------------------------------------------------------------
def test_every_service_converged_and_healthy(converged, stack):
    bad = {name: s for name, s in converged.items() if not s["ok"]}
    assert not bad, (
        f"stack {stack}: services not converged/healthy after the wait: "
        + "; ".join(f"{n}: {s['running']}/{s['desired']} running, health {s['health']}"
                    for n, s in bad.items())
    )


def test_backend_and_collabora_have_healthchecks(docker, stack, opts, converged):
    """Swarm can only order and monitor what reports health."""
    for service in (opts.service_backend, opts.service_collabora):
        c = docker.containers(stack, service)[0]
        assert health_of(c) is not None, f"{stack}_{service} has no healthcheck"


# 2 -----------------------------------------------------------------------------------------------
def test_gunicorn_runs_as_app_user(backend_host, opts):
    pid1, tree = _process_tree(backend_host)
    everyone = ([pid1] if pid1["name"] not in _init_names() else []) + tree
    gunicorn = [p for p in everyone if "gunicorn" in p["cmd"]]
    assert len(gunicorn) >= 2, f"expected a gunicorn master and workers, found {gunicorn or everyone}"
    for p in gunicorn:
        assert set(p["uids"]) == {opts.app_uid}, f"gunicorn pid {p['pid']} uids {p['uids']}: {p['cmd']}"
        assert set(p["gids"]) == {opts.app_gid}, f"gunicorn pid {p['pid']} gids {p['gids']}: {p['cmd']}"
        assert set(p["groups"]) <= {opts.app_gid}, f"gunicorn pid {p['pid']} keeps groups {p['groups']}"


@pytest.mark.parametrize("which", ["backend", "celery"])
def test_no_root_process_but_init(which, request, opts):
    host = request.getfixturevalue(f"{which}_host")
    pid1, tree = _process_tree(host)
    root = [p for p in tree if 0 in p["uids"]]
    if pid1["name"] not in _init_names():
        assert 0 not in pid1["uids"], f"pid 1 ({pid1['cmd']}) is not an init and runs as root"
    assert not root, f"{which}: processes running as root besides the init: " + "; ".join(
        f"{p['pid']} {p['cmd']}" for p in root)
    assert any(set(p["uids"]) == {opts.app_uid} for p in [pid1, *tree]), "no process runs as the app user"


def test_no_permission_error_in_backend_log(docker, backend_container):
    """gunicorn >= 25.1 logs "Control server error: [Errno 13] Permission denied" when it runs as 1001
    without a writable HOME; any other permission error at start is as bad."""
    proc = docker.run("logs", backend_container["Id"], timeout=60)
    bad = [line for line in (proc.stdout + proc.stderr).splitlines()
           if "Permission denied" in line or "[Errno 13]" in line]
    assert not bad, "permission errors in the backend's log:\n" + "\n".join(bad[:10])


# 3 -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["backend", "celery"])
def test_media_volume_owned_by_app_user(which, request, opts, docker, stack):
    host = request.getfixturevalue(f"{which}_host")
    service = opts.service_backend if which == "backend" else opts.service_celery
    mounts = docker.containers(stack, service)[0].get("Mounts") or []
    media = [m for m in mounts if m.get("Destination") == opts.media_path]
    assert media and media[0].get("Type") == "volume", (
        f"{opts.media_path} is not a volume in {service}: {mounts}")
    f = host.file(opts.media_path)
    assert f.is_directory
    assert (f.uid, f.gid) == (opts.app_uid, opts.app_gid), (
        f"{opts.media_path} is owned {f.uid}:{f.gid}, expected {opts.app_uid}:{opts.app_gid}")
    probe = f"{opts.media_path}/.stack-test-{which}-{int(time.time())}"
    # docker exec as the app user, whatever user the container was started with.
    cid = docker.containers(stack, service)[0]["Id"]
    res = docker.run("exec", "-u", f"{opts.app_uid}:{opts.app_gid}", cid, "/bin/sh", "-c",
                     f"touch '{probe}' && rm -f '{probe}'", check=False)
    assert res.returncode == 0, f"the app user cannot write in {opts.media_path}: {res.stderr.strip()}"


# 4 -----------------------------------------------------------------------------------------------
def test_oidc_login_through_the_provider(docker, backend_container, host_header, opts):
    args = ["--host-header", host_header, "--backend", opts.backend_url, "--user", opts.oidc_user,
            "--password", opts.oidc_password, "--login-path", opts.login_path, "--me-path", opts.me_path]
    proc = exec_python(docker, backend_container["Id"], LOGIN_CLIENT.read_text(), *args)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"login client printed nothing (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}"
    result = json.loads(lines[-1])
    assert result.get("ok"), f"OIDC login failed: {result.get('error')}; steps: {result.get('steps')}"
    assert result["me_status"] == 200
    assert opts.oidc_user in json.dumps(result.get("me")), (
        f"/users/me/ is not {opts.oidc_user}: {result.get('me')}")


# 5 -----------------------------------------------------------------------------------------------
POLL_DISCOVERY = r"""
import json, socket, sys, time
host, port, path, deadline = sys.argv[1], int(sys.argv[2]), sys.argv[3], time.time() + float(sys.argv[4])
first_200, last, changes, last_not_200 = None, None, [], None
while time.time() < deadline:
    t = time.time()
    try:
        s = socket.create_connection((host, port), timeout=1.5)
        s.settimeout(1.5)
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        data = b""
        while len(data) < 65536:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        status = "no-answer"
        if data.startswith(b"HTTP/"):
            status = data.split(b"\r\n", 1)[0].split(b" ")[1].decode()
        if status == "200" and b"wopi-discovery" not in data:
            status = "200-not-discovery"
    except socket.timeout:
        status = "silent"
    except OSError as exc:
        status = type(exc).__name__
    if status != last:
        changes.append([round(t, 3), status])
        last = status
    if status == "200" and first_200 is None:
        first_200 = t
    if status != "200" and first_200 is None:
        last_not_200 = t  # start of an attempt that found discovery not answering
    if first_200 is not None and t - first_200 > 3:
        break
    time.sleep(0.25)
print(json.dumps({"first_200": first_200, "last_not_200": last_not_200, "changes": changes}))
"""


def _shared_ip(new: dict, backend: dict) -> str | None:
    """Collabora's address on a network the backend is also on."""
    backend_nets = {n.get("NetworkID") for n in (backend["NetworkSettings"].get("Networks") or {}).values()}
    for net in (new["NetworkSettings"].get("Networks") or {}).values():
        if net.get("NetworkID") in backend_nets and net.get("IPAddress"):
            return net["IPAddress"]
    return None


def test_collabora_healthy_only_after_discovery_200(docker, stack, opts, backend_container, converged):
    """Restart Collabora and watch both sides at once: from the backend's network, the moment its
    discovery first answers 200 (status line and a wopi-discovery body, polled every 0.25 s at the
    task's own address, since Swarm publishes a task's DNS name only once it is healthy); from the
    host, Docker's health log of the new task. The first passing health probe must not END before
    discovery first answered 200: a check that passes on an open port (coolwsd listens long before
    it answers) ends tens of seconds earlier and fails here. Disruptive: runs last."""
    service = f"{stack}_{opts.service_collabora}"
    old_ids = {c["Id"] for c in docker.containers(stack, opts.service_collabora, all_=True)}
    docker.run("service", "update", "--force", "--detach", service, timeout=120)

    deadline = time.monotonic() + opts.collabora_timeout
    new, ip = None, None
    while time.monotonic() < deadline and ip is None:
        fresh = [c for c in docker.containers(stack, opts.service_collabora, all_=True)
                 if c["Id"] not in old_ids]
        if fresh and fresh[0]["State"].get("Status") == "running":
            new = fresh[0]
            ip = _shared_ip(new, backend_container)
        if ip is None:
            time.sleep(0.2)
    assert ip, f"no new running Collabora task with an address on the backend's network ({service})"

    poll: dict = {}

    def run_poller():
        remaining = max(5.0, deadline - time.monotonic())
        proc = exec_python(docker, backend_container["Id"], POLL_DISCOVERY, ip, str(opts.collabora_port),
                           opts.collabora_discovery_path, f"{remaining:.0f}", timeout=remaining + 30)
        lines = proc.stdout.strip().splitlines()
        poll.update(json.loads(lines[-1]) if lines else {"error": proc.stderr.strip()[-500:]})

    poller = threading.Thread(target=run_poller, daemon=True)
    poller.start()

    entries: dict[str, dict] = {}
    status = None
    while time.monotonic() < deadline:
        state = docker.inspect(new["Id"])[0]["State"]
        health = state.get("Health") or {}
        for e in health.get("Log") or []:
            entries[e["Start"]] = e
        status = health.get("Status")
        if status == "healthy" and not poller.is_alive():
            break
        if state.get("Status") != "running":
            break
        time.sleep(0.5)
    poller.join(timeout=60)

    assert status == "healthy", (
        f"the restarted Collabora did not become healthy (health {status}, poll {poll})")
    assert poll.get("first_200"), f"discovery never answered 200 while we watched: {poll}"
    passing = sorted((parse_ts(e["End"]), parse_ts(e["Start"]))
                     for e in entries.values() if e["ExitCode"] == 0)
    assert passing, "the health log shows no passing probe"
    first_end, first_start = passing[0]
    # A poll attempt that meets a silent coolwsd blocks for its whole 1.5 s timeout (connections
    # accepted while silent are never answered), so `first_200` can trail the real moment discovery
    # started answering by up to ~1.75 s. What a too-early check shows is a poll attempt that STARTED
    # after the first passing probe ended and still found discovery not answering.
    tolerance = 0.5  # timestamp rounding, container vs host clock reads
    last_not_200 = poll.get("last_not_200") or 0.0
    assert first_end + tolerance >= last_not_200, (
        f"Collabora was reported healthy {last_not_200 - first_end:.1f}s BEFORE discovery was last seen not "
        f"answering (first passing probe {first_start:.1f}-{first_end:.1f}, last non-200 attempt started "
        f"{last_not_200:.1f}, first 200 at {poll['first_200']:.1f}; discovery states seen: "
        f"{poll.get('changes')})")
    # and the stack is whole again for whoever comes next
    end = time.monotonic() + 120
    while time.monotonic() < end:
        snap = stack_snapshot(docker, stack, {opts.service_collabora: 1})
        if snap[opts.service_collabora]["ok"]:
            break
        time.sleep(1)
