#!/usr/bin/env bash
# Where a scenario's CPU goes, per request: the server's and wrk's user and system time and the
# server's minor page faults, read from /proc over 4 s of a full-rate load-test run, divided by
# the run's average requests/s × those 4 s (BENCHMARKS.md, "The scheduling session"). Uses the
# release build as last built (build it first). Also the harness's own CPU per request: its
# counting receiver's work, which shares the machine too (BENCHMARKS.md, "The sink-path
# session"; next to nothing for the ceiling). HARNESS=<binary> runs another build of the harness
# (e.g. one with `scripts/diagnostics/receiver-scan.patch`, with RECEIVER_SCAN=1).
#
#   ./scripts/loadtest-cpu.sh SCENARIO [TAGPIPE_BINARY]
#                     # ceiling | ga4 | batches | fanout | ga4-short | ga4-refused
#
# THREADS=1 (any non-empty value) also lists each thread of the server and of wrk over about the
# same 4 s: its share of a core (user + system) and its voluntary and involuntary context
# switches — which threads wait (voluntary: nothing to do) and which are kept from running
# (involuntary: preempted).
#
# SCHED=1 also records the scheduler for 1 s after those 4 s (`perf sched record`) and prints
# what the machine's CPUs were doing together, as shares of that second: e.g. `server + wrk`
# (the server on one CPU while wrk runs on the other), `server + server` (two of the server's
# threads at once), `idle + wrk` — how the two sides share the cores (BENCHMARKS.md, "The
# allocation-and-flags session"). Needs `perf`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tagpipe-target}"
release="$CARGO_TARGET_DIR/release"
scenario=$1
report=$(mktemp)
"${HARNESS:-$release/tagpipe-loadtest}" run --tagpipe "${2:-$release/tagpipe}" --work-dir "$CARGO_TARGET_DIR/loadtest" \
  --runs 1 --duration "$([ -n "${SCHED:-}" ] && echo 10 || echo 8)" --scenario "$scenario" >"$report" 2>&1 &
harness=$!
trap 'kill "$harness" 2>/dev/null || true; rm -f "$report" "$report".t[01] "$report".t[01].time "$report".sched "$report".tids' EXIT
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
# Per thread: id, user and system ticks, voluntary and involuntary switches, name — one awk
# call for all threads (few processes started inside the measured window). The stat fields are
# read after the name's closing parenthesis, so a name with spaces cannot shift them; a thread
# that ends while being read is left out.
threads() {
  awk 'FNR == 1 && FILENAME ~ /stat$/ {
         split(FILENAME, p, "/"); id = p[5]
         rest = substr($0, index($0, ") ") + 2); split(rest, f, " ")
         ticks[id] = f[12] " " f[13]
       }
       FILENAME ~ /status$/ && /^Name:/ { split(FILENAME, p, "/"); name[p[5]] = $2 }
       FILENAME ~ /status$/ && /ctxt_switches/ { split(FILENAME, p, "/"); sw[p[5]] = sw[p[5]] " " $2 }
       END { for (id in ticks) if (split(sw[id], s, " ") == 2) print id, ticks[id], s[1], s[2], name[id] }' \
    "/proc/$server"/task/*/stat "/proc/$server"/task/*/status \
    "/proc/$wrk"/task/*/stat "/proc/$wrk"/task/*/status 2>/dev/null || true
  date +%s.%N >&2
}
[ -n "${THREADS:-}" ] && threads >"$report.t0" 2>"$report.t0.time"
s0=$(sample "$server"); w0=$(sample "$wrk"); h0=$(sample "$harness"); t0=$(date +%s.%N)
sleep 4
s1=$(sample "$server"); w1=$(sample "$wrk"); h1=$(sample "$harness"); t1=$(date +%s.%N)
[ -n "${THREADS:-}" ] && threads >"$report.t1" 2>"$report.t1.time"
if [ -n "${SCHED:-}" ]; then
  # Each thread of the server and of wrk, named by its side, for the analysis below.
  { for t in "/proc/$server"/task/*; do echo "${t##*/} server"; done
    for t in "/proc/$wrk"/task/*; do echo "${t##*/} wrk"; done; } >"$report.tids"
  perf sched record -o "$report.sched" -- sleep 1 >/dev/null 2>&1
fi
if ! wait "$harness"; then
  cat "$report" >&2
  exit 1
fi
rps=$(grep -E '^\| (hyper|GA4|/v1)' "$report" | head -1 | cut -d'|' -f3 | tr -d ' ')
python3 - "$scenario" "$rps" "$t0" "$t1" "$s0" "$s1" "$w0" "$w1" "$h0" "$h1" "$(getconf CLK_TCK)" <<'PY'
import sys
scenario, rps, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
s0, s1, w0, w1, h0, h1 = (list(map(int, a.split())) for a in sys.argv[5:11])
per_tick = 1e6 / int(sys.argv[11])
n = max(rps * (t1 - t0), 1.0)
us = lambda a, b, i: (b[i] - a[i]) * per_tick / n
print(f"{scenario}: {rps:.0f} req/s | server user {us(s0, s1, 1):.2f} µs, system {us(s0, s1, 2):.2f} µs, "
      f"{(s1[0] - s0[0]) / n:.3f} minor faults | wrk user {us(w0, w1, 1):.2f} µs, system {us(w0, w1, 2):.2f} µs | "
      f"harness (receiver) {us(h0, h1, 1) + us(h0, h1, 2):.3f} µs (per request)")
PY
if [ -n "${THREADS:-}" ]; then
  # Threads present at both samples; a core's share over the time between the two samples.
  seconds=$(echo "$(cat "$report.t1.time") - $(cat "$report.t0.time")" | bc -l)
  join <(sort "$report.t0") <(sort "$report.t1") | awk -v hz="$(getconf CLK_TCK)" -v s="$seconds" '
    { printf "  thread %s %-16s %5.0f %% of a core, %6d voluntary, %6d involuntary switches\n",
        $1, $6, ($7 + $8 - $2 - $3) / hz / s * 100, $9 - $4, $10 - $5 }'
fi
if [ -n "${SCHED:-}" ]; then
  perf script -i "$report.sched" -F cpu,time,trace 2>/dev/null | python3 -c '
import bisect, collections, re, sys
side = dict(line.split() for line in open(sys.argv[1]))
switch = re.compile(r"\[(\d+)\]\s+([\d.]+):.*next_comm=.* next_pid=(\d+)")
running = collections.defaultdict(list)  # CPU -> [(since, what)]
for line in sys.stdin:
    m = switch.search(line)
    if m:
        pid = m.group(3)
        what = "idle" if pid == "0" else side.get(pid, "other")
        running[int(m.group(1))].append((float(m.group(2)), what))
if not running:
    sys.exit("no scheduler events recorded (is perf allowed to trace?)")
start = max(events[0][0] for events in running.values())
end = min(events[-1][0] for events in running.values())
cpus = [sorted(events) for _, events in sorted(running.items())]
times = [[t for t, _ in events] for events in cpus]
states, step, t = collections.Counter(), 10e-6, start
while t < end:
    states[" + ".join(sorted(c[bisect.bisect_right(ts, t) - 1][1] for c, ts in zip(cpus, times)))] += 1
    t += step
total = sum(states.values()) or 1
print(f"  CPUs together over {end - start:.2f} s of scheduler events:")
for state, n in states.most_common(8):
    print(f"  {100 * n / total:5.1f} %  {state}")
' "$report.tids"
fi
