#!/usr/bin/env bash
# Generates Python modules, gRPC stubs and mypy type stubs from protos/ (the single source of truth)
# into libs/protos. `make protos` runs this; `make protos-check` fails when the committed code is stale.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/libs/protos}"
cd "$root"
find "$out/ach" -name '*_pb2*.py*' -delete 2>/dev/null || true
mapfile -t files < <(cd protos && find ach -name '*.proto' | sort)
(cd protos && python -m grpc_tools.protoc -I . \
  --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" --mypy_grpc_out="$out" "${files[@]}")
# Packages for every generated folder, so imports and mypy see regular packages.
find "$out/ach" -type d -exec sh -c 'for d; do [ -f "$d/__init__.py" ] || : > "$d/__init__.py"; done' _ {} +
