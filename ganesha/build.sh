#!/bin/sh
# Builds FSAL_UNILOCK (ganesha/fsal_unilock.c), a stackable NFS-Ganesha FSAL, against the
# ganesha.nfsd installed on this machine (Debian's `nfs-ganesha` package), without building Ganesha:
#   1. fetch the upstream (.orig) tarball of exactly the installed nfs-ganesha version from the Debian
#      source package, with a private apt source list and private apt state (the system's apt
#      configuration is left alone), and unpack it;
#   2. run cmake once with Debian's feature set (9P, NFSACL, NLM on; nothing compiled): only
#      config.h and the generated headers are needed, and sal_data.h/fsal_api.h change layout with
#      those options;
#   3. compile the FSAL and link it against libganesha_nfsd and libunilock;
#   4. make a private plugin directory: libfsalunilock.so plus a link to the system's libfsalvfs.so
#      (ganesha.nfsd loads <Plugins_Dir>/libfsal<name>.so).
# Steps 1-2 are cached under $UNILOCK_GANESHA_CACHE (default /tmp/unilock-ganesha), keyed by the
# version, so a second run takes about two seconds.
#
# Environment:
#   UNILOCK_GANESHA_CACHE  cache directory (source, cmake tree, apt state)
#   UNILOCK_GANESHA_OUT    output directory (default <repo>/build/ganesha): plugins/ with
#                          libfsalunilock.so and libfsalvfs.so; cross_protocol and lease_holder
#                          (stand-ins for another unilock user)
#   UNILOCK_LIBDIR         where libunilock.so is (default <repo>/build/lib, i.e. `make lib`); the
#                          FSAL gets it as its run path
#   CC                     C compiler (default cc)
# Needs: nfs-ganesha, nfs-ganesha-vfs, the build dependencies in ganesha/deps.sh.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${UNILOCK_GANESHA_CACHE:-/tmp/unilock-ganesha}
out=${UNILOCK_GANESHA_OUT:-$repo/build/ganesha}
libdir=${UNILOCK_LIBDIR:-$repo/build/lib}
cc=${CC:-cc}
sysplugins=/usr/lib/x86_64-linux-gnu/ganesha

now() { date +%s.%N; }
t_all=$(now)
step_t=$t_all
step() { # step NAME: prints the time the previous step took
	t=$(now)
	[ -n "${step_name:-}" ] && awk -v n="$step_name" -v a="$step_t" -v b="$t" 'BEGIN{printf "build.sh: %-20s %6.1f s\n", n, b-a}'
	true
	step_name=$1; step_t=$t
}
die() { echo "ganesha/build.sh: $*" >&2; exit 1; }
# shellcheck source=../scripts/debsrc.sh
. "$repo/scripts/debsrc.sh"

[ -x /usr/bin/ganesha.nfsd ] || die "ganesha.nfsd not found: run ganesha/deps.sh as root"
[ -f "$sysplugins/libfsalvfs.so" ] || sysplugins=$(dirname "$(dpkg -L nfs-ganesha-vfs 2>/dev/null | grep '/libfsalvfs.so$' | head -n 1)")
[ -f "$sysplugins/libfsalvfs.so" ] || die "libfsalvfs.so not found (package nfs-ganesha-vfs)"
[ -f "$libdir/libunilock.so" ] || die "$libdir/libunilock.so missing: run 'make lib' first"
command -v cmake >/dev/null 2>&1 || die "cmake not found: see ganesha/deps.sh"

mkdir -p "$cache" "$out"
if command -v flock >/dev/null 2>&1; then
	exec 9>"$cache/.lock"
	flock 9
fi

