#!/usr/bin/env bash
# Alternating A/B runs of the side-by-side load test (BENCHMARKS.md): each round runs every
# variant once, one after another, so the machine's drifting background load weighs on all of
# them alike. Prints requests/s and the server's CPU µs per request of each variant per round.
#
#   ./scripts/loadtest-ab.sh ROUNDS VARIANT…
#
# A variant is `label:scenario:ENV=VALUE:binary` — the scenario (`ceiling`, `ga4`, `batches`,
# `fanout`), one environment setting for the run (`X=1` for none), and the tagpipe binary
# (empty: this workspace's release build). DUR sets the seconds per run (default 6). Example:
#
#   ./scripts/loadtest-ab.sh 6 "old:ga4:X=1:/tmp/tagpipe-old" "new:ga4:X=1:"
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tagpipe-target}"
release="$CARGO_TARGET_DIR/release"
rounds=$1
shift
for round in $(seq "$rounds"); do
  line="round $round"
  for variant in "$@"; do
    IFS=: read -r label scenario setting binary <<<"$variant"
    row=$(env "$setting" "$release/tagpipe-loadtest" run --tagpipe "${binary:-$release/tagpipe}" \
      --work-dir "$CARGO_TARGET_DIR/loadtest" --runs 1 --duration "${DUR:-6}" --scenario "$scenario" 2>&1 |
      grep -E '^\| (hyper|GA4|/v1)' | head -1 | cut -d'|' -f3,8 | tr -d ' ')
    line="$line | $label ${row%%|*} req/s ${row##*|} µs"
  done
  echo "$line"
done
