#!/bin/sh
# Builds the vfs_unilock Samba module and the cross-protocol test program against the smbd installed
# on this machine (Debian's `samba` package), without building Samba:
#   1. fetch the Debian source package of exactly the installed samba version, with a private apt
#      source list and private apt state (the system's apt configuration is left alone);
#   2. configure it (most features off: only config.h and the generated headers are needed);
#   3. generate the few headers a VFS module includes (waf targets below, a few seconds);
#   4. compile samba/vfs_unilock.c and link it against smbd's installed private libraries;
#   5. compile samba/cross_protocol.c (links libunilock).
# Steps 1-3 are cached under $UNILOCK_SAMBA_CACHE (default /tmp/unilock-samba), keyed by the samba
# version, so a second run takes about a second.
#
# Environment:
#   UNILOCK_SAMBA_CACHE  cache directory (source, configured tree, apt state, python venv)
#   UNILOCK_SAMBA_OUT    output directory (default <repo>/build/samba): unilock.so, cross_protocol
#   UNILOCK_LIBDIR       where libunilock.so is (default <repo>/build/lib, i.e. `make lib`); the
#                        module and the test program get it as their run path
#   CC                   C compiler (default cc)
# Needs: samba (smbd), dpkg-dev, the build dependencies in samba/deps.sh.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${UNILOCK_SAMBA_CACHE:-/tmp/unilock-samba}
out=${UNILOCK_SAMBA_OUT:-$repo/build/samba}
libdir=${UNILOCK_LIBDIR:-$repo/build/lib}
cc=${CC:-cc}

now() { date +%s.%N; }
t_all=$(now)
step_t=$t_all
step() { # step NAME: prints the time the previous step took
	t=$(now)
	[ -n "${step_name:-}" ] && awk -v n="$step_name" -v a="$step_t" -v b="$t" 'BEGIN{printf "build.sh: %-20s %6.1f s\n", n, b-a}'
	true
	step_name=$1; step_t=$t
}
die() { echo "build.sh: $*" >&2; exit 1; }
# shellcheck source=../scripts/debsrc.sh
. "$repo/scripts/debsrc.sh"

command -v smbd >/dev/null 2>&1 || PATH=$PATH:/usr/sbin
command -v smbd >/dev/null 2>&1 || die "smbd not found: run samba/deps.sh as root (or apt-get install samba)"
command -v dpkg-source >/dev/null 2>&1 || die "dpkg-source not found (package dpkg-dev): see samba/deps.sh"
[ -f "$libdir/libunilock.so" ] || die "$libdir/libunilock.so missing: run 'make lib' first"

mkdir -p "$cache" "$out"
# One build at a time per cache directory.
if command -v flock >/dev/null 2>&1; then
	exec 9>"$cache/.lock"
	flock 9
fi

