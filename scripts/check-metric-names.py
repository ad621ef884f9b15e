#!/usr/bin/env python3
"""Checks that every kflip metric the dashboard and the alert rules use exists.

    scripts/check-metric-names.py CAPTURE_FILE   # exit 1, listing the missing
    scripts/check-metric-names.py --list         # only print the names used

Names are every `kflip_...` word in deploy/grafana/*.json and
deploy/prometheus/*.yaml; a histogram's `_bucket`, `_sum` and `_count`
series count as its base name. CAPTURE_FILE is a scrape of kflip's /metrics
(Prometheus text format): a name exists if it has a `# TYPE` line or a
sample there. Standard library only.
"""

import glob
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ["deploy/grafana/*.json", "deploy/prometheus/*.yaml"]
NAME = re.compile(r"\bkflip_[a-zA-Z0-9_]*[a-zA-Z0-9]")
SUFFIXES = ("_bucket", "_sum", "_count")


def base(name):
    """The histogram's name for one of its series, else the name itself."""
    for s in SUFFIXES:
        if name.endswith(s):
            return name[: -len(s)]
    return name


def used_names():
    """Metric name -> the files that use it."""
    used = {}
    for pattern in SOURCES:
        for path in sorted(glob.glob(os.path.join(REPO, pattern))):
            with open(path, encoding="utf-8") as f:
                for m in NAME.findall(f.read()):
                    used.setdefault(base(m), set()).add(os.path.relpath(path, REPO))
    return used


def captured_names(path):
    """Every metric name a text-format capture declares or samples."""
    names = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split()
                if len(parts) >= 3 and parts[1] in ("TYPE", "HELP"):
                    names.add(parts[2])
                continue
            name = re.split(r"[{\s]", line, maxsplit=1)[0]
            names.add(name)
            names.add(base(name))
    return names


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    used = used_names()
    if not used:
        print("no kflip_ metric names found in " + ", ".join(SOURCES), file=sys.stderr)
        return 1
    if argv[1] == "--list":
        for name in sorted(used):
            print(name)
        return 0
    captured = captured_names(argv[1])
    missing = sorted(n for n in used if n not in captured)
    print(f"{len(used)} metric names used by the dashboard and alerts, checked against {argv[1]}")
    if missing:
        print(f"missing from the capture ({len(missing)}):")
        for n in missing:
            print(f"  {n}  (used in {', '.join(sorted(used[n]))})")
        return 1
    print("all present")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
