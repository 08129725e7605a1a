"""Logs are JSON lines with the current trace id, and fields named like PHI never reach them."""

from __future__ import annotations

import io
import json
import logging

from ach_platform.errors import InvalidArgument
from ach_platform.telemetry import configure_logging
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy.exc import DBAPIError


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


def test_a_traceback_in_the_log_keeps_its_frames_and_withholds_what_may_quote_data() -> None:
    out = io.StringIO()
    configure_logging("screening", out)
    log = logging.getLogger("ach_screening.intake")

    def score(answers: dict[str, str]) -> int:
        try:
            return int(answers["LA31995-6"])  # a ValueError quoting the answer
        except ValueError as exc:
            raise RuntimeError(f"could not score the answer of {answers['given_name']}") from exc

    def errors() -> list[BaseException]:
        found: list[BaseException] = [
            InvalidArgument.of("answers[0].value", "is not a number"),
            DBAPIError(
                "INSERT INTO screening_answer ...",
                None,
                Exception('invalid input syntax for type integer: "Maria Lopez"\nDETAIL: 1980-02-03'),
            ),
        ]
        answers = {"LA31995-6": "Maria Lopez", "given_name": "Maria Lopez"}  # not in a frame's line
        try:
            score(answers)
        except RuntimeError as exc:
            found.append(exc)
        return found

    for error in errors():
        try:
            raise error
        except Exception:
            log.exception("screening could not be stored")
    tracebacks = [json.loads(line)["exc_info"] for line in out.getvalue().strip().splitlines()]
    assert "Maria Lopez" not in out.getvalue() and "1980-02-03" not in out.getvalue()
    ours, database, unforeseen = tracebacks
    assert ours.endswith("InvalidArgument: answers[0].value: is not a number")
    assert database.endswith('DBAPIError: invalid input syntax for type integer: "…"')
    # Both of the chain, with their frames: where it went wrong is all there, what it read is not.
    assert "ValueError: [withheld]" in unforeseen and unforeseen.endswith("RuntimeError: [withheld]")
    assert "in score" in unforeseen and "int(answers[" in unforeseen
