#!/bin/sh
# Installs what `make check-samba` needs on Debian bookworm: Samba itself (smbd, smbtorture, the stock
# VFS modules such as streams_xattr) and the build dependencies of the vfs_unilock module (Samba's
# generated headers need a configured source tree). As root it installs the missing packages with
# apt-get; otherwise it names them and fails. `make check-samba` itself installs nothing.
# Usage: sh samba/deps.sh [--check]   (--check: only report, never install)
set -eu
pkgs="samba samba-testsuite samba-vfs-modules
      gcc make pkg-config dpkg-dev python3 python3-venv perl procps
      libtalloc-dev libtevent-dev libtdb-dev libpopt-dev bison flex libparse-yapp-perl libkrb5-dev
      libgnutls28-dev zlib1g-dev libtirpc-dev"
missing=""
for p in $pkgs; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$st" in *" installed") ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && { echo "samba/deps.sh: all packages present"; exit 0; }
if [ "${1:-}" != "--check" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "samba/deps.sh: installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || true
  # --no-install-recommends keeps the image small; policy-rc.d keeps the packages' smbd/nmbd
  # services from being started (check-samba runs its own smbd on a private port).
  prc=/usr/sbin/policy-rc.d; made_prc=0
  if [ ! -e "$prc" ]; then printf '#!/bin/sh\nexit 101\n' > "$prc"; chmod 755 "$prc"; made_prc=1; fi
  rc=0
  apt-get install -y -qq --no-install-recommends $missing >/dev/null || rc=$?
  [ "$made_prc" = 1 ] && rm -f "$prc"
  exit $rc
fi
echo "samba/deps.sh: missing packages:$missing" >&2
echo "samba/deps.sh: install them (sudo apt-get install$missing) or run this script as root" >&2
exit 1
