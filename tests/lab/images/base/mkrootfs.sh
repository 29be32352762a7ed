#!/usr/bin/env bash
# mkrootfs.sh ROOTFS_DIR: build the lab's base root filesystem (Debian 12 "bookworm", minbase) with
# debootstrap, ready for `docker import` as lasuite-lab/base:bookworm.  Called by ../build.sh, which
# decides whether a rebuild is needed; it can be run by hand too.
#
# What the base holds, and why:
#   * Debian bookworm minbase + python3, python3-venv (the stand-ins' venvs), ca-certificates, bash,
#     procps (ps, for testinfra's process module), iproute2 (ss, for its socket module), netbase,
#     openssl, util-linux's setpriv (Essential) to drop privileges.
#   * apt inside the image uses the machine's own Debian sources (copied from the host's deb822 file:
#     no mirror host is written into the project) with Check-Valid-Until off (the mirror may serve a
#     snapshot) and no recommends.
#   * Package traffic here goes through a TLS-inspecting proxy: the CA certificates that the host's
#     bundle ($PIP_CERT, default /etc/ssl/certs/ca-certificates.crt) holds but Debian's does not are
#     added as local CAs (/usr/local/share/ca-certificates/lasuite-lab/) and update-ca-certificates
#     is run, so pip/apt/openssl inside images trust it; a later update-ca-certificates keeps them.
#
# What it leaves out: Drive's real image is Alpine (busybox sh, musl, Python 3.13); this base is
# Debian with dash as /bin/sh and Python 3.11.  Nothing here depends on those differences except
# where a stand-in's docstring says so.
set -Eeuo pipefail

ROOTFS=${1:?usage: mkrootfs.sh ROOTFS_DIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/engine/apt-sources.sh
. "$HERE/../../engine/apt-sources.sh"

SUITE=${LAB_BASE_SUITE:-bookworm}
INCLUDE=${LAB_BASE_INCLUDE:-python3,python3-venv,ca-certificates,bash,procps,iproute2,netbase,openssl}
CA_BUNDLE=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
LOG=${LAB_BASE_LOG:-/dev/null}

T0=$(date +%s)
say() { printf '[base %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { printf '[base] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap is not installed"
MIRROR=$(debian_mirror) || die "cannot find the machine's Debian mirror in its apt sources"
KEYRING=$(debian_keyring)

# Print one line per debootstrap stage (Retrieving, Validating, Extracting, Installing, Configuring,
# ...), not one per package: progress stays visible without flooding.  (A bash loop, not mawk, which
# buffers its input from a pipe.)
stage_lines() {
  local line stage seen=" "
  while IFS= read -r line; do
    case "$line" in
      "I: "*) stage=${line#I: }; stage=${stage%% *}
              case "$seen" in *" $stage "*) continue ;; esac
              seen+="$stage "; say "debootstrap: $line" ;;
      "E: "*|"W: "*) say "debootstrap: $line" ;;
    esac
  done
}

rm -rf "$ROOTFS"
mkdir -p "$ROOTFS"
say "debootstrap --variant=minbase $SUITE from the machine's mirror ($MIRROR); log: $LOG"
debootstrap --variant=minbase --keyring="$KEYRING" --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" 2>&1 \
  | tee -a "$LOG" \
  | stage_lines
[ "${PIPESTATUS[0]}" = 0 ] || die "debootstrap failed (see $LOG)"
[ -x "$ROOTFS/usr/bin/python3" ] || die "debootstrap produced no python3"

say "configuring apt, CA certificates and locale defaults"
# apt: same sources as the host (deb822), no recommends, tolerate snapshot Release dates.
if SRC=$(debian_sources_file); then
  rm -f "$ROOTFS/etc/apt/sources.list"
  cp "$SRC" "$ROOTFS/etc/apt/sources.list.d/debian.sources"
fi
cat > "$ROOTFS/etc/apt/apt.conf.d/90lasuite-lab" <<'EOF'
// lasuite-lab base image: small installs, mirror may serve a snapshot.
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Check-Valid-Until "false";
Acquire::Languages "none";
EOF

# CA: certificates in the host bundle that Debian's bundle lacks (the TLS-inspecting proxy's CA).
mkdir -p "$ROOTFS/usr/local/share/ca-certificates/lasuite-lab"
python3 - "$CA_BUNDLE" "$ROOTFS/etc/ssl/certs/ca-certificates.crt" \
          "$ROOTFS/usr/local/share/ca-certificates/lasuite-lab" <<'PY'
"""Write each PEM certificate of the host bundle that the rootfs bundle lacks to its own .crt file."""
import pathlib
import re
import sys

PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def certs(path):
    try:
        return PEM.findall(pathlib.Path(path).read_text())
    except FileNotFoundError:
        return []


def norm(pem):
    return "".join(pem.split())


host, image, out = sys.argv[1:4]
have = {norm(c) for c in certs(image)}
extra = [c for c in certs(host) if norm(c) not in have]
for i, pem in enumerate(extra):
    pathlib.Path(out, f"host-extra-{i:02d}.crt").write_text(pem + "\n")
print(f"[base] {len(extra)} host CA certificate(s) added to the image")
PY
chroot "$ROOTFS" /usr/sbin/update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the rootfs"

# Small clean-ups; docker manages hostname/hosts/resolv.conf.
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/log/*.log \
       "$ROOTFS"/var/log/apt/* "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
: > "$ROOTFS/etc/resolv.conf"
echo lasuite-lab > "$ROOTFS/etc/hostname"
say "rootfs ready: $(du -sh "$ROOTFS" | cut -f1)"
