"""recipe/apply.py on a copy of the lab's unpatched recipe model (tests/lab/recipe-unpatched/).

Why the tool exists: docker/cli's compose loader (docker stack deploy, abra) merges chained files with
append semantics for lists, so an overlay's healthcheck.test would be appended to the recipe's and
the recipe's old check would keep running. apply.py removes the recipe's healthcheck where the
overlay defines a test; the merge simulation at the end checks the effect.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
APPLY = ROOT / "recipe" / "apply.py"
MODEL = ROOT / "tests" / "lab" / "recipe-unpatched"
OVERLAY = ROOT / "recipe" / "compose.robust.yml"
LAB_OVERLAY = ROOT / "tests" / "lab" / "compose.lab.yml"
SCRIPTS = {"probe.py": "healthchecks", "drive_entrypoint.py": "entrypoints", "wopi_gate.py": "entrypoints",
           "lazy_oidc.py": "entrypoints", "drive_robust_settings.py": "entrypoints"}
REPLACED = ("backend", "collabora")   # the services whose healthcheck.test the overlay defines


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(APPLY), *map(str, args)], capture_output=True, text=True,
                          timeout=60)


def safe(path: Path):
    return YAML(typ="safe").load(path.read_text())


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def recipe(tmp_path) -> Path:
    d = tmp_path / "lasuite-drive"
    shutil.copytree(MODEL, d)
    return d


@pytest.fixture
def applied(recipe) -> Path:
    r = run(recipe)
    assert r.returncode == 0, r.stderr
    return recipe


def _apply_module():
    spec = importlib.util.spec_from_file_location("recipe_apply", APPLY)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod   # dataclasses look their module up while it executes
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------------------------------------
# what apply does
# ------------------------------------------------------------------------------------------------
def test_overlay_replaces_exactly_these_healthchecks():
    """The premise of the other tests: the overlay defines healthcheck.test for backend and collabora."""
    overlay = safe(OVERLAY)
    have = sorted(n for n, s in overlay["services"].items() if "test" in ((s or {}).get("healthcheck") or {}))
    assert have == sorted(REPLACED)


def test_apply_removes_only_the_replaced_healthchecks(applied):
    before, after = safe(MODEL / "compose.yml"), safe(applied / "compose.yml")
    for name in REPLACED:
        assert "healthcheck" in before["services"][name]
        assert "healthcheck" not in after["services"][name], name
    # Everything else is the same document (db and redis keep their healthchecks, anchors resolve).
    for name in REPLACED:
        del before["services"][name]["healthcheck"]
    assert after == before
    assert "healthcheck" in after["services"]["db"] and "healthcheck" in after["services"]["redis"]


def test_apply_keeps_comments_and_layout_elsewhere(applied):
    old = (MODEL / "compose.yml").read_text().splitlines()
    new = (applied / "compose.yml").read_text().splitlines()
    diff = [ln for ln in difflib.unified_diff(old, new, lineterm="", n=0)
            if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    removed = [ln[1:] for ln in diff if ln.startswith("-")]
    added = [ln[1:] for ln in diff if ln.startswith("+")]
    # Exactly the two healthcheck blocks go (7 + 8 lines, the collabora one with its comments) ...
    assert len(removed) == 15, removed
    assert sum(ln.strip() == "healthcheck:" for ln in removed) == 2
    assert all(ln.startswith("      ") or ln == "    healthcheck:" for ln in removed), removed
    # ... each replaced by one comment line at the key's indentation, pointing to the overlay.
    assert len(added) == 2
    assert all(ln.startswith("    # healthcheck:") and "compose.robust.yml" in ln for ln in added)
    # Untouched bytes elsewhere: comments, a multi-line flow sequence, quoting, anchors.
    text = (applied / "compose.yml").read_text()
    for keep in ("# MODEL of the Co-op Cloud `lasuite-drive` recipe",
                 "  # Secrets are passed as files: Drive's settings read <NAME>_FILE",
                 '    command: ["celery", "-A", "drive.celery_app", "beat", "-l", "INFO",\n'
                 '              "--schedule", "/tmp/celerybeat-schedule"]',
                 "x-backend-env: &backend-env", "    secrets: *backend-secrets",
                 'test: ["CMD-SHELL", "pg_isready -h 127.0.0.1 -U \\"$$POSTGRES_USER\\" '
                 '-d \\"$$POSTGRES_DB\\""]'):
        assert keep in text, keep


def test_apply_installs_overlay_and_scripts(applied):
    assert (applied / "compose.robust.yml").read_bytes() == OVERLAY.read_bytes()
    robust = applied / "robust"
    assert sorted(p.name for p in robust.iterdir()) == sorted(SCRIPTS)
    for name, src_dir in SCRIPTS.items():
        assert (robust / name).read_bytes() == (ROOT / src_dir / name).read_bytes(), name
    # The list is the overlay's: every ./robust/X it mounts is there.
    for spec in safe(OVERLAY)["configs"].values():
        assert (applied / spec["file"]).is_file(), spec["file"]


@pytest.mark.parametrize("target, block",
                         [("abra.sh", "abra.robust.sh"), (".env.sample", "env.robust.sample")])
def test_blocks_appended_once(applied, target, block):
    text = (applied / target).read_text()
    original = (MODEL / target).read_text()
    body = (ROOT / "recipe" / block).read_text()
    assert text.startswith(original), "the recipe's own content must stay in front, unchanged"
    assert text.count(body) == 1
    assert text.count(f"lasuite-drive robustness patch: {block} (managed by") == 1
    assert text.count(f"# <<< lasuite-drive robustness patch: {block} <<<") == 1


def test_abra_block_exports_every_config_version(applied):
    """Sourcing the patched abra.sh (what abra does) sets every ${X_VERSION} the overlay names."""
    out = subprocess.run(["bash", "-c", "set -a; . ./abra.sh; env"], cwd=applied, capture_output=True,
                         text=True, check=True).stdout
    exported = {ln.split("=", 1)[0] for ln in out.splitlines() if "=" in ln}
    wanted = set(re.findall(r"\$\{([A-Z0-9_]+_VERSION)\}", OVERLAY.read_text()))
    assert wanted and wanted <= exported


def test_apply_twice_is_identical(applied):
    first = snapshot(applied)
    r = run(applied)
    assert r.returncode == 0, r.stderr
    assert "already patched" in r.stdout
    assert snapshot(applied) == first


def test_reapply_replaces_an_outdated_block(applied):
    abra = applied / "abra.sh"
    abra.write_text(abra.read_text().replace("export PROBE_PY_VERSION=", "export PROBE_PY_VERSION=old"))
    r = run(applied, "--check")
    assert r.returncode == 1 and "abra.sh: abra.robust.sh block out of date" in r.stdout
    assert run(applied).returncode == 0
    assert abra.read_text().count("export PROBE_PY_VERSION=") == 1
    assert run(applied, "--check").returncode == 0


def test_check_before_and_after(recipe):
    r = run(recipe, "--check")
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert any(ln.startswith("apply: compose.yml: healthcheck of backend, collabora") for ln in lines), lines
    assert "apply: compose.robust.yml: missing" in lines
    assert sum(ln.startswith("apply: robust/") for ln in lines) == len(SCRIPTS)
    assert any(ln.startswith("apply: abra.sh:") for ln in lines)
    assert any(ln.startswith("apply: .env.sample:") for ln in lines)
    assert snapshot(recipe) == snapshot(MODEL), "--check must not write"
    assert run(recipe).returncode == 0
    r = run(recipe, "--check")
    assert r.returncode == 0, r.stdout
    (recipe / "robust" / "probe.py").write_text("# edited\n")
    r = run(recipe, "--check")
    assert r.returncode == 1
    assert r.stdout.splitlines() == ["apply: robust/probe.py: differs from the patch set"]


# ------------------------------------------------------------------------------------------------
# refusals: one line, no traceback, nothing written
# ------------------------------------------------------------------------------------------------
def _one_line_error(r, code=1):
    assert r.returncode == code, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.stderr.strip()


def test_missing_service_writes_nothing(recipe):
    compose = recipe / "compose.yml"
    compose.write_text(compose.read_text().replace("\n  collabora:\n", "\n  office:\n"))
    before = snapshot(recipe)
    err = _one_line_error(run(recipe))
    assert "no service collabora" in err
    assert snapshot(recipe) == before
    assert not (recipe / "robust").exists()
    _one_line_error(run(recipe, "--check"))


@pytest.mark.parametrize("case", ["no-dir", "no-compose", "yaml-error", "no-services"])
def test_bad_input_is_one_line(tmp_path, recipe, case):
    target = recipe
    if case == "no-dir":
        target = tmp_path / "nope"
    elif case == "no-compose":
        (recipe / "compose.yml").unlink()
    elif case == "yaml-error":
        (recipe / "compose.yml").write_text("services:\n  backend: [\n")
    else:
        (recipe / "compose.yml").write_text("version: '3.8'\n")
    before = snapshot(recipe)
    err = _one_line_error(run(target))
    assert err.startswith("apply: error:")
    assert snapshot(recipe) == before


def test_usage_errors_exit_2(recipe):
    _one_line_error(run(), code=2)
    _one_line_error(run(recipe, "--frobnicate"), code=2)


def test_damaged_markers_are_refused(applied):
    env = applied / ".env.sample"
    end = "# <<< lasuite-drive robustness patch: env.robust.sample <<<\n"
    env.write_text(env.read_text().replace(end, ""))
    before = snapshot(applied)
    assert "markers" in _one_line_error(run(applied))
    assert snapshot(applied) == before


def test_stale_versions_are_refused(tmp_path, recipe, monkeypatch):
    """A stale abra.robust.sh would ship a changed script under an old (immutable) config name."""
    mod = _apply_module()
    rv = mod._tools()
    stale = tmp_path / "abra.robust.sh"
    stale.write_text((ROOT / "recipe" / "abra.robust.sh").read_text().replace("_VERSION=", "_VERSION=x", 1))
    monkeypatch.setattr(rv, "ABRA", stale)
    monkeypatch.setattr(mod, "ABRA_BLOCK", stale)
    with pytest.raises(mod.ApplyError, match="stale .*make recipe-versions"):
        mod.apply(recipe)
    assert not (recipe / "robust").exists()


# ------------------------------------------------------------------------------------------------
# the splice on other layouts
# ------------------------------------------------------------------------------------------------
def test_splice_edge_layouts():
    mod = _apply_module()
    mod._tools()
    text = (
        "services:\n"
        "  backend:\n"
        "    image: x\n"
        "    healthcheck: {test: [CMD, old], interval: 10s}\n"
        "    # about deploy: stays\n"
        "    deploy: {}\n"
        "  collabora:\n"
        "    image: y\n"
        "    healthcheck:\n"
        "      test:\n"
        "        - CMD\n"
        "        - old\n"
        "\n"
        "      interval: 10s\n"
        "# trailing comment: stays\n"
        "volumes: {}\n"
    )
    new, removed = mod.strip_healthchecks(text, ["backend", "collabora"], ["backend", "collabora"], "t")
    assert removed == ["backend", "collabora"]
    assert "# about deploy: stays" in new and "# trailing comment: stays" in new
    doc = YAML(typ="safe").load(new)
    assert doc == {"services": {"backend": {"image": "x", "deploy": {}}, "collabora": {"image": "y"}},
                   "volumes": {}}
    # Idempotent: nothing left to remove.
    assert mod.strip_healthchecks(new, ["backend", "collabora"], ["backend"], "t") == (new, [])


def test_splice_refuses_a_merged_healthcheck():
    mod = _apply_module()
    mod._tools()
    text = "x: &c\n  healthcheck: {test: [CMD, old]}\nservices:\n  backend:\n    <<: *c\n    image: x\n"
    with pytest.raises(mod.ApplyError, match="merge key"):
        mod.strip_healthchecks(text, ["backend"], ["backend"], "t")


# ------------------------------------------------------------------------------------------------
# the effect: docker/cli's append-merge of chained compose files, simulated
# ------------------------------------------------------------------------------------------------
def append_merge(base, override):
    """docker/cli (cli/compose/loader/merge.go, mergo WithOverride + WithAppendSlice) for the parts
    that matter here: mappings merge key by key, lists are concatenated, scalars are overridden.
    (docker/cli special-cases a few lists -- entrypoint/command are replaced, ports/configs/secrets/
    volumes merged by key -- but healthcheck.test is a plain list and is appended.)"""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = append_merge(base[key], value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(override, list):
        return base + override
    return override


def effective(*files: Path) -> dict:
    doc: dict = {}
    for f in files:
        doc = append_merge(doc, safe(f))
    return doc


def test_merge_simulation_shows_the_problem_on_the_unpatched_recipe():
    eff = effective(MODEL / "compose.yml", OVERLAY)
    test = eff["services"]["collabora"]["healthcheck"]["test"]
    old = safe(MODEL / "compose.yml")["services"]["collabora"]["healthcheck"]["test"]
    assert test[:len(old)] == old, "chaining alone keeps the recipe's old check in front"


def test_effective_healthcheck_is_exactly_the_overlays(applied):
    overlay = safe(OVERLAY)
    for chain in ((applied / "compose.yml", applied / "compose.robust.yml"),
                  (applied / "compose.yml", applied / "compose.robust.yml", LAB_OVERLAY)):
        eff = effective(*chain)
        for name in REPLACED:
            assert eff["services"][name]["healthcheck"] == overlay["services"][name]["healthcheck"], \
                (name, [p.name for p in chain])


def test_lab_overlay_adds_no_healthcheck_test_to_backend_or_collabora():
    lab = safe(LAB_OVERLAY)
    with_test = {n for n, s in lab["services"].items() if "test" in ((s or {}).get("healthcheck") or {})}
    assert with_test <= {"idp", "db", "redis"}, with_test
