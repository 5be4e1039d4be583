#!/bin/bash
# Runs a command with a private single-member etcd on a loopback port (UNILOCK_TEST_ETCD names it),
# then stops etcd and removes its data. Usage: bash cluster/with-etcd.sh COMMAND [ARGS...]
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/etcd.sh"
command -v etcd >/dev/null || { echo "with-etcd: no etcd binary (sh cluster/deps.sh)" >&2; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/unilock-etcd.XXXXXX")
trap 'etcd_down "$dir"; rm -rf "$dir"' EXIT
etcd_up "$dir" 1 || exit 1
export UNILOCK_TEST_ETCD=$ETCD_ENDPOINTS
"$@"
