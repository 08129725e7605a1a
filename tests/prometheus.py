"""A real Prometheus (Debian's package, scripts/prometheus/install.sh) scraping a local stack, with
the chart's alert rules loaded, and the PromQL expressions of the chart's dashboards and alerts."""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.harness import ROOT, eventually, free_port

CHART = ROOT / "deploy" / "helm" / "ach-platform"
RULE_FILES = sorted((CHART / "alerts").glob("*.rules.yaml"))
PROMETHEUS = Path("/usr/bin/prometheus")


@dataclass(frozen=True)
class Expression:
    where: str  # "dashboard ach-services.json: <panel>" or "alert AchX"
    expr: str


def dashboard_expressions() -> list[Expression]:
    found = []
    for path in sorted((CHART / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                found.append(Expression(f"dashboard {path.name}: {panel['title']}", target["expr"]))
    return found


def alert_expressions() -> list[Expression]:
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append(Expression(f"alert {rule.get('alert') or rule.get('record')}", rule["expr"]))
    return found


# PromQL's binary operators that end a measure and start its threshold or its other operand.
_SPLIT = (" and ", " or ", " unless ", " > ", " < ", " >= ", " <= ", " == ", " != ")


def operands(expr: str) -> list[str]:
    """The measures an alert compares: ``A > 5`` gives ``A``, ``A > 1 and B > 0`` gives ``A``, ``B``
    (split at operators outside brackets and strings; numeric thresholds dropped). Each one must
    return data for the alert to mean anything."""
    parts, depth, quote, start, i = [], 0, "", 0, 0
    text = " ".join(expr.split())
    while i < len(text):
        c = text[i]
        if quote:
            quote = "" if c == quote and text[i - 1] != "\\" else quote
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            for op in _SPLIT:
                if text.startswith(op, i):
                    parts.append(text[start:i])
                    start = i + len(op)
                    i = start - 1
                    break
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip() and not _number(p.strip())]


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class Prometheus:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def get(self, path: str, **params: str) -> dict[str, Any]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:  # 400 on a bad expression: its error is the body
            return dict(json.loads(exc.read()))

    def query(self, expr: str) -> dict[str, Any]:
        return self.get("/api/v1/query", query=expr)

    def targets_up(self) -> dict[str, str]:
        active = self.get("/api/v1/targets")["data"]["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in active}

    def samples(self, job: str) -> int:
        """Scrapes of ``job`` in the database so far."""
        result = self.query(f'count_over_time(up{{job="{job}"}}[10m])')["data"]["result"]
        return int(float(result[0]["value"][1])) if result else 0


@contextlib.contextmanager
def running_prometheus(directory: Path, jobs: dict[str, int], interval_s: float = 1) -> Iterator[Prometheus]:
    """Prometheus on loopback scraping each job's metrics port every ``interval_s``, with the chart's
    alert rules loaded (so their evaluation runs too)."""
    if not PROMETHEUS.exists():
        raise RuntimeError("no /usr/bin/prometheus: run scripts/prometheus/install.sh (make test does)")
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": f"{interval_s}s", "evaluation_interval": f"{interval_s}s"},
        "rule_files": [str(p) for p in RULE_FILES],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for job, port in jobs.items()
        ],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = directory / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    prometheus = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:

        def ready() -> bool | None:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=2) as response:
                    return response.status == 200 or None
            except OSError:
                return None

        eventually(ready, 30, "Prometheus ready")
        yield prometheus
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
