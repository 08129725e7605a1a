"""PHI never leaves a process in a span: attributes named like PHI and exception texts are redacted
by the exporter wrapper every service uses."""

from __future__ import annotations

from collections.abc import Sequence

from ach_platform.telemetry import PhiScrubbingExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode


class Collect(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def test_phi_attributes_and_exception_texts_are_redacted() -> None:
    collected = Collect()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(PhiScrubbingExporter(collected)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("SubmitScreening") as span:
        span.set_attribute("ach.screening.id", "s-1")
        span.set_attribute("resident.birth_date", "1980-02-03")
        span.set_attribute("ach.answers", ["LA31995-6"])
        span.add_event("matched", {"phone": "209-555-0100", "need_domain": "food-insecurity"})
        try:
            raise ValueError("no steady place to live: Maria Lopez, 1980-02-03")
        except ValueError as exc:
            span.record_exception(exc)
    exported = collected.spans[0]
    text = exported.to_json()
    for phi in ("1980-02-03", "LA31995-6", "209-555-0100", "Maria Lopez"):
        assert phi not in text
    assert exported.attributes is not None and exported.attributes["ach.screening.id"] == "s-1"
    assert exported.events[0].attributes == {"phone": "[redacted]", "need_domain": "food-insecurity"}
    exception = exported.events[1].attributes or {}
    assert exception["exception.type"] == "ValueError" and exception["exception.message"] == "[redacted]"


def test_a_span_ended_by_an_exception_keeps_its_type_in_the_status_not_its_message() -> None:
    collected = Collect()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(PhiScrubbingExporter(collected)))
    tracer = provider.get_tracer("test")
    try:
        with tracer.start_as_current_span("ResidentLinked process"):
            raise KeyError("Maria Lopez")
    except KeyError:
        pass
    with tracer.start_as_current_span("notify webhook") as span:
        span.set_status(StatusCode.ERROR, "answered HTTP 503")
    ended, ours = collected.spans
    assert ended.status.status_code == StatusCode.ERROR and ended.status.description == "KeyError"
    assert "Maria Lopez" not in ended.to_json()
    assert ours.status.description == "answered HTTP 503"