# --- 1. the upstream source of the installed nfs-ganesha ------------------------------------------
step "source"
debver=$(dpkg-query -W -f='${Version}' nfs-ganesha 2>/dev/null) || die "package nfs-ganesha is not installed"
upver=${debver#*:}; upver=${upver%-*}      # 4.3-2 -> 4.3
src="$cache/src/nfs-ganesha-$upver"
if [ ! -f "$src/.unilock-extracted" ]; then
	rm -rf "$src" "$cache/dl"
	mkdir -p "$cache/dl"
	debsrc_prepare "$cache"
	# Only the upstream tarball is needed (Debian's patches do not touch the FSAL headers); the
	# .debian.tar.xz may be missing on a mirror, so a failed download is fine if the .orig came.
	# shellcheck disable=SC2086
	(cd "$cache/dl" && apt-get -q $apt_opts source --download-only "nfs-ganesha=$debver") >"$cache/apt-source.log" 2>&1 || true
	orig=$(ls "$cache/dl"/nfs-ganesha_*.orig.tar.* 2>/dev/null | head -n 1)
	[ -n "$orig" ] || { cat "$cache/apt-source.log" >&2; die "cannot download the source of nfs-ganesha $debver"; }
	mkdir -p "$src"
	tar -xf "$orig" -C "$src" --strip-components=1 || die "cannot unpack $orig"
	rm -rf "$cache/dl"
	[ -f "$src/src/CMakeLists.txt" ] || die "unexpected layout of $orig (no src/CMakeLists.txt)"
	touch "$src/.unilock-extracted"
fi

# --- 2. cmake: config.h and generated headers only ----------------------------------------------------
step "cmake"
bld="$cache/build-$upver"
cmake_flags="-DUSE_SYSTEM_NTIRPC=ON -DUSE_FSAL_CEPH=OFF -DUSE_FSAL_GLUSTER=OFF -DUSE_FSAL_RGW=OFF
	-DUSE_FSAL_GPFS=OFF -DUSE_FSAL_LUSTRE=OFF -DUSE_FSAL_LIZARDFS=OFF -DUSE_FSAL_KVSFS=OFF
	-DUSE_FSAL_XFS=OFF -DUSE_LTTNG=OFF -DUSE_GUI_ADMIN_TOOLS=OFF -DUSE_RADOS_RECOV=OFF
	-DRADOS_URLS=OFF -DUSE_MAN_PAGE=OFF -DUSE_9P=ON -DUSE_NFSACL3=ON -DUSE_NLM=ON -DDEBUG_SAL=OFF"
if [ ! -f "$bld/.unilock-configured" ] || [ "$(cat "$bld/.unilock-configured")" != "$(echo $cmake_flags)" ]; then
	rm -rf "$bld"; mkdir -p "$bld"
	# shellcheck disable=SC2086
	(cd "$bld" && cmake $cmake_flags "$src/src") >"$cache/cmake.log" 2>&1 ||
		{ tail -n 30 "$cache/cmake.log" >&2; die "cmake failed (log: $cache/cmake.log)"; }
	[ -f "$bld/include/config.h" ] || die "cmake made no include/config.h"
	echo $cmake_flags > "$bld/.unilock-configured"
fi

# --- 3. the FSAL -------------------------------------------------------------------------------------
# The stacking (an export and object handles that wrap the sub-FSAL's and pass every call down) is
# Ganesha's own FSAL_NULL template, compiled from the Debian source fetched above; fsal_unilock.c
# takes the place of FSAL_NULL's main.c and overrides the lock, delegation and close calls.
step "fsal"
mkdir -p "$out/plugins" "$out/obj"
nulldir="$src/src/FSAL/Stackable_FSALs/FSAL_NULL"
cflags="-fPIC -O2 -g -D_GNU_SOURCE=1 -D__USE_GNU -DHAS_DOFF -D_FILE_OFFSET_BITS=64
	-I$bld/include -I$src/src/include -I$src/src/include/os/linux -I/usr/include/ntirpc
	-I$nulldir -I$repo/include"
objs=""
for f in export handle file xattrs; do
	# shellcheck disable=SC2086
	$cc -c $cflags -w -o "$out/obj/null_$f.o" "$nulldir/$f.c"
	objs="$objs $out/obj/null_$f.o"
done
# shellcheck disable=SC2086
$cc -c $cflags -Wall -Werror=implicit-function-declaration -o "$out/obj/fsal_unilock.o" "$repo/ganesha/fsal_unilock.c"
# shellcheck disable=SC2086
$cc -shared -o "$out/plugins/.libfsalunilock.so.tmp" "$out/obj/fsal_unilock.o" $objs -Wl,-z,defs \
	-L/usr/lib/ganesha -lganesha_nfsd -lntirpc -lpthread \
	-L"$libdir" -lunilock -Wl,-rpath,"$libdir" -Wl,-rpath,/usr/lib/ganesha
# Never overwrite a loaded module in place: a running ganesha.nfsd would crash.
mv -f "$out/plugins/.libfsalunilock.so.tmp" "$out/plugins/libfsalunilock.so"
ln -sf "$sysplugins/libfsalvfs.so" "$out/plugins/libfsalvfs.so"
nm -D --defined-only "$out/plugins/libfsalunilock.so" | grep -q ' T unilock_fsal_init$' ||
	die "libfsalunilock.so does not export unilock_fsal_init"

# --- 4. the stand-in for another unilock user -------------------------------------------------------
# samba/cross_protocol.c (links libunilock only): the check takes locks on the shared database with
# it, as smbd or another server would, to prove that ganesha.nfsd obeys unilock.
step "cross_protocol"
$cc -O2 -g -Wall -Wextra -o "$out/cross_protocol" "$repo/samba/cross_protocol.c" \
	-I"$repo/include" -L"$libdir" -lunilock -Wl,-rpath,"$libdir"
# ganesha/lease_holder.c: an SMB-style lease held through unilock (an NFS write must break it).
$cc -O2 -g -Wall -Wextra \
	-o "$out/lease_holder" "$repo/ganesha/lease_holder.c" \
	-I"$repo/include" -L"$libdir" -lunilock -Wl,-rpath,"$libdir"

step ""
awk -v a="$t_all" -v b="$(now)" 'BEGIN{printf "build.sh: %-20s %6.1f s\n", "total", b-a}'
echo "build.sh: $out/plugins/libfsalunilock.so for ganesha $upver, libunilock from $libdir"
