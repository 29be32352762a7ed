#!/usr/bin/env bash
# build.sh [--force] [IMAGE...]: build the lab's images, cached.
#
#   lasuite-lab/base:bookworm        debootstrap (minbase) + docker import      (base/mkrootfs.sh)
#   lasuite-lab/drive-backend:latest mini Drive: backend, celery worker, beat   (drive-backend/)
#   lasuite-lab/collabora:latest     coolwsd stand-in (refused -> silent -> discovery)  (collabora/)
#   lasuite-lab/idp:latest           oidc-provider-mock 0.3.4                   (idp/)
#   lasuite-lab/db:latest            Debian's PostgreSQL 15, official-image-like env   (db/)
#   lasuite-lab/redis:latest         Debian's redis-server                       (redis/)
#
# Cache: every image carries the label `lasuite-lab.input-hash`, a sha256 over everything that goes
# into it (its build context: Dockerfile, scripts, copied sources; for stand-ins also the base
# image's id; for the base, mkrootfs.sh, the package list, the machine's apt sources and the CA
# bundle).  An image whose label matches is not rebuilt, so a second run builds nothing.
# --force rebuilds the named images (or all).  IMAGE names: base drive-backend collabora idp db redis.
#
# Progress: one line per stage/Dockerfile step on stdout; full logs in /var/log/lasuite-lab/build-*.log.
# Builds use the legacy builder (no buildx on this machine) with --network host, so package traffic
# (pip, apt) leaves from the host exactly as the host's own would.
#
# Environment: LAB_MINIDRIVE_DIR (default: <repo>/tests/minidrive) is copied into drive-backend.
# The docker CLI used is the engine's own (/opt/lasuite-lab/bin first on PATH); if no engine
# answers, ../engine/ensure-engine.sh is run first.
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
LAB_BIN_DIR=/opt/lasuite-lab/bin
export PATH="$LAB_BIN_DIR:$PATH"
export DOCKER_BUILDKIT=0           # legacy builder: no buildx plugin here
LOG_DIR=${LAB_LOG_DIR:-/var/log/lasuite-lab}
WORK_DIR=${LAB_BUILD_DIR:-/var/cache/lasuite-lab/build}
MINIDRIVE_DIR=${LAB_MINIDRIVE_DIR:-$REPO/tests/minidrive}
CA_BUNDLE=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
BASE_IMAGE=lasuite-lab/base:bookworm
LABEL=lasuite-lab.input-hash
ALL_IMAGES=(base drive-backend collabora idp db redis)

T0=$(date +%s)
say()  { printf '[images %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die()  { printf '[images %4ss] ERROR: %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; exit 1; }
trap 'die "unexpected failure at line $LINENO: $BASH_COMMAND"' ERR

FORCE=0
WANT=()
for a in "$@"; do
  case "$a" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}"; exit 0 ;;
    base|drive-backend|collabora|idp|db|redis) WANT+=("$a") ;;
    *) die "unknown argument '$a' (images: ${ALL_IMAGES[*]})" ;;
  esac
