#!/usr/bin/env bash
# smoke.sh: run each lab image briefly on a private bridge network and check the behaviour its
# docstring promises.  Everything stays on this machine (a user-defined bridge network, containers only);
# every container and the network are removed at the end.  Exit 0 when all checks pass.
#
#   drive-backend  runs as 1001:127 (gid not in /etc/group), venv first on PATH, pinned versions, static
#                  files baked, gunicorn starts from the CMD and answers /__lbheartbeat__, and the gunicorn
#                  control-socket permission error of Drive is reproduced
#   collabora      refused -> silent -> 200 discovery; the urlsrc hash changes across restarts; no python3
#                  nor curl on PATH; a bash /dev/tcp status-line check works
#   idp            discovery under Host idp:9400 names issuer http://idp:9400; JWKS has an RS256 key
#   db             *_FILE secrets, initdb at first start, TCP login with the password, data kept on restart
#   redis          PING -> PONG over the network
set -Eeuo pipefail
export PATH="/opt/lasuite-lab/bin:$PATH"
NET=lasuite-lab-smoke
P=lasuite-lab-smoke
T0=$(date +%s)
FAILS=0
say()  { printf '[smoke %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
ok()   { say "ok   $*"; }
bad()  { say "FAIL $*" >&2; FAILS=$((FAILS + 1)); }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi; }

cleanup() {
  docker rm -f "$P-backend" "$P-collabora" "$P-idp" "$P-db" "$P-redis" "$P-probe" >/dev/null 2>&1 || true
  docker volume rm "$P-pgdata" >/dev/null 2>&1 || true
  docker network rm "$NET" >/dev/null 2>&1 || true
  rm -rf "${TMPD:-/nonexistent}"
}
trap cleanup EXIT
cleanup
TMPD=$(mktemp -d)
docker network create "$NET" >/dev/null
# A probe container (base image: python3 + bash) on the same network, to reach services by name.
docker run -d --name "$P-probe" --network "$NET" lasuite-lab/base:bookworm sleep infinity >/dev/null
probe() { docker exec "$P-probe" "$@"; }
# HTTP status of a URL from the probe ("refused", "timeout" or the code); optional Host header.
http_status() { # url [host] [timeout]
  probe python3 -c '
import http.client, socket, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=float(sys.argv[3]))
try:
    c.request("GET", u.path or "/", headers={"Host": sys.argv[2]} if sys.argv[2] else {})
    print(c.getresponse().status)
except ConnectionRefusedError:
    print("refused")
except (socket.timeout, TimeoutError):
    print("timeout")
except OSError as e:
    print("error", e)
' "$1" "${2:-}" "${3:-3}"
}
wait_status() { # want url [host] [seconds]
  local s=""
  for _ in $(seq 1 "${4:-60}"); do s=$(http_status "$2" "${3:-}" 3 || true); [ "$s" = "$1" ] && return 0; sleep 1; done
  echo "last status: $s" >&2; return 1
}

# --------------------------------------------------------------------------------------------- redis
say "redis"
docker run -d --name "$P-redis" --network "$NET" --network-alias redis lasuite-lab/redis >/dev/null
for _ in $(seq 1 20); do docker exec "$P-redis" redis-cli ping 2>/dev/null | grep -q PONG && break; sleep 0.5; done
check "redis: PONG from another container" bash -c "docker exec $P-redis redis-cli -h redis ping | grep -q PONG"

# --------------------------------------------------------------------------------------------- db
say "db"
echo 's3cret-pw' > "$TMPD/pw"; chmod 644 "$TMPD/pw"
docker volume create "$P-pgdata" >/dev/null
db_run() {
  docker run -d --name "$P-db" --network "$NET" --network-alias db -v "$TMPD/pw:/run/secrets/db_pw:ro" \
    -v "$P-pgdata:/var/lib/postgresql/data" -e POSTGRES_USER=dinum -e POSTGRES_DB=drive \
    -e POSTGRES_PASSWORD_FILE=/run/secrets/db_pw lasuite-lab/db >/dev/null
  for _ in $(seq 1 60); do docker exec "$P-db" pg_isready -h 127.0.0.1 -U dinum -d drive >/dev/null 2>&1 && return 0; sleep 0.5; done
  return 1
}
check "db: first start initialises and answers pg_isready" db_run
check "db: TCP login with the secret's password, database drive exists" \
  docker exec -e PGPASSWORD=s3cret-pw "$P-db" psql -h db -U dinum -d drive -tAc 'select 1'
check "db: wrong password refused over TCP" bash -c "! docker exec -e PGPASSWORD=nope $P-db psql -h db -U dinum -d drive -tAc 'select 1'"
check "db: server runs as postgres" bash -c "docker exec $P-db ps -o user= -C postgres | sort -u | grep -qx postgres"
docker exec -e PGPASSWORD=s3cret-pw "$P-db" psql -h db -U dinum -d drive -qc 'create table kept(x int)' >/dev/null
docker rm -f "$P-db" >/dev/null
check "db: restart on the same volume keeps the data (no re-init)" bash -c \
  "$(declare -f db_run); TMPD=$TMPD P=$P NET=$NET db_run && docker exec $P-db psql -h /var/run/postgresql -U dinum -d drive -tAc 'select count(*) from kept'"

# --------------------------------------------------------------------------------------------- idp
say "idp"
docker run -d --name "$P-idp" --network "$NET" --network-alias idp lasuite-lab/idp >/dev/null
check "idp: discovery answers 200" wait_status 200 http://idp:9400/.well-known/openid-configuration idp:9400 60
check "idp: issuer follows the Host header (http://idp:9400)" bash -c \
  "docker exec $P-probe python3 -c \"import json,urllib.request as u; r=u.Request('http://idp:9400/.well-known/openid-configuration'); d=json.load(u.urlopen(r)); assert d['issuer']=='http://idp:9400', d['issuer']; assert d['jwks_uri'].startswith('http://idp:9400/')\""
