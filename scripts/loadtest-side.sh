#!/usr/bin/env bash
# Side-by-side rounds with every server running at once (BENCHMARKS.md, the hand-run series of
# the decomposition and profile-guided sessions): each variant's server is started once, then
# each round puts `wrk -t1 -c32` on each in turn, rotating the order, and prints requests/s and
# the server's CPU per request (user + system from /proc/<pid>/stat); the last lines give each
# variant's medians. Unlike loadtest-ab.sh it can run two ceilings (of two harness binaries).
#
#   ./scripts/loadtest-side.sh ROUNDS VARIANT…
#
# A variant is `label:server:scenario`: the server is `ceiling` (this workspace's harness),
# `ceiling=<harness binary>`, or a tagpipe binary; the scenario (`ga4`, `ga4-short`,
# `ga4-refused`, `batches`, `fanout`) names the request sent and, for tagpipe, the pipeline it
# serves — both as the harness makes them (`tagpipe-loadtest request`). DUR sets the seconds
# per run (default 6). Uses the harness of the release build as last built. Example:
#
#   ./scripts/loadtest-side.sh 6 "c:ceiling:ga4" "cp:ceiling=/tmp/lt-pgo:ga4" "t:/tmp/tp:ga4"
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tagpipe-target}"
harness="$CARGO_TARGET_DIR/release/tagpipe-loadtest"
side="$CARGO_TARGET_DIR/loadtest/side"
mkdir -p "$side"
rounds=$1
shift

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
"$harness" receiver >"$side/receiver.url" &
pids+=($!)
sleep 0.5
receiver=$(cat "$side/receiver.url")
declare -A urls server rates cpus
labels=()
for variant in "$@"; do
  IFS=: read -r label binary scenario <<<"$variant"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  target=$("$harness" request "$scenario" --port "$port" --receiver "$receiver" --out "$side/$label")
  urls[$label]="http://127.0.0.1:$port$target"
  case $binary in
    ceiling) "$harness" ceiling --listen "127.0.0.1:$port" & ;;
    ceiling=*) "${binary#ceiling=}" ceiling --listen "127.0.0.1:$port" & ;;
    *) "$binary" --log-level warn run -c "$side/$label.yaml" 2>/dev/null & ;;
  esac
  server[$label]=$!
  pids+=($!)
  labels+=("$label")
done
sleep 1.5
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
count=${#labels[@]}
for round in $(seq "$rounds"); do
  line="round $round"
  for offset in $(seq 0 $((count - 1))); do
    label=${labels[$(((round - 1 + offset) % count))]}
    before=$(cpu_ticks "${server[$label]}")
    rate=$(wrk -t1 -c32 -d"${DUR:-6}s" -s "$side/$label.lua" "${urls[$label]}" | awk '/Requests\/sec/{print int($2)}')
    after=$(cpu_ticks "${server[$label]}")
    # Clock ticks are 10 ms: µs per request = ticks × 10,000 ÷ requests.
    us=$(python3 -c "print(round(($after - $before) * 10000 / ($rate * ${DUR:-6}), 1))")
    line="$line | $label $rate ${us}us"
    rates[$label]+="$rate "
    cpus[$label]+="$us "
  done
  echo "$line"
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for label in "${labels[@]}"; do
  echo "$label: $(median <<<"${rates[$label]}") requests/s, $(median <<<"${cpus[$label]}") µs CPU per request"
done
