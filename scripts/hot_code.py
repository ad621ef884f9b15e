#!/usr/bin/env python3
"""Writes the section order of kflip's hot code (see build.rs) from callgrind
outputs of a kflip process: every function that ran in the kflip binary.

usage: hot_code.py KFLIP_BINARY CALLGRIND_OUT... > hot-code.txt

One symbol name per line. Each function is named exactly first, so a
build with the same symbol names packs the code that ran densely. Then one pattern per function with the compiler's hashes
replaced by `*`, so a build whose hashes differ (another compiler, a
dependency update, an edit that changes a generic's arguments) still finds
its instances. A pattern that stands for more than twice as many functions
as ran (a generic's instances) is left out: it would fill the hot section
with cold code.
"""
import collections
import re
import subprocess
import sys


def functions(paths):
    """Names of the functions that ran, in any object: callgrind does not
    always know a function's object (`???`), so the caller keeps those the
    binary defines."""
    ran = set()
    for path in paths:
        names = {}  # each dump numbers the names it uses afresh
        with open(path, errors="replace") as f:
            for line in f:
                m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
                if not m:
                    continue
                kind, num, name = m.groups()
                if name:
                    names[num] = name
                if kind == "fn" and num in names:
                    ran.add(names[num])
    # callgrind marks a function's recursion depth with 'N
    # and names an address it has no symbol for 0x...
    return sorted({re.sub(r"'\d+$", "", n) for n in ran if not n.startswith(("(", "0x"))})


def pattern(name):
    """The name with compiler-chosen hashes as `*`, or None if it has none."""
    p = re.sub(r"17h[0-9a-f]{16}E", "17h*E", name)  # legacy mangling
    p = re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", p) if p.startswith("_R") else p  # v0
    p = re.sub(r"\.llvm\.\d+", "*", p)  # ThinLTO's promoted locals
    return p if p != name else None


def instances(binary):
    """How many functions of the binary each pattern stands for."""
    nm = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True)
    count = collections.Counter()
    for line in nm.stdout.splitlines():
        name = line.split()[-1]
        count[name] += 1
        if pattern(name):
            count[pattern(name)] += 1
    return count


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    total = instances(sys.argv[1])
    names = [n for n in functions(sys.argv[2:]) if n in total]
    if not names:
        sys.exit("no function of a kflip binary in these callgrind outputs")
    out = list(names)
    ran = collections.Counter(pattern(n) for n in names)
    for p in sorted(k for k in ran if k):
        # A pattern that stands for many more functions than ran (a
        # generic's instances) would bring cold code into the hot section.
        if total[p] <= 2 * ran[p]:
            out.append(p)
    print("\n".join(out))


if __name__ == "__main__":
    main()
