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
that changes a generic's arguments, any edit that renames the `.llvm.N`
copies of small functions) still finds its instances. A pattern is left
out when the functions it stands for but that did not run (a generic's
other instances) are both more than those that ran and more than
COLD_BUDGET bytes: it would fill the hot section with cold code. Small
functions copied into many codegen units (`String::write_str`,
`io::Error::kind`) are kept whole that way, which is what keeps the list
useful across ordinary edits.
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


# Bytes of code that did not run which a pattern may bring into the hot
# section beyond what ran.
COLD_BUDGET = 65536


def instances(binary):
    """How many functions of the binary each name and pattern stands for,
    and their bytes."""
    nm = subprocess.run(
        ["nm", "--defined-only", "-S", binary], capture_output=True, text=True, check=True
    )
    count, size = collections.Counter(), collections.Counter()
    for line in nm.stdout.splitlines():
        f = line.split()
        name = f[-1]
        n = int(f[1], 16) if len(f) == 4 else 0
        for key in {name, pattern(name)} - {None}:
            count[key] += 1
            size[key] += n
    return count, size


def section(names, total, listed):
    """One profile's lines: its exact names, then its patterns, leaving out
    what an earlier profile listed."""
    count, size = total
    out = [n for n in names if n not in listed]
    ran, ran_size = collections.Counter(), collections.Counter()
    for n in names:
        if pattern(n):
            ran[pattern(n)] += 1
            ran_size[pattern(n)] += size[n]
    for p in sorted(ran):
        # A pattern that stands for many more functions than ran (a
        # generic's instances) would bring cold code into the hot section.
        cold = size[p] - ran_size[p]
        if (count[p] <= 2 * ran[p] or cold <= COLD_BUDGET) and p not in listed:
            out.append(p)
    return out


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    total = instances(sys.argv[1])
    out, listed = [], set()
    for profile in sys.argv[2:]:
        files = [os.path.join(profile, f) for f in sorted(os.listdir(profile)) if f.startswith("cg.")]
        names = [n for n in functions(files) if n in total[0]]
        if not names:
            sys.exit(f"no function of the kflip binary in the callgrind outputs in {profile}")
        lines = section(names, total, listed)
        listed.update(lines)
        out += lines
    print("\n".join(out))


if __name__ == "__main__":
    main()
