#!/usr/bin/env python3
"""Writes the section order of kflip's hot code (see build.rs) from callgrind
outputs of a kflip process: every function that ran in the kflip binary.

usage: hot_code.py KFLIP_BINARY PROFILE_DIR... > hot-code.txt

Each PROFILE_DIR holds the callgrind outputs (cg.*) of one run; the first
run's functions come first in the section, then what each later run adds,
so a process that only does the first run's work (a proxy) keeps its code
at the front.

One symbol name per line. Each function is named exactly first, so a
build with the same symbol names packs the code that ran densely. Then
one pattern per function with the compiler's hashes replaced by `*`, so a
build whose hashes differ (another compiler, a dependency update, an edit
that changes a generic's arguments) still finds its instances. A pattern that stands for more than twice as many functions
as ran (a generic's instances) is left out: it would fill the hot section
with cold code.
"""
import collections
import os
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


def section(names, total, listed):
    """One profile's lines: its exact names, then its patterns, leaving out
    what an earlier profile listed."""
    out = [n for n in names if n not in listed]
    ran = collections.Counter(pattern(n) for n in names)
    for p in sorted(k for k in ran if k):
        # A pattern that stands for many more functions than ran (a
        # generic's instances) would bring cold code into the hot section.
        if total[p] <= 2 * ran[p] and p not in listed:
            out.append(p)
    return out


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    total = instances(sys.argv[1])
    out, listed = [], set()
    for profile in sys.argv[2:]:
        files = [os.path.join(profile, f) for f in sorted(os.listdir(profile)) if f.startswith("cg.")]
        names = [n for n in functions(files) if n in total]
        if not names:
            sys.exit(f"no function of the kflip binary in the callgrind outputs in {profile}")
        lines = section(names, total, listed)
        listed.update(lines)
        out += lines
    print("\n".join(out))


if __name__ == "__main__":
    main()
