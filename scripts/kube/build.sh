#!/usr/bin/env bash
# The tests' Kubernetes control plane: kube-apiserver and etcd, built from the Go module proxy
# (scripts/kube/apiserver/go.mod pins them) into .cache/kube/<versions>/, once, with the Prometheus
# Operator's CRDs (ServiceMonitor, PrometheusRule) from its module, which the chart's production
# values use. Prints that folder.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
module="$root/scripts/kube/apiserver"
kubernetes="$(awk '$1 == "k8s.io/kubernetes" {print $2}' "$module/go.mod")"
etcd="$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' "$module/go.mod")"
operator="v0.94.0"
out="$root/.cache/kube/kubernetes-$kubernetes-etcd-$etcd-operator-$operator"
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ] && [ -d "$out/crds" ]; then echo "$out"; exit 0; fi
command -v go >/dev/null || { echo "kube: Go is needed to build kube-apiserver and etcd" >&2; exit 1; }
mkdir -p "$out"
# One build at a time (pytest workers may ask together); the second finds the binaries.
exec 9>"$root/.cache/kube/.build.lock"
flock 9
if [ ! -x "$out/kube-apiserver" ] || [ ! -x "$out/etcd" ]; then
  echo "kube: building kube-apiserver $kubernetes and etcd $etcd from the Go module proxy (first run only)" >&2
  cd "$module"
  GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$out/etcd.new" go.etcd.io/etcd/server/v3
  # The version the server reports (/version, and helm's .Capabilities.KubeVersion).
  minor="$(echo "$kubernetes" | cut -d. -f2)"
  version="-X k8s.io/component-base/version.gitVersion=$kubernetes -X k8s.io/component-base/version.gitMajor=1"
  version="$version -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w $version" -o "$out/kube-apiserver.new" \
    k8s.io/kubernetes/cmd/kube-apiserver
  mv "$out/etcd.new" "$out/etcd"
  mv "$out/kube-apiserver.new" "$out/kube-apiserver"
fi
if [ ! -d "$out/crds" ]; then
  dir="$(cd "$module" && go mod download -json "github.com/prometheus-operator/prometheus-operator@$operator" \
    | awk -F'"' '$2 == "Dir" {print $4}')"
  mkdir -p "$out/crds.new"
  for kind in servicemonitors prometheusrules; do
    cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$out/crds.new/"
  done
  mv "$out/crds.new" "$out/crds"
fi
echo "$out"
