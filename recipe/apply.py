#!/usr/bin/env python3
"""Apply the robustness patch set to a checkout of the lasuite-drive recipe.

    python3 recipe/apply.py RECIPE_DIR           # patch it (idempotent: re-running changes nothing)
    python3 recipe/apply.py RECIPE_DIR --check   # exit 0 if patched and current, else 1 + the differences

What it does to RECIPE_DIR:

* copies recipe/compose.robust.yml, and the scripts the overlay mounts (``configs:`` with
  ``file: ./robust/X``, found in healthchecks/ or entrypoints/) to robust/X;
* appends recipe/abra.robust.sh to abra.sh and recipe/env.robust.sample to .env.sample, each
  between marker comments (a re-run replaces the block);
* removes from compose.yml the ``healthcheck`` of every service for which the overlay defines
  ``healthcheck.test``, leaving a one-line comment. Reason: docker/cli's compose loader (used by
  ``docker stack deploy`` and abra) merges chained files with append semantics for lists, so the
  overlay's ``test`` would be appended to the recipe's as ignored arguments and the recipe's old
  check would keep running. Scalars (interval, timeout, ...) do override.

Everything is computed and validated before anything is written; each file is written atomically.
The compose.yml edit is located with ruamel.yaml (round-trip loader: line and column of each key)
and spliced into the original text, so every other byte, comment and layout stays as it was; the
result is re-parsed and must equal the original minus those healthchecks.

Exit status: 0 done / current, 1 error or (--check) differences, 2 usage.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipe"
OVERLAY = RECIPE / "compose.robust.yml"
ABRA_BLOCK = RECIPE / "abra.robust.sh"
ENV_BLOCK = RECIPE / "env.robust.sample"
ROBUST_DIR = "robust"
PROG = "apply"

BEGIN = "# >>> lasuite-drive robustness patch: {src} (managed by recipe/apply.py, do not edit) >>>"
END = "# <<< lasuite-drive robustness patch: {src} <<<"
HC_NOTE = ("# healthcheck: see compose.robust.yml (removed by recipe/apply.py: "
           "chained compose files append healthcheck.test lists)")


class ApplyError(Exception):
    """Bad input or a state apply.py refuses to touch; the message is one line."""


@dataclass
class Plan:
    """What RECIPE_DIR should contain: relative path -> (bytes, mode), and what changes it makes."""
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    removed_healthchecks: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)   # relative path -> why it differs


# ------------------------------------------------------------------------------------------------
# the patch set in this repository
# ------------------------------------------------------------------------------------------------
def _tools():
    """tests/tools/recipe_versions.py (config list, script sources, version checks) and ruamel."""
    try:
        from ruamel.yaml import YAML  # noqa: F401, PLC0415
    except ImportError as exc:
        raise ApplyError(f"ruamel.yaml is not importable ({exc}); run with the repository's .venv") from exc
    tools = str(ROOT / "tests" / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    import recipe_versions  # noqa: PLC0415

    return recipe_versions


def _yaml_errors() -> tuple[type[BaseException], ...]:
    from ruamel.yaml.error import MarkedYAMLError, YAMLError  # noqa: PLC0415

    return (MarkedYAMLError, YAMLError)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _one_line(exc: BaseException) -> str:
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is not None and problem:  # ruamel's MarkedYAMLError: say where, without the excerpt
        ctx = getattr(exc, "context", None)
        return f"{ctx + ', ' if ctx else ''}{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def load_overlay() -> dict:
    from ruamel.yaml import YAML  # noqa: PLC0415

    try:
        doc = YAML(typ="safe").load(OVERLAY.read_text())
    except OSError as exc:
        raise ApplyError(f"cannot read {_rel(OVERLAY)}: {exc.strerror}") from exc
    except _yaml_errors() as exc:
        raise ApplyError(f"{_rel(OVERLAY)}: YAML error: {_one_line(exc)}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise ApplyError(f"{_rel(OVERLAY)} has no services mapping")
    return doc


def robust_scripts(overlay: dict | None = None) -> dict[str, Path]:
    """robust/<name> -> its source in this repository, from the overlay's ``configs:`` section."""
    rv = _tools()
    overlay = overlay if overlay is not None else load_overlay()
    out: dict[str, Path] = {}
    for key, spec in (overlay.get("configs") or {}).items():
        file = (spec or {}).get("file", "")
        if not file.startswith(f"./{ROBUST_DIR}/") or "/" in file[len(ROBUST_DIR) + 3:]:
            raise ApplyError(f"overlay config {key}: file {file!r} is not ./{ROBUST_DIR}/<name>")
        name = file[len(ROBUST_DIR) + 3:]
        try:
            out[name] = rv.source_of(name)
        except FileNotFoundError as exc:
            raise ApplyError(str(exc)) from exc
    return out


