#!/bin/sh
# Installs what cluster mode's tests need on Debian bookworm: etcd (server and etcdctl, 3.4) and the
# tools the scripts use (bash, curl). As root it installs the missing packages with apt-get;
# otherwise it names them and fails. Nothing is started: every test runs its own private etcd on
# loopback ports (cluster/etcd.sh), and the package's own service is kept from starting.
# Usage: sh cluster/deps.sh [--check]   (--check: only report, never install)
set -eu
pkgs="etcd-server etcd-client bash curl procps"
missing=""
for p in $pkgs; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$st" in *" installed") ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && { echo "cluster/deps.sh: all packages present"; exit 0; }
if [ "${1:-}" != "--check" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "cluster/deps.sh: installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || true
  # policy-rc.d keeps the package's etcd service from being started (the tests run their own).
  prc=/usr/sbin/policy-rc.d; made_prc=0
  if [ ! -e "$prc" ]; then printf '#!/bin/sh\nexit 101\n' > "$prc"; chmod 755 "$prc"; made_prc=1; fi
  rc=0
  apt-get install -y -qq --no-install-recommends $missing >/dev/null || rc=$?
  [ "$made_prc" = 1 ] && rm -f "$prc"
  exit $rc
fi
echo "cluster/deps.sh: missing packages:$missing" >&2
echo "cluster/deps.sh: install them (sudo apt-get install$missing) or run this script as root" >&2
exit 1
