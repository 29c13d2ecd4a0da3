#!/usr/bin/env python3
"""Two flat profiles compared in microseconds per request, symbol by symbol.

BENCHMARKS.md, "The encoded-item session". For each server, 3 s into a 10 s `wrk -t1 -c32`
run (its requests/s from wrk's report):

    perf record -F 2999 -o <file> -p <pid> -- sleep 5
    perf report -i <file> --no-children --sort sym --stdio -n -g none > <text>

then `scripts/diagnostics/perf-compare.py <text A> <req/s A> <text B> <req/s B>`: a symbol's
samples ÷ 2,999 per second ÷ (requests/s × 5 s), the totals for the kernel (`[k]`) and user
code, and the symbols that grew most from A to B.
"""
import re
import sys

RATE_HZ = 2999
SECONDS = 5
LINE = re.compile(r"\s*[\d.]+%\s+(\d+)\s+\[(.)\]\s+(.*)")


def per_request(path, rate):
    costs = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = LINE.match(line)
            if m:
                key = (m.group(2), m.group(3).strip())
                costs[key] = int(m.group(1)) / RATE_HZ / (rate * SECONDS) * 1e6
    return costs


def main(a_path, a_rate, b_path, b_rate, shown=40):
    a, b = per_request(a_path, float(a_rate)), per_request(b_path, float(b_rate))
    print(f"total µs per request: {sum(a.values()):.2f} → {sum(b.values()):.2f}")
    for kind, name in (("k", "kernel"), (".", "user")):
        ka = sum(v for k, v in a.items() if k[0] == kind)
        kb = sum(v for k, v in b.items() if k[0] == kind)
        print(f"  {name}: {ka:.2f} → {kb:.2f}")
    keys = sorted(set(a) | set(b), key=lambda k: a.get(k, 0) - b.get(k, 0))
    for key in keys[:shown]:
        before, after = a.get(key, 0), b.get(key, 0)
        print(f"{before:7.3f} {after:7.3f} {after - before:+7.3f} [{key[0]}] {key[1][:110]}")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit("usage: perf-compare.py <report A> <req/s A> <report B> <req/s B>")
    main(*sys.argv[1:])
