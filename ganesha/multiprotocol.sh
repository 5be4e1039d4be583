#!/bin/sh
# `make check-multiprotocol`: one lock table between two real servers.
#
#  1. builds vfs_unilock (samba/build.sh) and FSAL_UNILOCK (ganesha/build.sh);
#  2. starts smbd (as samba/check.sh does: 127.0.0.1, state in a temporary directory, a private
#     mount namespace for the module and the test user) with one share [shared], vfs_unilock and
#     "posix locking = no", and ganesha.nfsd exporting the same directory through FSAL_UNILOCK, both
#     on one unilock database;
#  3. runs ganesha/multiprotocol.py: a real SMB2 client (smbprotocol, in samba/check.sh's venv)
#     and a real NFSv4 client (ganesha/nfs4client.py) on one file, in both directions, with a
#     pending SMB lock granted by an NFS unlock and a dead NFS client's expiry, an SMB lock and an SMB
#     write recalling a delegation, an NFS write breaking the SMB client's RWH lease (the SMB client
#     sees and acks its break: samba/smb2_breaks.py);
#  4. stops both servers and removes the temporary directory (kept on failure).
# Needs root, the packages of samba/deps.sh and ganesha/deps.sh; installs nothing itself (but
# smbprotocol from PyPI into the cache venv, as check-samba does).
#
# Environment: UNILOCK_SAMBA_CACHE, UNILOCK_GANESHA_CACHE (see the build scripts),
#   UNILOCK_MP_KEEP=1 keeps the temporary directory.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
scache=${UNILOCK_SAMBA_CACHE:-/tmp/unilock-samba}
sout=${UNILOCK_SAMBA_OUT:-$repo/build/samba}
gout=${UNILOCK_GANESHA_OUT:-$repo/build/ganesha}
user=ultest
pass=Unilock-test-1
PATH=$PATH:/usr/sbin:/sbin
export UNILOCK_SAMBA_CACHE=$scache UNILOCK_SAMBA_OUT=$sout UNILOCK_GANESHA_OUT=$gout
say() { echo "check-multiprotocol: $*"; }
die() { echo "check-multiprotocol: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (smbd, ganesha.nfsd, mount namespace)"
for tool in smbd smbpasswd unshare python3 ganesha.nfsd; do
	command -v $tool >/dev/null 2>&1 || die "$tool not found: run samba/deps.sh and ganesha/deps.sh as root"
done
t_all=$(date +%s)
sh "$repo/samba/build.sh" >/dev/null
sh "$repo/ganesha/build.sh" >/dev/null
venv="$scache/venv"
if ! "$venv/bin/python" -c 'import smbprotocol' >/dev/null 2>&1; then
	say "installing smbprotocol (PyPI) into $venv"
	rm -rf "$venv"
	python3 -m venv "$venv" || die "python3 -m venv failed (package python3-venv)"
	"$venv/bin/pip" install -q --disable-pip-version-check 'smbprotocol>=1.10,<2' || die "pip install smbprotocol failed"
fi

state=$(mktemp -d /tmp/unilock-check-mp.XXXXXX)
chmod 755 "$state"
launch_pid=""
gpid=""
ok=0
group_members() { ps -e -o pid=,pgid= | awk -v g="$1" '$2 == g && $1 != g {print $1}'; }
cleaned=0
cleanup() {
	[ "$cleaned" = 1 ] && return 0
	cleaned=1
	if [ -n "$gpid" ]; then kill "$gpid" 2>/dev/null || true; wait "$gpid" 2>/dev/null || true; fi
	spid=""
	[ -f "$state/run/smbd.pid" ] && spid=$(cat "$state/run/smbd.pid" 2>/dev/null || true)
	if [ -n "$spid" ] && kill -0 "$spid" 2>/dev/null; then
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
	fi
	if [ -n "$launch_pid" ]; then
		kill -TERM "$launch_pid" 2>/dev/null || true
		wait "$launch_pid" 2>/dev/null || true
	fi
	if [ "$ok" = 1 ] && [ "${UNILOCK_MP_KEEP:-0}" != 1 ]; then
		rm -rf "$state"
	else
		echo "check-multiprotocol: state and logs kept in $state" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

modulesdir=$(smbd -b | sed -n 's/^ *MODULESDIR: //p')
[ -d "$modulesdir/vfs" ] || die "no $modulesdir/vfs (package samba-vfs-modules)"
mkdir -p "$state/private" "$state/lock" "$state/state" "$state/cache" "$state/run" "$state/bind-dns" \
	"$state/usershares" "$state/log" "$state/shared" "$state/recov" "$state/vfs" "$state/etc"
cp -a "$modulesdir/vfs/." "$state/vfs/"
cp "$sout/unilock.so" "$state/vfs/unilock.so"
uid=2999
while getent passwd "$uid" >/dev/null 2>&1 || getent group "$uid" >/dev/null 2>&1; do uid=$((uid+1)); done
cp /etc/passwd "$state/etc/passwd"
cp /etc/group "$state/etc/group"
grep -q "^$user:" "$state/etc/passwd" || echo "$user:x:$uid:$uid:unilock check-multiprotocol:/nonexistent:/usr/sbin/nologin" >> "$state/etc/passwd"
grep -q "^$user:" "$state/etc/group" || echo "$user:x:$uid:" >> "$state/etc/group"
uid=$(awk -F: -v u="$user" '$1==u{print $3}' "$state/etc/passwd")
gid=$(awk -F: -v u="$user" '$1==u{print $4}' "$state/etc/passwd")
chown "$uid:$gid" "$state/shared"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
sport=$(free_port)
nport=$(free_port)
sed -e "s|@STATE@|$state|g" -e "s|@PORT@|$sport|g" "$repo/ganesha/smb.conf.in" > "$state/smb.conf"
sed -e "s|@STATE@|$state|g" -e "s|@NFSPORT@|$nport|g" -e "s|@PLUGINS@|$gout/plugins|g" \
	"$repo/ganesha/ganesha-mp.conf.in" > "$state/ganesha.conf"

# ganesha.nfsd first: it opens the database at start (smbd at its first tree connect).
ganesha.nfsd -F -f "$state/ganesha.conf" -L "$state/log/ganesha.log" -p "$state/run/ganesha.pid" &
gpid=$!
i=0
until grep -q "NFS SERVER INITIALIZED" "$state/log/ganesha.log" 2>/dev/null; do
	i=$((i + 1))
	kill -0 "$gpid" 2>/dev/null && [ $i -lt 200 ] || { tail -n 20 "$state/log/ganesha.log" >&2; die "ganesha.nfsd did not start"; }
	sleep 0.1
done

ns() { unshare -m --propagation private sh "$repo/samba/smbd-ns.sh" "$state" "$modulesdir" "$@"; }
ns sh -c "printf '%s\n%s\n' '$pass' '$pass' | smbpasswd -c '$state/smb.conf' -s -a $user" >"$state/log/smbpasswd.out" 2>&1 ||
	{ cat "$state/log/smbpasswd.out" >&2; die "smbpasswd -a failed"; }
ns smbd -F -s "$state/smb.conf" >"$state/log/smbd.out" 2>&1 &
launch_pid=$!
python3 - "$sport" <<'PY' || { cat "$state/log/smbd.out" >&2; die "smbd did not start listening"; }
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
say "smbd $(smbd -V | sed 's/^Version //') on 127.0.0.1:$sport, ganesha.nfsd $(dpkg-query -W -f='${Version}' nfs-ganesha) on 127.0.0.1:$nport, one database $state/unilock.db"

verdict=0
"$venv/bin/python" "$repo/ganesha/multiprotocol.py" --smb-port "$sport" --nfs-port "$nport" \
	--user "$user" --password "$pass" --uid "$uid" --gid "$gid" || verdict=1
kill -0 "$gpid" 2>/dev/null || { say "ganesha.nfsd died"; verdict=1; }
if cat "$state"/log/log.* 2>/dev/null | grep -q 'INTERNAL ERROR'; then say "smbd panicked"; verdict=1; fi
say "$(($(date +%s) - t_all)) s"
[ "$verdict" = 0 ] || die "see above"
ok=1
say "all passed"
