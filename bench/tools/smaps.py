#!/usr/bin/python3
"""Where a .NET process's resident memory is, from /proc/PID/smaps: one line per kind, KiB.

Kinds: managed images (.dll: R2R code and metadata, file-backed), native libraries (.so), JIT code and stubs (the
W^X double-mapped memfd), thread stacks (anonymous mappings right above a 4 KiB guard page), malloc's brk heap,
and the rest of the anonymous memory (GC heap, malloc arenas, runtime data; the GC's own share is in the
process's BASTION_MEMORY_REPORT lines).
Usage: smaps.py PID [--json] [--files]
"""
import json
import os
import re
import sys

pid = sys.argv[1]
head = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \d+\s*(.*)$")
maps = []
cur = None
with open(f"/proc/{pid}/smaps") as f:
    for line in f:
        m = head.match(line)
        if m:
            cur = {"start": int(m.group(1), 16), "end": int(m.group(2), 16), "size": (int(m.group(2), 16) - int(m.group(1), 16)) // 1024, "perm": m.group(3), "name": m.group(4).strip(), "rss": 0, "anon": 0}
            maps.append(cur)
        elif line.startswith("Rss:"):
            cur["rss"] = int(line.split()[1])
        elif line.startswith("Anonymous:"):
            cur["anon"] = int(line.split()[1])

kinds = {}


def add(kind, m):
    k = kinds.setdefault(kind, [0, 0])
    k[0] += m["rss"]
    k[1] += 1


prev = None
for m in maps:
    n = m["name"]
    guarded = prev is not None and prev["name"] == "" and prev["size"] == 4 and prev["perm"].startswith("---") and prev["end"] == m["start"]
    prev = m
    if n.endswith(".dll"):
        add("managed images (.dll)", m)
    elif ".so" in os.path.basename(n):
        add("native libraries (.so)", m)
    elif "doublemapper" in n:
        add("JIT code and stubs (memfd)", m)
    elif n == "[heap]":
        add("malloc (brk)", m)
    elif n == "[stack]":
        add("main thread stack", m)
    elif n == "" and guarded and m["perm"].startswith("rw"):
        add("thread stacks", m)
    elif n == "":
        add("other anonymous", m)
    else:
        add("other files and kernel pages", m)

files = {}
for m in maps:
    if m["name"].endswith((".dll", ".so")) or ".so." in m["name"]:
        files[os.path.basename(m["name"])] = files.get(os.path.basename(m["name"]), 0) + m["rss"]
threads = len(os.listdir(f"/proc/{pid}/task"))
total = sum(m["rss"] for m in maps)
if "--json" in sys.argv:
    print(json.dumps({"total_kib": total, "threads": threads, "kinds": {k: v[0] for k, v in kinds.items()}}))
else:
    print(f"{'kind':<40} {'RSS KiB':>9} {'maps':>5}")
    for k, (rss, n) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
        print(f"{k:<40} {rss:>9} {n:>5}")
    print(f"{'total':<40} {total:>9}   threads {threads}")
    if "--files" in sys.argv:
        for k, v in sorted(files.items(), key=lambda kv: -kv[1])[:25]:
            print(f"  {k:<38} {v:>9}")
