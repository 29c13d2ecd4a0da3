#!/usr/bin/env bash
# Where a scenario's CPU goes, per request: the server's and wrk's user and system time and the
# server's minor page faults, read from /proc over 4 s of a full-rate load-test run, divided by
# the run's average requests/s × those 4 s (BENCHMARKS.md, "The scheduling session"). Uses the
# release build as last built (build it first).
#
#   ./scripts/loadtest-cpu.sh SCENARIO [TAGPIPE_BINARY]     # ceiling | ga4 | batches | fanout
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tagpipe-target}"
release="$CARGO_TARGET_DIR/release"
scenario=$1
report=$(mktemp)
"$release/tagpipe-loadtest" run --tagpipe "${2:-$release/tagpipe}" --work-dir "$CARGO_TARGET_DIR/loadtest" \
  --runs 1 --duration 8 --scenario "$scenario" >"$report" 2>&1 &
harness=$!
trap 'kill "$harness" 2>/dev/null; rm -f "$report"' EXIT
sleep 3
# The harness's own children: the server (tagpipe, or the harness binary as the ceiling) and wrk.
server=$(pgrep -P "$harness" -f -- ' --listen | run -c ' | head -1) || true
wrk=$(pgrep -P "$harness" -x wrk | head -1) || true
if [ -z "$server" ] || [ -z "$wrk" ]; then
  echo "no server or wrk under the harness (pid $harness):" >&2
  cat "$report" >&2
  exit 1
fi
# Fields 10, 14 and 15 of /proc/PID/stat: minor faults, user and system clock ticks.
sample() { cut -d' ' -f10,14,15 "/proc/$1/stat"; }
s0=$(sample "$server"); w0=$(sample "$wrk"); t0=$(date +%s.%N)
sleep 4
s1=$(sample "$server"); w1=$(sample "$wrk"); t1=$(date +%s.%N)
if ! wait "$harness"; then
  cat "$report" >&2
  exit 1
fi
rps=$(grep -E '^\| (hyper|GA4|/v1)' "$report" | head -1 | cut -d'|' -f3 | tr -d ' ')
python3 - "$scenario" "$rps" "$t0" "$t1" "$s0" "$s1" "$w0" "$w1" "$(getconf CLK_TCK)" <<'PY'
import sys
scenario, rps, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
s0, s1, w0, w1 = (list(map(int, a.split())) for a in sys.argv[5:9])
per_tick = 1e6 / int(sys.argv[9])
n = max(rps * (t1 - t0), 1.0)
us = lambda a, b, i: (b[i] - a[i]) * per_tick / n
print(f"{scenario}: {rps:.0f} req/s | server user {us(s0, s1, 1):.2f} µs, system {us(s0, s1, 2):.2f} µs, "
      f"{(s1[0] - s0[0]) / n:.3f} minor faults | wrk user {us(w0, w1, 1):.2f} µs, system {us(w0, w1, 2):.2f} µs (per request)")
PY
