# shellcheck shell=bash
# apt-sources.sh: helpers, sourced (not run) by ensure-engine.sh and ../images/build.sh.
#
# They read the machine's OWN apt configuration so that no mirror host is ever written into the
# project: the lab fetches Debian packages (trixie's engine, the bookworm rootfs of the base image)
# from whatever Debian mirror this machine already uses.
#
#   debian_mirror   prints the URI of the machine's main Debian archive (the source serving
#                   bookworm/stable, not -security), from deb822 *.sources or one-line *.list files.
#   debian_keyring  prints the keyring file those sources are signed with (deb822 Signed-By), or the
#                   stock /usr/share/keyrings/debian-archive-keyring.gpg.
#   debian_sources_file  prints the deb822 file that holds the machine's Debian sources, if any
#                   (the base image copies it so apt inside containers uses the same mirror).

debian_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    uri=$(awk '
      BEGIN { RS=""; FS="\n" }
      {
        uris=""; suites=""; types=""; enabled="yes"
        for (i=1;i<=NF;i++) {
          line=$i; if (line ~ /^#/) continue
          if (line ~ /^URIs:/)    { sub(/^URIs:[ \t]*/,"",line); uris=line }
          if (line ~ /^Suites:/)  { sub(/^Suites:[ \t]*/,"",line); suites=" " line " " }
          if (line ~ /^Types:/)   { sub(/^Types:[ \t]*/,"",line); types=" " line " " }
          if (line ~ /^Enabled:/) { sub(/^Enabled:[ \t]*/,"",line); enabled=line }
        }
        if (enabled=="no" || types !~ / deb /) next
        if (suites ~ / bookworm / || suites ~ / stable /) { split(uris,u,/[ \t]+/); print u[1]; exit }
      }' "$f")
    [ -n "$uri" ] && { echo "${uri%/}"; return 0; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    uri=$(awk '$1=="deb" {
        i=2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i+1)=="bookworm" || $(i+1)=="stable") { print $i; exit } }' "$f")
    [ -n "$uri" ] && { echo "${uri%/}"; return 0; }
  done
  return 1
}

# The keyring the machine's own sources use (deb822 Signed-By), or the stock archive keyring.
debian_keyring() {
  local k
  k=$(grep -h -m1 -E '^Signed-By:[[:space:]]*/' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 \
      | sed -E 's/^Signed-By:[[:space:]]*//') || true
  [ -n "$k" ] && [ -r "$k" ] && { echo "$k"; return; }
  echo /usr/share/keyrings/debian-archive-keyring.gpg
}


debian_sources_file() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] && grep -qE '^URIs:.*debian' "$f" && { echo "$f"; return 0; }
  done
  return 1
}
