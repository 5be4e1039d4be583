#!/bin/sh
# `make check-samba`: judges vfs_unilock with Samba's own test suite.
#
#  1. builds the module (samba/build.sh; `make lib` has run);
#  2. starts smbd on 127.0.0.1:<free port> with all its state in a temporary directory, inside a
#     private mount namespace (unshare -m) where a copy of MODULESDIR/vfs holding unilock.so and a
#     passwd file holding the test user are bind-mounted (nothing on the system is changed);
#     one smbd serves [plain] (stock smbd) and [unilock] (vfs objects = unilock ...), and the pairs
#     [plain-dh]/[unilock-dh] (posix locking = no: durable handles work), [unilock-fast] (a 2 s
#     unilock:break timeout) and [unilock-batch] (unilock:durability = batch, for the timing); a
#     second smbd with smb2 leases = no (a global option) for oplocks;
#  3. smbtorture smb2.lock, smb2.lease, smb2.oplock against [plain] and [unilock], smb2.durable-open
#     and smb2.durable-v2-open against [plain-dh] and [unilock-dh]: the module must give the same
#     result as stock smbd, test by test, with no more smbd panics;
#  4. the lease and oplock checks with SMB2 clients that see their breaks (samba/cross_leases.py,
#     samba/smb2_breaks.py): stock smbd's facts, then the cross-protocol checks through the module;
#  5. the byte-range-lock cross-protocol test (samba/cross_protocol.py + cross_protocol.c, SMB2 client
#     smbprotocol from PyPI in a venv under the cache directory);
#  6. with UNILOCK_SAMBA_TIMING=1 (or only, `make bench-samba`: instead of 3-5), the SMB2 lock timing
#     (samba/timing.py): LOCK+UNLOCK round trips with 1, 2, 4 clients, stock [plain] against the module's
#     [unilock] and [unilock-batch] on this smbd (the shared-memory table, the default) and on a second
#     smbd started with UNILOCK_SHARED_BACKEND=sqlite; figures in $UNILOCK_SAMBA_OUT/timing.{txt,json};
#     it fails only on an unexpected SMB2 status, never on speed;
#  7. stops the smbds and removes the temporary directory (kept on failure).
# It installs no system package: samba/deps.sh does (as root).
#
# Environment:
#   UNILOCK_SAMBA_CACHE     cache directory (default /tmp/unilock-samba; see samba/build.sh)
#   UNILOCK_SAMBA_SUITES    full (default) | subset | none: the five suites whole; the subset CI runs
#                           (about 3 minutes); smb2.lock only. UNILOCK_SAMBA_LEASE is the old name.
#   UNILOCK_SAMBA_LEASE_TESTS  "t1 t2 ...": only these smb2.lease tests (development)
#   UNILOCK_SAMBA_TORTURE=0 no smbtorture at all (development)
#   UNILOCK_SAMBA_EXTRA     more smbtorture suites (e.g. "smb2.durable-open smb2.rw") to run against
#                           both shares: each must give the same per-test result with the module
#   UNILOCK_SAMBA_EXTRA_SHARES  the share pair for them: "plain unilock" (default) or
#                           "plain-dh unilock-dh" (posix locking = no: durable handles work)
#   UNILOCK_SAMBA_PORT      port (default: a free one)
#   UNILOCK_SAMBA_KEEP=1    keep the temporary directory (smbd logs, the unilock database)
#   UNILOCK_SAMBA_LOGLEVEL  smbd log level (default 1)
#   UNILOCK_SAMBA_TIMING    0 (default) | 1: the timing step after the checks | only: nothing else
#   UNILOCK_SAMBA_TIMING_ARGS  options for samba/timing.py (--rounds 5 --seconds 2 --clients 1,2,4
#                           --strace DIR --perf DIR --profile)
#   PIP_INDEX_URL etc.      as pip understands them, for installing smbprotocol
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${UNILOCK_SAMBA_CACHE:-/tmp/unilock-samba}
out=${UNILOCK_SAMBA_OUT:-$repo/build/samba}
lease_mode=${UNILOCK_SAMBA_LEASE:-full}
user=ultest
pass=Unilock-test-1
PATH=$PATH:/usr/sbin:/sbin
export UNILOCK_SAMBA_CACHE=$cache UNILOCK_SAMBA_OUT=$out

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
t_all=$(now)
timings=""
timed() { # timed NAME START
	timings="$timings$(printf '  %-36s %7s s' "$1" "$(elapsed "$2")")
"
}
say() { echo "check-samba: $*"; }
die() { echo "check-samba: FAIL: $*" >&2; exit 1; }

