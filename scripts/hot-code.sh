#!/usr/bin/env bash
# Writes hot-code.txt, the order in which release builds lay out kflip's
# code (see build.rs): every function kflip runs while the proxy bench
# loads it, then what the replication engine adds under the replication
# bench, recorded with valgrind's callgrind. Run it again after large
# changes to the request or copy paths, the dependencies or the compiler;
# a stale list only makes the saving smaller (DEVELOPERS.md, "Release
# layout"). About 5 minutes.
#   usage: scripts/hot-code.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "hot-code.sh needs valgrind (apt-get install valgrind)" >&2; exit 1; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# Callgrind writes its counts when the process exits, and the benches end
# kflip with a kill: dump every 500,000 basic blocks instead.
profile() {
  local name="$1"
  shift
  mkdir -p "$out/$name"
  env KFLIP_TEST_WRAP="valgrind --tool=callgrind --demangle=no --dump-every-bb=500000 --callgrind-out-file=$out/$name/cg.%p" \
    "$@" >"$out/$name.log" 2>&1 || { tail -20 "$out/$name.log" >&2; exit 1; }
}
profile proxy KFLIP_BENCH_RECORDS=100000 KFLIP_BENCH_ROUNDS=2 KFLIP_BENCH_LATENCY_REQUESTS=1000 KFLIP_BENCH_WARM_SECS=0 \
  cargo bench --bench proxy
profile engine KFLIP_BENCH_RECORDS=20000 KFLIP_BENCH_ROUNDS=1 KFLIP_BENCH_ONLY=replicate,latency \
  KFLIP_BENCH_LATENCY_SECS=5 KFLIP_BENCH_RATE=500 cargo bench --bench replication
python3 scripts/hot_code.py "${CARGO_TARGET_DIR:-target}/release/kflip" "$out/proxy" "$out/engine" >hot-code.txt.new
mv hot-code.txt.new hot-code.txt
echo "hot-code.txt: $(wc -l <hot-code.txt) names" >&2
