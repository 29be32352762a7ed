"""The unpatched recipe model reproduces today's failures (fidelity of the lab fixture).

One deploy of tests/lab/recipe-unpatched/ (+ compose.lab.yml only) on the lab Swarm, with Collabora
booting slowly (silent for 60 s, as a heavy 25.04 image does), then:

* WOPI configured once at backend start and never again: after discovery answers 200, Drive's
  cached WOPI configuration is still empty;
* the media volume is root-owned and the app user (1001:127) cannot write in it;
* gunicorn >= 25.1 logs its control-socket permission error;
* OIDC is resolved eagerly at boot: with the identity provider down, a restarted backend task exits 1
  (Swarm records a failed task) and the backend has no running replica.

If one of these stops failing, the model no longer shows what the patch set fixes, and the lab's
patched-vs-unpatched comparisons measure nothing. Run: ``.venv/bin/pytest tests/lab/test_unpatched_model.py``
(root, lab engine; about 4 minutes). Never skips: no engine or no images is a failure.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab  # noqa: E402

STACK = "labunpatched"
OVERRIDES = {"COLLABORA_REFUSE_SECONDS": "5", "COLLABORA_SILENT_SECONDS": "60"}

DISCOVERY_200 = """
import sys, urllib.request
try:
    with urllib.request.urlopen("http://collabora:9980/hosting/discovery", timeout=3) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
"""


def wait_for(what, predicate, timeout, interval=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def stack():
    if lab.services(STACK):
        lab.down(STACK)
    dep = lab.deploy("unpatched", STACK, OVERRIDES, prepare=True)
    try:
        lab.wait_converged(STACK, dep.t0, timeout=420)
        lab.post_deploy(STACK, dep.bundle.path)
        yield STACK
    finally:
        lab.down(STACK)


def test_wopi_configured_once_then_never(stack):
    wait_for("Collabora's discovery to answer 200 (seen from the backend)",
             lambda: lab.exec_in(stack, "backend", ["python3", "-c", DISCOVERY_200]).returncode == 0,
             timeout=180)
    time.sleep(10)  # the worker had every chance; Drive's task does not retry
    state = lab.wopi_state(stack)
    assert state.get("configured") is False, f"expected WOPI left unconfigured, got {state}"


def test_media_volume_root_owned_and_not_writable(stack):
    found = lab.findings(stack)
    assert found["media_owner"] == "0:0", found
    assert found["media_writable_by_app"] is False, found


def test_gunicorn_control_socket_permission_error(stack):
    text = lab.logs(stack, "backend")
    assert "Control server error" in text and "Permission denied" in text, text[-2000:]


def test_eager_oidc_exits_when_the_provider_is_down(stack):
    before = len(lab.failed_tasks(stack).get("backend", []))
    lab.docker("service", "scale", "--detach", f"{stack}_idp=0")
    try:
        wait_for("idp gone", lambda: not lab.containers(stack, "idp"), timeout=60, interval=1)
        lab.docker("service", "update", "--force", "--detach", f"{stack}_backend")
        wait_for("a backend task failing at boot",
                 lambda: len(lab.failed_tasks(stack).get("backend", [])) > before, timeout=120)
        assert "cannot resolve the OIDC provider" in lab.logs(stack, "backend", since="3m")
    finally:
        lab.docker("service", "scale", "--detach", f"{stack}_idp=1")
    lab.wait_converged(stack, timeout=240, progress=None)
