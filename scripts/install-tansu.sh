#!/usr/bin/env bash
# Installs the tansu broker that kflip's tests and demo run against, once.
# The binary is cached under $KFLIP_CACHE (default ~/.cache/kflip) and reused.
set -euo pipefail
TANSU_VERSION=0.6.0
cache="${KFLIP_CACHE:-$HOME/.cache/kflip}"
root="$cache/tansu-$TANSU_VERSION"
bin="$root/bin/tansu"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$root"
echo "building tansu $TANSU_VERSION into $root (about 8 minutes on 2 cores, once)" >&2
CARGO_TARGET_DIR="$cache/tansu-build" cargo install tansu --version "$TANSU_VERSION" \
  --locked --features dynostore,libsql --root "$root" >&2
rm -rf "$cache/tansu-build"
echo "$bin"
