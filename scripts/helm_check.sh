#!/usr/bin/env bash
# Render the Helm chart and validate every manifest against the Kubernetes API schemas.
# helm is built from source on first use (scripts/helm.sh);
# the schemas come with the kubernetes-validate package (no download at run time).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
chart="$root/deploy/helm/ach-platform"
k8s_version="${K8S_VERSION:-1.31.0}"
helm="$root/scripts/helm.sh"

out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT
"$helm" lint --strict "$chart" >/dev/null
"$helm" lint --strict "$chart" -f "$chart/values-local.yaml" >/dev/null
"$helm" template ach "$chart" --namespace ach > "$out/default.yaml"
"$helm" template ach "$chart" --namespace ach -f "$chart/examples/production.yaml" \
  --set services.screening.image=registry.example/ach-screening@sha256:0000 > "$out/production.yaml"
"$helm" template ach "$chart" --namespace ach -f "$chart/values-local.yaml" > "$out/local.yaml"
# The local values with network policies on (the embedded broker's and SQLite's paths).
"$helm" template ach "$chart" --namespace ach -f "$chart/values-local.yaml" --set networkPolicy.enabled=true \
  > "$out/local-policies.yaml"

# values.schema.json is strict: an unknown key or a wrong type fails, naming it.
refused() {  # refused <what the error must name> <helm args...>
  local expect="$1"; shift
  if "$helm" template ach "$chart" "$@" > /dev/null 2> "$out/error.txt"; then
    echo "helm-check: values accepted that must be refused: $*" >&2; exit 1
  fi
  if ! grep -q -- "$expect" "$out/error.txt"; then
    echo "helm-check: the error for $* does not name $expect:" >&2; cat "$out/error.txt" >&2; exit 1
  fi
}
refused replicass --set services.screening.replicass=3
refused grpcPort --set services.referrals.grpcPort=seven
refused colour --set colour=blue
refused securityProtocol --set kafka.securityProtocol=KERBEROS
refused "one replica" -f "$chart/values-local.yaml" --set services.identity.replicas=2
# A required Secret name missing or empty: named.
refused "tlsSecret is required" --set auth.tlsSecret=null
refused "database.existingSecret" --set database.existingSecret=
refused "credentialsSecret" --set kafka.credentialsSecret=null
refused "ingressFrom" --set networkPolicy.ingressFrom=null
refused "minReplicas 5 is above maxReplicas 3" --set autoscaling.enabled=true,services.funding.autoscaling.minReplicas=5,services.funding.autoscaling.maxReplicas=3
refused "telemetry.collector.tracesEndpoint" --set telemetry.collector.enabled=true
refused "autoscaling.enabled" -f "$chart/values-local.yaml" --set autoscaling.enabled=true

"$root/.venv/bin/python" "$root/scripts/validate_manifests.py" "$k8s_version" "$out/default.yaml" "$out/production.yaml" "$out/local.yaml" \
  "$out/local-policies.yaml"
