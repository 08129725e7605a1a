#!/usr/bin/env bash
# The tests' OpenTelemetry Collector (scripts/otelcol/builder.yaml: OTLP in, memory limiter,
# redaction, batch, OTLP and debug out), built with the Collector Builder from the Go module proxy
# into .cache/otelcol/<version>/, once. Prints the binary's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/scripts/otelcol"
version="v0.165.0"
out="$root/.cache/otelcol/$version-$(sha256sum "$here/builder.yaml" | cut -c1-12)"
if [ -x "$out/otelcol-ach" ]; then echo "$out/otelcol-ach"; exit 0; fi
command -v go >/dev/null || { echo "otelcol: Go is needed to build the collector" >&2; exit 1; }
mkdir -p "$root/.cache/otelcol"
exec 9>"$root/.cache/otelcol/.build.lock"
flock 9
if [ ! -x "$out/otelcol-ach" ]; then
  echo "otelcol: building the collector $version from the Go module proxy (first run only)" >&2
  GOBIN="$root/.cache/gobin" go install "go.opentelemetry.io/collector/cmd/builder@$version"
  work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
  sed "s#output_path: ./build#output_path: $work/build#" "$here/builder.yaml" > "$work/builder.yaml"
  "$root/.cache/gobin/builder" --config "$work/builder.yaml" >"$work/builder.log" 2>&1 \
    || { tail -30 "$work/builder.log" >&2; exit 1; }
  mkdir -p "$out"
  mv "$work/build/otelcol-ach" "$out/otelcol-ach"
fi
echo "$out/otelcol-ach"
