"""The WOPI gate and refresher (entrypoints/wopi_gate.py) against real loopback servers.

Collabora is imitated by ``FakeCollabora``: a real TCP server on 127.0.0.1 whose boot phases are
those of coolwsd (connection refused: the port is bound but not listening; then listening but
silent: the kernel accepts, nobody answers; then HTTP 200 with WOPI discovery). Drive is the mini
Drive (tests/minidrive): its ``wopi.tasks.configure_wopi.configure_wopi_clients`` is a real Django
function writing to a real (file-based) cache shared by every process of a test. The gate runs as a
subprocess whose command, after ``--``, prints its pid and what the cache holds: same pid as the
gate's means the gate really exec'd.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GATE = ROOT / "entrypoints" / "wopi_gate.py"
MINIDRIVE = ROOT / "tests" / "minidrive"

import wopi_gate  # noqa: E402  (conftest puts entrypoints/ on sys.path)
from loopback_servers import free_port  # noqa: E402  (tests/unit is on sys.path under pytest)

DISCOVERY = """<?xml version="1.0" encoding="utf-8"?>
<wopi-discovery>
 <net-zone name="external-http">
  <app name="writer">
   <action default="true" ext="odt" name="edit" urlsrc="http://127.0.0.1:{port}/browser/{hash}/cool.html?"/>
   <action ext="odt" name="view" urlsrc="http://127.0.0.1:{port}/browser/{hash}/cool.html?"/>
  </app>
  <app name="calc">
   <action ext="ods" name="edit" urlsrc="http://127.0.0.1:{port}/browser/{hash}/cool.html?"/>
  </app>
  <app name="application/vnd.oasis.opendocument.text">
   <action ext="" name="edit" urlsrc="http://127.0.0.1:{port}/browser/{hash}/cool.html?"/>
  </app>
 </net-zone>