for tool in smbd smbtorture smbpasswd unshare python3; do
	command -v $tool >/dev/null 2>&1 || die "$tool not found: run samba/deps.sh as root (apt-get install samba samba-testsuite samba-vfs-modules ...)"
done
[ "$(id -u)" = 0 ] || die "must run as root (smbd, mount namespace)"

# --- build ------------------------------------------------------------------------------------------
t=$(now)
sh "$repo/samba/build.sh"
timed "build module (samba/build.sh)" "$t"

t=$(now)
venv="$cache/venv"
if ! "$venv/bin/python" -c 'import smbprotocol' >/dev/null 2>&1; then
	say "installing smbprotocol (PyPI) into $venv"
	rm -rf "$venv"
	python3 -m venv "$venv" || die "python3 -m venv failed (package python3-venv)"
	"$venv/bin/pip" install -q --disable-pip-version-check 'smbprotocol>=1.10,<2' || die "pip install smbprotocol failed"
fi
timed "SMB2 client (smbprotocol venv)" "$t"

# --- smbd in a temporary directory ------------------------------------------------------------------
t=$(now)
state=$(mktemp -d /tmp/unilock-check-samba.XXXXXX)
chmod 755 "$state"
launch_pids=""
ok=0
# smbd (without --no-process-group) runs in a session and process group of its own; at exit its
# parent sends SIGTERM to that group (killkids), i.e. to every process it forked.
group_members() { ps -e -o pid=,pgid= | awk -v g="$1" '$2 == g && $1 != g {print $1}'; }
cleaned=0
cleanup() {
	[ "$cleaned" = 1 ] && return 0
	cleaned=1
	for pidfile in "$state/run/smbd.pid" "$state/ol/run/smbd.pid" "$state/sq/run/smbd.pid"; do
		spid=""
		[ -f "$pidfile" ] && spid=$(cat "$pidfile" 2>/dev/null || true)
		[ -n "$spid" ] && kill -0 "$spid" 2>/dev/null || continue
		members=$(group_members "$spid")
		kill -TERM "$spid" 2>/dev/null || true
		i=0
		while [ $i -lt 50 ]; do
			alive=""
			for k in "$spid" $members $(group_members "$spid"); do kill -0 "$k" 2>/dev/null && alive="$alive $k"; done
			[ -z "$alive" ] && break
			sleep 0.1; i=$((i+1))
		done
		for k in $alive; do kill -KILL "$k" 2>/dev/null || true; done
	done
	for k in $launch_pids; do
		kill -TERM "$k" 2>/dev/null || true
		wait "$k" 2>/dev/null || true
	done
	launch_pids=""
	if [ "$ok" = 1 ] && [ "${UNILOCK_SAMBA_KEEP:-0}" != 1 ]; then
		rm -rf "$state"
	else
		echo "check-samba: state, smbd logs and results kept in $state" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

modulesdir=$(smbd -b | sed -n 's/^ *MODULESDIR: //p')
[ -d "$modulesdir/vfs" ] || die "no $modulesdir/vfs (package samba-vfs-modules)"
[ -f "$modulesdir/vfs/streams_xattr.so" ] || die "no streams_xattr module (package samba-vfs-modules)"
mkdir -p "$state/vfs" "$state/etc"
cp -a "$modulesdir/vfs/." "$state/vfs/"
cp "$out/unilock.so" "$state/vfs/unilock.so"

# The test user exists only inside smbd's mount namespace.
uid=2999
while getent passwd "$uid" >/dev/null 2>&1 || getent group "$uid" >/dev/null 2>&1; do uid=$((uid+1)); done
cp /etc/passwd "$state/etc/passwd"
cp /etc/group "$state/etc/group"
grep -q "^$user:" "$state/etc/passwd" || echo "$user:x:$uid:$uid:unilock check-samba:/nonexistent:/usr/sbin/nologin" >> "$state/etc/passwd"
grep -q "^$user:" "$state/etc/group" || echo "$user:x:$uid:" >> "$state/etc/group"
uid=$(awk -F: -v u="$user" '$1==u{print $3}' "$state/etc/passwd")
gid=$(awk -F: -v u="$user" '$1==u{print $4}' "$state/etc/passwd")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=${UNILOCK_SAMBA_PORT:-$(free_port)}
ns() { unshare -m --propagation private sh "$repo/samba/smbd-ns.sh" "$state" "$modulesdir" "$@"; }
# start_smbd DIR PORT LEASES [VAR=VALUE...]: one smbd with all its state under DIR, on 127.0.0.1:PORT,
# "smb2 leases" = LEASES (a global option: the oplock checks need an smbd of their own with leases
# off), with the environment VAR=VALUE... (e.g. UNILOCK_SHARED_BACKEND=sqlite; smbd's children inherit it).
start_smbd() {
	d=$1 p=$2 leases=$3
	shift 3
	mkdir -p "$d/private" "$d/lock" "$d/state" "$d/cache" "$d/run" "$d/bind-dns" \
		"$d/usershares" "$d/log" "$d/share-plain" "$d/share-unilock" "$d/unilock" \
		"$d/share-plain-dh" "$d/share-unilock-dh" "$d/share-unilock-fast" "$d/share-unilock-batch" \
		"$d/results"
	chown "$uid:$gid" "$d/share-plain" "$d/share-unilock" "$d/share-plain-dh" "$d/share-unilock-dh" \
		"$d/share-unilock-fast" "$d/share-unilock-batch"
	sed -e "s|@STATE@|$d|g" -e "s|@PORT@|$p|g" -e "s|@LOGLEVEL@|${UNILOCK_SAMBA_LOGLEVEL:-1}|g" \
		-e "s|@LEASES@|$leases|g" "$repo/samba/smb.conf.in" > "$d/smb.conf"
	ns sh -c "printf '%s\n%s\n' '$pass' '$pass' | smbpasswd -c '$d/smb.conf' -s -a $user" >"$d/log/smbpasswd.out" 2>&1 ||
		{ cat "$d/log/smbpasswd.out" >&2; die "smbpasswd -a failed"; }
	ns env "$@" smbd -F -s "$d/smb.conf" >"$d/log/smbd.out" 2>&1 &
	launch_pids="$launch_pids $!"
	python3 - "$p" <<'EOF' || { cat "$d/log/smbd.out" >&2; die "smbd did not start listening on 127.0.0.1:$p"; }
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
EOF
	spid=$(cat "$d/run/smbd.pid" 2>/dev/null || true)
	[ -n "$spid" ] && kill -0 "$spid" 2>/dev/null || die "smbd is not running: $(cat "$d/log/smbd.out")"
	say "smbd $(smbd -V | sed 's/^Version //') on 127.0.0.1:$p (smb2 leases = $leases${1:+, $*}), pid $spid, state in $d"
}
start_smbd "$state" "$port" yes
smbd_pid=$(cat "$state/run/smbd.pid")
timed "start smbd" "$t"

verdict=0
# --- stop (finish: the end of every run) ------------------------------------------------------------
finish() {
	t=$(now)
	[ "$verdict" = 0 ] && ok=1
	cleanup
	timed "stop smbd" "$t"
	printf 'check-samba: timings\n%s' "$timings"
	printf '  %-36s %7s s\n' "total" "$(elapsed "$t_all")"
	[ "$verdict" = 0 ] || die "see above"
}

# --- timing: SMB2 lock round trips, stock smbd against the module (samba/timing.py) ----------------
# UNILOCK_SAMBA_TIMING=1: a step after the checks; =only (`make bench-samba`): nothing else.
# A second smbd runs the module on the SQLite table (UNILOCK_SHARED_BACKEND=sqlite in its
# environment), beside the first one's default (the shared-memory table where robust mutexes work).
# The step fails only when a client gets an unexpected status, never on speed.
timing_mode=${UNILOCK_SAMBA_TIMING:-0}
timing_step() {
	t=$(now)
	sq_port=$(free_port)
	start_smbd "$state/sq" "$sq_port" yes UNILOCK_SHARED_BACKEND=sqlite
	sq_pid=$(cat "$state/sq/run/smbd.pid")
	mkdir -p "$out"
	# shellcheck disable=SC2086
	{ "$venv/bin/python" "$repo/samba/timing.py" --user "$user" --password "$pass" \
		--target "stock smbd [plain]=plain@$port:$smbd_pid" \
		--target "module shm PROCESS=unilock@$port:$smbd_pid" \
		--target "module shm BATCH=unilock-batch@$port:$smbd_pid" \
		--target "module sqlite PROCESS=unilock@$sq_port:$sq_pid" \
		--target "module sqlite BATCH=unilock-batch@$sq_port:$sq_pid" \
		--json "$out/timing.json" ${UNILOCK_SAMBA_TIMING_ARGS:-}
		echo $? >"$state/results/timing.rc"; } 2>&1 | tee "$state/results/timing.txt"
	cp "$state/results/timing.txt" "$out/timing.txt"
	timed "timing (samba/timing.py)" "$t"
	[ "$(cat "$state/results/timing.rc")" = 0 ] || { say "FAIL: timing: a client got an unexpected status"; verdict=1; }
	say "timing: figures in $out/timing.txt and $out/timing.json"
}
if [ "$timing_mode" = only ]; then
	timing_step
	finish
	exit 0
fi

# --- smbtorture -------------------------------------------------------------------------------------
# torture SHARE SUITE NAME [tests...]: runs smbtorture, writes $state/results/NAME.txt (raw) and
# NAME.res ("test status" per line, sorted) and prints the counts.
# smbd panics during the run are counted in NAME.panics (stock smbd 4.17 itself panics in some
# suites, e.g. smb2.durable-open without durable handle support: compare, do not assume zero).
panics() { cat "$state"/log/log.* 2>/dev/null | grep -c 'INTERNAL ERROR' || true; }
torture() {
	share=$1; shift; name=$1; shift
	p0=$(panics)
	smbtorture "//127.0.0.1/$share" -p "$port" -U "$user%$pass" "$@" >"$state/results/$name.txt" 2>&1 || true
	sleep 0.2
	echo $(( $(panics) - p0 )) > "$state/results/$name.panics"
	awk '/^(success|failure|error|skip|xfail): /{st=$1; sub(/:$/,"",st); n=$2; print n, st}' \
		"$state/results/$name.txt" | sort > "$state/results/$name.res"
	s=$(grep -c ' success$' "$state/results/$name.res" || true)
	f=$(grep -c -E ' (failure|error)$' "$state/results/$name.res" || true)
	k=$(grep -c ' skip$' "$state/results/$name.res" || true)
	printf '%s passed, %s failed, %s skipped' "$s" "$f" "$k"
	[ "$(cat "$state/results/$name.panics")" = 0 ] || printf ', %s smbd panics' "$(cat "$state/results/$name.panics")"
}
no_panic() { # no_panic NAME: fails the check if smbd panicked during run NAME
	[ "$(cat "$state/results/$1.panics")" = 0 ] || { say "FAIL: smbd panicked during $1 (logs in $state/log)"; verdict=1; }
}
failures() { grep -E ' (failure|error)$' "$state/results/$1.res" | awk '{print $1}' | tr '\n' ' '; }

# Every suite runs against a stock share and a module share of the same smbd and must give the same
# result test by test, with no more smbd panics (stock smbd 4.17 fails a few tests itself in this
# setup: statopen3 and unlink of smb2.lease, for example; they must fail the same way).
# UNILOCK_SAMBA_SUITES (or, as before, UNILOCK_SAMBA_LEASE) = full (default) | subset | none.
suites_mode=${UNILOCK_SAMBA_SUITES:-$lease_mode}
pairs=""
# pair NAME PLAIN UNILOCK ARGS...: smbtorture ARGS against [PLAIN] and [UNILOCK], compared.
pair() {
	name=$1 p_share=$2 u_share=$3; shift 3
	t=$(now)
	r_p=$(torture "$p_share" "$name-plain" "$@")
	r_u=$(torture "$u_share" "$name-unilock" "$@")
	timed "$name ($suites_mode), [$p_share] and [$u_share]" "$t"
	say "$name ($suites_mode) stock [$p_share]: $r_p"
	say "$name ($suites_mode) vfs_unilock [$u_share]: $r_u"
	f_p=$(failures "$name-plain"); f_u=$(failures "$name-unilock")
	[ -z "$f_p$f_u" ] || say "  failures: stock: ${f_p:-none}; with the module: ${f_u:-none}"
	if ! diff -u "$state/results/$name-plain.res" "$state/results/$name-unilock.res" >"$state/results/$name.diff"; then
		cat "$state/results/$name.diff"
		say "FAIL: $name differs with the module"; verdict=1
	fi
	[ -s "$state/results/$name-unilock.res" ] || { say "FAIL: $name ran no test"; verdict=1; }
	if [ "$(cat "$state/results/$name-unilock.panics")" -gt "$(cat "$state/results/$name-plain.panics")" ]; then
		say "FAIL: $name: more smbd panics with the module (logs in $state/log)"; verdict=1
	fi
	pairs="$pairs$name: $r_u (stock: $r_p)
"
}
# subset SUITE TESTS...: the smbtorture names of those tests
subset() { s=$1; shift; for n in "$@"; do printf ' %s.%s' "$s" "$n"; done; }

# The smb2.lease subset leaves out the tests that wait for break timeouts (timeout, oplock, break:
# 90 s of the 3 minutes) and a few more slow ones. lock1: a byte-range lock breaks a lease.
lease_subset="request nobreakself statopen statopen2 statopen4 upgrade upgrade2 upgrade3 break_twice
	multibreak breaking1 breaking2 breaking3 breaking6 lock1 v2_epoch1 v2_epoch2 v2_epoch3 v2_complex2
	duplicate_create duplicate_open rename_wait v2_breaking3"
[ -n "${UNILOCK_SAMBA_LEASE_TESTS:-}" ] && suites_mode=subset lease_subset=$UNILOCK_SAMBA_LEASE_TESTS
oplock_subset="exclusive1 exclusive2 exclusive5 exclusive6 batch3 batch4 batch5 batch7 batch8 batch13 batch19 batch23
	doc brl2 brl3 levelii501 levelii502"

if [ "${UNILOCK_SAMBA_TORTURE:-1}" = 1 ]; then
	pair smb2.lock plain unilock smb2.lock
	if [ "$suites_mode" = full ]; then
		pair smb2.lease plain unilock smb2.lease
		pair smb2.oplock plain unilock smb2.oplock
		pair smb2.durable-open plain-dh unilock-dh smb2.durable-open
		pair smb2.durable-v2-open plain-dh unilock-dh smb2.durable-v2-open
	elif [ "$suites_mode" = subset ]; then
		# shellcheck disable=SC2086
		pair smb2.lease plain unilock $(subset smb2.lease $lease_subset)
		if [ -z "${UNILOCK_SAMBA_LEASE_TESTS:-}" ]; then
			# shellcheck disable=SC2086
			pair smb2.oplock plain unilock $(subset smb2.oplock $oplock_subset)
			# The durable suites take 2-3 s each: whole.
			pair smb2.durable-open plain-dh unilock-dh smb2.durable-open
			pair smb2.durable-v2-open plain-dh unilock-dh smb2.durable-v2-open
		fi
	fi
fi

set -- ${UNILOCK_SAMBA_EXTRA_SHARES:-plain unilock}
x_plain=$1 x_ul=$2
for suite in ${UNILOCK_SAMBA_EXTRA:-}; do
	t=$(now)
	r_plain=$(torture "$x_plain" "x-$suite-plain" "$suite")
	r_ul=$(torture "$x_ul" "x-$suite-unilock" "$suite")
	timed "$suite, [$x_plain] and [$x_ul]" "$t"
	say "$suite on [$x_plain]: $r_plain; on [$x_ul]: $r_ul"
	if ! diff -u "$state/results/x-$suite-plain.res" "$state/results/x-$suite-unilock.res"; then
		say "FAIL: $suite differs with the module"; verdict=1
	fi
	if [ "$(cat "$state/results/x-$suite-unilock.panics")" -gt "$(cat "$state/results/x-$suite-plain.panics")" ]; then
		say "FAIL: $suite: more smbd panics with the module"; verdict=1
	fi
done

# --- leases and oplocks: SMB2 clients that see their breaks -----------------------------------------
# cross_leases.py: first the facts of stock smbd ([plain]) the checks rely on, then the cross-protocol
# checks through the module ([unilock]).
p0=$(panics)
t=$(now)
xl() { # xl NAME args...: runs cross_leases.py, keeps its output, prints PASS/FAIL lines
	name=$1; shift
	if PYTHONPATH="$repo/samba" "$venv/bin/python" "$repo/samba/cross_leases.py" --port "$port" \
		--user "$user" --password "$pass" "$@" >"$state/results/$name.txt" 2>&1; then r=0; else r=1; fi
	grep -E '^(PASS|FAIL) ' "$state/results/$name.txt" | sed 's/^/  /'
	say "$(tail -n 1 "$state/results/$name.txt")"
	[ "$r" = 0 ] || { tail -n 20 "$state/results/$name.txt"; say "FAIL: $name"; verdict=1; }
}
xl leases-stock --mode stock --share plain
# smb2 leases is a global option: the oplock checks get an smbd of their own, with leases off.
ol_port=$(free_port)
start_smbd "$state/ol" "$ol_port" no >/dev/null
xl oplocks-stock --mode stock-oplocks --share plain --port "$ol_port"
xl leases-unilock --mode unilock --share unilock --nlm "$out/cross_protocol" --db "$state/unilock/locks.db" \
	--share-dir "$state/share-unilock" --fast-share unilock-fast --fast-db "$state/unilock/fast.db" \
	--fast-share-dir "$state/share-unilock-fast" --fast-timeout 2000 \
	--dh-share unilock-dh --dh-share-dir "$state/share-unilock-dh"
xl oplocks-unilock --mode unilock-oplocks --share unilock --port "$ol_port" --nlm "$out/cross_protocol" \
	--db "$state/ol/unilock/locks.db" --share-dir "$state/ol/share-unilock"
timed "lease breaks seen by SMB2 clients" "$t"

# --- cross-protocol ---------------------------------------------------------------------------------
t=$(now)
if "$venv/bin/python" "$repo/samba/cross_protocol.py" --nlm "$out/cross_protocol" \
	--db "$state/unilock/locks.db" --share-dir "$state/share-unilock" --port "$port" \
	--share unilock --user "$user" --password "$pass" >"$state/results/cross_protocol.txt" 2>&1; then
	xp_ok=1
else
	xp_ok=0
fi
timed "cross-protocol test" "$t"
sleep 0.2
[ "$(panics)" = "$p0" ] || { say "FAIL: smbd panicked during the cross-protocol test (logs in $state/log)"; verdict=1; }
grep -E '^(PASS|FAIL) |granted .* after' "$state/results/cross_protocol.txt" | sed 's/^/  /'
xp=$(tail -n 1 "$state/results/cross_protocol.txt")
say "$xp"
[ "$xp_ok" = 1 ] || { tail -n 30 "$state/results/cross_protocol.txt"; say "FAIL: cross-protocol test"; verdict=1; }

if [ "$timing_mode" = 1 ]; then timing_step; fi
finish
printf 'check-samba: smbtorture, the same test by test as stock smbd:\n%s' "$pairs" | sed 's/^\([^c]\)/  \1/'
say "all passed ($xp)"
