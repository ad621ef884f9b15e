#!/usr/bin/env bash
# kflip's main job on an embedded default: two local Apache Kafka 4.4
# clusters (single-node KRaft, from Maven Central),
# `kflip run` in front of them (the proxy, plus replication flows dc1->dc2
# and dc2->dc1), an idempotent producer and a group consumer running through
# kflip, and a planned failover to dc2 and failback to dc1 while they run,
# with the numbers: switch times, and every acknowledged record checked on
# the consumer and on both clusters. Exits non-zero if a record was lost,
# duplicated or failed.
#
# Installs what it needs on first run (cached). Ports can be overridden
# (each broker's KRaft controller listens on its port+1, and kflip's virtual
# broker on PROXY_PORT+1; its admin API on ADMIN_PORT):
#   DC1_PORT=19092 DC2_PORT=29092 PROXY_PORT=9092 ADMIN_PORT=9644 ./scripts/demo.sh
# KFLIP_DEMO_KEEP=1 keeps the work directory (configs and logs) afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
DC1_PORT="${DC1_PORT:-19092}"
DC2_PORT="${DC2_PORT:-29092}"
PROXY_PORT="${PROXY_PORT:-9092}"
ADMIN_PORT="${ADMIN_PORT:-9644}"

./scripts/install-deps.sh
echo "building kflip (release)..." >&2
cargo build --release --quiet --locked
kflip="${CARGO_TARGET_DIR:-target}/release/kflip"

# A port already in use would make the demo talk to someone else's broker.
for use in "$DC1_PORT dc1 (DC1_PORT)" "$((DC1_PORT + 1)) dc1's controller (DC1_PORT+1)" \
           "$DC2_PORT dc2 (DC2_PORT)" "$((DC2_PORT + 1)) dc2's controller (DC2_PORT+1)" \
           "$PROXY_PORT kflip (PROXY_PORT)" \
           "$((PROXY_PORT + 1)) kflip's virtual broker (PROXY_PORT+1)" \
           "$ADMIN_PORT kflip's admin API (ADMIN_PORT)"; do
  port="${use%% *}"
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port, for ${use#* }, is in use; pick free ports with DC1_PORT, DC2_PORT, PROXY_PORT, ADMIN_PORT" >&2
    exit 1
  fi
done

work="$(mktemp -d -t kflip-demo.XXXXXX)"
pids=()
cleanup() {
  # kflip first (it drains its connections), then the brokers.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  if [ -n "${KFLIP_DEMO_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

for dc in dc1 dc2; do
  port=$DC1_PORT; [ "$dc" = dc2 ] && port=$DC2_PORT
  ./scripts/kafka-broker.sh "$port" "$work/$dc" >"$work/$dc.log" 2>&1 &
  pids+=($!)
done

# Until a broker listens (Apache Kafka takes a few seconds to start).
wait_port() {
  for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$2 did not start on port $1:" >&2
  tail -n 20 "$3" >&2
  exit 1
}
wait_port "$DC1_PORT" dc1 "$work/dc1.log"
wait_port "$DC2_PORT" dc2 "$work/dc2.log"

# The flows copy topic `demo` both ways; the fast knobs keep the demo short.
fast="discovery_interval: 500ms, group_sync_interval: 500ms, config_sync_interval: 1s, checkpoint_interval: 200ms, fetch_partition_bytes: 65536, fetch_wait: 10ms"
mkdir -p "$work/config"
cat >"$work/config/kflip.yaml" <<YAML
clusters:
  dc1: { bootstrap: "127.0.0.1:$DC1_PORT" }
  dc2: { bootstrap: "127.0.0.1:$DC2_PORT" }
proxy:
  listen: "127.0.0.1:$PROXY_PORT"
  active: dc1
  switch_lag_timeout: 10s
admin:
  listen: "127.0.0.1:$ADMIN_PORT"
replication:
  flows:
    - { source: dc1, target: dc2, topics: ["demo"], $fast }
    - { source: dc2, target: dc1, topics: ["demo"], $fast }
YAML
"$kflip" validate-config "$work/config/kflip.yaml" >/dev/null
KFLIP_LOG="${KFLIP_LOG:-info}" "$kflip" run --config "$work/config/kflip.yaml" >"$work/kflip.log" 2>&1 &
pids+=($!)

rc=0
python3 scripts/demo.py --dc1 "127.0.0.1:$DC1_PORT" --dc2 "127.0.0.1:$DC2_PORT" \
  --proxy "127.0.0.1:$PROXY_PORT" --config "$work/config/kflip.yaml" --log "$work/kflip.log" || rc=$?
# What an operator sees: the admin API through the runbook CLI.
echo
echo "$ kflip status --config kflip.yaml"
"$kflip" status --config "$work/config/kflip.yaml" || true
exit "$rc"
