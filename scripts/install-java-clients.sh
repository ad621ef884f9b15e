#!/usr/bin/env bash
# Builds kflip's Java test client (tests/clients/java: FailoverClient on the
# Apache Kafka Java client 4.4) with Maven into
# $KFLIP_CACHE/java-clients-<hash>/ (default cache ~/.cache/kflip): the
# folder holds kflip-test-clients.jar and lib/*.jar, its runtime
# dependencies. <hash> is taken from the pom and the sources, so an edit
# makes a new build. Idempotent; prints the folder's path on stdout, all
# else goes to stderr. Maven's own repository (~/.m2) caches downloads.
#
# Usage of the result:
#   dir="$(scripts/install-java-clients.sh)"
#   java -cp "$dir/kflip-test-clients.jar:$dir/lib/*" dev.kflip.test.FailoverClient \
#     --role producer --bootstrap 127.0.0.1:9092 --topic t --client-id p1 \
#     --out p1.events --stop p1.stop
#   java -cp "$dir/kflip-test-clients.jar:$dir/lib/*" dev.kflip.test.FailoverClient \
#     roundtrip 127.0.0.1:9092 t g1 200
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/../tests/clients/java"
cache="${KFLIP_CACHE:-$HOME/.cache/kflip}"
# Each file's path and content go into the hash.
hash="$(cd "$src" && find pom.xml src -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"
root="$cache/java-clients-$hash"
# Written last, so its presence means the folder is complete.
stamp="$root/.installed"
if [ -f "$stamp" ]; then
  echo "$root"
  exit 0
fi
if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
  echo "install-java-clients: java (17+) and mvn are needed to build the Java test client" >&2
  exit 1
fi
echo "building the Java test client into $root (once)" >&2
mkdir -p "$cache"
# Maven builds in a copy, so no target/ is left in the repository; the
# result is assembled beside $root and renamed into place in one step, so
# a concurrent run sees either no folder or a complete one.
work="$(mktemp -d "$cache/.java-clients-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp -r "$src/pom.xml" "$src/src" "$work/"
mvn -q -B -f "$work/pom.xml" package -DskipTests >&2
mkdir -p "$work/out"
cp "$work/target/kflip-test-clients.jar" "$work/out/"
cp -r "$work/target/lib" "$work/out/lib"
touch "$work/out/.installed"
rm -rf "$root.partial"
if ! mv -T "$work/out" "$root" 2>/dev/null; then
  # Another run finished first, or an old, incomplete folder is in the way.
  if [ ! -f "$stamp" ]; then
    mv -T "$root" "$root.partial" && rm -rf "$root.partial"
    mv -T "$work/out" "$root"
  fi
fi
echo "$root"
