#!/bin/bash
# Runs the benchmark with private etcd clusters for figure 8 (cluster mode): a single-member and a
# three-member etcd on loopback ports, their data in a temp dir under --db-dir's default disk
# (/var/tmp) unless UNILOCK_BENCH_ETCD_DIR names another parent; both stopped and removed at the end.
# Without etcd the benchmark runs as is and figure 8 says what it needs.
# Usage: bash bench/cluster.sh ./bench [ARGS...]
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../cluster/etcd.sh"
if ! command -v etcd >/dev/null; then
  echo "bench/cluster.sh: no etcd binary (sh cluster/deps.sh): figure 8 is skipped" >&2
  exec "$@"
fi
dir=$(mktemp -d "${UNILOCK_BENCH_ETCD_DIR:-/var/tmp}/unilock-bench-etcd.XXXXXX")
trap 'etcd_down "$dir/one"; etcd_down "$dir/three"; rm -rf "$dir"' EXIT
etcd_up "$dir/one" 1 || exit 1
UNILOCK_BENCH_ETCD1=$ETCD_ENDPOINTS
etcd_up "$dir/three" 3 || exit 1
UNILOCK_BENCH_ETCD3=$ETCD_ENDPOINTS
export UNILOCK_BENCH_ETCD1 UNILOCK_BENCH_ETCD3
echo "bench/cluster.sh: etcd data in $dir; 1 member at $UNILOCK_BENCH_ETCD1; 3 members at $UNILOCK_BENCH_ETCD3" >&2
"$@"
