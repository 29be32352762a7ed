#!/usr/bin/env bash
# swarm-smoke.sh: prove that this machine's engine can run a Swarm stack the way the lab needs it, then
# remove it.  Deploys a two-service stack (`lasuite-lab-smoke`) FROM lasuite-lab/base:bookworm on an
# overlay network with `endpoint_mode: dnsrr` (no IPVS here), a host-mode published port on 127.0.0.1-
# reachable port 18080, a HEALTHCHECK with start_period + start_interval (Engine >= 25), and checks:
#   * both services converge to 1/1 and the server task turns healthy;
#   * the client resolves the server by service name (dnsrr) and fetches a page over the overlay;
#   * the host reaches the published port on 127.0.0.1;
# then `docker stack rm` and waits for the network to go.  Exit 0 on success, non-zero with a reason.
# Run after ensure-engine.sh and images/build.sh base.  Prints timings.
set -Eeuo pipefail
export PATH="/opt/lasuite-lab/bin:$PATH"
STACK=${SMOKE_STACK:-lasuite-lab-smoke}
PORT=${SMOKE_PORT:-18080}
T0=$(date +%s)
say() { printf '[smoke %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { say "ERROR: $*" >&2; docker stack rm "$STACK" >/dev/null 2>&1 || true; exit 1; }

docker image inspect lasuite-lab/base:bookworm >/dev/null 2>&1 || die "lasuite-lab/base:bookworm missing: run tests/lab/images/build.sh base"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/stack.yml" <<EOF
version: "3.12"
services:
  web:
    image: lasuite-lab/base:bookworm
    command: ["python3", "-m", "http.server", "8000", "--directory", "/etc"]
    healthcheck:
      test: ["CMD", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8000 && printf 'GET /hostname HTTP/1.0\\\\r\\\\n\\\\r\\\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
      interval: 30s
      timeout: 3s
      retries: 3
      start_period: 60s
      start_interval: 1s
    ports:
      - {target: 8000, published: $PORT, protocol: tcp, mode: host}
    networks: [net]
    deploy:
      endpoint_mode: dnsrr
  client:
    image: lasuite-lab/base:bookworm
    command: ["bash", "-c", "until python3 -c 'import urllib.request as u; print(u.urlopen(\"http://web:8000/hostname\", timeout=2).status)' ; do sleep 1; done; echo CLIENT-OK; sleep infinity"]
    networks: [net]
    deploy:
      endpoint_mode: dnsrr
networks:
  net:
    driver: overlay
EOF
say "deploying stack $STACK (dnsrr, host-mode port $PORT)"
docker stack deploy --detach=true -c "$tmp/stack.yml" "$STACK" >/dev/null || die "docker stack deploy failed"
health=""
for _ in $(seq 1 90); do
  cid=$(docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_web" | head -n1)
  [ -n "$cid" ] && health=$(docker inspect --format '{{.State.Health.Status}}' "$cid" 2>/dev/null || true)
  [ "$health" = healthy ] && break
  sleep 1
done
[ "$health" = healthy ] || { docker service ps --no-trunc "${STACK}_web" >&2 || true; die "web never turned healthy (last: ${health:-no container})"; }
say "web healthy (start_interval honoured: healthy well before the 30s interval)"
ok=""
for _ in $(seq 1 60); do
  ccid=$(docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_client" | head -n1)
  [ -n "$ccid" ] && docker logs "$ccid" 2>&1 | grep -q CLIENT-OK && { ok=1; break; }
  sleep 1
done
[ -n "$ok" ] || die "client never reached http://web:8000 over the overlay (dnsrr)"
say "client resolved 'web' (dnsrr) and fetched a page over the overlay network"
python3 -c "import urllib.request as u; assert u.urlopen('http://127.0.0.1:$PORT/hostname', timeout=5).status == 200" \
  || die "host could not reach the host-mode published port 127.0.0.1:$PORT"
say "host reached the published port 127.0.0.1:$PORT (mode: host)"
docker stack rm "$STACK" >/dev/null
for _ in $(seq 1 60); do
  [ -z "$(docker network ls -q --filter "label=com.docker.stack.namespace=$STACK")" ] \
    && [ -z "$(docker ps -aq --filter "label=com.docker.stack.namespace=$STACK")" ] && break
  sleep 1
done
say "stack removed; Swarm works here"
