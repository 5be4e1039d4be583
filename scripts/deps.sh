#!/bin/sh
# Makes sure the system packages the build and tests need are present. As root on Debian/Ubuntu it
# installs what is missing with apt-get; otherwise it names the missing packages and fails.
# Usage: scripts/deps.sh [build|check]
set -eu
need="build"; [ "${1:-build}" = "check" ] && need="check"
missing=""
have_header() { printf '#include <stdarg.h>\n#include <stddef.h>\n#include <setjmp.h>\n#include <stdint.h>\n#include <%s>\n' "$1" | cc -E -x c - >/dev/null 2>&1; }
command -v cc >/dev/null 2>&1 || missing="$missing gcc"
command -v make >/dev/null 2>&1 || missing="$missing make"
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
if [ "$need" = "check" ]; then
  have_header cmocka.h || missing="$missing libcmocka-dev"
  command -v valgrind >/dev/null 2>&1 || missing="$missing valgrind"
  command -v c++ >/dev/null 2>&1 || missing="$missing g++"
  command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
fi
if [ "$need" = "check" ]; then
  # make check lints (cargo clippy, cargo fmt --check): add the components where rustup manages Rust.
  for c in clippy rustfmt; do
    sub=$c; [ "$c" = "rustfmt" ] && sub=fmt
    if ! cargo "$sub" --version >/dev/null 2>&1; then
      if command -v rustup >/dev/null 2>&1; then
        echo "deps: rustup component add $c"
        rustup component add "$c" >/dev/null 2>&1 || { echo "deps: 'rustup component add $c' failed" >&2; exit 1; }
      else
        [ "$c" = "clippy" ] && missing="$missing rust-clippy" || missing="$missing rustfmt"
      fi
    fi
  done
fi
if [ "$need" = "check" ]; then
  # make check runs cluster mode's suites on a private etcd: etcd comes from cluster/deps.sh, which
  # installs it as root (keeping the package's own service from starting) or names what is missing.
  sh "$(dirname "$0")/../cluster/deps.sh" >/dev/null || exit 1
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "deps: installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || true
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  exit 0
fi
echo "deps: missing packages:$missing" >&2
echo "deps: install them (e.g. sudo apt-get install$missing) and run again" >&2
exit 1
