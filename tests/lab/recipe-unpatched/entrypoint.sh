#!/bin/sh
# entrypoint.sh of the UNPATCHED recipe model (lab fixture, mounted as the abra config
# `entrypoint_sh` at /docker-entrypoint.sh in backend and celery-worker).
#
# It models what a Co-op Cloud recipe typically wires at boot today, including its faults:
#   1. OIDC is resolved EAGERLY: the provider's discovery document is fetched once, the
#      OIDC_OP_*_ENDPOINT variables are exported from it, and the container exits 1 when the
#      provider cannot be reached (Swarm then restarts it: a crash loop while the IdP is down).
#   2. WOPI is configured ONCE, as an install-time step of the backend: the configuration task is
#      queued with `manage.py trigger_wopi_configuration`; if Collabora is still booting when the
#      worker runs it, Drive's task fails and editing stays off until the nightly crontab run.
#   3. Nothing is done about ownership: the process runs as the image's user (1001:127) on
#      root-owned named volumes.
# Then it hands over to the image's own entrypoint (/usr/local/bin/entrypoint), as Drive does.
set -eu

log() { echo "entrypoint.sh: $*" >&2; }

if [ -n "${OIDC_OP_URL:-}" ]; then
  exports=$(python3 - <<'PY'
import json
import os
import shlex
import sys
import urllib.request

issuer = os.environ["OIDC_OP_URL"].rstrip("/")
url = issuer + "/.well-known/openid-configuration"
try:
    with urllib.request.urlopen(url, timeout=10) as resp:
        doc = json.load(resp)
except Exception as exc:
    print(f"OIDC discovery {url} failed: {exc}", file=sys.stderr)
    sys.exit(1)
names = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
    "OIDC_OP_LOGOUT_ENDPOINT": "end_session_endpoint",
}
for var, key in names.items():
    if os.environ.get(var):
        continue
    if doc.get(key):
        print(f"export {var}={shlex.quote(doc[key])}")
PY
  ) || { log "cannot resolve the OIDC provider at boot; exiting"; exit 1; }
  eval "$exports"
  log "OIDC endpoints resolved from ${OIDC_OP_URL}"
fi

if [ "${1:-}" = gunicorn ]; then
  # Install-time step: configure WOPI once (queued to celery; Drive's task does not retry).
  if python manage.py trigger_wopi_configuration; then
    log "WOPI configuration queued"
  else
    log "WARNING: could not queue the WOPI configuration; editing stays off until the nightly run"
  fi
fi

exec /usr/local/bin/entrypoint "$@"
