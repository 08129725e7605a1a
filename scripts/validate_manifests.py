"""Validate rendered manifests against the Kubernetes schemas of one version (kubernetes-validate),
strictly (unknown fields are errors). Prometheus Operator kinds are checked for the fields the
chart relies on, as their CRD schemas are not part of Kubernetes'."""

from __future__ import annotations

import sys
from pathlib import Path

import kubernetes_validate
import yaml

OPERATOR_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


def main() -> int:
    version, files = sys.argv[1], sys.argv[2:]
    failures = 0
    count = 0
    for file in files:
        for doc in yaml.safe_load_all(Path(file).read_text()):
            if not doc:
                continue
            count += 1
            where = f"{Path(file).name}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
            if (doc.get("apiVersion"), doc.get("kind")) in OPERATOR_KINDS:
                if not doc.get("spec"):
                    print(f"{where}: empty spec")
                    failures += 1
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                print(f"{where}: {exc.message} at {'/'.join(map(str, exc.path))}")
                failures += 1
    print(f"helm-check: {count} manifests, {failures} invalid (Kubernetes {version}, strict)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
