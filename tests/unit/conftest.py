"""Shared test setup: make the container-side scripts importable by module name.

In containers every script sits in /opt/robust; in the repository they live in
healthchecks/ and entrypoints/. Putting both on sys.path gives tests the same
``import probe`` / ``import wopi_gate`` names the containers use.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for sub in ("healthchecks", "entrypoints"):
    p = str(ROOT / sub)
    if p not in sys.path:
        sys.path.insert(0, p)
