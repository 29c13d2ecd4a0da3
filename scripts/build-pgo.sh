#!/usr/bin/env bash
# Profile-guided release build of tagpipe and of the load-test harness (BENCHMARKS.md, "The
# profile-guided session"):
#
#   ./scripts/build-pgo.sh        # → $CARGO_TARGET_DIR-pgo/release/{tagpipe,tagpipe-loadtest}
#
# 1. builds both with instrumentation (`-Cprofile-generate`, in `$CARGO_TARGET_DIR-pgo-gen`);
# 2. trains them: the harness's `ceiling`, `ga4`, `ga4-refused` (consent-refused hits: without
#    them the skip path would be laid out as cold code), `batches` and `fanout` scenarios, 1 run
#    × 5 s each (the harness stops each server with SIGTERM, so each writes its profile);
# 3. merges the profiles (`llvm-profdata` of LLVM 19 or later reads this toolchain's raw
#    profiles; Debian's `llvm-19` is installed when none is found);
# 4. builds both again with the profile (`-Cprofile-use`, in `$CARGO_TARGET_DIR-pgo`).
#
# The ceiling (the harness's own 204 server) gets the same treatment as tagpipe, so the
# side-by-side ratio compares like with like: `./scripts/loadtest.sh --pgo` runs both.
# About 20 minutes on 2 cores (two full release builds with fat LTO; every run starts afresh).
# RUSTFLAGS set by the caller are kept, with the profile flags added.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
target="${CARGO_TARGET_DIR:-$HOME/.cache/tagpipe-target}"
# Absolute (the profile path reaches build scripts, which run elsewhere), no trailing slash.
base=$(realpath -m "${target%/}")
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Cargo would take this over RUSTFLAGS, dropping the profile flags.
unset CARGO_ENCODED_RUSTFLAGS

# The major LLVM version of an llvm-profdata, from its `--version`.
llvm_major() {
  "$1" --version 2>/dev/null | sed -n 's/.*LLVM version \([0-9]*\).*/\1/p' | head -1
}
# An llvm-profdata of LLVM 19 or later, the newest first; nothing when there is none.
find_profdata() {
  local tool path major
  for tool in llvm-profdata /usr/lib/llvm-{30..19}/bin/llvm-profdata llvm-profdata-{30..19}; do
    path=$(command -v "$tool" 2>/dev/null) || continue
    major=$(llvm_major "$path")
    if [ -n "$major" ] && [ "$major" -ge 19 ]; then
      echo "$path"
      return
    fi
  done
}
profdata=$(find_profdata)
if [ -z "$profdata" ]; then
  echo "installing llvm-19 (for llvm-profdata)…"
  apt_install llvm-19
  profdata=$(find_profdata)
fi
[ -n "$profdata" ] || { echo "error: no llvm-profdata of LLVM 19 or later" >&2; exit 1; }
command -v wrk >/dev/null || { echo "installing wrk…"; apt_install wrk; }

gen="$base-pgo-gen"
raw="$gen/profiles"
echo "1/4 instrumented build ($gen)…"
CARGO_TARGET_DIR="$gen" RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-Cprofile-generate=$raw" \
  cargo build --quiet --release -p tagpipe -p tagpipe-loadtest
# Build scripts that ran during the build wrote profiles of their own: not the servers'.
rm -rf "$raw"
mkdir -p "$raw"

echo "2/4 training run (report: $gen/training.txt)…"
if ! "$gen/release/tagpipe-loadtest" run --tagpipe "$gen/release/tagpipe" \
  --work-dir "$gen/loadtest" --runs 1 --duration 5 \
  --scenario ceiling --scenario ga4 --scenario ga4-refused --scenario batches --scenario fanout \
  >"$gen/training.txt"; then
  echo "error: the training run failed (report: $gen/training.txt)" >&2
  exit 1
fi
# One profile per binary (LLVM merges a binary's runs into one file): the harness's (its
# ceiling's and its own) and tagpipe's.
profiles=$(find "$raw" -name '*.profraw' | wc -l)
if [ "$profiles" -lt 2 ]; then
  echo "error: $profiles profile(s) in $raw, expected tagpipe's and the harness's" >&2
  exit 1
fi

echo "3/4 merging the profiles ($profdata)…"
"$profdata" merge -o "$gen/merged.profdata" "$raw"/*.profraw
# (`grep -c`, not `-q`: reading to the end, so the listing is not cut off by a broken pipe.)
functions=$("$profdata" show --all-functions "$gen/merged.profdata" | grep -c 'tagpipe_source_http' || true)
if [ "$functions" = 0 ]; then
  echo "error: tagpipe's profile is missing from $gen/merged.profdata" >&2
  exit 1
fi

echo "4/4 build with the profile ($base-pgo)…"
CARGO_TARGET_DIR="$base-pgo" RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-Cprofile-use=$gen/merged.profdata" \
  cargo build --quiet --release -p tagpipe -p tagpipe-loadtest
echo "built: $base-pgo/release/tagpipe and $base-pgo/release/tagpipe-loadtest"
