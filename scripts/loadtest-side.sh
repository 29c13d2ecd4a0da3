#!/usr/bin/env bash
# Side-by-side rounds with every server running at once (BENCHMARKS.md, the hand-run series of
# the decomposition and profile-guided sessions): each variant's server is started once, then
# each round puts `wrk -t1 -c32` on each in turn, rotating the order, and prints requests/s and
# the server's CPU per request (user + system from /proc/<pid>/stat); the last lines give each
# variant's medians. Unlike loadtest-ab.sh it can run two ceilings (of two harness binaries).
#
#   ./scripts/loadtest-side.sh ROUNDS VARIANT…
#
# A variant is `label:server:request`: the server is `ceiling` (this workspace's harness),
# `ceiling=<harness binary>`, or a tagpipe binary serving the harness's GA4 pipeline; the
# request is `ga4` (the purchase hit), `ga4-short` or `ga4-refused` (as the harness's
# scenarios). DUR sets the seconds per run (default 6). Needs the pipeline file a
# `./scripts/loadtest.sh` run left in `$CARGO_TARGET_DIR/loadtest/ga4.yaml`. Example:
#
#   ./scripts/loadtest-side.sh 6 "c:ceiling:ga4" "cp:ceiling=/tmp/lt-pgo:ga4" "t:/tmp/tp:ga4"
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tagpipe-target}"
harness="$CARGO_TARGET_DIR/release/tagpipe-loadtest"
work="$CARGO_TARGET_DIR/loadtest"
[ -f "$work/ga4.yaml" ] || { echo "no $work/ga4.yaml: run ./scripts/loadtest.sh once first" >&2; exit 1; }
rounds=$1
shift
hit=$(cat tests/fixtures/ga4-purchase-hit.query)
refused=${hit/gcs=G111/gcs=G100}
refused=${refused/gcd=13r3r3r3r5/gcd=13q3q3q3q5}
side="$work/side"
mkdir -p "$side"
printf 'wrk.method = "GET"\nwrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) loadtest"\n' >"$side/hit.lua"

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
"$harness" receiver >"$side/receiver.url" &
pids+=($!)
sleep 0.5
receiver=$(cat "$side/receiver.url")
declare -A urls server rates cpus
labels=()
for variant in "$@"; do
  IFS=: read -r label binary request <<<"$variant"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  case $request in
    ga4) query=$hit ;;
    ga4-short) query="v=2&tid=G-ABC123XYZ&en=purchase&gcs=G111" ;;
    ga4-refused) query=$refused ;;
    *) echo "unknown request $request" >&2; exit 1 ;;
  esac
  urls[$label]="http://127.0.0.1:$port/g/collect?$query"
  case $binary in
    ceiling) "$harness" ceiling --listen "127.0.0.1:$port" & ;;
    ceiling=*) "${binary#ceiling=}" ceiling --listen "127.0.0.1:$port" & ;;
    *)
      sed "s/listen: .*/listen: 127.0.0.1:$port/; s#endpoint: .*#endpoint: $receiver#" \
        "$work/ga4.yaml" >"$side/$label.yaml"
      "$binary" --log-level warn run -c "$side/$label.yaml" 2>/dev/null &
      ;;
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
    rate=$(wrk -t1 -c32 -d"${DUR:-6}s" -s "$side/hit.lua" "${urls[$label]}" | awk '/Requests\/sec/{print int($2)}')
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
