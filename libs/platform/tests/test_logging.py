"""Logs are JSON lines with the current trace id, and fields named like PHI never reach them."""

from __future__ import annotations

import io
import json
import logging

from ach_platform.telemetry import configure_logging
from opentelemetry.sdk.trace import TracerProvider


def test_json_logs_carry_trace_ids_and_redact_phi_fields() -> None:
    out = io.StringIO()
    configure_logging("screening", out)
    tracer = TracerProvider().get_tracer("test")
    log = logging.getLogger("ach_screening.api")
    with tracer.start_as_current_span("SubmitScreening") as span:
        log.warning(
            "screening rejected",
            extra={
                "screening_id": "s-1",
                "given_name": "Maria Lopez",
                "birth_date": "1980-02-03",
                "answers": ["LA31995-6"],
            },
        )
    line = json.loads(out.getvalue().strip().splitlines()[-1])
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert line["span_id"] == format(span.get_span_context().span_id, "016x")
    assert line["service"] == "ach-screening" and line["logger"] == "ach_screening.api"
    assert line["screening_id"] == "s-1"
    text = out.getvalue()
    for phi in ("Maria Lopez", "1980-02-03", "LA31995-6"):
        assert phi not in text
    assert line["given_name"] == line["birth_date"] == line["answers"] == "[redacted]"


def test_errors_kafka_retries_by_itself_are_warnings() -> None:
    stream = io.StringIO()
    configure_logging("test", stream)
    logging.getLogger("aiokafka.consumer.fetcher").error(
        "Failed fetch offsets from 1: [Error 6] NotLeaderForPartitionError: TopicPartition(topic='t')"
    )
    logging.getLogger("aiokafka.consumer.fetcher").error("Unexpected error in fetcher routine")
    levels = [json.loads(line)["level"] for line in stream.getvalue().splitlines()]
    assert levels == ["WARNING", "ERROR"]
