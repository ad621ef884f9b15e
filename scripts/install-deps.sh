#!/usr/bin/env bash
# Installs everything kflip's tests, benchmarks and demo need, once.
# Idempotent: each step checks before it installs, and results are cached
# under $KFLIP_CACHE (default ~/.cache/kflip).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${KFLIP_CACHE:-$HOME/.cache/kflip}"
mkdir -p "$cache"

# Debian packages: kcat (a librdkafka CLI client), and libssl-dev with
# pkg-config: the rdkafka crate's "ssl" feature builds librdkafka against the
# system OpenSSL, for TLS and SASL SCRAM (libcurl, for the engine's
# OAUTHBEARER OIDC login, is built from source by the "curl-static"
# feature, but see libcurl4-openssl-dev below).
debs=""
command -v kcat >/dev/null 2>&1 || debs="$debs kcat"
command -v pkg-config >/dev/null 2>&1 || debs="$debs pkg-config"
pkg-config --exists openssl 2>/dev/null || debs="$debs libssl-dev"
# libcurl's headers and link library: librdkafka's configure compile-checks
# `-lcurl` before it enables OAUTHBEARER OIDC, even though kflip links the
# libcurl that the rdkafka crate builds from source ("curl-static").
pkg-config --exists libcurl 2>/dev/null || debs="$debs libcurl4-openssl-dev"
# python3-venv: scripts/validate-deploy.sh keeps its validators in a venv.
python3 -c 'import ensurepip' >/dev/null 2>&1 || debs="$debs python3-venv"
if [ -n "$debs" ]; then
  echo "installing Debian packages:$debs" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # shellcheck disable=SC2086 # one word per package
  apt-get install -y -qq $debs >&2
fi

# Python clients, pinned.
PY_PKGS="confluent-kafka==2.16.1 kafka-python==3.0.12"
if ! python3 -c 'import confluent_kafka, kafka' >/dev/null 2>&1; then
  echo "installing Python clients: $PY_PKGS" >&2
  python3 -m pip install -q --disable-pip-version-check $PY_PKGS >&2
fi

# Node.js clients (kafkajs), pinned by tests/clients/package-lock.json.
# npm keeps its own download cache (~/.npm); the check below makes this a no-op
# once tests/clients/node_modules is in place.
repo="$(cd "$here/.." && pwd)"
if [ ! -f "$repo/tests/clients/node_modules/kafkajs/package.json" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "npm not found: install Node.js (>= 18) to run the kafkajs test clients" >&2
    exit 1
  fi
  echo "installing Node.js clients into tests/clients/node_modules (npm ci)" >&2
  # --prefer-offline: a package already in ~/.npm is used without asking
  # the registry again, so a second clone installs with no network at all.
  npm ci --prefer-offline --no-audit --no-fund --prefix "$repo/tests/clients" >&2
fi

# The Apache Kafka 4.4 broker (jars from Maven Central), the default broker.
"$here/install-kafka.sh" >/dev/null

# The Java client (kafka-clients 4.4, built with Maven) and the Go client
# (franz-go, built with the Go toolchain) that the tests run as subprocesses.
"$here/install-java-clients.sh" >/dev/null
"$here/install-go-clients.sh" >/dev/null

# The tansu broker (built once from crates.io, ~8 minutes on 2 cores), the
# second broker for a named set of tests.
"$here/install-tansu.sh" >/dev/null
