#!/usr/bin/env bash
# Builds kflip's Go test client (tests/clients/go: failover_client on
# franz-go) with `go build` into $KFLIP_CACHE/go-clients-<hash>/failover_client
# (default cache ~/.cache/kflip). <hash> is taken from go.mod, go.sum and
# the .go sources, so an edit makes a new build. Idempotent; prints the
# binary's path on stdout, all else goes to stderr. Go's module cache
# (~/go/pkg/mod) caches downloads.
#
# Usage of the result:
#   bin="$(scripts/install-go-clients.sh)"
#   "$bin" --role producer --bootstrap 127.0.0.1:9092 --topic t --client-id p1 \
#     --out p1.events --stop p1.stop
#   "$bin" roundtrip 127.0.0.1:9092 t g1 200
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/../tests/clients/go"
cache="${KFLIP_CACHE:-$HOME/.cache/kflip}"
# Each file's name and content go into the hash.
hash="$(cd "$src" && find . -maxdepth 1 -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) \
  | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"
root="$cache/go-clients-$hash"
bin="$root/failover_client"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
# The official tarball's place, for a shell whose PATH lacks it.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
  echo "install-go-clients: go (1.26+) is needed to build the Go test client" >&2
  exit 1
fi
echo "building the Go test client into $root (once)" >&2
mkdir -p "$root"
# Built beside the final name and renamed into place, so a concurrent run
# (or one stopped halfway) never leaves a partial binary at $bin.
tmp="$(mktemp "$root/.failover_client.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
(cd "$src" && go build -mod=readonly -o "$tmp" .) >&2
chmod 755 "$tmp"
mv -f "$tmp" "$bin"
echo "$bin"
