"""Collabora's own healthcheck, run exactly as written in recipe/compose.robust.yml.

The test command is read from the overlay with ruamel.yaml, compose's ``$$`` escape is undone
(``$$`` -> ``$``, what the container receives) and it runs with bash against real servers on
127.0.0.1 (tests/unit/loopback_servers.py). The one adaptation: the script's target
``127.0.0.1/9980`` (in ``/dev/tcp/127.0.0.1/9980``) is replaced by the test server's port - the
test asserts that this text occurs exactly once, so a change of target in the overlay fails here
instead of silently testing something else. Nothing else of the script is changed.
"""

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from loopback_servers import LoopbackServer, discovery_xml, drip, free_port, hang, raw, respond, stream
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "recipe" / "compose.robust.yml"
TARGET = "127.0.0.1/9980"
BUDGET = 5  # the script's own budget (seconds); bash's SECONDS can overrun it by up to ~1 s
BOUND = BUDGET + 1.5

BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="bash not installed")


def _healthcheck():
    data = YAML(typ="safe").load(OVERLAY.read_text())
    return data["services"]["collabora"]["healthcheck"]


def _compose_unescape(text):
    """What compose hands the container: ``$$`` -> ``$``. A lone ``$`` would be interpolated
    by compose/abra, so the overlay must not contain one in this command."""
    assert re.search(r"(?<!\$)\$(?!\$)", text.replace("$$", "")) is None, "unescaped $ in the healthcheck"
    return text.replace("$$", "$")


@pytest.fixture(scope="module")
def script():
    test = _healthcheck()["test"]
    assert test[:3] == ["CMD", "bash", "-c"], test
    assert len(test) == 4, test
    body = _compose_unescape(test[3])
    assert body.count(TARGET) == 1, f"expected exactly one {TARGET} in the healthcheck"
    return body


def run_check(script, port, env=None):
    text = script.replace(TARGET, f"127.0.0.1/{port}")
    started = time.monotonic()
    proc = subprocess.run([BASH, "-c", text], capture_output=True, text=True, timeout=BOUND + 10, env=env)
    return proc, time.monotonic() - started


XML = "text/xml"


def test_healthcheck_settings_are_literal_and_sane():
    hc = _healthcheck()
    assert hc["start_period"] == "10m"  # literal: abra rejects ${VAR} in start_period
    seconds = {"s": 1, "m": 60}
    timeout = int(hc["timeout"][:-1]) * seconds[hc["timeout"][-1]]
    interval = int(hc["interval"][:-1]) * seconds[hc["interval"][-1]]
    assert BOUND <= timeout < interval, hc  # the script's own bound fires before Docker's
    assert 2 <= int(hc["retries"]) <= 10


def test_discovery_200_is_healthy(script):
    with LoopbackServer(respond(200, discovery_xml(), content_type=XML)) as srv:
        proc, _ = run_check(script, srv.port)
    assert proc.returncode == 0, proc
    assert proc.stdout.startswith("ok: "), proc
    assert srv.requests[0].startswith(b"GET /hosting/discovery HTTP/1.1\r\n"), srv.requests


def test_discovery_without_content_length_is_healthy(script):
    with LoopbackServer(respond(200, discovery_xml(), content_type=XML, content_length=False)) as srv:
        proc, _ = run_check(script, srv.port)
    assert proc.returncode == 0, proc


def test_large_real_sized_discovery_is_healthy(script):
    # Collabora's discovery lists hundreds of actions; make sure reading it is not a problem.
    body = discovery_xml().replace("</net-zone>", "<app name='x'/>" * 5000 + "</net-zone>")
    with LoopbackServer(respond(200, body, content_type=XML)) as srv:
        proc, elapsed = run_check(script, srv.port)
    assert proc.returncode == 0, proc
    assert elapsed < BOUND


def test_multibyte_body_in_a_utf8_locale_is_healthy(script):
    # Collabora's image sets LC_CTYPE=C.UTF-8; Content-Length counts bytes, so the script must
    # read bytes, not characters (it sets LC_ALL=C), or it would wait for bytes never sent.
    body = discovery_xml().replace('name="calc"', 'name="cal\u00e7\u00fc\u20ac"')
    env = {"PATH": "/usr/bin:/bin", "LC_CTYPE": "C.UTF-8", "LANG": "C.UTF-8"}
    with LoopbackServer(respond(200, body, content_type=XML)) as srv:
        proc, elapsed = run_check(script, srv.port, env=env)
    assert proc.returncode == 0, proc
    assert elapsed < BUDGET - 1, elapsed  # answered, not timed out


@pytest.mark.parametrize("status", [404, 500, 502, 503])
def test_error_status_is_unhealthy(script, status):
    with LoopbackServer(respond(status, discovery_xml(), content_type=XML)) as srv:
        proc, _ = run_check(script, srv.port)
    assert proc.returncode != 0, proc
    assert f"HTTP {status}" in proc.stdout


def test_200_that_is_not_discovery_is_unhealthy(script):
    with LoopbackServer(respond(200, "<html><body>starting</body></html>", content_type="text/html")) as srv:
        proc, _ = run_check(script, srv.port)
    assert proc.returncode != 0, proc


def test_connection_refused_is_unhealthy(script):
    proc, elapsed = run_check(script, free_port())
    assert proc.returncode != 0, proc
    assert elapsed < BUDGET, elapsed  # refusal is immediate


@pytest.mark.parametrize("read_first", [True, False], ids=["reads-request", "never-reads"])
def test_hang_is_not_healthy_and_is_bounded(script, read_first):
    with LoopbackServer(hang(read_first=read_first)) as srv:
        proc, elapsed = run_check(script, srv.port)
    assert proc.returncode != 0, proc
    assert elapsed < BOUND, elapsed


def test_status_200_then_hang_is_not_healthy(script):
    # Status line and headers, then nothing: a half-answer must not count as healthy.
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 5000\r\n\r\n<wopi-discovery>"
    with LoopbackServer(hang(send=head)) as srv:
        proc, elapsed = run_check(script, srv.port)
    assert proc.returncode != 0, proc
    assert elapsed < BOUND, elapsed


def test_drip_is_not_healthy_and_is_bounded(script):
    with LoopbackServer(drip(b"HTTP/1.1 200 OK\r\n\r\n" + discovery_xml().encode(), 0.5)) as srv:
        proc, elapsed = run_check(script, srv.port)
    assert proc.returncode != 0, proc
    assert elapsed < BOUND, elapsed


def test_huge_body_is_not_healthy(script):
    with LoopbackServer(stream(20 * 1024 * 1024)) as srv:
        proc, elapsed = run_check(script, srv.port)
    assert proc.returncode != 0, proc
    assert elapsed < BOUND, elapsed


def test_garbage_is_not_healthy(script):
    with LoopbackServer(raw(b"200 OK\r\n\r\n<wopi-discovery></wopi-discovery>")) as srv:
        proc, _ = run_check(script, srv.port)
    assert proc.returncode != 0, proc
