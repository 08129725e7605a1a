#!/usr/bin/env bash
# Render the Helm chart and validate every manifest against the Kubernetes API schemas.
# helm is built from source with `go install` (Go module proxy) into .cache/gobin on first use;
# the schemas come with the kubernetes-validate package (no download at run time).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
chart="$root/deploy/helm/ach-platform"
gobin="${ACH_CACHE_DIR:-$root/.cache}/gobin"
helm_version="v3.17.3"
k8s_version="${K8S_VERSION:-1.31.0}"

helm="$gobin/helm"
if [ ! -x "$helm" ] || [ "$(cat "$gobin/.helm-version" 2>/dev/null)" != "$helm_version" ]; then
  command -v go >/dev/null || { echo "helm-check: Go is needed to build helm (go install)" >&2; exit 1; }
  echo "helm-check: building helm $helm_version with go install (first run only)" >&2
  GOBIN="$gobin" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$helm_version"
  echo "$helm_version" > "$gobin/.helm-version"
fi

out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT
"$helm" lint --strict "$chart" >/dev/null
"$helm" template ach "$chart" --namespace ach > "$out/default.yaml"
"$helm" template ach "$chart" --namespace ach --set serviceMonitor.enabled=true --set prometheusRule.enabled=true \
  --set services.screening.image=registry.example/ach-screening@sha256:0000 \
  --set screening.instrumentsConfigMap=ach-instruments --set residentMessages.coordinatorCertSecret=ach-coordinator-tls \
  --set residentMessages.smsTokenSecret=ach-sms-gateway > "$out/monitoring.yaml"
"$root/.venv/bin/python" "$root/scripts/validate_manifests.py" "$k8s_version" "$out/default.yaml" "$out/monitoring.yaml"