# --- 1. the Debian source of the installed samba --------------------------------------------------
step "source"
debver=$(dpkg-query -W -f='${Version}' samba 2>/dev/null) || die "package samba is not installed"
upver=${debver#*:}            # 2:4.17.12+dfsg-0+deb12u4 -> 4.17.12+dfsg-0+deb12u4
src="$cache/src/samba-$upver"
if [ ! -f "$src/.unilock-extracted" ]; then
	rm -rf "$src" "$cache/dl"
	mkdir -p "$cache/dl"
	debsrc_prepare "$cache"
	# shellcheck disable=SC2086
	(cd "$cache/dl" && apt-get -q $apt_opts source --download-only "samba=$debver") >"$cache/apt-source.log" 2>&1 ||
		{ cat "$cache/apt-source.log" >&2; die "cannot download the source of samba $debver"; }
	dsc=$(ls "$cache/dl"/samba_*.dsc | head -n 1)
	mkdir -p "$cache/src"
	dpkg-source -x "$dsc" "$src" >"$cache/dpkg-source.log" 2>&1 || { cat "$cache/dpkg-source.log" >&2; die "dpkg-source -x failed"; }
	rm -rf "$cache/dl"
	touch "$src/.unilock-extracted"
fi

# --- 2. configure -----------------------------------------------------------------------------------
step "configure"
# Feature flags: everything a module's headers do not need is off. --with-profiling-data as Debian
# builds (it changes smbprofile.h), the rest only avoids build dependencies.
conf_flags="--disable-python --without-ad-dc --without-ldap --without-ads --without-winbind
	--without-json --without-pam --without-systemd --without-libarchive --without-acl-support
	--without-gpgme --disable-cups --disable-iprint --disable-avahi --without-quotas --without-utmp
	--without-lttng --without-dmapi --without-fam --disable-spotlight --without-regedit
	--without-winexe --disable-glusterfs --disable-cephfs --without-libunwind --without-ldb-lmdb
	--bundled-libraries=NONE,ldb,cmocka --with-system-mitkrb5 --with-shared-modules=!vfs_snapper
	--with-profiling-data"
stamp="$src/.unilock-configured"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$(echo $conf_flags)" ] || [ ! -f "$src/bin/default/include/config.h" ]; then
	rm -f "$stamp"
	# shellcheck disable=SC2086
	(cd "$src" && PYTHONHASHSEED=1 PYTHON=/usr/bin/python3 ./configure $conf_flags) >"$cache/configure.log" 2>&1 ||
		{ tail -n 30 "$cache/configure.log" >&2; die "configure failed (log: $cache/configure.log)"; }
	echo $conf_flags > "$stamp"
fi

# --- 3. generated headers ---------------------------------------------------------------------------
step "generated headers"
targets="PIDL_MISC,PIDL_OPEN_FILES,PIDL_SMBXSRV,PIDL_AUTH,PIDL_KRB5PAC,PIDL_LSA,PIDL_SAMR,PIDL_NETLOGON,PIDL_XATTR,PIDL_SECURITY,PIDL_SERVER_ID,PIDL_FILE_ID,PIDL_SMB2_LEASE_STRUCT,PIDL_SMB_ACL,PIDL_MESSAGING,s3_param_proto_h,param_local.h,ntstatus_generated,werror_generated"
if [ ! -f "$src/.unilock-headers" ] || [ "$(cat "$src/.unilock-headers")" != "$targets" ]; then
	(cd "$src" && PYTHONHASHSEED=1 PYTHON=/usr/bin/python3 buildtools/bin/waf build "--targets=$targets") >"$cache/headers.log" 2>&1 ||
		{ tail -n 30 "$cache/headers.log" >&2; die "generating headers failed (log: $cache/headers.log)"; }
	echo "$targets" > "$src/.unilock-headers"
fi

# --- 4. the module ----------------------------------------------------------------------------------
step "module"
vfs_version=$(sed -n 's/^#define SMB_VFS_INTERFACE_VERSION \([0-9]*\).*/\1/p' "$src/source3/include/vfs.h")
smbd_version=$(smbd -V | sed -n 's/^Version \([0-9.]*\).*/\1/p')
case "$upver" in
	"$smbd_version"+*|"$smbd_version"-*) ;;
	*) die "source $upver does not match the installed smbd $smbd_version" ;;
esac
samba_libs=$(smbd -b | sed -n 's/^ *LIBDIR: //p')
privlibs="$samba_libs/samba"
[ -f "$privlibs/libsmbd-base-samba4.so.0" ] || die "smbd's private libraries not found in $privlibs"
incs=""
for d in source3 source3/include lib/replace include lib librpc . source4; do
	incs="$incs -I$src/$d -I$src/bin/default/$d"
done
# shellcheck disable=SC2086
$cc -c -fPIC -O2 -g -Wall -Werror=implicit-function-declaration \
	-D__STDC_WANT_LIB_EXT1__=1 -D_SAMBA_BUILD_=4 -DHAVE_CONFIG_H=1 -D_GNU_SOURCE=1 \
	$incs -I"$repo/include" -o "$out/vfs_unilock.o" "$repo/samba/vfs_unilock.c"
# Samba's private libraries have no development links: name them by file.
$cc -shared -o "$out/unilock.so.tmp" "$out/vfs_unilock.o" -Wl,--no-undefined \
	-L"$privlibs" -L"$samba_libs" -Wl,-rpath-link,"$privlibs" \
	-l:libsmbd-base-samba4.so.0 -l:libsmbd-shim-samba4.so.0 -l:libcli-smb-common-samba4.so.0 -l:libsamba-debug-samba4.so.0 \
	-l:libsamba3-util-samba4.so.0 -l:libsmbconf.so.0 -l:libsamba-util.so.0 -l:libsamba-errors.so.1 \
	-l:libtalloc.so.2 -l:libtevent.so.0 \
	-L"$libdir" -lunilock -Wl,-rpath,"$libdir"
mv -f "$out/unilock.so.tmp" "$out/unilock.so"
nm -D --defined-only "$out/unilock.so" | grep -q ' T samba_init_module$' || die "unilock.so does not export samba_init_module"

# --- 5. the cross-protocol test program -------------------------------------------------------------
step "cross_protocol"
$cc -O2 -g -Wall -Wextra -o "$out/cross_protocol" "$repo/samba/cross_protocol.c" \
	-I"$repo/include" -L"$libdir" -lunilock -Wl,-rpath,"$libdir"

step ""
awk -v a="$t_all" -v b="$(now)" 'BEGIN{printf "build.sh: %-20s %6.1f s\n", "total", b-a}'
echo "build.sh: $out/unilock.so for smbd $smbd_version (VFS interface $vfs_version, source $upver), libunilock from $libdir"
