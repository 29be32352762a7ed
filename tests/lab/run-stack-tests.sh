#!/usr/bin/env bash
# run-stack-tests.sh: the install tier of the testinfra suite against a freshly deployed lab stack.
#
#   engine (tests/lab/engine/ensure-engine.sh) -> images (tests/lab/images/build.sh, cached)
#   -> deploy the PATCHED stack and wait (tests/lab/lab.py up) -> pytest tests/stack --stack …
#   -> tear the stack down (always, also on failure or Ctrl-C) -> exit with pytest's status.
#
# Never skips: if the engine, the images or the deploy fail, this exits non-zero and says why.
# Environment: LAB_STACK (default drivelab_ci), LAB_TIMEOUT (convergence deadline, default 600 s),
# PYTHON (default .venv/bin/python), extra pytest arguments as "$@".
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
STACK=${LAB_STACK:-drivelab_ci}
TIMEOUT=${LAB_TIMEOUT:-600}
T0=$(date +%s)
say() { printf '[stack-tests %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

[ -x "$PYTHON" ] || { say "ERROR: $PYTHON not found (make venv)"; exit 1; }

teardown() {
  local rc=$?
  trap - EXIT INT TERM
  say "tearing down stack $STACK"
  "$PYTHON" tests/lab/lab.py down --stack "$STACK" || say "WARNING: teardown of $STACK failed"
  say "done (exit $rc) in $(( $(date +%s) - T0 ))s"
  exit "$rc"
}

say "engine"
bash tests/lab/engine/ensure-engine.sh
say "images"
bash tests/lab/images/build.sh
export PATH="/opt/lasuite-lab/bin:$PATH"

trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "deploy the patched stack as $STACK"
# --no-login-check: the suite runs the login itself (a failure there must be a test failure).
"$PYTHON" tests/lab/lab.py up --variant patched --stack "$STACK" --timeout "$TIMEOUT" \
  --no-prepare --no-login-check || { say "ERROR: the lab stack did not come up (see above)"; exit 1; }

say "pytest tests/stack --stack $STACK"
set +e
"$PYTHON" -m pytest tests/stack --stack "$STACK" -v -rA --timeout 900 "$@"
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
  say "pytest failed ($rc); what the stack shows (lab.py findings):"
  "$PYTHON" tests/lab/lab.py findings --stack "$STACK" || true
fi
exit "$rc"
