#!/usr/bin/env bash
# ensure-engine.sh: make sure a Docker Engine >= 25 runs on this Debian 12 machine and is a
# single-node Swarm manager advertising 127.0.0.1.  Idempotent: run it as often as you like.
#
# Why not Debian 12's docker.io: it is Engine 20.10, which ignores HEALTHCHECK start_interval
# (the robustness overlay relies on it).  So, as field notes §8 describe:
#   * Debian 13 (trixie) `docker.io` (26.x) and `containerd` (1.7) are fetched with `apt-get download`
#     through a PRIVATE apt state (its own sources list, lists and cache under $LAB_APT_DIR) that points
#     at the trixie suite of the machine's own Debian mirror (read from the machine's apt sources, never
#     hard-coded).  The machine's own apt configuration is not touched.
#   * They are unpacked with `dpkg -x` into $LAB_ENGINE_DIR (not installed: dpkg never sees them).
#   * runc, iptables, tini and the other runtime helpers come from bookworm with a normal apt-get
#     install (trixie's runc needs a newer glibc).
#   * containerd and dockerd run in the background, logs in $LAB_LOG_DIR, pidfiles in $LAB_RUN_DIR.
#     A stale pidfile (processes are killed when a session ends; /var/lib/docker persists) is detected
#     by checking that the pid is alive AND is the expected program.
#   * The kernel has no IPVS here: Swarm's VIP load balancing and the ingress routing mesh do not work.
#     Stacks must use `deploy.endpoint_mode: dnsrr` and `mode: host` published ports.  This script
#     reports that, it does not fail on it.
#
# How other scripts call docker: the daemon listens on the default socket unix:///var/run/docker.sock,
# so any client works.  Scripts should prefer the engine's own client (same version as the daemon):
#     export PATH="/opt/lasuite-lab/bin:$PATH"      # then plain `docker`
# /opt/lasuite-lab/bin/docker is a symlink to the unpacked trixie client.  The machine's
# /usr/local/bin/docker (28.x) also works: it negotiates the API version down to the daemon's.
#
# Environment knobs (all optional):
#   LAB_ENGINE_SUITE   Debian suite to take docker.io/containerd from   (default: trixie)
#   LAB_ENGINE_DIR     where the .debs are unpacked                     (default: /opt/lasuite-lab/engine)
#   LAB_APT_DIR        private apt state                                 (default: /var/cache/lasuite-lab/apt)
#   LAB_LOG_DIR        daemon logs                                       (default: /var/log/lasuite-lab)
#   LAB_RUN_DIR        pidfiles                                          (default: /var/run/lasuite-lab)
#   LAB_ENGINE_WAIT    seconds to wait for the daemon socket             (default: 60)
#
# Exit status: 0 when the engine answers and the node is an active Swarm manager; non-zero with a
# message on stderr otherwise.
set -Eeuo pipefail

LAB_ROOT=/opt/lasuite-lab
LAB_ENGINE_SUITE="${LAB_ENGINE_SUITE:-trixie}"
LAB_ENGINE_DIR="${LAB_ENGINE_DIR:-$LAB_ROOT/engine}"
LAB_BIN_DIR="$LAB_ROOT/bin"
LAB_ETC_DIR="$LAB_ROOT/etc"
LAB_APT_DIR="${LAB_APT_DIR:-/var/cache/lasuite-lab/apt}"
LAB_LOG_DIR="${LAB_LOG_DIR:-/var/log/lasuite-lab}"
LAB_RUN_DIR="${LAB_RUN_DIR:-/var/run/lasuite-lab}"
LAB_ENGINE_WAIT="${LAB_ENGINE_WAIT:-60}"
DOCKER_SOCK=/var/run/docker.sock
CONTAINERD_SOCK=/run/containerd/containerd.sock
MIN_ENGINE_MAJOR=25

# Bookworm packages dockerd/containerd need at run time (runc kept from bookworm on purpose).
BOOKWORM_RUNTIME_PKGS=(runc iptables tini ca-certificates procps iproute2 xz-utils pigz
                       libseccomp2 libdevmapper1.02.1 libsystemd0 git)

