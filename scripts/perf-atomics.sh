#!/usr/bin/env bash
# How much of a profile waits on atomic instructions (BENCHMARKS.md, "The shared-lines session"):
# without hardware counters, a `lock`-prefixed instruction's wait (a cache line fetched from
# the other core) shows up as samples on the instruction after it. Counts, of every sample in
# a `perf record` profile of the process, those whose address in BINARY follows a `lock` or
# `xchg` instruction (from `objdump -d`), and prints their share and the sites with the most.
#
#   perf record -F 2999 -g -o <file> -p <tagpipe pid> -- sleep 6   # during a full-rate run
#   ./scripts/perf-atomics.sh <file> <the tagpipe binary> [SITES]
set -euo pipefail
data=$1
binary=$(realpath "$2")
sites=${3:-15}
# Where the binary's code was mapped: runtime address, file offset (the first executable map).
read -r start offset < <(perf script -i "$data" --show-mmap-events 2>/dev/null |
  awk -v b="$binary" '/PERF_RECORD_MMAP/ && / r-xp / && index($0, b) {
    match($0, /\[0x[0-9a-f]+\(0x[0-9a-f]+\) @ 0x[0-9a-f]+/); split(substr($0, RSTART + 1, RLENGTH - 1), f, /[( )@]+/)
    print f[1], f[3]; exit }')
# The executable segment's virtual address minus its file offset.
delta=$(readelf -lW "$binary" | python3 -c '
import sys
for line in sys.stdin:
    f = line.split()
    if f[:1] == ["LOAD"] and "E" in f[6:-1]:
        print(int(f[2], 16) - int(f[1], 16))
        break')
perf script -G -i "$data" -F ip,dso 2>/dev/null |
  python3 -c '
import collections, re, subprocess, sys
binary, start, offset, delta, sites = sys.argv[1], int(sys.argv[2], 16), int(sys.argv[3], 16), int(sys.argv[4]), int(sys.argv[5])
listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", binary], capture_output=True, text=True).stdout
before, function, previous, current = {}, {}, "", None
for line in listing.splitlines():
    m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
    if m:
        current = m.group(1)
        continue
    m = re.match(r"^\s+([0-9a-f]+):\s+(.*)$", line)
    if m:
        address = int(m.group(1), 16)
        before[address], function[address], previous = previous, current, m.group(2)
total = in_binary = after = 0
by_site = collections.Counter()
for line in sys.stdin:
    fields = line.split()
    if not fields:
        continue
    total += 1
    if binary + ")" not in line:
        continue
    in_binary += 1
    address = int(fields[0], 16) - start + offset + delta
    instruction = before.get(address, "")
    if instruction.startswith(("lock", "xchg")):
        after += 1
        by_site[(function[address], instruction.split()[0] + " " + instruction.split()[1])] += 1
print(f"{total} samples, {in_binary} in the binary, {after} after an atomic instruction: {100 * after / max(total, 1):.2f} % of all")
for (where, what), n in by_site.most_common(sites):
    print(f"{n:6} {100 * n / max(total, 1):5.2f} %  {what:16} {where[:110]}")
' "$binary" "$start" "$offset" "$delta" "$sites"
