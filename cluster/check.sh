#!/bin/bash
# make check-cluster (issue 19): unilock's cluster mode on private etcd clusters on loopback ports,
# one single-member and one three-member, with their state in a temp dir. Three unilock "hosts"
# (cluster/host.c: processes with their own handle and host name) check: a lock on one host refuses
# another; a blocking lock granted when the holder unlocks; a lease break delivered to the holder
# on another host and its ack completing the waiting open; deadlock detection across hosts; SIGKILL
# of a host releases its state on the others within the lease TTL; a restart of the single member,
# or of one of three members, loses no acknowledged lock. Prints "N passed, N failed"; stops
# everything it started. Needs the packages cluster/deps.sh installs and `make lib`.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
. "$here/etcd.sh"
command -v etcd >/dev/null || { echo "check-cluster: no etcd binary: run sh cluster/deps.sh" >&2; exit 1; }
stage=${UNILOCK_STAGE:-$top/build}
work=$(mktemp -d "${TMPDIR:-/tmp}/unilock-cluster.XXXXXX")
TTL_MS=2000
passed=0; failed=0
hosts=""

cleanup() {
  local h
  for h in $hosts; do
    [ -f "$work/$h.pid" ] && kill -9 "$(cat "$work/$h.pid")" 2>/dev/null
  done
  for d in "$work"/etcd-*; do [ -d "$d" ] && etcd_down "$d"; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

cc -std=c11 -O1 -Wall -Wextra -Werror -pthread -I"$top/include" -o "$work/host" "$here/host.c" \
   -L"$stage/lib" -Wl,-rpath,"$stage/lib" -lunilock || exit 1

ok()   { passed=$((passed + 1)); echo "PASS: $*"; }
bad()  { failed=$((failed + 1)); echo "FAIL: $*"; }

# host_start NAME CLUSTER: a host process reading commands from a fifo, answering into NAME.out.
host_start() {
  local h=$1 fd
  mkfifo "$work/$h.in"
  : > "$work/$h.out"
  "$work/host" "$ETCD_ENDPOINTS" "$2" "$h" "$TTL_MS" < "$work/$h.in" >> "$work/$h.out" 2>> "$work/$h.err" &
  echo $! > "$work/$h.pid"
  exec {fd}> "$work/$h.in"
  eval "fd_$h=$fd"
  hosts="$hosts $h"
  wait_line "$h" "^= 0 ready" 10 >/dev/null || { echo "host $h did not start: $(cat "$work/$h.err")"; return 1; }
}

# wait_line HOST REGEX SECONDS: prints the first line of HOST's output matching REGEX (from the
# line after the last one consumed), waiting at most SECONDS.
wait_line() {
  local h=$1 re=$2 t=$3 from l
  from=$(cat "$work/$h.seen" 2>/dev/null || echo 0)
  local end=$(( $(date +%s%N) / 1000000 + t * 1000 ))
  while :; do
    l=$(tail -n +"$((from + 1))" "$work/$h.out" | grep -n -m1 -E "$re")
    if [ -n "$l" ]; then
      echo $(( from + ${l%%:*} )) > "$work/$h.seen"
      echo "${l#*:}"
      return 0
    fi
    [ "$(( $(date +%s%N) / 1000000 ))" -ge "$end" ] && return 1
    sleep 0.02
  done
}

# cmd HOST COMMAND...: sends one command, prints its answer ("= STATUS ...").
cmd() {
  local h=$1; shift
  local fd; eval "fd=\$fd_$h"
  echo "$*" >&"$fd"
  wait_line "$h" "^= " 20 || echo "= none"
}

expect() { # expect WHAT GOT WANT
  if [ "$2" = "$3" ]; then ok "$1"; else bad "$1 (got '$2', want '$3')"; fi
}

host_kill() {
  kill -9 "$(cat "$work/$1.pid")" 2>/dev/null
  { wait "$(cat "$work/$1.pid")"; } 2>/dev/null
  rm -f "$work/$1.pid"
}

host_quit() {
  local fd; eval "fd=\$fd_$1"
  echo quit >&"$fd"
  eval "exec $fd>&-"
  wait "$(cat "$work/$1.pid")" 2>/dev/null
  rm -f "$work/$1.pid"
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# scenarios SETUP (1 or 3 members): hosts a, b, c of cluster "SETUP".
scenarios() {
  local n=$1 dir="$work/etcd-$1" s="$1m"
  etcd_up "$dir" "$n" || { bad "$s: etcd did not start"; return; }
  echo "---- $n-member etcd at $ETCD_ENDPOINTS"
  for h in a b c; do host_start "$h$n" "cl$n" || { bad "$s: host $h did not start"; return; }; done
  local a=a$n b=b$n c=c$n r
  # One table: a lock on A refuses B (102 = UNILOCK_E_CONFLICT).
  expect "$s: lock on host A" "$(cmd $a lock f1 smb:a 0 10)" "= 0"
  expect "$s: host B refused by A's lock" "$(cmd $b lock f1 nlm:b 5 1)" "= 102"
  # A blocking lock on B (1 = UNILOCK_PENDING) granted when A unlocks.
  r=$(cmd $b block f1 nlm:b 5 1 7); expect "$s: blocking lock on B waits" "${r% *}" "= 1"
  expect "$s: unlock on A" "$(cmd $a unlock f1 smb:a 0 10)" "= 0"
  if wait_line $b "^! 1 0 7 " 5 >/dev/null; then ok "$s: B's blocking lock granted after A's unlock"; else bad "$s: B's waiter not granted"; fi
  expect "$s: A now refused by B's lock" "$(cmd $a lock f1 smb:a 5 1)" "= 102"
  # A lease on A broken by B's open; A's ack completes B's open (5 = BREAKS_DONE).
  expect "$s: RWH lease on A" "$(cmd $a lease g smb:a 1)" "= 0 7"
  expect "$s: B's open waits for the break" "$(cmd $b openw g smb:b 2 8)" "= 1 0"
  if wait_line $a "^! 3 0 0 7 3" 5 >/dev/null; then ok "$s: break RWH->RH delivered to A"; else bad "$s: no break on A"; fi
  expect "$s: A acknowledges" "$(cmd $a ack g smb:a 1 3)" "= 0"
  if wait_line $b "^! 5 0 8 " 5 >/dev/null; then ok "$s: B's open completed by A's ack"; else bad "$s: B's open not completed"; fi
  expect "$s: B's open retried gets RH" "$(cmd $b openw g smb:b 2 8)" "= 0 3"
  # Deadlock across hosts (104 = UNILOCK_E_DEADLOCK).
  cmd $a lock d1 nlm:a 0 1 >/dev/null; cmd $b lock d2 nlm:b 0 1 >/dev/null
  r=$(cmd $a block d2 nlm:a 0 1 11); expect "$s: A waits for B" "${r% *}" "= 1"
  r=$(cmd $b block d1 nlm:b 0 1 12); expect "$s: B waiting for A refused: deadlock" "${r% *}" "= 104"
  # SIGKILL of host C: its lock is released on the others within the TTL.
  expect "$s: lock on host C" "$(cmd $c lock k1 nlm:c 0 100)" "= 0"
  r=$(cmd $a block k1 nlm:a 0 1 13); expect "$s: A waits for C" "${r% *}" "= 1"
  local t0; t0=$(now_ms); host_kill $c
  if wait_line $a "^! 1 0 13 " $(( TTL_MS / 1000 + 4 )) >/dev/null; then
    local dt=$(( $(now_ms) - t0 ))
    if [ "$dt" -le $(( TTL_MS + 2000 )) ]; then ok "$s: SIGKILLed host's lock released after $dt ms (TTL $TTL_MS ms)"
    else bad "$s: SIGKILLed host's lock released only after $dt ms (TTL $TTL_MS ms)"; fi
  else bad "$s: SIGKILLed host's lock never released"; fi
  # A restart of an etcd member (the single one; or member 1 of three) loses no acknowledged lock.
  expect "$s: lock before the restart" "$(cmd $a lock r1 nlm:a 0 1)" "= 0"
  etcd_member_stop "$dir" 1
  if [ "$n" = 3 ]; then
    # Two members still form a quorum: B (whose member may be the one stopped) still sees A's lock.
    expect "$s: one of three members down: B still refused by A's lock" "$(cmd $b lock r1 nlm:b 0 1)" "= 102"
  else
    r=$(cmd $b lock r1 nlm:b 0 1); expect "$s: etcd down: B answers UNILOCK_E_STORE (115)" "$r" "= 115"
  fi
  etcd_member_start "$dir" 1
  etcd_wait "$dir" || true
  expect "$s: after the restart B is still refused by A's lock" "$(cmd $b lock r1 nlm:b 0 1)" "= 102"
  expect "$s: after the restart A unlocks" "$(cmd $a unlock r1 nlm:a 0 1)" "= 0"
  expect "$s: then B gets it" "$(cmd $b lock r1 nlm:b 0 1)" "= 0"
  host_quit $a; host_quit $b
  etcd_down "$dir"
}

start=$(now_ms)
scenarios 1
scenarios 3
echo "check-cluster: $(( ($(now_ms) - start) / 1000 )) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