check "idp: JWKS holds an RSA key" bash -c \
  "docker exec $P-probe python3 -c \"import json,urllib.request as u; d=json.load(u.urlopen('http://idp:9400/jwks')); assert d['keys'][0]['kty']=='RSA'\""

# --------------------------------------------------------------------------------------------- collabora
say "collabora (refuse 3s, silent 4s)"
coll_run() {
  docker run -d --name "$P-collabora" --network "$NET" --network-alias collabora \
    -e COLLABORA_REFUSE_SECONDS=3 -e COLLABORA_SILENT_SECONDS=4 lasuite-lab/collabora >/dev/null
}
coll_run
sleep 0.5
s=$(http_status http://collabora:9980/hosting/discovery "" 1); [ "$s" = refused ] && ok "collabora: refused while booting" || bad "collabora: expected refused, got $s"
for _ in $(seq 1 20); do s=$(http_status http://collabora:9980/hosting/discovery "" 1); [ "$s" != refused ] && break; sleep 0.3; done
[ "$s" = timeout ] && ok "collabora: then listening but silent (1s timeout)" || bad "collabora: expected timeout, got $s"
check "collabora: then discovery 200" wait_status 200 http://collabora:9980/hosting/discovery "" 20
s=$(http_status http://collabora:9980/other "" 2); [ "$s" = 404 ] && ok "collabora: other paths 404" || bad "collabora: other path gave $s"
disc() { probe python3 -c 'import urllib.request as u; print(u.urlopen("http://collabora:9980/hosting/discovery", timeout=3).read().decode())'; }
d1=$(disc)
h1=$(grep -o 'browser/[0-9a-f]*/cool.html' <<<"$d1" | head -n1)
check "collabora: discovery has net-zone, edit/odt, mimetype app with ext=\"\" and proof-key" bash -c \
  "grep -q '<net-zone name=\"external-http\">' <<<'$d1' && grep -q 'ext=\"odt\" name=\"edit\"' <<<'$d1' && grep -q 'ext=\"\"' <<<'$d1' && grep -q '<proof-key ' <<<'$d1'"
check "collabora: no python3 and no curl on PATH" docker exec "$P-collabora" bash -c '! command -v python3 && ! command -v curl'
check "collabora: bash /dev/tcp status-line check works" docker exec "$P-collabora" bash -c \
  'exec 3<>/dev/tcp/127.0.0.1/9980 && printf "GET /hosting/discovery HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" >&3 && head -n1 <&3 | grep -q " 200 "'
docker restart -t 2 "$P-collabora" >/dev/null
wait_status 200 http://collabora:9980/hosting/discovery "" 20 || true
h2=$(grep -o 'browser/[0-9a-f]*/cool.html' <<<"$(disc)" | head -n1)
[ -n "$h1" ] && [ -n "$h2" ] && [ "$h1" != "$h2" ] && ok "collabora: urlsrc hash changed across a restart ($h1 -> $h2)" \
  || bad "collabora: hash did not change ($h1 / $h2)"

# --------------------------------------------------------------------------------------------- drive-backend
say "drive-backend"
check "backend: runs as 1001:127, gid 127 in no /etc/group entry" bash -c \
  "[ \"\$(docker run --rm lasuite-lab/drive-backend id -u):\$(docker run --rm lasuite-lab/drive-backend id -g)\" = 1001:127 ] && ! docker run --rm lasuite-lab/drive-backend getent group 127"
check "backend: /app/.venv/bin first on PATH, WORKDIR /app" bash -c \
  "[ \"\$(docker run --rm lasuite-lab/drive-backend sh -c 'command -v python; pwd' | tr '\n' ' ')\" = '/app/.venv/bin/python /app ' ]"
check "backend: pinned versions installed" docker run --rm lasuite-lab/drive-backend sh -c \
  'grep -qx "gunicorn==25.3.0" /app/.venv/pip-freeze.txt && grep -qx "mozilla-django-oidc==4.0.1" /app/.venv/pip-freeze.txt && grep -qx "django-lasuite==0.0.28" /app/.venv/pip-freeze.txt && grep -qx "celery==5.6.3" /app/.venv/pip-freeze.txt && grep -qx "requests==2.33.1" /app/.venv/pip-freeze.txt'
check "backend: static files baked in /data/static" docker run --rm lasuite-lab/drive-backend sh -c '[ -n "$(ls -A /data/static)" ]'
docker run -d --name "$P-backend" --network "$NET" --network-alias backend \
  -e DJANGO_CONFIGURATION=Test -e OIDC_OP_JWKS_ENDPOINT=http://idp:9400/jwks -e MEDIA_ROOT=/tmp/media \
  lasuite-lab/drive-backend >/dev/null
check "backend: gunicorn (CMD) answers /__lbheartbeat__ 200" wait_status 200 http://backend:8000/__lbheartbeat__ localhost 60
check "backend: gunicorn processes run as uid 1001" bash -c "[ \"\$(docker exec $P-backend ps -o uid= -C gunicorn | tr -d ' ' | sort -u)\" = 1001 ]"
check "backend: reproduces Drive's control-socket permission error" bash -c \
  "for i in \$(seq 1 10); do docker logs $P-backend 2>&1 | grep -q 'Control server error' && exit 0; sleep 1; done; exit 1"

if [ "$FAILS" -eq 0 ]; then say "all image checks passed"; else say "$FAILS check(s) failed"; exit 1; fi
