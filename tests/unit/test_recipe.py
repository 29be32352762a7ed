"""Static checks of the recipe overlay: what abra and Swarm would reject, or silently get wrong."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "recipe" / "compose.robust.yml"
ENV_SAMPLE = ROOT / "recipe" / "env.robust.sample"


@pytest.fixture(scope="module")
def overlay():
    return YAML(typ="safe").load(OVERLAY.read_text())


def test_config_versions_are_current():
    """Swarm configs are immutable: a changed script must come with a changed version."""
    r = subprocess.run([sys.executable, str(ROOT / "tests/tools/recipe_versions.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_start_periods_are_literal(overlay):
    """abra rejects ${VAR} inside healthcheck.start_period."""
    for name, svc in overlay["services"].items():
        hc = svc.get("healthcheck")
        if hc and "start_period" in hc:
            assert re.fullmatch(r"\d+(ms|s|m|h)", str(hc["start_period"])), name


def test_every_mounted_config_is_declared(overlay):
    declared = set(overlay["configs"])
    for name, svc in overlay["services"].items():
        for c in svc.get("configs", []):
            assert c["source"] in declared, f"{name} mounts undeclared config {c['source']}"
            assert c["target"].startswith("/opt/robust/"), c["target"]


def test_every_variable_is_documented():
    """Every ${VAR} the overlay reads is documented in env.robust.sample (appended to .env.sample)."""
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", OVERLAY.read_text()))
    used -= {"STACK_NAME", "DOMAIN"}  # the recipe's own
    used = {v for v in used if not v.endswith("_VERSION")}  # abra.robust.sh
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_SAMPLE.read_text(), re.M))
    assert used - documented == set()
