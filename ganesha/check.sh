#!/bin/sh
# `make check-ganesha`: judges FSAL_UNILOCK with a real NFSv4 client.
#
#  1. builds the FSAL (ganesha/build.sh; `make lib` has run);
#  2. starts ganesha.nfsd on 127.0.0.1:<free port> with all its state in a temporary directory (no
#     kernel NFS, no rpcbind, nothing on the system changed); one daemon serves two exports of two
#     directories: /plain (stock FSAL_VFS) and /unilock (FSAL_UNILOCK stacked over FSAL_VFS);
#  3. the NFSv4.0 lock tests (ganesha/locktests.py, the LOCK, LOCKT, LOCKU and RELEASE_LOCKOWNER
#     groups) against both exports: the FSAL must give the same result as stock Ganesha, test by
#     test (verdict and every status seen), and no test may fail;
#  4. the foreign-lock tests against /unilock: a lock taken through the unilock C API by another
#     process (samba/cross_protocol.c, as smbd with vfs_unilock would) refuses the NFS client's
#     LOCK and LOCKT with its range, the NFS client's locks are seen by that process, unlocks and
#     closes leave nothing behind, and a killed NFS client's locks go at its lease expiry. The same
#     tests run against /plain too, where stock Ganesha cannot know about the foreign lock (shown,
#     not required);
#  5. the delegation test against /unilock: a read delegation granted through unilock, recalled
#     (CB_RECALL) when another unilock user writes, and returned; and the reverse: an NFS write
#     breaks a lease (R|H|W, as an SMB client holds) that another unilock user holds
#     (ganesha/lease_holder.c), waiting (NFS4ERR_DELAY, retried) until it is acknowledged;
#  6. restart recovery: a second ganesha.nfsd whose FSAL decides grace (Fsal_Grace = true,
#     Grace_Ms = 12000) is killed with SIGKILL while its client holds locks and started again: in
#     unilock's grace a new lock is NFS4ERR_GRACE, the client reclaims (OPEN CLAIM_PREVIOUS, LOCK
#     reclaim) what it held and nothing else, and at the end of grace new locks are granted and
#     what was not reclaimed is gone;
#  7. stops ganesha.nfsd and removes the temporary directory (kept on failure).
# It installs no system package: ganesha/deps.sh does (as root). Needs root (ganesha.nfsd).
#
# Environment:
#   UNILOCK_GANESHA_CACHE   cache directory (default /tmp/unilock-ganesha; see ganesha/build.sh)
#   UNILOCK_GANESHA_EXPIRY  seconds to wait for a killed client's expiry (default 60; 0 skips it)
#   UNILOCK_GANESHA_PORT    port (default: a free one)
#   UNILOCK_GANESHA_KEEP=1  keep the temporary directory (ganesha log, the unilock database)
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
out=${UNILOCK_GANESHA_OUT:-$repo/build/ganesha}
expiry=${UNILOCK_GANESHA_EXPIRY:-60}
PATH=$PATH:/usr/sbin:/sbin
export UNILOCK_GANESHA_OUT=$out

die() { echo "check-ganesha: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (ganesha.nfsd)"
sh "$repo/ganesha/deps.sh" --check >/dev/null || die "missing packages: run ganesha/deps.sh as root"
sh "$repo/ganesha/build.sh"

tmp=$(mktemp -d /tmp/unilock-ganesha-check.XXXXXX)
pid=""
ok=0
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	if [ "$ok" = 1 ] && [ "${UNILOCK_GANESHA_KEEP:-0}" != 1 ]; then rm -rf "$tmp"; else echo "check-ganesha: kept $tmp"; fi
}
trap cleanup EXIT INT TERM

