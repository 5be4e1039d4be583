#!/bin/sh
# Compares the library of this checkout with the library of another revision on the same figures, in one
# run: both libraries are run by the same bench binary, alternating repetition by repetition (so load
# and frequency changes hit both alike), and each row's median is printed with the ratio new / base.
#
#   bench/compare.sh [REV] [FIGURES] [ROUNDS]     (defaults: origin's main or main, 1,3,4, 5)
#   make bench-compare BASE=REV FIGURES=1,3,4
#
# Issue 16 asks that the engine reshaping cost nothing: figures 1, 3 and 4 within 5 % of the old main.
# The base library is built from REV in a temporary worktree with its own target directory (the first
# run takes a few minutes; later runs of the same REV reuse it under ${TMPDIR:-/tmp}).
# The bench binary is built from this checkout (bench.c here); the C ABI of both must match.
set -eu
cd "$(dirname "$0")/.."
REV=${1:-main}
FIGS=${2:-1,3,4}
ROUNDS=${3:-5}
TMP=${TMPDIR:-/tmp}
sha=$(git rev-parse --verify "$REV^{commit}")
base="$TMP/unilock-bench-base-$sha"
if [ ! -f "$base/lib/libunilock.so.0" ]; then
  wt="$TMP/unilock-bench-base-wt-$$"
  git worktree add -q --detach "$wt" "$sha"
  trap 'git worktree remove --force "$wt" 2>/dev/null || true' EXIT
  echo "compare: building the base library at $(git log --oneline -1 "$sha")"
  (cd "$wt" && CARGO_TARGET_DIR="$TMP/unilock-bench-base-target" cargo build --release --lib -q)
  mkdir -p "$base/lib"
  cp "$TMP/unilock-bench-base-target/release/libunilock.so" "$base/lib/libunilock.so.0"
fi
make -s lib >/dev/null
make -s -C bench bench >/dev/null
new="$(pwd)/bench/.lib"
out="$TMP/unilock-compare-$$"
mkdir -p "$out"
i=1
while [ "$i" -le "$ROUNDS" ]; do
  echo "compare: round $i of $ROUNDS"
  LD_LIBRARY_PATH="$base/lib" ./bench/bench --reps 1 --only "$FIGS" --json "$out/base-$i.json" >/dev/null
  LD_LIBRARY_PATH="$new" ./bench/bench --reps 1 --only "$FIGS" --json "$out/new-$i.json" >/dev/null
  i=$((i + 1))
done
python3 - "$out" "$ROUNDS" "$(git log --oneline -1 "$sha")" "$(git describe --always --dirty)" <<'EOF'
import json, statistics, sys
out, rounds, base_name, new_name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def rows(kind):
    acc = {}
    for i in range(1, rounds + 1):
        with open(f"{out}/{kind}-{i}.json") as f:
            for fig in json.load(f)["figures"]:
                for r in fig.get("rows") or []:
                    if r.get("unit") != "ratio" and r.get("samples"):
                        acc.setdefault((fig["figure"], r["name"], r["unit"]), []).extend(r["samples"])
    return acc
b, n = rows("base"), rows("new")
print(f"base: {base_name}\nnew:  {new_name}\n{rounds} alternating rounds; medians; ratio = new / base")
print(f"{'fig':>3}  {'row':<44} {'unit':<10} {'base':>11} {'new':>11} {'ratio':>7}")
for k in sorted(b):
    if k not in n:
        continue
    mb, mn = statistics.median(b[k]), statistics.median(n[k])
    ratio = mn / mb if mb else float("nan")
    print(f"{k[0]:>3}  {k[1]:<44} {k[2]:<10} {mb:>11.4g} {mn:>11.4g} {ratio:>7.3f}")
EOF
rm -rf "$out"
