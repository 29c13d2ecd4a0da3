#!/usr/bin/env bash
# The side-by-side load test of BENCHMARKS.md (crates/tagpipe-loadtest): the hyper-204 ceiling
# and tagpipe's GA4, /v1/events-batch and fan-out scenarios under the same wrk load.
#
#   ./scripts/loadtest.sh            # release build, 3 runs × 10 s per scenario (~5 minutes)
#   ./scripts/loadtest.sh --quick    # smoke test (CI): debug build, 1 run × 1 s per scenario
#   ./scripts/loadtest.sh --pgo …    # the same on profile-guided builds of tagpipe and of the
#                                    # harness's ceiling alike (scripts/build-pgo.sh; ~20 minutes
#                                    # of building first). `--pgo` must come first.
#   ./scripts/loadtest.sh instructions [--scenario ga4 …] [--tagpipe BIN]
#                                    # instructions and heap allocations per request under
#                                    # callgrind (deterministic; for comparing builds), idle vs
#                                    # loaded run (~1 minute)
#
# Other arguments go to `tagpipe-loadtest run` (--runs, --duration, --connections).
# Installs wrk from the distribution's packages when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tagpipe-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

. scripts/lib.sh
if ! command -v wrk >/dev/null; then
  echo "installing wrk…"
  apt_install wrk
fi

if [ "${1:-}" = --pgo ]; then
  shift
  ./scripts/build-pgo.sh
  pgo="$CARGO_TARGET_DIR-pgo/release"
  exec "$pgo/tagpipe-loadtest" run --tagpipe "$pgo/tagpipe" --work-dir "$CARGO_TARGET_DIR/loadtest" "$@"
fi
profile=release
for arg in "$@"; do [ "$arg" = --quick ] && profile=debug; done
if [ "$profile" = release ]; then
  cargo build --quiet --release -p tagpipe -p tagpipe-loadtest
else
  cargo build --quiet -p tagpipe -p tagpipe-loadtest
fi
if [ "${1:-}" = instructions ]; then
  shift
  command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
  tagpipe="$CARGO_TARGET_DIR/release/tagpipe"
  args=()
  while [ $# -gt 0 ]; do
    if [ "$1" = --tagpipe ]; then tagpipe="$2"; shift 2; else args+=("$1"); shift; fi
  done
  exec "$CARGO_TARGET_DIR/release/tagpipe-loadtest" instructions --tagpipe "$tagpipe" \
    --work-dir "$CARGO_TARGET_DIR/loadtest" "${args[@]}"
fi
exec "$CARGO_TARGET_DIR/$profile/tagpipe-loadtest" run --tagpipe "$CARGO_TARGET_DIR/$profile/tagpipe" \
  --work-dir "$CARGO_TARGET_DIR/loadtest" "$@"
