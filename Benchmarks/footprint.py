#!/usr/bin/env python3
"""Where a running process's memory goes: `footprint.py PID [--code]`.

Reads /proc/PID/smaps and sums RSS, PSS and private (USS) pages by kind of
mapping: the executable's code, read-only data and writable data, the heap,
anonymous mappings (thread stacks, malloc arenas, .bss past the file), the
main stack and each shared library. Prints a Markdown table and the thread
count. With --code, also which part of the executable's mapped pages belongs
to which Swift module or C/C++ library (from /proc/PID/pagemap, which needs
root, and `nm` on the executable): the kernel maps up to 64 KiB around each
page fault, so this is what is resident, not only what ran.
"""
import bisect
import collections
import os
import re
import struct
import subprocess
import sys


def mappings(pid):
    entries, current = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and ":" in parts[3]:
                start, end = (int(x, 16) for x in parts[0].split("-"))
                current = {"start": start, "end": end, "perms": parts[1], "offset": int(parts[2], 16),
                           "name": " ".join(parts[5:])}
                entries.append(current)
            elif parts[0].endswith(":") and len(parts) >= 2 and parts[1].isdigit():
                current[parts[0][:-1]] = int(parts[1])
    return entries


def kind(entry, executable):
    name, perms = entry["name"], entry["perms"]
    if name == executable:
        if "x" in perms:
            return "executable: code (r-x)"
        return "executable: data (rw)" if "w" in perms else "executable: read-only (r--)"
    if name == "[heap]":
        return "heap"
    if name.startswith("[stack"):
        return "main thread stack"
    if name == "":
        return "anonymous (thread stacks, malloc arenas, .bss)"
    if name.startswith("["):
        return name
    return "shared libraries"


def table(pid):
    executable = os.readlink(f"/proc/{pid}/exe")
    sums = collections.defaultdict(collections.Counter)
    for e in mappings(pid):
        k = kind(e, executable)
        for field in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
            sums[k][field] += e.get(field, 0)
    total = collections.Counter()
    for c in sums.values():
        total.update(c)
    threads = len(os.listdir(f"/proc/{pid}/task"))
    print(f"pid {pid}: {threads} threads, executable {os.path.getsize(executable)} bytes\n")
    print("| mapping | RSS KiB | PSS KiB | private KiB |")
    print("|---|---|---|---|")
    for k in sorted(sums, key=lambda k: -sums[k]["Rss"]):
        c = sums[k]
        if c["Rss"]:
            print(f"| {k} | {c['Rss']} | {c['Pss']} | {c['Private_Clean'] + c['Private_Dirty']} |")
    print(f"| **total** | {total['Rss']} | {total['Pss']} | {total['Private_Clean'] + total['Private_Dirty']} |")
    return executable


def component(symbol):
    m = re.match(r"_?\$s(\d+)", symbol)
    if m and not symbol.startswith(("$ss", "$sS")):
        n = int(m.group(1))
        return "Swift module " + symbol[m.end():m.end() + n]
    if symbol.startswith(("$s", "_$s")):
        return "Swift standard library"
    if symbol.startswith(("swift_", "_swift")):
        return "Swift runtime"
    if symbol.startswith("_ZN4toml"):
        return "toml++"
    return "C/C++ (runtime, libdispatch, shims)"


def code(pid, executable):
    """Resident pages of the executable by section, and of .text by module."""
    sections = []
    for line in subprocess.run(["readelf", "-S", "-W", executable], capture_output=True, text=True).stdout.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", line)
        if m and int(m.group(2), 16):
            sections.append((int(m.group(2), 16), int(m.group(3), 16), m.group(1)))
    sections.sort()
    starts = [s[0] for s in sections]
    symbols = []
    for line in subprocess.run(["nm", "-n", "--defined-only", executable], capture_output=True, text=True).stdout.splitlines():
        p = line.split(None, 2)
        if len(p) == 3:
            symbols.append((int(p[0], 16), p[2]))
    addresses = [s[0] for s in symbols]
    maps = [e for e in mappings(pid) if e["name"] == executable]
    base = min(e["start"] - e["offset"] for e in maps)
    resident = collections.Counter()
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        for e in maps:
            pages = (e["end"] - e["start"]) // 4096
            f.seek(e["start"] // 4096 * 8)
            data = f.read(pages * 8)
            for i in range(pages):
                if not struct.unpack_from("<Q", data, i * 8)[0] >> 63:
                    continue
                va = e["start"] + i * 4096 - base
                j = bisect.bisect_right(starts, va) - 1
                section = sections[j][2] if j >= 0 and va < sections[j][0] + sections[j][1] else "(between sections)"
                if section == ".text":
                    k = bisect.bisect_right(addresses, va) - 1
                    resident[component(symbols[k][1]) if k >= 0 else "?"] += 4
                else:
                    resident["section " + section] += 4
    print("\n| part of the executable | resident KiB |")
    print("|---|---|")
    for name, kib in resident.most_common(25):
        print(f"| {name} | {kib} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: footprint.py PID [--code]")
    exe = table(sys.argv[1])
    if "--code" in sys.argv:
        code(sys.argv[1], exe)
