#!/usr/bin/env bash
# kflip's main job on an embedded default: two local Kafka clusters (tansu),
# kflip in front of them, a sample producer and consumer running through
# kflip, and a live flip to dc2 and back, with the numbers.
#
# Installs what it needs on first run (cached). Ports can be overridden:
#   DC1_PORT=19092 DC2_PORT=29092 PROXY_PORT=9092 ./scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DC1_PORT="${DC1_PORT:-19092}"
DC2_PORT="${DC2_PORT:-29092}"
PROXY_PORT="${PROXY_PORT:-9092}"

./scripts/install-deps.sh
tansu="$(./scripts/install-tansu.sh)"
echo "building kflip (release)..." >&2
cargo build --release --quiet --locked
kflip="${CARGO_TARGET_DIR:-target}/release/kflip"

work="$(mktemp -d -t kflip-demo.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KFLIP_DEMO_KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

for dc in dc1 dc2; do
  port=$DC1_PORT; [ "$dc" = dc2 ] && port=$DC2_PORT
  mkdir -p "$work/$dc"
  (cd "$work/$dc" && RUST_LOG=warn exec "$tansu" broker --cluster-id "$dc" \
     --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
     --storage-engine "sqlite://$dc.db" >"$work/$dc/broker.log" 2>&1) &
  pids+=($!)
done

cat >"$work/kflip.yaml" <<YAML
clusters:
  dc1: { bootstrap: "127.0.0.1:$DC1_PORT" }
  dc2: { bootstrap: "127.0.0.1:$DC2_PORT" }
proxy:
  listen: "127.0.0.1:$PROXY_PORT"
  active: dc1
YAML
"$kflip" validate-config "$work/kflip.yaml"
KFLIP_LOG="${KFLIP_LOG:-info}" "$kflip" proxy --config "$work/kflip.yaml" >"$work/kflip.log" 2>&1 &
pids+=($!)

python3 scripts/demo.py --dc1 "127.0.0.1:$DC1_PORT" --dc2 "127.0.0.1:$DC2_PORT" \
  --proxy "127.0.0.1:$PROXY_PORT" --config "$work/kflip.yaml" --log "$work/kflip.log"
