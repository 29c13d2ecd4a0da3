#!/usr/bin/env bash
# Profile-guided release build of tagpipe and of the load-test harness (BENCHMARKS.md, "The
# profile-guided build"):
#
#   ./scripts/build-pgo.sh        # → $CARGO_TARGET_DIR-pgo/release/{tagpipe,tagpipe-loadtest}
#
# 1. builds both with instrumentation (`-Cprofile-generate`, in `$CARGO_TARGET_DIR-pgo-gen`);
# 2. trains them: the harness's `ceiling`, `ga4`, `batches` and `fanout` scenarios, 1 run × 5 s
#    each (the servers stop gracefully, so each writes its profile);
# 3. merges the profiles (`llvm-profdata`: one of LLVM 19 or later reads this toolchain's raw
#    profiles; Debian's `llvm-19` is installed when none is found);
# 4. builds both again with the profile (`-Cprofile-use`, in `$CARGO_TARGET_DIR-pgo`).
#
# The ceiling (the harness's own 204 server) gets the same treatment as tagpipe, so the
# side-by-side ratio compares like with like: `./scripts/loadtest.sh --pgo` runs both.
# About 20 minutes on 2 cores (two full release builds with fat LTO).
set -euo pipefail
cd "$(dirname "$0")/.."
base="${CARGO_TARGET_DIR:-$HOME/.cache/tagpipe-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

find_profdata() {
  for tool in llvm-profdata-{30..19} /usr/lib/llvm-{30..19}/bin/llvm-profdata; do
    if command -v "$tool" >/dev/null 2>&1; then
      command -v "$tool"
      return
    fi
  done
}
profdata=$(find_profdata || true)
if [ -z "$profdata" ]; then
  echo "installing llvm-19 (for llvm-profdata)…"
  if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends llvm-19 >/dev/null
  profdata=$(find_profdata)
fi
command -v wrk >/dev/null || {
  echo "installing wrk…"
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null; else sudo apt-get install -y -qq wrk >/dev/null; fi
}

gen="$base-pgo-gen"
raw="$gen/profiles"
rm -rf "$raw"
mkdir -p "$raw"
echo "1/4 instrumented build ($gen)…"
CARGO_TARGET_DIR="$gen" RUSTFLAGS="-Cprofile-generate=$raw" \
  cargo build --quiet --release -p tagpipe -p tagpipe-loadtest
# Build scripts run during the build wrote profiles of their own: not the servers'.
rm -rf "$raw"
mkdir -p "$raw"

echo "2/4 training run…"
"$gen/release/tagpipe-loadtest" run --tagpipe "$gen/release/tagpipe" --work-dir "$gen/loadtest" \
  --runs 1 --duration 5 --scenario ceiling --scenario ga4 --scenario batches --scenario fanout \
  >"$gen/training.txt"
ls "$raw"/*.profraw >/dev/null

echo "3/4 merging the profiles ($profdata)…"
"$profdata" merge -o "$gen/merged.profdata" "$raw"/*.profraw

echo "4/4 build with the profile ($base-pgo)…"
CARGO_TARGET_DIR="$base-pgo" RUSTFLAGS="-Cprofile-use=$gen/merged.profdata" \
  cargo build --quiet --release -p tagpipe -p tagpipe-loadtest
echo "built: $base-pgo/release/tagpipe and $base-pgo/release/tagpipe-loadtest"
