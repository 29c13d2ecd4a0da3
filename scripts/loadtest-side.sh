#!/usr/bin/env bash
# Side-by-side rounds with every server running at once (BENCHMARKS.md, the hand-run series of
# the decomposition and profile-guided sessions): each variant's server is started once, then
# each round puts `wrk -t1 -c32` (see CONNS) on each in turn, rotating the order, and prints
# requests/s, the server's CPU per request (user + system from /proc/<pid>/stat), wrk's (the
# shell's `time`) and how much of the machine was idle (/proc/stat, idle + iowait); the last
# lines give each variant's medians. Unlike loadtest-ab.sh it can run two ceilings (of two
# harness binaries).
#
#   ./scripts/loadtest-side.sh ROUNDS VARIANT…
#
# A variant is `label:server:scenario`: the server is `ceiling` (this workspace's harness),
# `ceiling=<harness binary>`, or a tagpipe binary; the scenario (`ga4`, `ga4-short`,
# `ga4-refused`, `batches`, `fanout`) names the request sent and, for tagpipe, the pipeline it
# serves — both as the harness makes them (`tagpipe-loadtest request`). DUR sets the seconds
# per run (default 6), CONNS wrk's connections (default 32, as the harness). SECOND_RECEIVER,
# a command that serves a counting receiver and prints its endpoint as `tagpipe-loadtest
# receiver` does, serves the variants whose label begins with `i` (BENCHMARKS.md, "The
# sink-path session": e.g. `chrt -i 0 <harness> receiver`, the receiver at the lowest priority).
# Uses the harness of the release build as last built. Example:
#
#   ./scripts/loadtest-side.sh 6 "c:ceiling:ga4" "cp:ceiling=/tmp/lt-pgo:ga4" "t:/tmp/tp:ga4"
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
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
second=$receiver
if [ -n "${SECOND_RECEIVER:-}" ]; then
  # Word-split on purpose: the variable is a command line.
  # shellcheck disable=SC2086
  $SECOND_RECEIVER >"$side/receiver-second.url" &
  pids+=($!)
  sleep 0.5
  second=$(cat "$side/receiver-second.url")
fi
declare -A urls server rates cpus
labels=()
for variant in "$@"; do
  IFS=: read -r label binary scenario <<<"$variant"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  endpoint=$receiver
  [[ $label == i* ]] && endpoint=$second
  target=$("$harness" request "$scenario" --port "$port" --receiver "$endpoint" --out "$side/$label")
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
# The process's user + system clock ticks (of `getconf CLK_TCK` per second).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# The machine's idle and total clock ticks (all CPUs), from the first line of /proc/stat.
machine_ticks() { awk 'NR == 1 {t = 0; for (i = 2; i <= NF; i++) t += $i; print $5 + $6, t}' /proc/stat; }
declare -A wrk_cpus idles
count=${#labels[@]}
for round in $(seq "$rounds"); do
  line="round $round"
  for offset in $(seq 0 $((count - 1))); do
    label=${labels[$(((round - 1 + offset) % count))]}
    before=$(cpu_ticks "${server[$label]}")
    read -r idle_before total_before < <(machine_ticks)
    # wrk's own user + system seconds, from the shell's `time`.
    { TIMEFORMAT='%U %S'; time wrk -t1 -c"${CONNS:-32}" -d"${DUR:-6}s" -s "$side/$label.lua" "${urls[$label]}" >"$side/wrk.out"; } 2>"$side/wrk.time"
    read -r idle_after total_after < <(machine_ticks)
    after=$(cpu_ticks "${server[$label]}")
    rate=$(awk '/Requests\/sec/{print int($2)}' "$side/wrk.out")
    # Per request of the run as wrk counted it (its run lasts a little longer than DUR, and
    # the CPU figures cover all of it).
    requests=$(awk '/ requests in /{print $1}' "$side/wrk.out")
    read -r us wrk_us idle < <(python3 -c "
user, system = open('$side/wrk.time').read().split()[-2:]
requests = max($requests, 1)
print(round(($after - $before) * 1e6 / $hz / requests, 1), round((float(user) + float(system)) * 1e6 / requests, 1),
      round(100 * ($idle_after - $idle_before) / max($total_after - $total_before, 1)))")
    line="$line | $label $rate ${us}us (wrk ${wrk_us}us, idle ${idle}%)"
    rates[$label]+="$rate "
    cpus[$label]+="$us "
    wrk_cpus[$label]+="$wrk_us "
    idles[$label]+="$idle "
  done
  echo "$line"
done
for label in "${labels[@]}"; do
  echo "$label: $(median <<<"${rates[$label]}") requests/s, $(median <<<"${cpus[$label]}") µs server CPU and $(median <<<"${wrk_cpus[$label]}") µs wrk CPU per request, machine $(median <<<"${idles[$label]}") % idle"
done
