#!/usr/bin/env bash
# Runs kflip's whole test suite from a fresh machine: installs what the tests
# need (cached), checks formatting and lints, runs every test against real
# Apache Kafka 4.4 brokers and real clients, then the named tansu set
# (DEVELOPERS.md) against tansu 0.6.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export KFLIP_KAFKA_LIB="${KFLIP_KAFKA_LIB:-$(./scripts/install-kafka.sh)}"
export KFLIP_TANSU="${KFLIP_TANSU:-$(./scripts/install-tansu.sh)}"
export KFLIP_JAVA_CLIENTS="${KFLIP_JAVA_CLIENTS:-$(./scripts/install-java-clients.sh)}"
export KFLIP_GO_CLIENT="${KFLIP_GO_CLIENT:-$(./scripts/install-go-clients.sh)}"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# deploy/: Kubernetes schemas, alert rules' PromQL, the dashboard.
./scripts/validate-deploy.sh
# Apache Kafka: every test.
KFLIP_BROKER=kafka cargo test --locked
# tansu: the second, Kafka-compatible broker, for the named set.
KFLIP_BROKER=tansu cargo test --locked --test proxy_clients --test proxy_flip \
  --test replication --test proxy_bad_input
# Regression guard: quick proxy and replication benches, built by cargo test
# (debug, the profile the tests above already built), each failing only if a
# kflip / direct ratio is far below its target (BENCHMARKS.md). No timings.
KFLIP_BROKER=kafka KFLIP_BENCH_QUICK=1 cargo test --locked --bench proxy --bench replication
