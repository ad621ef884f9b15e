#!/usr/bin/env bash
# Runs kflip's whole test suite from a fresh machine: installs what the tests
# need (cached), checks formatting and lints, then runs every test against
# real tansu brokers and real clients.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export KFLIP_TANSU="${KFLIP_TANSU:-$("./scripts/install-tansu.sh")}"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
