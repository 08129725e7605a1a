"""The chart's OpenTelemetry Collector configuration, run by a real collector (built from the Go
module proxy with the components it uses: scripts/otelcol/build.sh): traces and metrics sent by
OTLP come out by OTLP, and PHI that got past a service's own scrubbing does not: keys not on the
allowlist and keys named like PHI are dropped, values shaped like contact details or dates masked."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.harness import ROOT, eventually, free_port

CONFIG = ROOT / "deploy" / "helm" / "ach-platform" / "collector" / "config.yaml"
BUILD = ROOT / "scripts" / "otelcol" / "build.sh"


@dataclass
class Backend:
    """What the tracing and metrics backends receive (an OTLP/gRPC server)."""

    spans: list[Any] = field(default_factory=list)
    metrics: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def Export(self, request: Any, context: Any) -> Any:
        with self.backend.lock:
            for resource_spans in request.resource_spans:
                for scope in resource_spans.scope_spans:
                    self.backend.spans.extend(scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def Export(self, request: Any, context: Any) -> Any:
        with self.backend.lock:
            for resource_metrics in request.resource_metrics:
                for scope in resource_metrics.scope_metrics:
                    self.backend.metrics.extend(scope.metrics)
        return metrics_service_pb2.ExportMetricsServiceResponse()


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[str, Backend]]:
    built = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=1800)
    assert built.returncode == 0, built.stderr[-2000:]
    binary = built.stdout.strip().splitlines()[-1]
    backend = Backend()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(backend), server)  # type: ignore[no-untyped-call]
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(backend), server)  # type: ignore[no-untyped-call]
    backend_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    listen = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "OTELCOL_OTLP_LISTEN": listen,
        "OTELCOL_TRACES_ENDPOINT": f"127.0.0.1:{backend_port}",
        "OTELCOL_METRICS_ENDPOINT": f"127.0.0.1:{backend_port}",
        "OTELCOL_EXPORT_INSECURE": "true",
    }
    log = tmp_path / "otelcol.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "--config", str(CONFIG)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        eventually(
            lambda: (
                "Everything is ready" in log.read_text()
                or (process.poll() is not None and pytest.fail(log.read_text()[-3000:]))
                or None
            ),
            30,
            "the collector ready",
        )
        yield listen, backend
    finally:
        process.terminate()
        process.wait(15)
        server.stop(0)


def attributes(items: Any) -> dict[str, str]:
    return {a.key: a.value.string_value or str(a.value.int_value) for a in items}


def test_traces_and_metrics_pass_and_phi_does_not(collector: tuple[str, Backend]) -> None:
    endpoint, backend = collector
    # A service whose own scrubbing failed: the raw OTLP exporter, no PhiScrubbingExporter.
    resource = Resource.create({"service.name": "ach-referrals"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))
    )
    tracer = tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("ach.referrals.events.v1 process") as span:
        span.set_attribute("messaging.system", "kafka")
        span.set_attribute("ach.referral_id", "r-42")
        span.set_attribute("rpc.grpc.status_code", 0)
        span.set_attribute("resident.name", "Ana Demo-Reyes")  # named like PHI
        span.set_attribute("ach.notes", "lives at 12 Elm St")  # not on the allowlist
        span.set_attribute("messaging.message.id", "call Ana at 209-555-0100")  # allowed key, PHI value
        span.set_attribute("cloudevents.event_type", "ana.demo@example.org")
        span.set_attribute("ach.partner_id", "born 1979-05-14")
    tracer_provider.shutdown()

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=endpoint, insecure=True), export_interval_millis=500
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    counter = meter_provider.get_meter("test").create_counter("ach_referrals_funnel")
    counter.add(3, {"stage": "accepted", "resident_email": "ana.demo@example.org"})
    meter_provider.force_flush()
    meter_provider.shutdown()

    spans = eventually(lambda: list(backend.spans) or None, 30, "the span at the tracing backend")
    metrics = eventually(lambda: list(backend.metrics) or None, 30, "the metric at the metrics backend")
    assert len(spans) == 1, spans
    (exported,) = spans
    got = attributes(exported.attributes)
    assert got["messaging.system"] == "kafka" and got["ach.referral_id"] == "r-42"
    assert got["rpc.grpc.status_code"] == "0"
    assert "resident.name" not in got and "ach.notes" not in got
    everything = str(spans) + str(metrics)
    for phi in ("Demo-Reyes", "Elm St", "209-555-0100", "ana.demo@example.org", "1979-05-14"):
        assert phi not in everything, phi
    assert got["messaging.message.id"] != "call Ana at 209-555-0100"  # masked, the key kept
    # Nothing says which keys were redacted (summary: silent).
    assert not [k for k in got if k.startswith("redaction.")]

    funnel = [m for m in metrics if m.name == "ach_referrals_funnel"][-1]  # exported every 0.5 s
    (point,) = funnel.sum.data_points
    assert point.as_int == 3 and attributes(point.attributes) == {"stage": "accepted"}
