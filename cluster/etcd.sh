#!/bin/bash
# Private etcd clusters on loopback ports for the cluster tests and the benchmark (sourced, bash).
#   etcd_up DIR N        starts N members (1 or 3) with their data under DIR; sets ETCD_ENDPOINTS
#   etcd_member_stop DIR I   /   etcd_member_start DIR I   (I = 1..N; a restart keeps the data)
#   etcd_down DIR        stops every member it started under DIR
# Only 127.0.0.1 is ever used. Ports are picked free at start (nothing listening there).

etcd_port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

etcd_pick_port() {
  local p
  while :; do
    p=$(( 20000 + (RANDOM * 7 + $$) % 30000 ))
    if etcd_port_free "$p" && ! grep -qs "^$p\$" "$1/ports"; then
      echo "$p" >> "$1/ports"
      echo "$p"
      return
    fi
  done
}

etcd_member_start() {
  local dir=$1 i=$2
  # shellcheck disable=SC2046
  etcd $(cat "$dir/m$i.args") >> "$dir/m$i.log" 2>&1 &
  echo $! > "$dir/m$i.pid"
}

etcd_member_stop() {
  local dir=$1 i=$2 pid
  pid=$(cat "$dir/m$i.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$dir/m$i.pid"
}

# Waits until every endpoint answers a linearizable read (a leader exists), at most 30 s.
etcd_wait() {
  local ep
  for _ in $(seq 300); do
    ok=1
    for ep in ${ETCD_ENDPOINTS//,/ }; do
      curl -s -m 1 -X POST "$ep/v3/kv/range" -d '{"key":"eA=="}' 2>/dev/null | grep -q '"revision"' || ok=0
    done
    [ $ok = 1 ] && return 0
    sleep 0.1
  done
  echo "etcd did not come up: see $1/m*.log" >&2
  return 1
}

etcd_up() {
  local dir=$1 n=$2 i cluster="" eps="" c p
  mkdir -p "$dir"
  : > "$dir/ports"
  for i in $(seq "$n"); do
    c=$(etcd_pick_port "$dir"); p=$(etcd_pick_port "$dir")
    echo "$c" > "$dir/m$i.client"
    echo "$p" > "$dir/m$i.peer"
    cluster="$cluster${cluster:+,}m$i=http://127.0.0.1:$p"
    eps="$eps${eps:+,}http://127.0.0.1:$c"
  done
  for i in $(seq "$n"); do
    c=$(cat "$dir/m$i.client"); p=$(cat "$dir/m$i.peer")
    echo "--name m$i --data-dir $dir/m$i.data --listen-client-urls http://127.0.0.1:$c \
--advertise-client-urls http://127.0.0.1:$c --listen-peer-urls http://127.0.0.1:$p \
--initial-advertise-peer-urls http://127.0.0.1:$p --initial-cluster $cluster \
--initial-cluster-token unilock-test --initial-cluster-state new" > "$dir/m$i.args"
    etcd_member_start "$dir" "$i"
  done
  echo "$n" > "$dir/members"
  ETCD_ENDPOINTS=$eps
  export ETCD_ENDPOINTS
  etcd_wait "$dir"
}

etcd_down() {
  local dir=$1 i
  [ -f "$dir/members" ] || return 0
  for i in $(seq "$(cat "$dir/members")"); do etcd_member_stop "$dir" "$i"; done
}
