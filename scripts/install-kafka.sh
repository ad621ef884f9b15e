#!/usr/bin/env bash
# Installs the Apache Kafka broker (4.4.0, KRaft) that kflip's tests,
# benchmarks and demo run against, from Maven Central: the jars of
# org.apache.kafka:kafka_2.13 and its runtime dependencies, copied by Maven
# into $KFLIP_CACHE/kafka-4.4.0/lib (default cache ~/.cache/kflip). Maven's
# own repository (~/.m2) caches the downloads. Idempotent; prints the lib
# folder's path.
set -euo pipefail
KAFKA_VERSION=4.4.0
here="$(cd "$(dirname "$0")" && pwd)"
cache="${KFLIP_CACHE:-$HOME/.cache/kflip}"
root="$cache/kafka-$KAFKA_VERSION"
lib="$root/lib"
# The pom's hash marks the install as complete and current.
stamp="$(sha256sum "$here/../tests/kafka/pom.xml" | cut -c1-16)"
if [ -f "$root/.installed-$stamp" ]; then
  echo "$lib"
  exit 0
fi
if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
  echo "install-kafka: java (17+) and mvn are needed to fetch Apache Kafka from Maven Central" >&2
  exit 1
fi
echo "installing Apache Kafka $KAFKA_VERSION from Maven Central into $lib (once)" >&2
rm -rf "$root"
mkdir -p "$lib"
mvn -q -B -f "$here/../tests/kafka/pom.xml" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$lib" >&2
touch "$root/.installed-$stamp"
echo "$lib"
