#!/usr/bin/env bash
# Alternating A/B runs of the side-by-side load test (BENCHMARKS.md): each round runs every
# variant once, starting with a different one each round (A B C, B C A, …), so the machine's
# drifting background load weighs on all of them alike. Prints, per variant and round,
# requests/s and the server's CPU per request (per event for `batches` and `fanout`).
#
#   ./scripts/loadtest-ab.sh ROUNDS VARIANT…
#
# A variant is `label:scenario:ENV=VALUE:binary` — the scenario (`ceiling`, `ga4`, `batches`,
# `fanout`, or the diagnostic `ga4-short` and `ga4-refused`), an optional environment setting for the run, and the tagpipe binary (empty: this
# workspace's release build, as last built — build it first). DUR sets the seconds per run
# (default 6). A run that fails shows as FAIL. The last lines give each variant's medians over the
# rounds (the machine's speed drifts between rounds; compare medians, never a single round).
# Example:
#
#   ./scripts/loadtest-ab.sh 6 "old:ga4::/tmp/tagpipe-old" "new:ga4::"
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tagpipe-target}"
release="$CARGO_TARGET_DIR/release"
rounds=$1
shift
variants=("$@")
count=${#variants[@]}
declare -A rates cpus
for round in $(seq "$rounds"); do
  line="round $round"
  for offset in $(seq 0 $((count - 1))); do
    variant=${variants[$(((round - 1 + offset) % count))]}
    IFS=: read -r label scenario setting binary <<<"$variant"
    report=$(env ${setting:+"$setting"} "$release/tagpipe-loadtest" run \
      --tagpipe "${binary:-$release/tagpipe}" --work-dir "$CARGO_TARGET_DIR/loadtest" \
      --runs 1 --duration "${DUR:-6}" --scenario "$scenario" 2>&1)
    status=$?
    row=$(grep -E '^\| (hyper|GA4|/v1)' <<<"$report" | head -1 | cut -d'|' -f3,8 | tr -d ' ' || true)
    # A run that failed (lost events, or delivered some of `ga4-refused`) counts as FAIL even
    # when it printed figures.
    if [ "$status" -ne 0 ] || [ -z "$row" ]; then
      line="$line | $label FAIL"
    else
      line="$line | $label ${row%%|*} req/s ${row##*|} µs"
      rates[$label]+="${row%%|*} "
      cpus[$label]+="${row##*|} "
    fi
  done
  echo "$line"
done

for variant in "${variants[@]}"; do
  label=${variant%%:*}
  echo "median $label: $(median <<<"${rates[$label]:-}") req/s, $(median <<<"${cpus[$label]:-}") µs"
done
