#!/usr/bin/env bash
# helm, built from source with `go install` (Go module proxy) into .cache/gobin on first use:
# scripts/helm.sh <helm arguments>.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
gobin="${ACH_CACHE_DIR:-$root/.cache}/gobin"
helm_version="v3.17.3"
helm="$gobin/helm"
if [ ! -x "$helm" ] || [ "$(cat "$gobin/.helm-version" 2>/dev/null)" != "$helm_version" ]; then
  command -v go >/dev/null || { echo "helm: Go is needed to build helm (go install)" >&2; exit 1; }
  echo "helm: building helm $helm_version with go install (first run only)" >&2
  GOBIN="$gobin" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$helm_version"
  echo "$helm_version" > "$gobin/.helm-version"
fi
exec "$helm" "$@"
