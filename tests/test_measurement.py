"""The measurement service as a partner meets it: events from the network (real Kafka) become facts
(SQLite and PostgreSQL), and the scorecard API answers with exactly the figures the measures give
for those facts, small cells suppressed; replays count once and an event that cannot be placed is
dead-lettered naming the field."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from zoneinfo import ZoneInfo

import grpc
import pytest
from ach.measurement.v1 import measurement_pb2, measurement_pb2_grpc
from ach.screening.v1 import screening_pb2
from ach_events.envelope import Envelope
from ach_events.topics import namespaced
from ach_measurement.catalog import load_measures
from ach_measurement.domain.facts import assemble
from ach_measurement.domain.publication import publish
from ach_measurement.mappers import period_figures
from ach_measurement.synthetic import events_of, sample_facts
from aiokafka import AIOKafkaProducer
from google.protobuf.message import Message

from tests.harness import Stack, eventually
from tests.test_poison_messages import dead_letters

pytestmark = pytest.mark.slow

SOURCES = {
    "ach.screening.events.v1": "/ach/screening",
    "ach.screening.demographics.v1": "/ach/screening",
    "ach.referrals.events.v1": "/ach/referrals",
    "ach.notifications.events.v1": "/ach/notifications",
}


async def produce(bootstrap: str, events: list[tuple[str, str, Message]], twice: bool = False) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for topic, key, message in events:
            for _ in range(2 if twice else 1):
                # A replay is a new delivery of the same fact: a new event id, as a re-published outbox row.
                envelope = Envelope.wrap(message, source=SOURCES[topic], key=key)
                await producer.send(
                    namespaced(topic), envelope.payload, key=key.encode(), headers=envelope.headers()
                )
        await producer.flush()
    finally:
        await producer.stop()


# PostgreSQL only: fact storage on SQLite is exercised by the measurement unit tests and the
# walking skeleton, and this stack test is among the longest.
@pytest.mark.parametrize("backend", ["postgresql"])
def test_events_become_the_published_figures(
    make_stack: Callable[[str], Stack], kafka_bootstrap: str, backend: str
) -> None:
    facts = sample_facts(seed=3, screenings=600, months=3)  # 200 a month: enough for some groups to show
    events = events_of(facts)
    stack = make_stack(backend)
    stack.start("measurement")
    asyncio.run(produce(kafka_bootstrap, events[: len(events) // 2], twice=True))
    asyncio.run(produce(kafka_bootstrap, events[len(events) // 2 :]))
    unplaceable = screening_pb2.ScreeningCompleted(screening_id="no-time", resident_id="r")
    asyncio.run(produce(kafka_bootstrap, [("ach.screening.events.v1", "r", unplaceable)]))

    letters = asyncio.run(dead_letters(kafka_bootstrap, "measurement", 1))
    assert (
        letters[0]["ach_dlq_reason"]
        == b"rejected by handler: ScreeningCompleted without screened_at: it cannot be placed in a period"
    )

    facts_stored = len(facts.screenings) + len(facts.demographics) + len(facts.needs) + len(facts.referrals)
    facts_stored += len(facts.changes) + len(facts.reroutes) + len(facts.feedback)
    rows = "SELECT (SELECT COUNT(*) FROM screening_fact) + (SELECT COUNT(*) FROM screening_demographics_fact)"
    rows += " + (SELECT COUNT(*) FROM need_fact) + (SELECT COUNT(*) FROM referral_fact)"
    rows += " + (SELECT COUNT(*) FROM referral_change_fact) + (SELECT COUNT(*) FROM referral_reroute_fact)"
    rows += " + (SELECT COUNT(*) FROM resident_feedback_fact)"
    eventually(
        lambda: stack.query("measurement", rows)[0][0] == facts_stored or None, 90, "every fact stored once"
    )

    every = load_measures()
    measures = [m for m in every if not m.imported]  # population indicators are imported, not counted
    with stack.channel("measurement") as channel:
        api = measurement_pb2_grpc.MeasurementServiceStub(channel)
        listed = api.ListMeasures(measurement_pb2.ListMeasuresRequest(), timeout=10)
        assert [m.id for m in listed.measures] == [m.id for m in every]
        assert listed.measures[0].name.es

        def matching() -> dict[str, measurement_pb2.MeasureFigures] | None:
            """The service's answers once they equal the measures over the same facts, at its as_of."""
            answers = {
                m.id: api.GetMeasureFigures(
                    measurement_pb2.GetMeasureFiguresRequest(measure_id=m.id), timeout=30
                )
                for m in measures
            }
            as_of = answers["screenings"].as_of.ToDatetime().replace(tzinfo=ZoneInfo("UTC"))
            expected = publish(measures, assemble(facts), ZoneInfo("America/Los_Angeles"), as_of)
            for m in measures:
                if list(answers[m.id].periods) != [
                    period_figures(p) for p in expected.measures[m.id].periods
                ]:
                    return None
            return answers

        answers = eventually(matching, 60, "the service's figures equal the measures over the same facts")
        hidden = [
            f
            for a in answers.values()
            for p in a.periods
            for b in p.breakdowns
            for f in b.figures
            if f.status != measurement_pb2.CONFIDENTIALITY_STATUS_FREE
        ]
        assert hidden and all(not f.HasField("numerator") and not f.HasField("value") for f in hidden)
        shown = [
            f.numerator
            for a in answers.values()
            for p in a.periods
            for b in p.breakdowns
            for f in b.figures
            if f.HasField("numerator")
        ]
        assert shown and not any(0 < n <= 10 for n in shown)

        card = api.GetScorecard(
            measurement_pb2.GetScorecardRequest(measure_ids=["screenings", "referred-within-7-days"]),
            timeout=10,
        )
        assert [r.measure_id for r in card.rows] == ["screenings", "referred-within-7-days"]
        assert card.rows[1].name.es.startswith("Evaluaciones positivas")

        # Rebuilt from offset zero beside the live tables, then switched to: the same figures.
        service = stack.services["measurement"]
        rebuilt = subprocess.run(
            [sys.executable, "-m", "ach_measurement.main", "rebuild", "--quiet"],
            env=service.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
        assert (
            f"rebuilt from {2 * (len(events) // 2) + len(events) - len(events) // 2 + 1} events"
            in rebuilt.stdout
        )
        assert "1 unplaceable" in rebuilt.stdout
        assert stack.query("measurement", rows)[0][0] == facts_stored
        assert stack.query("measurement", "SELECT generation FROM projection_generation")[0][0] == 1
        answers = eventually(matching, 60, "the rebuilt figures equal the live ones")

        with pytest.raises(grpc.RpcError) as bad_period:
            api.GetScorecard(measurement_pb2.GetScorecardRequest(period="last week"), timeout=10)
        assert bad_period.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "period: is not a month" in (bad_period.value.details() or "")

        with pytest.raises(grpc.RpcError) as refused:
            api.GetMeasureFigures(
                measurement_pb2.GetMeasureFiguresRequest(measure_id="screenings", dimension="shoe"),
                timeout=10,
            )
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "dimension: is not a breakdown of screenings" in (refused.value.details() or "")