port=${UNILOCK_GANESHA_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
mkdir -p "$tmp/plain" "$tmp/unilock" "$tmp/recov"
sed -e "s|@PORT@|$port|g" -e "s|@TMP@|$tmp|g" -e "s|@PLUGINS@|$out/plugins|g" \
	"$repo/ganesha/ganesha.conf.in" > "$tmp/ganesha.conf"

t0=$(date +%s)
ganesha.nfsd -F -f "$tmp/ganesha.conf" -L "$tmp/ganesha.log" -p "$tmp/ganesha.pid" &
pid=$!
i=0
until grep -q "NFS SERVER INITIALIZED" "$tmp/ganesha.log" 2>/dev/null; do
	i=$((i + 1))
	kill -0 "$pid" 2>/dev/null || { tail -n 20 "$tmp/ganesha.log" >&2; die "ganesha.nfsd exited"; }
	[ $i -lt 200 ] || { tail -n 20 "$tmp/ganesha.log" >&2; die "ganesha.nfsd did not start"; }
	sleep 0.1
done
echo "check-ganesha: ganesha.nfsd $(dpkg-query -W -f='${Version}' nfs-ganesha) on 127.0.0.1:$port (pid $pid)"

lt="python3 $repo/ganesha/locktests.py --port $port"
fail=0
echo "== lock tests, stock FSAL_VFS (/plain)"
$lt --path /plain --json "$tmp/plain.json" > "$tmp/plain.out" || true
tail -n 1 "$tmp/plain.out"
echo "== lock tests, FSAL_UNILOCK over VFS (/unilock)"
$lt --path /unilock --json "$tmp/unilock.json" > "$tmp/unilock.out" || true
tail -n 1 "$tmp/unilock.out"
python3 - "$tmp/plain.json" "$tmp/unilock.json" "$repo/ganesha" <<'PY' || fail=1
import json, sys
sys.path.insert(0, sys.argv[3])
from locktests import KNOWN_STOCK_BUGS
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
da = {n: (v, o) for n, v, o in a}; db = {n: (v, o) for n, v, o in b}
bad = 0
for n in sorted(set(da) | set(db)):
    if da.get(n) != db.get(n) and n in KNOWN_STOCK_BUGS and db.get(n, ("",))[0] == "PASS":
        print("KNOWN %s: plain %s / unilock %s (%s)" % (n, da.get(n), db.get(n), KNOWN_STOCK_BUGS[n]))
    elif da.get(n) != db.get(n):
        bad += 1
        print("DIFF %s: plain %s / unilock %s" % (n, da.get(n), db.get(n)))
    elif db[n][0] == "FAIL":
        bad += 1
        print("FAIL %s (both): %s" % (n, db[n][1]))
known = sum(1 for n in db if n in KNOWN_STOCK_BUGS and da.get(n) != db.get(n))
print("compare: %d tests, %d identical, %d known stock-Ganesha bugs, %d differ or fail"
      % (len(db), len(db) - bad - known, known, bad))
sys.exit(1 if bad else 0)
PY

echo "== foreign locks (another unilock user), /unilock"
$lt --path /unilock --unilock-db "$tmp/unilock.db" --export-dir "$tmp/unilock" \
	--standin "$out/cross_protocol" --expiry "$expiry" > "$tmp/foreign.out" 2>&1 || fail=1
grep -v '^    ' "$tmp/foreign.out"
echo "== foreign locks against stock FSAL_VFS (/plain; failures expected: it cannot know)"
$lt --path /plain --unilock-db "$tmp/unilock.db" --export-dir "$tmp/plain" \
	--standin "$out/cross_protocol" > "$tmp/foreign-plain.out" 2>&1 || true
grep -v '^    ' "$tmp/foreign-plain.out" | grep -v '^PASS' | sed 's/^/  stock Ganesha: /' || true

echo "== delegation recall, /unilock"
$lt --path /unilock --deleg --unilock-db "$tmp/unilock.db" --export-dir "$tmp/unilock" \
	--libunilock "$repo/build/lib/libunilock.so" > "$tmp/deleg.out" 2>&1 || fail=1
cat "$tmp/deleg.out"
echo "== an NFS write breaks another protocol's caching lease, /unilock"
$lt --path /unilock --lease-holder "$out/lease_holder" --unilock-db "$tmp/unilock.db" \
	--export-dir "$tmp/unilock" > "$tmp/lease.out" 2>&1 || fail=1
cat "$tmp/lease.out"
echo "== delegation, stock FSAL_VFS (/plain)"
$lt --path /plain --deleg --unilock-db "$tmp/unilock.db" --export-dir "$tmp/plain" \
	--libunilock "$repo/build/lib/libunilock.so" 2>&1 | head -n 1 | sed 's/^/  stock Ganesha: /' || true

kill -0 "$pid" 2>/dev/null || { echo "check-ganesha: ganesha.nfsd died" >&2; fail=1; }
if grep -q 'segfault\|SIGSEGV\|Assertion' "$tmp/ganesha.log"; then
	echo "check-ganesha: crash in ganesha.log" >&2; fail=1
fi
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
pid=""

# --- restart recovery: unilock decides grace (Fsal_Grace), ganesha.nfsd killed and restarted --------
echo "== grace and reclaim through unilock (ganesha.nfsd killed with SIGKILL and restarted)"
g="$tmp/grace"
mkdir -p "$g/plain" "$g/unilock" "$g/recov"
sed -e "s|@PORT@|$port|g" -e "s|@TMP@|$g|g" -e "s|@PLUGINS@|$out/plugins|g" \
	-e 's|Graceless = true;|Graceless = false; Grace_Period = 10;|' \
	-e 's|\(Db_Path = "[^"]*";\)|\1 Grace_Ms = 12000; Fsal_Grace = true;|' \
	"$repo/ganesha/ganesha.conf.in" > "$g/ganesha.conf"
start_ganesha() {
	: > "$g/ganesha.log.$1"
	ganesha.nfsd -F -f "$g/ganesha.conf" -L "$g/ganesha.log.$1" -p "$g/ganesha.pid" &
	pid=$!
	i=0
	until grep -q "NFS SERVER INITIALIZED" "$g/ganesha.log.$1" 2>/dev/null; do
		i=$((i + 1))
		kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ] || { tail -n 20 "$g/ganesha.log.$1" >&2; die "ganesha.nfsd did not start"; }
		sleep 0.1
	done
}
gl="$lt --path /unilock --unilock-db $g/unilock.db --export-dir $g/unilock --state $g/state.json"
start_ganesha 1
$gl --grace before > "$g/before.out" 2>&1 || fail=1
grep -v '^    \|^summary' "$g/before.out"
kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
start_ganesha 2
$gl --grace after --standin "$out/cross_protocol" --expiry 30 > "$g/after.out" 2>&1 || fail=1
grep -v '^    ' "$g/after.out"
grep -h 'unilock: grace' "$g/ganesha.log.2" | sed 's/^.*\] /  ganesha.log: /'
kill -0 "$pid" 2>/dev/null || { echo "check-ganesha: ganesha.nfsd died" >&2; fail=1; }
echo "check-ganesha: $(($(date +%s) - t0)) s"
[ "$fail" = 0 ] || die "FAILED (log: $tmp/ganesha.log)"
ok=1
echo "check-ganesha: all passed"