def healthcheck_services(overlay: dict) -> list[str]:
    """Services whose healthcheck.test the overlay defines (it must replace the recipe's)."""
    return [name for name, svc in overlay["services"].items()
            if isinstance((svc or {}).get("healthcheck"), dict) and "test" in svc["healthcheck"]]


def abra_block_text() -> str:
    """recipe/abra.robust.sh, refusing a stale one (Swarm configs are immutable)."""
    rv = _tools()
    if not ABRA_BLOCK.is_file():
        raise ApplyError(f"{_rel(ABRA_BLOCK)} is missing; run `make recipe-versions`")
    try:
        want = rv.wanted()
    except (OSError, ValueError, KeyError) as exc:
        raise ApplyError(f"config versions: {_one_line(exc)}") from exc
    have = rv.current()
    stale = sorted(k for k in want if have.get(k) != want[k]) + sorted(set(have) - set(want))
    if stale:
        raise ApplyError(f"{_rel(ABRA_BLOCK)} is stale ({', '.join(stale)}); "
                         "run `make recipe-versions`")
    return ABRA_BLOCK.read_text()


# ------------------------------------------------------------------------------------------------
# marker blocks (abra.sh, .env.sample)
# ------------------------------------------------------------------------------------------------
def with_block(text: str, src: str, body: str, what: str) -> str:
    """`text` with the marker block for `src` set to `body` (replaced in place, else appended)."""
    begin, end = BEGIN.format(src=src), END.format(src=src)
    block = f"{begin}\n{body.rstrip(chr(10))}\n{end}\n"
    lines = text.splitlines(keepends=True)
    starts = [i for i, ln in enumerate(lines) if ln.rstrip("\r\n") == begin]
    ends = [i for i, ln in enumerate(lines) if ln.rstrip("\r\n") == end]
    if not starts and not ends:
        if text and not text.endswith("\n"):
            text += "\n"
        sep = "\n" if text.strip() and not text.endswith("\n\n") else ""
        return text + sep + block
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ApplyError(f"{what}: the markers of the {src} block are damaged "
                         f"({len(starts)} begin, {len(ends)} end); fix them by hand")
    return "".join(lines[:starts[0]]) + block + "".join(lines[ends[0] + 1:])


# ------------------------------------------------------------------------------------------------
# compose.yml: drop the healthchecks the overlay replaces
# ------------------------------------------------------------------------------------------------
def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _next_key_line(parents: list, stop_after: int) -> int | None:
    """Line of the first key, in any of the enclosing mappings, that starts after line `stop_after`."""
    best = None
    for mapping in parents:
        for (line, _col, *_rest) in mapping.lc.data.values():
            if line > stop_after and (best is None or line < best):
                best = line
    return best


def strip_healthchecks(text: str, services: list[str], overlay_services: list[str],
                       what: str) -> tuple[str, list[str]]:
    """compose.yml text without the `healthcheck` of `services`, and the services it removed them from.

    Every service the overlay names must exist in the file (matched by name)."""
    from ruamel.yaml import YAML  # noqa: PLC0415

    try:
        doc = YAML().load(text)
        plain = YAML(typ="safe").load(text)
    except _yaml_errors() as exc:
        raise ApplyError(f"{what}: YAML error: {_one_line(exc)}") from exc
    if not isinstance(plain, dict) or not isinstance(plain.get("services"), dict):
        raise ApplyError(f"{what}: no services mapping")
    missing = [s for s in overlay_services if s not in plain["services"]]
    if missing:
        raise ApplyError(f"{what}: no service {', '.join(missing)} (the overlay changes services by name; "
                         "rename the keys in compose.robust.yml to the recipe's)")
    svcs = doc["services"]
    lines = text.splitlines(keepends=True)
    cuts: list[tuple[int, int, int]] = []   # (first line, line after the block, indent)
    removed = []
    for name in services:
        svc = svcs[name]
        if not isinstance(svc, dict) or "healthcheck" not in svc:
            continue
        if "healthcheck" not in svc.lc.data:
            raise ApplyError(f"{what}: the healthcheck of {name} comes from a YAML merge key (<<); "
                             "remove it there by hand")
        if svc.fa.flow_style() or svcs.fa.flow_style():
            raise ApplyError(f"{what}: service {name} is written in flow style; "
                             "remove its healthcheck by hand")
        first, col = svc.lc.key("healthcheck")
        limit = _next_key_line([svc, svcs, doc], first)
        limit = len(lines) if limit is None else limit
        last = first
        for i in range(first + 1, limit):
            if lines[i].strip() and _indent(lines[i]) > col:
                last = i
        cuts.append((first, last + 1, col))
        removed.append(name)
    for first, after, col in sorted(cuts, reverse=True):
        lines[first:after] = [" " * col + HC_NOTE + "\n"]
    new = "".join(lines)
    # The splice must change nothing but those healthchecks.
    expected = plain
    for name in removed:
        del expected["services"][name]["healthcheck"]
    try:
        got = YAML(typ="safe").load(new)
    except _yaml_errors() as exc:
        raise ApplyError(f"{what}: removing the healthcheck of {', '.join(removed)} breaks the file "
                         f"({_one_line(exc)}); remove it by hand") from exc
    if got != expected:
        raise ApplyError(f"{what}: removing the healthcheck of {', '.join(removed)} would change more "
                         "than that (unusual layout); remove it by hand")
    return new, removed


