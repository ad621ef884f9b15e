#!/usr/bin/env bash
# Writes hot-code.txt, the order in which release builds lay out kflip's
# code (see build.rs): every function kflip runs while the proxy bench
# loads it, recorded with valgrind's callgrind. Run it again after large
# changes to the proxy's paths or after a compiler update; a stale list
# only makes the saving smaller (DEVELOPERS.md, "Release layout").
#   usage: scripts/hot-code.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "hot-code.sh needs valgrind (apt-get install valgrind)" >&2; exit 1; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# Callgrind writes its counts when the process exits, and the bench ends
# kflip with a kill: dump every 500,000 basic blocks instead.
KFLIP_TEST_WRAP="valgrind --tool=callgrind --demangle=no --dump-every-bb=500000 --callgrind-out-file=$out/cg.%p" \
  KFLIP_BENCH_RECORDS=100000 KFLIP_BENCH_ROUNDS=2 KFLIP_BENCH_LATENCY_REQUESTS=1000 \
  cargo bench --bench proxy >"$out/bench.log" 2>&1 || { tail -20 "$out/bench.log" >&2; exit 1; }
python3 scripts/hot_code.py "${CARGO_TARGET_DIR:-target}/release/kflip" "$out"/cg.* >hot-code.txt.new
mv hot-code.txt.new hot-code.txt
echo "hot-code.txt: $(wc -l <hot-code.txt) names" >&2