T0=$(date +%s)
say()  { printf '[engine %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
warn() { printf '[engine %3ss] WARNING: %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
die()  { printf '[engine %3ss] ERROR: %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; exit 1; }
trap 'die "unexpected failure at line $LINENO: $BASH_COMMAND"' ERR

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts dockerd)"
[ -r /etc/debian_version ] || die "this script expects a Debian machine"

# The engine's own client, first on PATH for everything below.
export PATH="$LAB_BIN_DIR:$LAB_ENGINE_DIR/usr/sbin:$LAB_ENGINE_DIR/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Mirror discovery (debian_mirror, debian_keyring) is shared with tests/lab/images/build.sh.
# shellcheck source=tests/lab/engine/apt-sources.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt-sources.sh"

# --------------------------------------------------------------------------------------------------
# Process helpers: a pidfile counts only if the pid is alive (not a zombie) and runs the expected
# program (a pid reused after a reboot by something else does not count).
# --------------------------------------------------------------------------------------------------
proc_alive() { # pid progname
  local st
  [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] || return 1
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

pid_running() { # pidfile progname
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  proc_alive "$pid" "$2"
}

# A live program of that name that we did not start (or whose pidfile was lost).
foreign_pid() { # progname
  local p
  for p in /proc/[0-9]*; do
    proc_alive "${p#/proc/}" "$1" && { echo "${p#/proc/}"; return 0; }
  done
  return 1
}

engine_answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

server_major() { timeout 10 docker version --format '{{.Server.Version}}' 2>/dev/null | cut -d. -f1; }

# --------------------------------------------------------------------------------------------------
# 1. Kernel features
# --------------------------------------------------------------------------------------------------
check_kernel() {
  say "kernel $(uname -r): checking features"
  local missing=()
  grep -qw overlay /proc/filesystems || missing+=("overlay filesystem")
  [ -d /sys/fs/cgroup ] || missing+=("cgroups")
  [ -e /proc/self/ns/net ] || missing+=("network namespaces")
  [ -d /sys/class/net ] || missing+=("sysfs net")
  if [ -r /proc/config.gz ]; then
    local cfg; cfg=$(zcat /proc/config.gz 2>/dev/null || true)
    for opt in BRIDGE VETH NF_NAT VXLAN; do
      grep -qE "^CONFIG_${opt}=(y|m)" <<<"$cfg" || missing+=("CONFIG_$opt")
    done
  fi
  [ ${#missing[@]} -eq 0 ] || die "kernel lacks what dockerd needs: ${missing[*]}"
  local kcfg=""
  [ -r /proc/config.gz ] && kcfg=$(zcat /proc/config.gz 2>/dev/null || true)
  if [ -e /proc/net/ip_vs ] || grep -qE '^CONFIG_IP_VS=(y|m)' <<<"$kcfg"; then
    say "kernel: IPVS present (VIP load balancing would work; the lab still uses dnsrr)"
  else
    say "kernel: NO IPVS -> Swarm VIPs and the ingress mesh do not work here;" \
        "stacks must use deploy.endpoint_mode: dnsrr and ports with mode: host"
  fi
  if mount | grep -q 'type cgroup2 .*on /sys/fs/cgroup ' || [ -e /sys/fs/cgroup/cgroup.controllers ]; then
    say "kernel: cgroup v2 (unified)"
  else
    say "kernel: cgroup v1 / hybrid hierarchy"
  fi
}

# --------------------------------------------------------------------------------------------------
# 2. bookworm runtime packages
# --------------------------------------------------------------------------------------------------
APT_UPDATED=0
apt_update_once() {
  [ "$APT_UPDATED" = 1 ] && return 0
  say "apt-get update (machine sources)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
  APT_UPDATED=1
}

ensure_bookworm_pkgs() {
  local need=() p
  for p in "${BOOKWORM_RUNTIME_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
  done
  if [ ${#need[@]} -eq 0 ]; then
    say "bookworm runtime packages present (runc $(runc --version 2>/dev/null | awk 'NR==1{print $3}'))"
    return
  fi
  apt_update_once
  say "installing from bookworm: ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || die "apt-get install ${need[*]} failed"
}

# --------------------------------------------------------------------------------------------------
# 3. trixie docker.io + containerd, unpacked
# --------------------------------------------------------------------------------------------------
private_apt() { # apt-get|apt-cache args...
  local tool=$1; shift
  "$tool" -q \
    -o Dir::State="$LAB_APT_DIR/state" \
    -o Dir::State::status="$LAB_APT_DIR/state/status" \
    -o Dir::Cache="$LAB_APT_DIR/cache" \
    -o Dir::Etc::SourceList="$LAB_APT_DIR/sources.list" \
    -o Dir::Etc::SourceParts="$LAB_APT_DIR/sources.list.d" \
    -o Dir::Etc::Preferences="$LAB_APT_DIR/preferences" \
    -o Dir::Etc::PreferencesParts="$LAB_APT_DIR/preferences.d" \
    -o APT::Architecture="$(dpkg --print-architecture)" \
    -o APT::Get::List-Cleanup=false \
    "$@"
}

ensure_engine_files() {
  local stamp="$LAB_ENGINE_DIR/.lab-installed"
  if [ -f "$stamp" ] && [ -x "$LAB_ENGINE_DIR/usr/sbin/dockerd" ] && [ -x "$LAB_ENGINE_DIR/usr/bin/containerd" ] \
     && [ -x "$LAB_ENGINE_DIR/usr/bin/docker" ]; then
    say "engine files present: $(cat "$stamp")"
    return
  fi
  local mirror keyring
  mirror=$(debian_mirror) || die "cannot find the machine's Debian mirror in /etc/apt/sources.list{,.d}"
  keyring=$(debian_keyring)
  say "private apt state in $LAB_APT_DIR: $LAB_ENGINE_SUITE from $mirror"
  mkdir -p "$LAB_APT_DIR/state/lists/partial" "$LAB_APT_DIR/cache/archives/partial" \
           "$LAB_APT_DIR/sources.list.d" "$LAB_APT_DIR/preferences.d" "$LAB_APT_DIR/debs"
  : > "$LAB_APT_DIR/state/status"
  : > "$LAB_APT_DIR/preferences"
  printf 'deb [signed-by=%s] %s %s main\n' "$keyring" "$mirror" "$LAB_ENGINE_SUITE" > "$LAB_APT_DIR/sources.list"
  private_apt apt-get update >"$LAB_LOG_DIR/apt-private.log" 2>&1 \
    || { tail -n 20 "$LAB_LOG_DIR/apt-private.log" >&2; die "private apt-get update ($LAB_ENGINE_SUITE) failed"; }
  local ver_d ver_c ver_cli
  ver_d=$(private_apt apt-cache policy docker.io 2>/dev/null | awk '/Candidate:/ {print $2}')
  ver_c=$(private_apt apt-cache policy containerd 2>/dev/null | awk '/Candidate:/ {print $2}')
  # trixie splits the client out of docker.io into docker-cli.
  ver_cli=$(private_apt apt-cache policy docker-cli 2>/dev/null | awk '/Candidate:/ {print $2}')
  [ -n "$ver_d" ] && [ "$ver_d" != "(none)" ] || die "docker.io not found in $LAB_ENGINE_SUITE"
  [ -n "$ver_c" ] && [ "$ver_c" != "(none)" ] || die "containerd not found in $LAB_ENGINE_SUITE"
  [ -n "$ver_cli" ] && [ "$ver_cli" != "(none)" ] || die "docker-cli not found in $LAB_ENGINE_SUITE"
  say "downloading docker.io $ver_d, docker-cli $ver_cli and containerd $ver_c"
  rm -f "$LAB_APT_DIR/debs/"*.deb
  (cd "$LAB_APT_DIR/debs" && private_apt apt-get download "docker.io=$ver_d" "docker-cli=$ver_cli" "containerd=$ver_c") \
    >>"$LAB_LOG_DIR/apt-private.log" 2>&1 \
    || { tail -n 20 "$LAB_LOG_DIR/apt-private.log" >&2; die "apt-get download failed"; }
  say "unpacking into $LAB_ENGINE_DIR"
  rm -rf "$LAB_ENGINE_DIR.new"
  mkdir -p "$LAB_ENGINE_DIR.new"
  local deb
  for deb in "$LAB_APT_DIR/debs/"*.deb; do dpkg -x "$deb" "$LAB_ENGINE_DIR.new"; done
  [ -x "$LAB_ENGINE_DIR.new/usr/sbin/dockerd" ] || die "no usr/sbin/dockerd in the docker.io package"
  [ -x "$LAB_ENGINE_DIR.new/usr/bin/containerd" ] || die "no usr/bin/containerd in the containerd package"
  [ -x "$LAB_ENGINE_DIR.new/usr/bin/docker" ] || die "no usr/bin/docker in the docker-cli package"
  rm -rf "$LAB_ENGINE_DIR"
  mv "$LAB_ENGINE_DIR.new" "$LAB_ENGINE_DIR"
  echo "docker.io=$ver_d docker-cli=$ver_cli containerd=$ver_c suite=$LAB_ENGINE_SUITE" > "$stamp"
}

check_binaries() {
  local b missing
  for b in "$LAB_ENGINE_DIR/usr/sbin/dockerd" "$LAB_ENGINE_DIR/usr/bin/containerd" \
           "$LAB_ENGINE_DIR/usr/bin/containerd-shim-runc-v2" "$LAB_ENGINE_DIR/usr/bin/docker"; do
    [ -x "$b" ] || die "missing $b"
    missing=$(ldd "$b" 2>/dev/null | awk '/not found/ {print $1}' | tr '\n' ' ') || true
    [ -z "$missing" ] || die "$b needs libraries this machine lacks: $missing"
  done
  command -v runc >/dev/null || die "runc not on PATH"
  # dockerd looks these up on PATH; point them at what exists.
  mkdir -p "$LAB_BIN_DIR"
  ln -sfn "$LAB_ENGINE_DIR/usr/bin/docker" "$LAB_BIN_DIR/docker"
  # Debian's docker-init is a symlink to tini-static (package tini): make sure what dockerd finds
  # first on PATH as docker-init resolves, using bookworm's tini.
  local tini; tini=$(command -v tini-static || true)
  [ -n "$tini" ] || die "tini-static not found (package tini)"
  ln -sfn "$tini" "$LAB_BIN_DIR/docker-init"
  [ -x "$LAB_ENGINE_DIR/usr/sbin/docker-proxy" ] || warn "no docker-proxy: published ports need the userland proxy"
}

# --------------------------------------------------------------------------------------------------
# 4. daemons
# --------------------------------------------------------------------------------------------------
write_configs() {
  mkdir -p "$LAB_ETC_DIR" "$LAB_LOG_DIR" "$LAB_RUN_DIR"
  # dockerd's own config file (not /etc/docker/daemon.json, which stays the machine's business).
  cat > "$LAB_ETC_DIR/daemon.json" <<EOF
{
  "storage-driver": "overlay2",
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "3"},
  "features": {"buildkit": false},
  "iptables": true
}
EOF
}

start_containerd() {
  local pidf="$LAB_RUN_DIR/containerd.pid" foreign
  if pid_running "$pidf" containerd; then
    say "containerd running (pid $(cat "$pidf"))"
    return
  fi
  if foreign=$(foreign_pid containerd); then
    say "containerd already running (pid $foreign, not started by this script): using it"
    echo "$foreign" > "$pidf"
    return
  fi
  [ -e "$pidf" ] && say "stale containerd pidfile removed"
  rm -f "$pidf" "$CONTAINERD_SOCK" "$CONTAINERD_SOCK.ttrpc"
  say "starting containerd (log $LAB_LOG_DIR/containerd.log)"
  setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$pidf" \
    containerd --address "$CONTAINERD_SOCK" >>"$LAB_LOG_DIR/containerd.log" 2>&1 </dev/null &
  local i
  for i in $(seq 1 "$LAB_ENGINE_WAIT"); do
    [ -S "$CONTAINERD_SOCK" ] && { say "containerd socket ready after ${i}s"; return; }
    pid_running "$pidf" containerd || { sleep 0.2; pid_running "$pidf" containerd || break; }
    sleep 1
  done
  tail -n 30 "$LAB_LOG_DIR/containerd.log" >&2 || true
  die "containerd did not come up (see $LAB_LOG_DIR/containerd.log)"
}

start_dockerd() {
  local pidf="$LAB_RUN_DIR/dockerd.pid" foreign
  if engine_answers; then
    local maj; maj=$(server_major)
    [ "${maj:-0}" -ge "$MIN_ENGINE_MAJOR" ] \
      || die "a Docker Engine $(docker version --format '{{.Server.Version}}') already answers on $DOCKER_SOCK;" \
             "the lab needs >= $MIN_ENGINE_MAJOR. Stop it (e.g. systemctl stop docker) and rerun."
    say "dockerd answers on $DOCKER_SOCK (engine $(docker version --format '{{.Server.Version}}'))"
    return
  fi
  if pid_running "$pidf" dockerd || foreign=$(foreign_pid dockerd); then
    local pid; pid=$(cat "$pidf" 2>/dev/null || echo "$foreign")
    say "dockerd (pid $pid) runs but does not answer yet: waiting"
  else
    [ -e "$pidf" ] && say "stale dockerd pidfile removed"
    rm -f "$pidf" "$DOCKER_SOCK"
    say "starting dockerd (log $LAB_LOG_DIR/dockerd.log)"
    setsid "$LAB_ENGINE_DIR/usr/sbin/dockerd" \
      --config-file "$LAB_ETC_DIR/daemon.json" \
      --containerd "$CONTAINERD_SOCK" \
      --pidfile "$pidf" \
      --host "unix://$DOCKER_SOCK" \
      >>"$LAB_LOG_DIR/dockerd.log" 2>&1 </dev/null &
  fi
  local i
  for i in $(seq 1 "$LAB_ENGINE_WAIT"); do
    if engine_answers; then say "dockerd answers after ${i}s"; return; fi
    if [ "$i" -gt 3 ] && ! foreign_pid dockerd >/dev/null; then break; fi
    sleep 1
  done
  tail -n 30 "$LAB_LOG_DIR/dockerd.log" >&2 || true
  die "dockerd did not answer on $DOCKER_SOCK within ${LAB_ENGINE_WAIT}s (see $LAB_LOG_DIR/dockerd.log)"
}

# --------------------------------------------------------------------------------------------------
# 5. Swarm
# --------------------------------------------------------------------------------------------------
swarm_state() { docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}' 2>/dev/null; }

ensure_swarm() {
  local st i
  st=$(swarm_state)
  # After a restart the node may say "pending" for a moment while raft comes back.
  for i in $(seq 1 20); do
    case "$st" in pending*) sleep 1; st=$(swarm_state) ;; *) break ;; esac
  done
  case "$st" in
    "active true")
      say "Swarm: active manager (node $(docker info --format '{{.Swarm.NodeID}}'))" ;;
    "inactive "*)
      say "Swarm: initialising (advertise 127.0.0.1)"
      docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 >/dev/null \
        || die "docker swarm init failed"
      say "Swarm: initialised" ;;
    "active false")
      die "this node is a Swarm worker, not a manager; leave it (docker swarm leave --force) and rerun" ;;
    locked*)
      die "the Swarm is locked (autolock): unlock it with docker swarm unlock" ;;
    *)
      warn "Swarm state '$st': leaving and re-initialising"
      docker swarm leave --force >/dev/null 2>&1 || true
      docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 >/dev/null \
        || die "docker swarm init failed (state was '$st')"
      say "Swarm: re-initialised" ;;
  esac
  # Wait until the node reports Ready (takes a moment after a restart).
  for i in $(seq 1 30); do
    [ "$(docker node ls --format '{{.Self}} {{.Status}}' 2>/dev/null | awk '$1=="true"{print $2}')" = Ready ] \
      && { say "Swarm: node Ready"; return; }
    sleep 1
  done
  die "Swarm node did not become Ready"
}

