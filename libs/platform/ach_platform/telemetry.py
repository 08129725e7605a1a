"""OpenTelemetry traces and metrics, JSON logs with trace ids, Prometheus over HTTP.

Set up once per service process by ``setup_telemetry``. Exporters:
- traces: OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; JSON lines to ACH_TRACE_FILE when set
  (used by the tests and handy on a laptop); otherwise spans still carry context but are not exported.
- metrics: a Prometheus endpoint on the service's metrics port (/metrics).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Status
from prometheus_client import start_http_server
from pythonjsonlogger.json import JsonFormatter

from ach_platform.errors import withheld_traceback
from ach_platform.settings import TelemetrySettings

# Log record attributes that must never reach a log line: resident identity and screening answers.
PHI_FIELDS = frozenset(
    {
        "name",
        "first_name",
        "last_name",
        "given_name",
        "family_name",
        "birth_date",
        "dob",
        "date_of_birth",
        "address",
        "street",
        "phone",
        "email",
        "ssn",
        "answers",
        "answer",
        "medicaid_id",
        "mrn",
    }
)


REDACTED = "[redacted]"
# Span attributes kept verbatim from exception events: the type is useful to ops, the message and
# stack trace can quote data (a value that failed validation, a statement's parameters).
_EXCEPTION_TEXT = ("exception.message", "exception.stacktrace")


def _phi_key(key: str) -> bool:
    last = key.rsplit(".", 1)[-1].lower()
    return last in PHI_FIELDS


def scrub_status(status: Status) -> Status:
    """A span's status as it may leave: a span that ended on an exception says
    ``"<type>: <message>"``, and the message can quote data, so only what comes before the first
    ": " is kept (the exception's type, or the class of a problem: "answered HTTP 500")."""
    if not status.description or ": " not in status.description:
        return status
    return Status(status.status_code, status.description.split(": ", 1)[0])


def scrub_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        k: (REDACTED if _phi_key(k) or k in _EXCEPTION_TEXT else v) for k, v in (attributes or {}).items()
    }


class PhiScrubbingExporter(SpanExporter):
    """Wraps an exporter: span and event attributes named like PHI, and exception messages and
    stack traces, are redacted before any span leaves the process."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([self._scrub(span) for span in spans])

    @staticmethod
    def _scrub(span: ReadableSpan) -> ReadableSpan:
        events = [Event(e.name, scrub_attributes(e.attributes), e.timestamp) for e in span.events]
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=scrub_attributes(span.attributes),
            events=events,
            links=span.links,
            kind=span.kind,
            status=scrub_status(span.status),
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class JsonLinesSpanExporter(SpanExporter):
    """Writes one JSON object per finished span to a file (appending, safe across processes)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(json.loads(span.to_json()), separators=(",", ":")) for span in spans]
        with self._lock, open(self._path, "a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


_STANDARD_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}


class TraceContextFilter(logging.Filter):
    """Adds the current trace and span ids to every log record, and drops PHI-named extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        record.trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else ""
        record.span_id = format(ctx.span_id, "016x") if ctx.is_valid else ""
        # Only fields passed as `extra=` can carry PHI by name; the record's own (e.g. the logger
        # name) are left alone.
        for key in PHI_FIELDS.intersection(record.__dict__).difference(_STANDARD_RECORD_FIELDS):
            setattr(record, key, "[redacted]")
        return True


class WithheldValuesFormatter(JsonFormatter):
    """Tracebacks in logs keep their frames (code) and each exception's type; a message is told only
    where it is written never to carry PHI (``ach_platform.errors.described``)."""

    def formatException(self, ei: Any) -> str:
        exc = ei[1] if isinstance(ei, tuple) else None
        return withheld_traceback(exc) if isinstance(exc, BaseException) else str(super().formatException(ei))


class RetriedKafkaErrors(logging.Filter):
    """aiokafka logs at ERROR what it retries by itself (a partition's leader still being elected
    on a just-created topic, a coordinator not yet available): a warning, not a page."""

    RETRIED = ("NotLeaderForPartitionError", "GroupCoordinatorNotAvailableError", "LeaderNotAvailableError")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and any(e in record.getMessage() for e in self.RETRIED):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(service: str, stream: TextIO = sys.stderr) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        WithheldValuesFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(trace_id)s %(span_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": f"ach-{service}"},
            timestamp=False,
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )
    )
    handler.addFilter(TraceContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(TelemetrySettings.load().log_level.upper())
    # Client libraries are chatty at INFO about connections; their warnings still come through.
    for noisy in ("aiokafka", "kafka", "faststream", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    handler.addFilter(RetriedKafkaErrors())


_configured = False


def setup_telemetry(service: str, metrics_port: int | None) -> int | None:
    """Set up tracing, metrics and logging once; returns the bound metrics port (None if off)."""
    global _configured
    configure_logging(service)
    if _configured:
        return metrics_port
    _configured = True
    resource = Resource.create({"service.name": f"ach-{service}", "service.namespace": "ach"})
    tracer_provider = TracerProvider(resource=resource)
    settings = TelemetrySettings.load()
    if settings.otel_exporter_otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(PhiScrubbingExporter(OTLPSpanExporter())))
    trace_file = settings.trace_file
    if trace_file:
        tracer_provider.add_span_processor(
            SimpleSpanProcessor(PhiScrubbingExporter(JsonLinesSpanExporter(trace_file)))
        )
    trace.set_tracer_provider(tracer_provider)

    readers: list[Any] = []
    if metrics_port is not None:
        readers.append(PrometheusMetricReader())
        server, _thread = start_http_server(metrics_port)
        metrics_port = int(server.server_port)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    return metrics_port


def shutdown_telemetry() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
