#!/bin/sh
# Installs what `make check-ganesha` needs on Debian bookworm: NFS-Ganesha itself (ganesha.nfsd and
# FSAL_VFS) and the build dependencies of FSAL_UNILOCK (there is no Ganesha -dev package: build.sh
# configures Ganesha's source with cmake for config.h and the headers, which needs these). As root it
# installs the missing packages with apt-get; otherwise it names them and fails. The check itself
# installs nothing.
# Usage: sh ganesha/deps.sh [--check]   (--check: only report, never install)
set -eu
pkgs="nfs-ganesha nfs-ganesha-vfs
      gcc make cmake bison flex pkgconf dpkg-dev python3 procps util-linux
      libntirpc-dev liburcu-dev libkrb5-dev libnfsidmap-dev libwbclient-dev libdbus-1-dev
      libblkid-dev libcap-dev uuid-dev libacl1-dev libattr1-dev"
missing=""
for p in $pkgs; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$st" in *" installed") ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && { echo "ganesha/deps.sh: all packages present"; exit 0; }
if [ "${1:-}" != "--check" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "ganesha/deps.sh: installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || true
  # policy-rc.d keeps the package's nfs-ganesha service from being started (the check runs its
  # own ganesha.nfsd on a private port).
  prc=/usr/sbin/policy-rc.d; made_prc=0
  if [ ! -e "$prc" ]; then printf '#!/bin/sh\nexit 101\n' > "$prc"; chmod 755 "$prc"; made_prc=1; fi
  rc=0
  apt-get install -y -qq --no-install-recommends $missing >/dev/null || rc=$?
  [ "$made_prc" = 1 ] && rm -f "$prc"
  exit $rc
fi
echo "ganesha/deps.sh: missing packages:$missing" >&2
echo "ganesha/deps.sh: install them (sudo apt-get install$missing) or run this script as root" >&2
exit 1