# --------------------------------------------------------------------------------------------------
main() {
  mkdir -p "$LAB_LOG_DIR" "$LAB_RUN_DIR"
  check_kernel
  if engine_answers && [ "$(server_major)" -ge "$MIN_ENGINE_MAJOR" ] 2>/dev/null; then
    say "engine already running: $(docker version --format 'server {{.Server.Version}} (API {{.Server.APIVersion}})')"
  else
    ensure_bookworm_pkgs
    ensure_engine_files
    check_binaries
    write_configs
    start_containerd
    start_dockerd
  fi
  [ -x "$LAB_BIN_DIR/docker" ] || { [ -x "$LAB_ENGINE_DIR/usr/bin/docker" ] && mkdir -p "$LAB_BIN_DIR" \
      && ln -sfn "$LAB_ENGINE_DIR/usr/bin/docker" "$LAB_BIN_DIR/docker"; } || true
  local maj; maj=$(server_major)
  [ "${maj:-0}" -ge "$MIN_ENGINE_MAJOR" ] || die "engine $maj is older than $MIN_ENGINE_MAJOR"
  ensure_swarm
  say "ready: $(docker version --format 'client {{.Client.Version}} / server {{.Server.Version}} (API {{.Server.APIVersion}})')," \
      "socket $DOCKER_SOCK; use PATH=$LAB_BIN_DIR:\$PATH"
}

main "$@"
