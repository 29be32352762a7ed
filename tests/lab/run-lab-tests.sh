#!/usr/bin/env bash
# run-lab-tests.sh: the lab scenarios (tests/lab/test_*.py) on the real single-node Swarm.
#
#   engine (ensure-engine.sh) -> images (build.sh, cached) -> pytest tests/lab
#
# Each scenario deploys and removes its own stacks (patched and unpatched side by side where it
# compares them). Never skips: if the engine or the images fail, this exits non-zero and says why.
# Environment: PYTHON (default .venv/bin/python); extra pytest arguments as "$@".
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PYTHON" ] || { echo "run-lab-tests: $PYTHON not found (make venv)" >&2; exit 1; }

bash tests/lab/engine/ensure-engine.sh
bash tests/lab/images/build.sh
export PATH="/opt/lasuite-lab/bin:$PATH"
exec "$PYTHON" -m pytest tests/lab -p no:cacheprovider -v -rA "$@"