# ------------------------------------------------------------------------------------------------
# plan, check, write
# ------------------------------------------------------------------------------------------------
def _read(path: Path, what: str) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ApplyError(f"cannot read {what}: {_one_line(exc)}") from exc


def _mode(path: Path, default: int) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return default


def plan(recipe_dir: Path) -> Plan:
    """Everything RECIPE_DIR must contain once patched (validated; nothing written)."""
    if not recipe_dir.is_dir():
        raise ApplyError(f"{recipe_dir}: no such directory")
    compose_path = recipe_dir / "compose.yml"
    if not compose_path.is_file():
        raise ApplyError(f"{compose_path}: no such file (is {recipe_dir} a recipe checkout?)")
    _tools()
    overlay = load_overlay()
    p = Plan()

    compose = _read(compose_path, "compose.yml")
    new_compose, removed = strip_healthchecks(compose, healthcheck_services(overlay),
                                              list(overlay["services"]), "compose.yml")
    p.files["compose.yml"] = (new_compose.encode(), _mode(compose_path, 0o644))
    p.removed_healthchecks = removed
    if removed:
        p.notes["compose.yml"] = (f"healthcheck of {', '.join(removed)} still present "
                                  "(the overlay's would be appended to it, not replace it)")

    p.files["compose.robust.yml"] = (OVERLAY.read_bytes(), 0o644)
    for name, src in robust_scripts(overlay).items():
        p.files[f"{ROBUST_DIR}/{name}"] = (src.read_bytes(), _mode(src, 0o644))

    for target, src, body in (("abra.sh", ABRA_BLOCK, abra_block_text()),
                              (".env.sample", ENV_BLOCK, _read(ENV_BLOCK, ENV_BLOCK.name))):
        if body is None:
            raise ApplyError(f"{_rel(src)} is missing")
        old = _read(recipe_dir / target, target)
        p.files[target] = (with_block(old or "", src.name, body, target).encode(),
                           _mode(recipe_dir / target, 0o644))
        if old is None:
            p.notes[target] = "missing"
        elif BEGIN.format(src=src.name) not in old:
            p.notes[target] = f"no {src.name} block"
        else:
            p.notes[target] = f"{src.name} block out of date"
    return p


def differences(recipe_dir: Path, p: Plan) -> dict[str, str]:
    """Relative path -> why it is not as the patch set wants it (empty: patched and current)."""
    out = {}
    for rel, (data, _mode) in p.files.items():
        try:
            have = (recipe_dir / rel).read_bytes()
        except FileNotFoundError:
            out[rel] = "missing"
            continue
        except OSError as exc:
            out[rel] = f"unreadable ({exc.strerror})"
            continue
        if have != data:
            out[rel] = p.notes.get(rel, "differs from the patch set")
    return out


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply(recipe_dir: Path) -> list[str]:
    """Patch RECIPE_DIR; the relative paths written (empty: it was already current)."""
    p = plan(recipe_dir)
    changed = list(differences(recipe_dir, p))
    for rel in changed:
        data, mode = p.files[rel]
        write_atomic(recipe_dir / rel, data, mode)
    return changed


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        self.exit(2, f"{PROG}: usage: apply.py RECIPE_DIR [--check] ({message})\n")


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog="apply.py", description=__doc__.splitlines()[0])
    ap.add_argument("recipe_dir", metavar="RECIPE_DIR", type=Path)
    ap.add_argument("--check", action="store_true",
                    help="change nothing; exit 1 and list the differences unless patched and current")
    a = ap.parse_args(argv)
    try:
        if a.check:
            diffs = differences(a.recipe_dir, plan(a.recipe_dir))
            for rel, why in diffs.items():
                print(f"{PROG}: {rel}: {why}")
            if not diffs:
                print(f"{PROG}: {a.recipe_dir} is patched and current")
            return 1 if diffs else 0
        changed = apply(a.recipe_dir)
    except ApplyError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    if changed:
        print(f"{PROG}: patched {a.recipe_dir}: wrote {', '.join(changed)}")
    else:
        print(f"{PROG}: {a.recipe_dir} was already patched and current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