</wopi-discovery>
"""


class FakeCollabora:
    """A Collabora-like discovery server on 127.0.0.1.

    Phases: ``refuse`` (bound, not listening: connect() is refused), ``silent`` (listening, every
    connection accepted and never answered, as while coolwsd spawns its first kit), ``serving``.
    While serving, ``mode`` decides each answer: ``ok`` (200 + discovery with ``hash`` in every
    urlsrc), ``error`` (503), ``flap`` (503 and 200 alternately), ``hang`` (never answers).
    """

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hosting/discovery"
        self.mode = "ok"
        self.hash = "aaaa1111"
        self.served = []  # (monotonic time, status)
        self.first_200 = None
        self.flap_count = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.listening = False
        self.serving = False

    # phases
    def listen(self):
        if not self.listening:
            self.sock.listen(64)
            self.listening = True

    def serve(self):
        self.listen()
        if not self.serving:
            self.serving = True
            threading.Thread(target=self._accept_loop, daemon=True).start()

    def boot(self, refuse, silent):
        """Refused for ``refuse`` s, then silent for ``silent`` s, then serving (in the background).
        As coolwsd (and the lab's stand-in): connections accepted while silent are never answered."""
        mode = self.mode

        def run():
            if self.stopped.wait(refuse):
                return
            self.mode = "hang"
            self.serve()
            if self.stopped.wait(silent):
                return
            self.mode = mode

        threading.Thread(target=run, daemon=True).start()

    def stop(self):
        self.stopped.set()
        try:
            self.sock.close()
        except OSError:
            pass

    def count(self, status=None):
        with self.lock:
            return sum(1 for _, s in self.served if status is None or s == status)

    # serving
    def _accept_loop(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        try:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            with self.lock:
                mode = self.mode
                if mode == "flap":
                    self.flap_count += 1
                    mode = "error" if self.flap_count % 2 else "ok"
            if mode == "hang":
                self.stopped.wait(60)
                return
            if mode == "ok":
                body = DISCOVERY.format(port=self.port, hash=self.hash).encode()
                head = "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n"
                status = 200
            else:
                body = b"service unavailable"
                head = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                status = 503
            conn.sendall(f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            now = time.monotonic()
            with self.lock:
                self.served.append((now, status))
                if status == 200 and self.first_200 is None:
                    self.first_200 = now
        except OSError:
            pass
        finally:
            conn.close()


@pytest.fixture
def collabora():
    server = FakeCollabora()
    yield server
    server.stop()


@pytest.fixture
def drive_env(tmp_path, collabora):
    """Environment of a mini Drive backend whose only WOPI client is ``collabora``."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(
        DJANGO_SETTINGS_MODULE="drive.settings",
        DJANGO_CONFIGURATION="Development",
        OIDC_OP_JWKS_ENDPOINT="http://127.0.0.1:9/jwks",
        MEDIA_ROOT=str(tmp_path / "media"),
        MINIDRIVE_CACHE_DIR=str(tmp_path / "cache"),
        WOPI_CLIENTS="collabora",
        WOPI_COLLABORA_DISCOVERY_URL=collabora.url,
        NO_PROXY="127.0.0.1,localhost",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("WOPI_WAIT_TIMEOUT", None)
    env.pop("WOPI_REFRESH_INTERVAL", None)
    return env


# What the gate execs in these tests: a Drive-like process that reports its pid and the cache.
SHOW_CACHE = r"""
import json, os, sys
sys.path.insert(0, os.getcwd())
import configurations
configurations.setup()
from django.core.cache import cache
config = cache.get("wopi_configuration")
odt = (config or {}).get("extensions", {}).get("odt", {}).get("launch_url")
print(json.dumps({"pid": os.getpid(), "odt": odt, "args": sys.argv[1:]}))
"""


class GateRun:
    """The gate as a subprocess; stderr lines are collected with the (monotonic) time they arrived."""

    def __init__(self, env, command=None, gate_args=None):
        if command is None:
            command = [sys.executable, "-c", SHOW_CACHE, "arg1"]
        args = ["--", *command] if gate_args is None else gate_args
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, str(GATE), *args],
            cwd=MINIDRIVE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines = []  # (time, line)
        self.out = []
        self.readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=lambda: self.out.append(self.proc.stdout.read()), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait(self, timeout):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"gate still running after {timeout} s; stderr: {self.text()}")
        self.ended = time.monotonic()
        for reader in self.readers:
            reader.join(5)
        self.stdout = "".join(self.out)
        return self.proc.returncode

    def stop(self):
        """End a long-running gate/gunicorn: SIGTERM, then SIGKILL after 30 s."""
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def child(self):
        lines = [ln for ln in self.stdout.splitlines() if ln.startswith("{")]
        assert lines, f"the command did not run; stdout={self.stdout!r} stderr={self.text()}"
        return json.loads(lines[-1])

    def text(self):
        return "\n".join(line for _, line in self.lines)

    def gate_lines(self):
        return [line for _, line in self.lines if line.startswith("wopi-gate:")]

    def when(self, fragment):
        for t, line in self.lines:
            if fragment in line:
                return t
        raise AssertionError(f"no line with {fragment!r}; stderr: {self.text()}")


def assert_one_line_per_state(run):
    lines = run.gate_lines()
    assert len(lines) == len(set(lines)), f"repeated log lines:\n{run.text()}"
    assert "Traceback" not in run.text()


# --------------------------------------------------------------------------- gate


def test_late_collabora_refused_then_silent_then_ready(collabora, drive_env):
    """coolwsd's boot: refused, listening but silent, then 200. The gate configures WOPI through
    Drive's function within seconds of the first 200, then execs the command (same pid)."""
    collabora.boot(refuse=5, silent=7)  # refused past Django set-up; silent > one attempt (5 s)
    drive_env["WOPI_WAIT_TIMEOUT"] = "60"
    run = GateRun(drive_env)
    assert run.wait(60) == 0, run.text()
    child = run.child()
    assert child["pid"] == run.proc.pid, "the command was not exec'd in place of the gate"
    assert child["args"] == ["arg1"]
    assert child["odt"] == f"http://127.0.0.1:{collabora.port}/browser/aaaa1111/cool.html?"
    text = run.text()
    assert "waiting up to 60 s for 'collabora' WOPI discovery" in text
    assert "Connection refused" in text  # the first phase was seen as such
    assert "still not ready: no complete answer" in text  # the silent phase, logged once
    assert "WOPI configured after" in text and "2 extensions, 1 mimetypes" in text
    assert "GAVE UP" not in text
    # bounded: configured at most one attempt wait + one backoff cap (+ slack) after the first 200
    assert collabora.first_200 is not None
    # (overlapping attempts: a probe stuck on a connection accepted while silent does not delay it)
    bound = wopi_gate.ATTEMPT_WAIT + wopi_gate.BACKOFF_CAP + 2.0
    assert run.when("WOPI configured after") - collabora.first_200 < bound
    assert_one_line_per_state(run)
    # many attempts, few lines: the log is one line per state change, not one per retry
    assert len(run.gate_lines()) <= 5


def test_permanent_failure_hits_the_bound_and_execs_anyway(collabora, drive_env):
    """Nothing ever answers (listening, silent): the gate gives up at WOPI_WAIT_TIMEOUT with one
    loud line and still execs the command; the cache holds no configuration."""
    collabora.listen()  # silent forever: every attempt runs into the probe's hard deadline
    drive_env["WOPI_WAIT_TIMEOUT"] = "4"
    run = GateRun(drive_env)
    assert run.wait(30) == 0, run.text()
    elapsed = run.ended - run.started
    assert 4.0 <= elapsed < 4.0 + 6.0, elapsed  # the bound, plus Django's set-up and exec
    child = run.child()
    assert child["pid"] == run.proc.pid
    assert child["odt"] is None
    gave_up = [line for line in run.gate_lines() if "GAVE UP" in line]
    assert len(gave_up) == 1, run.text()
    assert "WOPI_WAIT_TIMEOUT=4" in gave_up[0] and "collabora: " in gave_up[0]
    assert_one_line_per_state(run)


def test_refused_forever_hits_the_bound(collabora, drive_env):
    drive_env["WOPI_WAIT_TIMEOUT"] = "3"  # collabora never listens: connection refused each time
    run = GateRun(drive_env)
    assert run.wait(30) == 0, run.text()
    assert run.ended - run.started < 3.0 + 6.0
    assert run.child()["odt"] is None
    assert sum("GAVE UP" in line for line in run.gate_lines()) == 1
    assert "Connection refused" in run.text()


def test_flapping_discovery_is_retried_until_drive_configures(collabora, drive_env):
    """Discovery alternates 503 / 200: the probe may pass and Drive's own fetch then fail; the
    gate retries Drive's function within the bound and ends configured."""
    collabora.mode = "flap"
    collabora.serve()
    drive_env["WOPI_WAIT_TIMEOUT"] = "60"
    run = GateRun(drive_env)
    assert run.wait(60) == 0, run.text()
    assert run.child()["odt"].endswith("/browser/aaaa1111/cool.html?")
    text = run.text()
    assert "configuring WOPI failed, retrying: RuntimeError: status code 503" in text
    assert "WOPI configured after" in text
    assert collabora.count(503) >= 2 and collabora.count(200) >= 2
    assert_one_line_per_state(run)


def test_ready_collabora_configures_at_once(collabora, drive_env):
    collabora.serve()
    run = GateRun(drive_env)  # WOPI_WAIT_TIMEOUT unset: default 300
    assert run.wait(60) == 0, run.text()
    assert run.child()["odt"].endswith("/aaaa1111/cool.html?")
    assert collabora.count(200) == 2  # one probe, one fetch by Drive's function
    assert "waiting" not in run.text()
    assert len(run.gate_lines()) == 2  # ready, configured


def test_bad_timeout_warns_and_uses_the_default(collabora, drive_env):
    collabora.serve()
    drive_env["WOPI_WAIT_TIMEOUT"] = "five minutes"
    run = GateRun(drive_env)
    assert run.wait(60) == 0, run.text()
    assert "warning: WOPI_WAIT_TIMEOUT='five minutes' is not a number of seconds; using 300" in run.text()
    assert run.child()["odt"] is not None


def test_zero_timeout_and_no_clients_exec_at_once(collabora, drive_env):
    drive_env["WOPI_WAIT_TIMEOUT"] = "0"
    run = GateRun(drive_env)
    assert run.wait(30) == 0
    assert "WOPI_WAIT_TIMEOUT=0: not waiting" in run.text()
    assert run.child()["odt"] is None and collabora.count() == 0

    drive_env["WOPI_WAIT_TIMEOUT"] = "60"
    drive_env["WOPI_CLIENTS"] = " , "
    run = GateRun(drive_env)
    assert run.wait(30) == 0
    assert "WOPI_CLIENTS is empty" in run.text()
    assert run.child()["pid"] == run.proc.pid


def test_broken_drive_settings_do_not_block_the_start(collabora, drive_env):
    """Drive requires WOPI_<CLIENT>_DISCOVERY_URL; without it the gate says so once and execs
    (Drive's own start then reports the settings error)."""
    collabora.serve()
    drive_env["WOPI_CLIENTS"] = "collabora,onlyoffice"
    run = GateRun(drive_env, command=[sys.executable, "-c", "import os; print(os.getpid())"])
    assert run.wait(30) == 0, run.text()
    assert run.stdout.strip() == str(run.proc.pid)
    assert "GAVE UP: cannot load Drive's settings" in run.text()
    assert "Traceback" not in run.text()


def test_silent_cache_server_cannot_hold_the_backend(collabora, drive_env):
    """Drive's cache (Redis) accepts connections and never answers: Drive's function hangs inside
    the gate; the gate still execs the command at the bound, with one loud line."""
    collabora.serve()
    silent_redis = socket.socket()
    silent_redis.bind(("127.0.0.1", 0))
    silent_redis.listen(16)  # the kernel accepts; nobody ever answers
    try:
        drive_env["REDIS_URL"] = f"redis://127.0.0.1:{silent_redis.getsockname()[1]}/0"
        drive_env["WOPI_WAIT_TIMEOUT"] = "6"
        run = GateRun(drive_env, command=[sys.executable, "-c", "import os; print(os.getpid())"])
        assert run.wait(40) == 0, run.text()
        assert run.ended - run.started < 6.0 + 8.0
        assert run.stdout.strip() == str(run.proc.pid)
        gave_up = [line for line in run.gate_lines() if "GAVE UP" in line]
        assert len(gave_up) == 1 and "GAVE UP configuring WOPI" in gave_up[0], run.text()
        assert_one_line_per_state(run)
    finally:
        silent_redis.close()


def test_usage_errors(drive_env):
    for gate_args in ([], ["--"]):
        run = GateRun(drive_env, gate_args=gate_args)
        assert run.wait(30) == 64
        assert run.gate_lines() == ["wopi-gate: usage: wopi_gate.py -- COMMAND [ARGS...] (no command given)"]
    drive_env["WOPI_CLIENTS"] = ""
    run = GateRun(drive_env, command=["/nonexistent/gunicorn"])
    assert run.wait(30) == 127
    assert "cannot start '/nonexistent/gunicorn': command not found" in run.text()
    assert "Traceback" not in run.text()


def test_interrupt_while_waiting_is_quiet(collabora, drive_env):
    import signal

    drive_env["WOPI_WAIT_TIMEOUT"] = "60"
    run = GateRun(drive_env)
    deadline = time.monotonic() + 30
    while "waiting up to" not in run.text() and time.monotonic() < deadline:
        time.sleep(0.1)
    run.proc.send_signal(signal.SIGINT)
    assert run.wait(30) == 130
    assert "Traceback" not in run.text()
    assert run.gate_lines()[-1] == "wopi-gate: interrupted while waiting for WOPI"


def test_helpers():
    assert wopi_gate.parse_clients(" collabora, ,OnlyOffice ,") == ["collabora", "OnlyOffice"]
    assert wopi_gate.parse_clients(None) == []
    assert wopi_gate.redact_url("https://u:secret@co.example:9980/hosting/discovery?x=1") == (
        "https://***@co.example:9980/hosting/discovery?x=1"
    )
    assert wopi_gate.category("no complete answer within 4.25s") == wopi_gate.category(
        "no complete answer within 5s"
    )
    assert wopi_gate.category("HTTP 503") != wopi_gate.category("cannot connect: Connection refused")


def test_retry_until_respects_the_deadline_without_backoff(monkeypatch):
    """The built-in loop used when ``backoff`` is missing: bounded, and stops on success."""
    monkeypatch.setitem(sys.modules, "backoff", None)  # import backoff -> ImportError
    calls = []
    start = time.monotonic()
    assert wopi_gate.retry_until(lambda: calls.append(1) or False, start + 1.5, cap=0.2) is False
    assert 1.5 <= time.monotonic() - start < 3.0
    assert len(calls) >= 3
    values = iter([None, 0, "done"])
    assert wopi_gate.retry_until(lambda: next(values), time.monotonic() + 30, cap=0.05) == "done"


def test_retry_until_with_backoff_respects_the_deadline():
    pytest.importorskip("backoff")
    start = time.monotonic()
    calls = []
    assert not wopi_gate.retry_until(lambda: calls.append(1), start + 1.5, cap=0.2)
    assert 1.5 <= time.monotonic() - start < 3.0 and len(calls) >= 3


# --------------------------------------------------------------------------- refresher

# One refresher step in a fresh process of the mini Drive; prints what the cache holds after it.
REFRESH_STEP = r"""
import json, os, sys
sys.path.insert(0, os.getcwd())
sys.path.insert(0, sys.argv[1])
import configurations
configurations.setup()
import wopi_gate
from django.core.cache import cache
action = sys.argv[2]
drive = wopi_gate.DriveWopi()
refresher = wopi_gate.Refresher(10, wopi_gate.import_probe())
refresher.drive = drive
result = None
if action == "tick":
    refresher.tick()
elif action == "refresh":
    refresher.refresh(drive.present())
elif action == "drive-task":  # Drive's own scheduled task, unprotected
    from wopi.tasks.configure_wopi import configure_wopi_clients
    try:
        configure_wopi_clients()
        result = "ok"
    except Exception as exc:
        result = type(exc).__name__
config = cache.get("wopi_configuration")
odt = (config or {}).get("extensions", {}).get("odt", {}).get("launch_url")
print(json.dumps({"odt": odt, "state": cache.get(wopi_gate.STATE_KEY), "result": result}))
"""


SUMMARY = "2 extensions, 1 mimetypes"
RECONFIGURED_CHANGED = "wopi-refresh: WOPI reconfigured (discovery content changed): " + SUMMARY


def step(env, action):
    r = subprocess.run(
        [sys.executable, "-c", REFRESH_STEP, str(ROOT / "entrypoints"), action],
        cwd=MINIDRIVE,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["log"] = [ln for ln in r.stderr.splitlines() if ln.startswith("wopi-refresh:")]
    return out


def configured_by_gate(collabora, env):
    collabora.serve()
    run = GateRun(env)
    assert run.wait(60) == 0, run.text()
    assert run.child()["odt"].endswith(f"/{collabora.hash}/cool.html?")


def test_refresher_picks_up_a_new_urlsrc(collabora, drive_env):
    configured_by_gate(collabora, drive_env)
    same = step(drive_env, "refresh")
    assert same["odt"].endswith("/aaaa1111/cool.html?")
    assert collabora.count(200) == 3  # gate: probe + Drive's fetch; refresh: probe only
    collabora.hash = "bbbb2222"  # Collabora restarted / upgraded
    new = step(drive_env, "refresh")
    assert new["odt"].endswith("/bbbb2222/cool.html?")
    assert new["log"] == [RECONFIGURED_CHANGED]
    again = step(drive_env, "refresh")
    assert again["odt"].endswith("/bbbb2222/cool.html?") and again["log"] == []


def test_refresher_keeps_the_stale_config_when_the_refresh_fails(collabora, drive_env):
    """Discovery changed, so the refresher calls Drive's function, whose fetch fails: Drive's
    function has already deleted the configuration; the refresher puts the snapshot back."""
    configured_by_gate(collabora, drive_env)
    collabora.hash = "cccc3333"
    collabora.flap_count = 1  # next request (the probe) gets 200, Drive's fetch then 503
    collabora.mode = "flap"
    out = step(drive_env, "refresh")
    assert out["odt"].endswith("/aaaa1111/cool.html?"), out
    assert len(out["log"]) == 1
    assert "reconfiguring WOPI failed (RuntimeError: status code 503" in out["log"][0]
    assert "kept the previous configuration" in out["log"][0]
    collabora.mode = "ok"
    healed = step(drive_env, "refresh")
    assert healed["odt"].endswith("/cccc3333/cool.html?")


def test_scheduled_task_during_an_outage_is_healed(collabora, drive_env):
    """Drive's nightly task meets a Collabora outage: it deletes the configuration and fails.
    The refresher restores the last good configuration while discovery is down and reconfigures
    when Collabora is back with a new urlsrc."""
    configured_by_gate(collabora, drive_env)
    collabora.mode = "error"
    task = step(drive_env, "drive-task")
    assert task["result"] == "RuntimeError" and task["odt"] is None  # the upstream behaviour
    down = step(drive_env, "refresh")
    assert down["odt"].endswith("/aaaa1111/cool.html?")  # served stale, not off
    assert any("restored the last good configuration" in ln for ln in down["log"])
    assert any("WOPI discovery not ready (collabora: HTTP 503" in ln for ln in down["log"])
    still = step(drive_env, "refresh")
    assert still["log"] == []  # same state: no new line
    collabora.hash = "dddd4444"
    collabora.mode = "ok"
    back = step(drive_env, "refresh")
    assert back["odt"].endswith("/dddd4444/cool.html?")
    assert back["log"] == [RECONFIGURED_CHANGED]


def test_refresher_configures_when_nothing_was_ever_configured(collabora, drive_env):
    collabora.serve()
    out = step(drive_env, "refresh")
    assert out["odt"].endswith("/aaaa1111/cool.html?")
    assert out["log"] == ["wopi-refresh: WOPI reconfigured (configuration was missing): " + SUMMARY]


def test_refresher_is_single_flight_across_processes(collabora, drive_env):
    """Several workers tick in the same period: one of them probes, the others skip."""
    configured_by_gate(collabora, drive_env)
    before = collabora.count()
    outs = [step(drive_env, "tick") for _ in range(4)]
    assert collabora.count() - before == 1
    assert all(o["odt"].endswith("/aaaa1111/cool.html?") for o in outs)


def refresher_gunicorn(gunicorn, collabora, drive_env, tmp_path, *extra):
    """Serve discovery, point the refresher at the mini Drive, and return (port, gunicorn command)
    for 2 workers loading ``wopi_gate:application`` on a free loopback port."""
    port = free_port()
    drive_env.update(
        WOPI_REFRESH_INTERVAL="10",
        WOPI_WSGI_APPLICATION="drive.wsgi:application",
        PYTHONPATH=str(ROOT / "entrypoints"),
        HOME=str(tmp_path),
    )
    collabora.serve()
    command = [str(gunicorn), "--no-control-socket", *extra, "-w", "2", "-b", f"127.0.0.1:{port}",
               "--chdir", str(MINIDRIVE), "wopi_gate:application"]
    return port, command


def test_refresher_runs_in_gunicorn_workers(collabora, drive_env, tmp_path):
    """End to end: gate, then gunicorn loads ``wopi_gate:application`` (the mini Drive's WSGI app)
    with 2 workers; a Collabora restart with a new urlsrc is served within the refresh period."""
    gunicorn = Path(sys.executable).parent / "gunicorn"
    if not gunicorn.exists():
        pytest.skip("gunicorn is not installed in this venv")
    port, command = refresher_gunicorn(gunicorn, collabora, drive_env, tmp_path)
    run = GateRun(drive_env, command=command)
    try:
        deadline = time.monotonic() + 60
        while "WOPI configured after" not in run.text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "WOPI configured after" in run.text(), run.text()
        collabora.hash = "eeee5555"
        changed = time.monotonic()
        deadline = changed + 45
        while "WOPI reconfigured" not in run.text() and time.monotonic() < deadline:
            assert run.proc.poll() is None, run.text()
            time.sleep(0.2)
        assert "wopi-refresh: WOPI reconfigured (discovery content changed)" in run.text(), run.text()
        out = step(drive_env, "none")
        assert out["odt"].endswith("/eeee5555/cool.html?")
        assert sum("WOPI reconfigured" in ln for _, ln in run.lines) == 1
        assert "Traceback" not in run.text()
    finally:
        run.stop()


class _UnprintableError(Exception):
    def __str__(self):
        raise ValueError("broken __str__")


def test_refresher_thread_survives_unexpected_errors():
    """Neither an exception whose message cannot be built nor a SystemExit from Drive's code may
    end the refresher thread: it logs and keeps ticking."""
    assert wopi_gate._short(_UnprintableError()) == "_UnprintableError"
    refresher = wopi_gate.Refresher(10, None)
    refresher.poll = 0.01
    done = threading.Event()
    errors = iter([_UnprintableError(), SystemExit(3), RuntimeError("redis down")])

    def tick():
        error = next(errors, None)
        if error is not None:
            raise error
        done.set()

    refresher.tick = tick
    thread = threading.Thread(target=refresher.run, daemon=True)
    thread.start()
    assert done.wait(10), "the refresher thread died"
    assert thread.is_alive()


def test_preloaded_gunicorn_master_starts_no_refresher_thread(collabora, drive_env, tmp_path):
    """With ``--preload`` gunicorn loads ``wopi_gate:application`` in its master before forking:
    the master must stay single-threaded (no refresher there); the workers still refresh."""
    gunicorn = Path(sys.executable).parent / "gunicorn"
    if not gunicorn.exists():
        pytest.skip("gunicorn is not installed in this venv")
    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs /proc")
    port, command = refresher_gunicorn(gunicorn, collabora, drive_env, tmp_path, "--preload")
    run = GateRun(drive_env, command=command)
    try:
        deadline = time.monotonic() + 60
        while run.text().count("Booting worker") < 2 and time.monotonic() < deadline:
            assert run.proc.poll() is None, run.text()
            time.sleep(0.2)
        assert run.text().count("Booting worker") == 2, run.text()
        time.sleep(1)
        threads = os.listdir(f"/proc/{run.proc.pid}/task")  # the gate exec'd gunicorn: same pid
        assert len(threads) == 1, f"gunicorn master runs {len(threads)} threads"
        collabora.hash = "ffff6666"
        deadline = time.monotonic() + 45
        while "WOPI reconfigured" not in run.text() and time.monotonic() < deadline:
            assert run.proc.poll() is None, run.text()
            try:  # a request reaches a worker: its refresher starts (the healthcheck does this)
                with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                    conn.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                    conn.recv(1024)
            except OSError:
                pass
            time.sleep(0.5)
        assert "wopi-refresh: WOPI reconfigured (discovery content changed)" in run.text(), run.text()
        assert "Traceback" not in run.text()
    finally:
        run.stop()
