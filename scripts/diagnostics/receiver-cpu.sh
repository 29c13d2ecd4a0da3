#!/usr/bin/env bash
# What the load test's counting receiver costs per event (BENCHMARKS.md, "The sink-path
# session"): a receiver of HARNESS (default: the release build's `tagpipe-loadtest`, run with
# the caller's environment, so `RECEIVER_SCAN=1` reaches a harness built with
# `receiver-scan.patch`), a tagpipe serving the GA4 scenario into it, 7 s of `wrk -t1 -c32`;
# the receiver's user + system clock ticks over 4 s from its 1.5th second, ÷ the events of
# those 4 s at wrk's average rate.
#
#   scripts/diagnostics/receiver-cpu.sh TAGPIPE_BINARY [HARNESS_BINARY]
set -euo pipefail
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tagpipe-target}"
tagpipe=$1
harness=${2:-$CARGO_TARGET_DIR/release/tagpipe-loadtest}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

"$harness" receiver >"$work/receiver.url" &
receiver=$!
pids+=("$receiver")
sleep 0.5
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target=$("$harness" request ga4 --port "$port" --receiver "$(cat "$work/receiver.url")" --out "$work/ga4")
# The tagpipe runs without the caller's RECEIVER_SCAN (it reads no such variable anyway).
env -u RECEIVER_SCAN "$tagpipe" --log-level warn run -c "$work/ga4.yaml" 2>/dev/null &
pids+=($!)
sleep 1
wrk -t1 -c32 -d7s -s "$work/ga4.lua" "http://127.0.0.1:$port$target" >"$work/wrk.out" &
load=$!
ticks() { awk '{print $14 + $15}' "/proc/$receiver/stat"; }
sleep 1.5
before=$(ticks)
sleep 4
after=$(ticks)
wait "$load"
rate=$(awk '/Requests\/sec/{print $2}' "$work/wrk.out")
python3 -c "
hz = $(getconf CLK_TCK)
print(f'{$rate:.0f} GA4 hits/s; receiver {($after - $before) / hz / ($rate * 4) * 1e6:.3f} µs of CPU per event')"
