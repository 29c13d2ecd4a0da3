#!/usr/bin/env python3
"""Shares of a tagpipe process's CPU by the task at the bottom of each sample's stack.

BENCHMARKS.md, "The encoded-item session". Record with call stacks, then:

    perf record -F 1999 --call-graph dwarf,16384 -o <file> -p <tagpipe pid> -- sleep 3
    perf script -i <file> -F ip,sym --no-inline > <text>
    scripts/diagnostics/perf-tasks.py <text>

A sample counts for the first group whose marker appears anywhere in its stack, in this order:
the HTTP source's connection tasks, the sink's driver, the HTTP client's connection, parked or
parking workers; "other" for the rest. Separately, the share of samples inside a sink's
`Prepare::prepare` (the item made in the request's future).
"""
import sys
from collections import Counter

GROUPS = [
    ("connections", ["tagpipe_source_http::server::serve::{{closure}}::{{closure}}"]),
    ("driver", ["tagpipe_core::driver", "deliver_prepared"]),
    ("client", ["hyper::client", "hyper_util::client", "futures_util::future::future::Map<"]),
    ("parked", ["park", "epoll_wait"]),
]


def samples(text):
    """Each sample's stack: its frames' symbols, innermost first."""
    for block in text.split("\n\n"):
        frames = [line.split(None, 1) for line in block.splitlines() if line.strip()]
        stack = [frame[1] if len(frame) > 1 else "?" for frame in frames]
        if stack:
            yield stack


def main(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    groups, prepared, total = Counter(), 0, 0
    for stack in samples(text):
        total += 1
        joined = " | ".join(stack)
        group = next(
            (name for name, markers in GROUPS if any(m in joined for m in markers)), "other"
        )
        groups[group] += 1
        prepared += "Prepare>::prepare" in joined
    if total == 0:
        sys.exit("no samples in " + path)
    for name, count in groups.most_common():
        print(f"{name:12} {count:7} {100 * count / total:5.1f} %")
    print(f"{'(prepare)':12} {prepared:7} {100 * prepared / total:5.1f} %")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: perf-tasks.py <perf script output>")
    main(sys.argv[1])
