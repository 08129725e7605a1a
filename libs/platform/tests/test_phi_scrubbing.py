"""PHI never leaves a process in a span: attributes named like PHI and exception texts are redacted
by the exporter wrapper every service uses."""

from __future__ import annotations

from collections.abc import Sequence

from ach_platform.telemetry import PhiScrubbingExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


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