done
[ ${#WANT[@]} -gt 0 ] || WANT=("${ALL_IMAGES[@]}")
wanted() { local w; for w in "${WANT[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
mkdir -p "$LOG_DIR" "$WORK_DIR"
if ! timeout 10 docker version >/dev/null 2>&1; then
  say "no engine answers: running ensure-engine.sh"
  bash "$HERE/../engine/ensure-engine.sh" || die "the engine could not be started"
fi

image_label() { docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true; }
image_id()    { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null; }

# sha256 over a directory's files (relative names, contents, executable bits) plus extra strings.
hash_inputs() { # dir [extra...]
  local dir=$1; shift
  {
    (cd "$dir" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
    (cd "$dir" && find . -type f -perm -u+x | LC_ALL=C sort | sed 's/^/x /')
    printf '%s\n' "$@"
  } | sha256sum | cut -c1-64
}

# Remove the untagged images that a rebuild superseded (only ours: they carry the label).  Images still
# used by a container (or as a parent) are kept by docker itself.
prune_superseded() {
  docker image prune -f --filter "label=$LABEL" >/dev/null 2>&1 || true
}

declare -A SECONDS_TAKEN=()
declare -A RESULT=()

# ----------------------------------------------------------------------------------------------
# base
# ----------------------------------------------------------------------------------------------
build_base() {
  local t
  t=$(date +%s)
  # shellcheck source=tests/lab/engine/apt-sources.sh
  . "$HERE/../engine/apt-sources.sh"
  local mirror src_hash ca_hash hash
  mirror=$(debian_mirror) || die "cannot find the machine's Debian mirror"
  src_hash=$( (src=$(debian_sources_file) && cat "$src") 2>/dev/null | sha256sum | cut -c1-16)
  ca_hash=$(sha256sum "$CA_BUNDLE" | cut -c1-16)
  hash=$(hash_inputs "$HERE/base" "mirror=$mirror" "sources=$src_hash" "ca=$ca_hash" \
         "suite=${LAB_BASE_SUITE:-bookworm}" "include=${LAB_BASE_INCLUDE:-}")
  if [ "$FORCE" = 0 ] && [ "$(image_label "$BASE_IMAGE")" = "$hash" ]; then
    say "base: cached ($BASE_IMAGE, input hash ${hash:0:12})"
    RESULT[base]=cached; return
  fi
  if ! command -v debootstrap >/dev/null; then
    say "base: installing debootstrap (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null \
      || die "cannot install debootstrap"
  fi
  local rootfs="$WORK_DIR/base-rootfs" log="$LOG_DIR/build-base.log"
  : > "$log"
  if [ "$(cat "$rootfs.hash" 2>/dev/null)" = "$hash" ] && [ -x "$rootfs/usr/bin/python3" ]; then
    say "base: reusing the rootfs left by an earlier run (import had not completed)"
  else
    rm -f "$rootfs.hash"
    say "base: building rootfs (input hash ${hash:0:12})"
    LAB_BASE_LOG="$log" bash "$HERE/base/mkrootfs.sh" "$rootfs" || die "base rootfs failed (see $log)"
    echo "$hash" > "$rootfs.hash"
  fi
  say "base: docker import -> $BASE_IMAGE"
  tar -C "$rootfs" --numeric-owner -c . \
    | docker import \
        --change "LABEL $LABEL=$hash" \
        --change 'LABEL org.opencontainers.image.title="lasuite-lab base: Debian bookworm minbase"' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        - "$BASE_IMAGE" >>"$log" 2>&1 || die "docker import failed (see $log)"
  rm -rf "$rootfs" "$rootfs.hash"
  prune_superseded
  SECONDS_TAKEN[base]=$(( $(date +%s) - t ))
  RESULT[base]=built
  say "base: built in ${SECONDS_TAKEN[base]}s"
}

# ----------------------------------------------------------------------------------------------
# stand-ins: docker build FROM the base
# ----------------------------------------------------------------------------------------------
# Assemble the build context (the image's directory, plus extra sources) in $WORK_DIR/ctx-NAME.
make_context() { # name -> prints ctx dir
  local name=$1 ctx="$WORK_DIR/ctx-$1"
  rm -rf "$ctx"; mkdir -p "$ctx"
  cp -a "$HERE/$name/." "$ctx/"
  case "$name" in
    drive-backend)
      [ -f "$MINIDRIVE_DIR/manage.py" ] || die "drive-backend: $MINIDRIVE_DIR/manage.py not found (the mini Drive project)"
      [ -f "$MINIDRIVE_DIR/docker/gunicorn/drive.py" ] \
        || die "drive-backend: $MINIDRIVE_DIR/docker/gunicorn/drive.py not found (gunicorn config)"
      mkdir -p "$ctx/minidrive"
      cp -a "$MINIDRIVE_DIR/." "$ctx/minidrive/"
      # Drive's pins: the `drive` extra of the project's pyproject.toml, plus what the image needs.
      python3 - "$REPO/pyproject.toml" > "$ctx/requirements-drive.txt" <<'PY'
"""Print the `drive` optional-dependency list of pyproject.toml, one requirement a line."""
import sys
import tomllib

with open(sys.argv[1], "rb") as fh:
    data = tomllib.load(fh)
for req in data["project"]["optional-dependencies"]["drive"]:
    print(req)
PY
      [ -f "$MINIDRIVE_DIR/requirements.txt" ] && cat "$MINIDRIVE_DIR/requirements.txt" >> "$ctx/requirements-drive.txt"
      ;;
  esac
  # Never bake caches or editor droppings; they would also change the hash needlessly.
  find "$ctx" \( -name __pycache__ -o -name '*.pyc' -o -name .pytest_cache -o -name .ruff_cache \
                 -o -name '*.sqlite3' -o -name '.*.swp' \) -prune -exec rm -rf {} +
  echo "$ctx"
}

# One progress line per Dockerfile step (the legacy builder prints "Step N/M : INSTRUCTION").
step_lines() { # name
  local line
  while IFS= read -r line; do
    case "$line" in "Step "[0-9]*) say "$1: ${line:0:110}" ;; esac
  done
}

build_standin() { # name
  local name=$1 image="lasuite-lab/$1:latest" t ctx hash base_id log
  t=$(date +%s)
  base_id=$(image_id "$BASE_IMAGE") || die "$name: base image $BASE_IMAGE missing (build it first)"
  ctx=$(make_context "$name")
  hash=$(hash_inputs "$ctx" "base=$base_id")
  if [ "$FORCE" = 0 ] && [ "$(image_label "$image")" = "$hash" ]; then
    say "$name: cached ($image, input hash ${hash:0:12})"
    RESULT[$name]=cached; return
  fi
  log="$LOG_DIR/build-$name.log"
  say "$name: docker build (input hash ${hash:0:12}; log $log)"
  set +e
  docker build --network host --rm --force-rm \
      --build-arg "BASE_IMAGE=$BASE_IMAGE" \
      --label "$LABEL=$hash" \
      -t "$image" "$ctx" 2>&1 | tee "$log" | step_lines "$name"
  local rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -ne 0 ]; then
    tail -n 25 "$log" >&2
    die "$name: docker build failed (see $log)"
  fi
  SECONDS_TAKEN[$name]=$(( $(date +%s) - t ))
  RESULT[$name]=built
  prune_superseded
  say "$name: built in ${SECONDS_TAKEN[$name]}s ($(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
}

wanted base && build_base
for n in drive-backend collabora idp db redis; do
  wanted "$n" && build_standin "$n"
done

summary=""
for n in "${ALL_IMAGES[@]}"; do
  wanted "$n" || continue
  summary+=" $n=${RESULT[$n]:-?}${SECONDS_TAKEN[$n]:+(${SECONDS_TAKEN[$n]}s)}"
done
say "done in $(( $(date +%s) - T0 ))s:$summary"
