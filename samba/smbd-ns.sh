#!/bin/sh
# Runs inside a private mount namespace (`unshare -m --propagation private`): makes the
# vfs_unilock module and a test user visible to smbd without touching the system, then execs the
# command (smbd). Nothing outside this namespace sees these mounts; they vanish with smbd.
#   smbd-ns.sh STATE MODULESDIR cmd args...
# STATE/vfs     a copy of MODULESDIR/vfs plus unilock.so, bind-mounted over MODULESDIR/vfs
#               (smbd 4.17 loads VFS modules only from there)
# STATE/etc     passwd and group with the test user added, bind-mounted over /etc/passwd, /etc/group
set -eu
state=$1; modulesdir=$2; shift 2
mount --bind "$state/vfs" "$modulesdir/vfs"
mount --bind "$state/etc/passwd" /etc/passwd
mount --bind "$state/etc/group" /etc/group
exec "$@"
