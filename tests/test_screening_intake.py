"""Screening intake end to end, against the running services and the real broker: three ways in
(gRPC, a partner system's topic through the partner SDK over SASL_SSL, a FHIR QuestionnaireResponse)
make identical events; bad input is refused with every problem at once on each way in, nothing
stored or emitted (on the partner topic: a dead letter with the reasons and a rejection event to the
partner); re-screening resolves needs; demographics go only to their own topic."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from ach.common.v1 import common_pb2
from ach.partners.v1 import partners_pb2
from ach.screening.v1 import screening_pb2, screening_pb2_grpc
from ach_events.envelope import Envelope
from ach_events.partner_topics import provision_partner
from ach_events.topics import SCREENING_DEMOGRAPHICS, SCREENING_EVENTS, dead_letter_topic
from ach_partner_sdk import PartnerClient
from aiokafka import AIOKafkaConsumer
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.harness import Stack, eventually

pytestmark = pytest.mark.slow

ANSWERS = {  # housing-instability, food-insecurity, utility-insecurity; the last safety item declined
    "71802-3": "LA31994-9",
    "96778-6": "LA9-3",
    "88122-7": "LA6729-3",
    "88123-5": "LA28398-8",
    "93030-5": "LA32-8",
    "96779-4": "LA32002-0",
    "95618-5": "LA6270-8",
    "95617-7": "LA6270-8",
    "95616-9": "LA6270-8",
}
SCREENED_AT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def timestamp(at: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(at)
    return ts


def grpc_submission(
    resident: str, screening_id: str, partner: str = "clinic-1"
) -> screening_pb2.SubmitScreeningRequest:
    return screening_pb2.SubmitScreeningRequest(
        submitter_screening_id=screening_id,
        resident_id=resident,
        instrument_id="ahc-hrsn-core",
        instrument_version="1",
        answers=[screening_pb2.Answer(question_code=q, answer_codes=[a]) for q, a in ANSWERS.items()]
        + [screening_pb2.Answer(question_code="95615-1", declined=True)],
        screened_at=timestamp(SCREENED_AT),
        site_id="south-stockton-clinic",
        language="es",
        screened_by=common_pb2.Actor(partner_id=partner, user_id="chw-7"),
    )


def fhir_response(screening_id: str) -> str:
    items: list[dict[str, Any]] = [
        {"linkId": f"/96777-8/{q}", "answer": [{"valueCoding": {"system": "http://loinc.org", "code": a}}]}
        for q, a in ANSWERS.items()
    ]
    items.append(
        {
            "linkId": "/96777-8/95615-1",
            "answer": [
                {
                    "extension": [
                        {
                            "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                            "valueCode": "asked-declined",
                        }
                    ]
                }
            ],
        }
    )
    return json.dumps(
        {
            "resourceType": "QuestionnaireResponse",
            "id": screening_id,
            "questionnaire": "http://loinc.org/q/96777-8",
            "status": "completed",
            "language": "es",
            "authored": SCREENED_AT.isoformat(),
            "item": [{"linkId": "/96777-8", "item": items}],
        }
    )


async def _read(
    bootstrap: str, topic: str, want: Callable[[list[Envelope]], bool], timeout_s: float
) -> list[Envelope]:
    reader = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await reader.start()
    found: list[Envelope] = []
    try:
        async with asyncio.timeout(timeout_s):
            while not want(found):
                for records in (await reader.getmany(timeout_ms=500)).values():
                    found += [Envelope.from_record(r.key, r.value, r.headers) for r in records]
    finally:
        await reader.stop()
    return found


def events_about(
    bootstrap: str, topic: str, subjects: set[str], n: int, timeout_s: float = 60
) -> list[Envelope]:
    """At least ``n`` events whose subject is one of ``subjects``."""
    found = asyncio.run(
        _read(bootstrap, topic, lambda got: sum(e.subject in subjects for e in got) >= n, timeout_s)
    )
    return [e for e in found if e.subject in subjects]


def comparable(envelope: Envelope) -> tuple[str, str, str, str]:
    """An event with what differs by nature between two screenings (their ids) blanked out."""
    message: Message = envelope.message()
    for name in ("screening_id", "need_id"):
        if hasattr(message, name):
            setattr(message, name, "")
    return envelope.type, envelope.key, envelope.source, str(message)


def violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return [(v.field, v.description) for v in bad.field_violations]


def test_three_ways_in_make_identical_events(
    make_stack: Callable[[str], Stack], kafka_bootstrap: str, sasl_bootstrap: tuple[str, str]
) -> None:
    bootstrap, cafile = sasl_bootstrap
    password = uuid.uuid4().hex
    provision_partner(kafka_bootstrap, "clinic-1", password)  # before the gateway subscribes
    stack = make_stack("sqlite")
    stack.start("screening")
    resident = stack.consenting_resident("clinic-1")

    ids = {way: f"{way}-{uuid.uuid4().hex[:8]}" for way in ("grpc", "partner", "fhir")}
    with stack.channel("screening", "clinic-1") as channel:
        screening = screening_pb2_grpc.ScreeningServiceStub(channel)
        by_grpc = screening.SubmitScreening(grpc_submission(resident, ids["grpc"]), timeout=10)
        by_fhir = screening.ImportQuestionnaireResponse(
            screening_pb2.ImportQuestionnaireResponseRequest(
                questionnaire_response_json=fhir_response(ids["fhir"]),
                resident_id=resident,
                site_id="south-stockton-clinic",
                screened_by=common_pb2.Actor(partner_id="clinic-1", user_id="chw-7"),
            ),
            timeout=10,
        )
        # The same FHIR resource again: the same screening, nothing new.
        again = screening.ImportQuestionnaireResponse(
            screening_pb2.ImportQuestionnaireResponseRequest(
                questionnaire_response_json=fhir_response(ids["fhir"]),
                resident_id=resident,
                screened_by=common_pb2.Actor(partner_id="clinic-1"),
            ),
            timeout=10,
        )
        assert again.duplicate and again.screening_id == by_fhir.screening_id

    with PartnerClient(
        "clinic-1", bootstrap, password=password, cafile=cafile, namespace=stack.namespace
    ) as partner:
        partner.submit_screening(grpc_submission(resident, ids["partner"], partner="someone-else"))
        reply = next(r for r in partner.replies(timeout_s=60) if r.key == ids["partner"])
    assert reply.type == "ach.partners.v1.ScreeningAccepted"
    accepted = reply.message
    assert isinstance(accepted, partners_pb2.ScreeningAccepted)
    by_partner = accepted.screening_id
    # The partner gave the answers, so its acknowledgement carries their codes.
    assert {
        f.need_domain: [(e.question_code, list(e.answer_codes)) for e in f.evidence]
        for f in accepted.findings
    } == {
        "housing-instability": [("71802-3", ["LA31994-9"])],
        "food-insecurity": [("88122-7", ["LA6729-3"])],
        "utility-insecurity": [("96779-4", ["LA32002-0"])],
    }

    screenings = {by_grpc.screening_id, by_fhir.screening_id, by_partner}
    assert len(screenings) == 3
    # One ScreeningCompleted and three NeedIdentified per screening.
    found = events_about(kafka_bootstrap, SCREENING_EVENTS.physical_name, screenings, 12)
    by_screening: dict[str, list[tuple[str, str, str, str]]] = {s: [] for s in screenings}
    for envelope in found:
        by_screening[envelope.subject].append(comparable(envelope))
    first, *others = (sorted(events) for events in by_screening.values())
    assert len(first) == 4 and all(other == first for other in others)
    completed = next(e.message() for e in found if e.type == "ach.screening.v1.ScreeningCompleted")
    assert isinstance(completed, screening_pb2.ScreeningCompleted)
    assert list(completed.positive_domains) == [
        "housing-instability",
        "food-insecurity",
        "utility-insecurity",
    ]
    assert completed.consent_id and completed.screened_by.user_id == "chw-7"
    assert all(not f.evidence for f in completed.findings)  # no answers on the shared topic
    assert "intimate-partner-violence" not in completed.negative_domains  # a declined item: unknown

    # The submitter reads its screening back with the answers; each way in stored the same.
    with stack.channel("screening", "clinic-1") as channel:
        screening = screening_pb2_grpc.ScreeningServiceStub(channel)
        read = [
            screening.GetScreening(screening_pb2.GetScreeningRequest(screening_id=s), timeout=5)
            for s in screenings
        ]
    assert len({tuple(sorted(str(a) for a in r.answers)) for r in read}) == 1
    assert all(r.language == "es" and r.site_id == "south-stockton-clinic" for r in read)
    assert stack.stop_all() == {"identity": 0, "screening": 0}

    # The answers (PHI) reached no log line and no span, whichever way they came in.
    traces = json.dumps(stack.spans())
    logs = "".join(service.log_path.read_text(errors="replace") for service in stack.services.values())
    leaked = [code for code in set(ANSWERS.values()) - {"LA9-3", "LA32-8"} if code in traces or code in logs]
    assert leaked == [] and traces != "[]"


def test_bad_screenings_are_refused_on_every_way_in_with_every_problem(
    make_stack: Callable[[str], Stack], kafka_bootstrap: str, sasl_bootstrap: tuple[str, str]
) -> None:
    bootstrap, cafile = sasl_bootstrap
    password = uuid.uuid4().hex
    provision_partner(kafka_bootstrap, "clinic-2", password)
    stack = make_stack("postgresql")
    stack.start("screening")
    theirs = stack.resident("clinic-1")  # on clinic-1's books, not clinic-2's

    bad = grpc_submission(theirs, "bad-1", partner="clinic-2")
    bad.instrument_version = "1"
    bad.screened_at.CopyFrom(timestamp(datetime.now(UTC) + timedelta(days=1)))
    del bad.answers[0]  # living situation missing
    bad.answers[1].answer_codes.append("LA28397-0")  # a second answer on a single-select question
    bad.answers[2].answer_codes[:] = ["LA0000-0"]  # not an answer to the question
    expected = [
        (
            "resident_id",
            "is not a resident this partner has registered with the resident index (register first)",
        ),
        ("screened_at", "is in the future"),
        ("answers[1].answer_codes", "88122-7 takes one answer, got 2"),
        ("answers[2].answer_codes", "'LA0000-0' is not an answer to 88123-5"),
        ("answers", "required question 71802-3 is not answered or declined"),
    ]
    with stack.channel("screening", "clinic-2") as channel:
        screening = screening_pb2_grpc.ScreeningServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            screening.SubmitScreening(bad, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert violations(refused.value) == expected

        unknown = grpc_submission(theirs, "bad-2", partner="clinic-2")
        unknown.instrument_version = "2017"
        unknown.consent_id = str(uuid.uuid4())
        with pytest.raises(grpc.RpcError) as refused:
            screening.SubmitScreening(unknown, timeout=10)
        assert {
            ("instrument_version", "unknown version '2017' of ahc-hrsn-core (known: 1)"),
            ("consent_id", "is not a consent of this resident"),
        } <= set(violations(refused.value))

        resource = json.loads(fhir_response("bad-3"))
        resource["item"][0]["item"][1]["answer"].append({"valueCoding": {"code": "LA31996-4"}})
        resource["item"][0]["item"][3]["answer"] = [{"valueCoding": {"code": "LA33-6"}}]
        with pytest.raises(grpc.RpcError) as refused:
            screening.ImportQuestionnaireResponse(
                screening_pb2.ImportQuestionnaireResponseRequest(
                    questionnaire_response_json=json.dumps(resource),
                    resident_id=theirs,
                    screened_by=common_pb2.Actor(partner_id="clinic-2"),
                ),
                timeout=10,
            )
        assert violations(refused.value) == [
            ("resident_id", expected[0][1]),
            (
                "questionnaire_response_json.item[0].item[1].answer",
                "LA9-3 (None of the above) cannot be combined",
            ),
            ("questionnaire_response_json.item[0].item[3].answer", "'LA33-6' is not an answer to 88123-5"),
        ]

    with PartnerClient(
        "clinic-2", bootstrap, password=password, cafile=cafile, namespace=stack.namespace
    ) as partner:
        partner.submit_screening(bad)
        reply = next(r for r in partner.replies(timeout_s=60) if r.key == "bad-1")
    assert reply.type == "ach.partners.v1.ScreeningRejected"
    rejected = reply.message
    assert isinstance(rejected, partners_pb2.ScreeningRejected)
    assert [(v.field, v.description) for v in rejected.violations] == expected
    letters = asyncio.run(
        _read(kafka_bootstrap, dead_letter_topic("screening").physical_name, lambda got: len(got) >= 1, 30)
    )
    assert [e.type for e in letters] == ["ach.partners.v1.ScreeningSubmitted"]

    # Nothing stored, nothing emitted but the audit records and the partner's rejection.
    assert stack.count_rows("screening", "SELECT count(*) FROM screening") == 0
    emitted = (
        "SELECT count(*) FROM outbox_event WHERE topic NOT LIKE '%audit%' AND topic NOT LIKE '%partners%'"
    )
    assert stack.count_rows("screening", emitted) == 0
    assert stack.stop_all() == {"identity": 0, "screening": 0}


def test_rescreening_resolves_needs_and_demographics_stay_apart(
    make_stack: Callable[[str], Stack], kafka_bootstrap: str
) -> None:
    stack = make_stack("sqlite")
    stack.start("screening", "measurement")
    resident = stack.resident("clinic-1")
    first = grpc_submission(resident, "visit-1")
    first.screened_at.CopyFrom(timestamp(SCREENED_AT - timedelta(days=90)))
    first.demographics.CopyFrom(
        screening_pb2.Demographics(
            race_codes=["2054-5"], ethnicity_code="2186-5", age_band="35-44", zip="95206"
        )
    )
    later = grpc_submission(resident, "visit-2")
    for answer in later.answers:
        if answer.question_code == "88122-7":
            answer.answer_codes[:] = ["LA28398-8"]  # food: never true now
        if answer.question_code == "71802-3":
            answer.ClearField("answer_codes")
            answer.declined = True  # housing: not answered this time
    with stack.channel("screening", "clinic-1") as channel:
        screening = screening_pb2_grpc.ScreeningServiceStub(channel)
        one = screening.SubmitScreening(first, timeout=10)
        screening.SubmitScreening(later, timeout=10)
        history = screening.ListResidentScreenings(
            screening_pb2.ListResidentScreeningsRequest(resident_id=resident), timeout=5
        )
        spanish = screening.ListInstruments(screening_pb2.ListInstrumentsRequest(language="es"), timeout=5)
    assert [s.submitter_screening_id for s in history.screenings] == ["visit-1", "visit-2"]
    assert all(not s.answers for s in history.screenings)  # the history is no way around the answers
    states = {n.need_domain: n.state for n in history.needs}
    assert states == {
        "food-insecurity": screening_pb2.NEED_STATE_RESOLVED,  # negative on both food items now
        "housing-instability": screening_pb2.NEED_STATE_ACTIVE,  # declined: not resolved
        "utility-insecurity": screening_pb2.NEED_STATE_ACTIVE,
    }
    ahc = next(i for i in spanish.instruments if i.instrument_id == "ahc-hrsn-core")
    assert ahc.language == "es" and ahc.questions[0].text == "¿Cuál es su situación de vivienda hoy en día?"

    # Another clinic, without the resident on its books, sees none of it.
    with stack.channel("screening", "clinic-2") as channel:
        with pytest.raises(grpc.RpcError) as denied:
            screening_pb2_grpc.ScreeningServiceStub(channel).ListResidentScreenings(
                screening_pb2.ListResidentScreeningsRequest(resident_id=resident), timeout=5
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]

    # Demographics: on their own topic (measurement's), never with the screening events.
    (recorded,) = events_about(kafka_bootstrap, SCREENING_DEMOGRAPHICS.physical_name, {one.screening_id}, 1)
    message = recorded.message()
    assert isinstance(message, screening_pb2.ScreeningDemographicsRecorded)
    assert list(message.demographics.race_codes) == ["2054-5"] and message.demographics.zip == "95206"
    shared = events_about(kafka_bootstrap, SCREENING_EVENTS.physical_name, {one.screening_id}, 4)
    assert all("95206" not in str(e.message()) and "2054-5" not in str(e.message()) for e in shared)
    assert stack.count_rows("screening", "SELECT count(*) FROM screening_demographics") == 1
    eventually(
        lambda: stack.count_rows("measurement", "SELECT count(*) FROM screening_demographics_fact") == 1,
        what="the demographics in measurement",
    )
    assert stack.stop_all() == {"identity": 0, "screening": 0, "measurement": 0}


def test_concurrent_submissions_commit_together_and_each_keeps_its_own_outcome_and_trace(
    make_stack: Callable[[str], Stack], kafka_bootstrap: str
) -> None:
    """The group commit: submissions arriving together share a transaction, yet each caller gets its
    own answer (a screening, a duplicate's first result, or its own problems), nothing of a refused
    one is stored, and each screening's events carry its submitter's trace, not the batch's."""
    stack = make_stack("postgresql")
    stack.start("screening")
    residents = [stack.resident("clinic-1") for _ in range(3)]
    calls: list[tuple[str, screening_pb2.SubmitScreeningRequest]] = []
    for i in range(24):
        calls.append(("valid", grpc_submission(residents[i % 3], f"visit-{i}")))
    for _ in range(6):  # one screening sent six times at once: stored once, the same answer to all
        calls.append(("copy", grpc_submission(residents[0], "sent-six-times")))
    for i in range(6):
        bad = grpc_submission(residents[i % 3], f"bad-{i}")
        bad.answers[0].answer_codes[:] = ["LA-not-a-code"]
        calls.append(("bad", bad))
    trace_ids = [uuid.uuid4().hex for _ in calls]
    with stack.channel("screening", "clinic-1") as channel:
        screening = screening_pb2_grpc.ScreeningServiceStub(channel)
        futures = [
            screening.SubmitScreening.future(
                request, timeout=30, metadata=[("traceparent", f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01")]
            )
            for (_, request), trace_id in zip(calls, trace_ids, strict=True)
        ]
        outcomes: list[screening_pb2.SubmitScreeningResponse | grpc.RpcError] = []
        for future in futures:
            try:
                outcomes.append(future.result())
            except grpc.RpcError as error:
                outcomes.append(error)

    valid = [o for (kind, _), o in zip(calls, outcomes, strict=True) if kind == "valid"]
    assert all(isinstance(o, screening_pb2.SubmitScreeningResponse) and not o.duplicate for o in valid)
    copies = [o for (kind, _), o in zip(calls, outcomes, strict=True) if kind == "copy"]
    assert all(isinstance(o, screening_pb2.SubmitScreeningResponse) for o in copies)
    assert len({o.screening_id for o in copies}) == 1  # type: ignore[union-attr]
    assert sorted(o.duplicate for o in copies) == [False] + [True] * 5  # type: ignore[union-attr]
    for (kind, _), outcome in zip(calls, outcomes, strict=True):
        if kind == "bad":
            assert isinstance(outcome, grpc.RpcError)
            assert outcome.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
            assert violations(outcome) == [
                ("answers[0].answer_codes", "'LA-not-a-code' is not an answer to 71802-3")
            ]
    assert stack.count_rows("screening", "SELECT count(*) FROM screening") == 25
    assert (
        stack.count_rows(
            "screening", "SELECT count(*) FROM screening WHERE submitter_screening_id LIKE 'bad-%'"
        )
        == 0
    )

    # Every stored screening's ScreeningCompleted once, in its own submitter's trace.
    stored = {
        o.screening_id: t
        for o, t in zip(outcomes, trace_ids, strict=True)
        if isinstance(o, screening_pb2.SubmitScreeningResponse) and not o.duplicate
    }
    assert len(stored) == 25
    found = events_about(kafka_bootstrap, SCREENING_EVENTS.physical_name, set(stored), 25 * 4)
    completed = [e for e in found if e.type == "ach.screening.v1.ScreeningCompleted"]
    assert sorted(e.subject for e in completed) == sorted(stored)
    assert all(e.trace_headers["traceparent"].split("-")[1] == stored[e.subject] for e in completed)

    # They were written in shared transactions (the batch span links its callers' spans).
    assert stack.stop_all() == {"identity": 0, "screening": 0}
    batches = [s for s in stack.spans() if s["name"] == "screening intake batch"]
    assert sum(s["attributes"]["ach.screening.batch_size"] for s in batches) == len(calls)
    assert max(s["attributes"]["ach.screening.batch_size"] for s in batches) > 1
