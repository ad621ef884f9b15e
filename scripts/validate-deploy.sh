#!/usr/bin/env bash
# Validates deploy/ offline: Kubernetes manifests against the API schemas,
# the kflip config inside them against kflip's config keys, the alert rules
# (structure and every PromQL expression), the dashboard (JSON, a query per
# panel, every query parses), and the metric names both use.
#
# Tools (pinned, from PyPI, installed once into $KFLIP_CACHE/deploy-venv,
# default ~/.cache/kflip; offline afterwards):
# - kubernetes-validate bundles the Kubernetes JSON schemas, so no download
#   at validation time;
# - promql-parser (a binary wheel of the Rust promql-parser crate) parses
#   PromQL in about a second to install, where building promtool with the Go
#   toolchain compiles Prometheus and hundreds of modules.
# Exits non-zero on any problem.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KFLIP_CACHE:-$HOME/.cache/kflip}"
venv="$cache/deploy-venv"
pkgs="kubernetes-validate==1.37.0 promql-parser==0.11.0 PyYAML==6.0.2"
# Kubernetes versions to validate against: the oldest with native sidecars
# GA, and the newest kubernetes-validate bundles.
kube_versions="${KFLIP_KUBE_VERSIONS:-1.33.0 1.37.0}"

if [ "$(cat "$venv/.pkgs" 2>/dev/null)" != "$pkgs" ]; then
  echo "installing validators into $venv: $pkgs" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086 # one word per package
  "$venv/bin/pip" install -q --disable-pip-version-check $pkgs >&2
  echo "$pkgs" >"$venv/.pkgs"
fi

cd "$repo"
mapfile -t manifests < <(find deploy/kubernetes -name '*.yaml' | sort)
[ "${#manifests[@]}" -gt 0 ] || { echo "no manifests under deploy/kubernetes" >&2; exit 1; }
for v in $kube_versions; do
  echo "== Kubernetes $v schemas (strict): ${#manifests[@]} manifests"
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "${manifests[@]}"
  echo "   ok"
done

"$venv/bin/python" scripts/validate_deploy.py

out="$cache/deploy-metric-names.txt"
echo "== metric names used by the dashboard and alerts (also in $out)"
python3 scripts/check-metric-names.py --list | tee "$out" | sed 's/^/   /'
# Checked against a real /metrics scrape by tests/operations.rs, after
# real traffic, replication and flips.
echo "deploy/ OK"
