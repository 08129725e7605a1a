"""The referral gRPC API over a real TLS server and database (SQLite and PostgreSQL), with the
platform's authentication and access policy: status codes with details, and the state change and
its event committed together."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from ach.referrals.v1 import referrals_pb2, referrals_pb2_grpc
from ach_events.outbox import Outbox, OutboxEvent
from ach_events.resident_replica import ConsentReplica, ResidentLinkReplica
from ach_platform import migrations
from ach_platform.access import PartnerView
from ach_platform.auth import AuthSettings
from ach_platform.clock import as_utc
from ach_platform.database import create_engine, session_factory
from ach_platform.dev_pki import DevPki
from ach_platform.grpc_client import partner_aio_channel
from ach_platform.grpc_server import GrpcServer
from ach_referrals.api import ReferralApi
from ach_referrals.store import DirectoryServiceReplica, ReferralHistory, ReferralRecord
from ach_referrals.workflow import ReferralWorkflow
from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

MIGRATIONS = Path(__file__).resolve().parents[1] / "ach_referrals" / "migrations"


class Roster(dict[str, PartnerView]):
    """The registry replica as the service sees it: partners by id, and who holds a role."""

    def holding(self, role: str) -> set[str]:
        return {p.partner_id for p in self.values() if p.active and role in p.roles}


PARTNERS = Roster(
    {
        "clinic-1": PartnerView("clinic-1", "clinic", frozenset({"screener", "referral-source"}), True),
        "cbo-1": PartnerView("cbo-1", "cbo", frozenset({"referral-target"}), True),
        "cbo-2": PartnerView("cbo-2", "cbo", frozenset({"referral-target"}), True),
    }
)

Stub = Callable[[str], referrals_pb2_grpc.ReferralServiceStub]


@pytest.fixture
async def api(
    database_url: str, dev_pki: DevPki
) -> AsyncIterator[tuple[Stub, async_sessionmaker[AsyncSession]]]:
    await asyncio.to_thread(migrations.upgrade, MIGRATIONS, database_url)
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        session.add(
            ReferralRecord(
                id="ref-1",
                resident_id="res-1",
                need_domain="food-insecurity",
                source_partner_id="clinic-1",
                target_partner_id="cbo-1",
                status="requested",
                created_at=now,
                updated_at=now,
            )
        )
    servicer = ReferralApi(sessions, ReferralWorkflow(Outbox("/ach/referrals"), partners=lambda: PARTNERS))  # type: ignore[arg-type,return-value]

    async def parties(referral_id: str) -> set[str] | None:
        async with sessions() as session:
            r = await session.get(ReferralRecord, referral_id)
        return {r.source_partner_id, r.target_partner_id} if r else None

    auth = AuthSettings(
        server_cert=dev_pki.server_cert,
        server_key=dev_pki.server_key,
        client_ca=dev_pki.partners_ca_cert,
        jwks=dev_pki.jwks,
        issuer="https://ach.local/issuer",
        audience="ach-platform",
    )
    server = GrpcServer(
        0,
        [lambda s: referrals_pb2_grpc.add_ReferralServiceServicer_to_server(servicer, s)],
        ["ach.referrals.v1.ReferralService"],
        auth=auth,
        partners=PARTNERS,  # type: ignore[arg-type]
        resolvers={"referral": parties},
    )
    await server.start()
    channels: list[grpc.aio.Channel] = []

    def stub(partner: str) -> referrals_pb2_grpc.ReferralServiceStub:
        channel = partner_aio_channel(
            f"127.0.0.1:{server.bound_port}",
            dev_pki.ca_cert,
            cert=dev_pki.client_cert(partner),
            key=dev_pki.client_key(partner),
        )
        channels.append(channel)
        return referrals_pb2_grpc.ReferralServiceStub(channel)

    yield stub, sessions
    for channel in channels:
        await channel.close()
    await server.stop(1)
    await engine.dispose()


def update(
    status: referrals_pb2.ReferralStatus.ValueType,
    reason: str = "",
    outcome: referrals_pb2.ReferralOutcome.ValueType = referrals_pb2.REFERRAL_OUTCOME_UNSPECIFIED,
) -> referrals_pb2.UpdateReferralStatusRequest:
    return referrals_pb2.UpdateReferralStatusRequest(
        referral_id="ref-1", status=status, reason=reason, outcome=outcome
    )


async def rpc_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_status_codes_with_details(api: tuple[Stub, async_sessionmaker[AsyncSession]]) -> None:
    stub, sessions = api
    cbo, other_cbo = stub("cbo-1"), stub("cbo-2")
    missing = await rpc_error(
        cbo.GetReferral(referrals_pb2.GetReferralRequest(referral_id="nope"), timeout=5)
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND

    empty = await rpc_error(cbo.UpdateReferralStatus(referrals_pb2.UpdateReferralStatusRequest(), timeout=5))
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(empty)  # type: ignore[arg-type]
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    status.details[0].Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == ["referral_id", "status"]

    # A CBO asking for, or acting on, a referral addressed to another CBO.
    for call in (
        other_cbo.GetReferral(referrals_pb2.GetReferralRequest(referral_id="ref-1"), timeout=5),
        other_cbo.UpdateReferralStatus(update(referrals_pb2.REFERRAL_STATUS_ACCEPTED), timeout=5),
    ):
        assert (await rpc_error(call)).code() == grpc.StatusCode.PERMISSION_DENIED

    illegal = await rpc_error(
        cbo.UpdateReferralStatus(
            update(referrals_pb2.REFERRAL_STATUS_COMPLETED, outcome=referrals_pb2.REFERRAL_OUTCOME_NEED_MET),
            timeout=5,
        )
    )
    assert illegal.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "cannot move a referral from requested to completed" in (illegal.details() or "")

    source_accepting = await rpc_error(
        stub("clinic-1").UpdateReferralStatus(update(referrals_pb2.REFERRAL_STATUS_ACCEPTED), timeout=5)
    )
    assert source_accepting.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "only the referral's target may move it" in (source_accepting.details() or "")

    unknown = await rpc_error(cbo.UpdateReferralStatus(update(99, outcome=42), timeout=5))  # type: ignore[arg-type]
    assert unknown.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "99 is not a referral status; outcome: 42 is not a referral outcome" in (unknown.details() or "")

    no_reason = await rpc_error(
        cbo.UpdateReferralStatus(update(referrals_pb2.REFERRAL_STATUS_REJECTED), timeout=5)
    )
    assert no_reason.code() == grpc.StatusCode.INVALID_ARGUMENT

    async with sessions() as session:  # nothing changed by the refused calls
        referral = await session.get(ReferralRecord, "ref-1")
        assert referral is not None and referral.status == "requested"
        assert (await session.exec(select(OutboxEvent))).all() == []

    accepted = await cbo.UpdateReferralStatus(update(referrals_pb2.REFERRAL_STATUS_ACCEPTED), timeout=5)
    assert accepted.status == referrals_pb2.REFERRAL_STATUS_ACCEPTED
    async with sessions() as session:  # the change, its history and its event, committed together
        history = (await session.exec(select(ReferralHistory))).all()
        events = (await session.exec(select(OutboxEvent))).all()
    assert [(h.from_status, h.to_status, h.actor_partner_id) for h in history] == [
        ("requested", "accepted", "cbo-1")
    ]
    assert [e.event_type for e in events] == ["ach.referrals.v1.ReferralStatusChanged"] and events[
        0
    ].key == "ref-1"


slow_call_finished = asyncio.Event()


async def slow(_request: empty_pb2.Empty, _context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
    await asyncio.sleep(5)
    slow_call_finished.set()
    return empty_pb2.Empty()


async def test_deadline_is_honoured() -> None:
    generic = grpc.method_handlers_generic_handler(
        "test.Slow",
        {
            "Sleep": grpc.unary_unary_rpc_method_handler(
                slow,
                request_deserializer=empty_pb2.Empty.FromString,
                response_serializer=empty_pb2.Empty.SerializeToString,
            )
        },
    )
    server = GrpcServer(0, [lambda s: s.add_generic_rpc_handlers((generic,))], [])
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.bound_port}") as channel:
            sleep = channel.unary_unary(
                "/test.Slow/Sleep",
                request_serializer=empty_pb2.Empty.SerializeToString,
                response_deserializer=empty_pb2.Empty.FromString,
            )
            error = await rpc_error(sleep(empty_pb2.Empty(), timeout=0.3))
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await asyncio.sleep(0.2)
        assert not slow_call_finished.is_set(), "the handler kept running past the caller's deadline"
    finally:
        await server.stop(0)


def violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    status.details[0].Unpack(bad_request)
    return [(v.field, v.description) for v in bad_request.field_violations]


async def test_fhir_export_and_a_fhir_task_update(api: tuple[Stub, async_sessionmaker[AsyncSession]]) -> None:
    stub, sessions = api
    cbo, other_cbo = stub("cbo-1"), stub("cbo-2")
    exported = await cbo.ExportReferralFhir(
        referrals_pb2.ExportReferralFhirRequest(referral_id="ref-1"), timeout=5
    )
    bundle = json.loads(exported.json)
    task = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Task")
    assert (task["id"], task["status"], task["owner"]) == (
        "ref-1",
        "requested",
        {"reference": "Organization/cbo-1"},
    )

    # The CBO's system sends the Task back, accepted; then rejects without a reason (refused, by the
    # Task's own field name); a CBO not party to it is refused.
    task["status"] = "accepted"
    moved = await cbo.UpdateReferralFromFhirTask(
        referrals_pb2.UpdateReferralFromFhirTaskRequest(task_json=json.dumps(task)), timeout=5
    )
    assert moved.status == referrals_pb2.REFERRAL_STATUS_ACCEPTED
    task["status"] = "failed"
    refused = await rpc_error(
        cbo.UpdateReferralFromFhirTask(
            referrals_pb2.UpdateReferralFromFhirTaskRequest(task_json=json.dumps(task)), timeout=5
        )
    )
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(refused) == [("Task.statusReason", "a reason is required to move a referral to failed")]
    task["statusReason"] = {"text": "resident moved"}
    denied = await rpc_error(
        other_cbo.UpdateReferralFromFhirTask(
            referrals_pb2.UpdateReferralFromFhirTaskRequest(task_json=json.dumps(task)), timeout=5
        )
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    garbage = await rpc_error(
        cbo.UpdateReferralFromFhirTask(
            referrals_pb2.UpdateReferralFromFhirTaskRequest(task_json="[]"), timeout=5
        )
    )
    assert violations(garbage) == [("task_json", "is not a FHIR Task resource")]
    async with sessions() as session:
        referral = await session.get(ReferralRecord, "ref-1")
    assert referral is not None and referral.status == "accepted"


async def test_a_source_refers_directly_with_consent_or_informationally(
    api: tuple[Stub, async_sessionmaker[AsyncSession]],
) -> None:
    stub, sessions = api
    clinic = stub("clinic-1")
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        for service_id, org, languages in (("svc-a", "cbo-1", ["en"]), ("svc-b", "cbo-2", ["es"])):
            session.add(
                DirectoryServiceReplica(
                    service_id=service_id,
                    organization_id=org,
                    partner_id=org,
                    need_domains=["food-insecurity"],
                    languages=languages,
                    active=True,
                    capacity_available=3,
                    version=1,
                )
            )
        # res-9 consented to sharing with cbo-1 only.
        session.add(
            ConsentReplica(
                consent_id="c-9",
                resident_id="res-9",
                need_domains=[],
                partner_ids=["cbo-1"],
                status="active",
                given_at=now,
                version=1,
            )
        )
        session.add(ResidentLinkReplica(resident_id="res-9", partner_id="clinic-1", linked_at=now))

    def create(**fields: Any) -> Any:
        return clinic.CreateReferral(referrals_pb2.CreateReferralRequest(**fields), timeout=5)

    # Top match for a Spanish speaker is cbo-2's service, but consent covers cbo-1 only: cbo-1's.
    placed = await create(resident_id="res-9", need_domain="food-insecurity", language="es")
    assert (placed.target_service_id, placed.status, placed.source_partner_id) == (
        "svc-a",
        referrals_pb2.REFERRAL_STATUS_REQUESTED,
        "clinic-1",
    )
    # A resident the clinic does not have on its books is not the clinic's to refer.
    stranger = await rpc_error(create(resident_id="res-other", need_domain="food-insecurity"))
    assert stranger.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not on clinic-1's books" in (stranger.details() or "")
    # Naming cbo-2's service: no consent covers it.
    refused = await rpc_error(
        create(resident_id="res-9", need_domain="food-insecurity", target_service_id="svc-b")
    )
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Informational: the resident was given cbo-2's information; nothing is shared, nothing waits.
    told = await create(
        resident_id="res-9", need_domain="food-insecurity", target_service_id="svc-b", informational=True
    )
    assert (told.status, told.informational) == (referrals_pb2.REFERRAL_STATUS_COMPLETED, True)
    bad = await rpc_error(
        create(
            need_domain="groceries",
            target_service_id="svc-z",
            resident_zip="00000",
            resident_age=200,
            resident_available_at=Timestamp(seconds=int(time.time()) - 86400),
        )
    )
    assert violations(bad) == [
        ("resident_id", "is required"),
        ("need_domain", "'groceries' is not a Gravity SDOH category code"),
        ("resident_zip", "'00000' is not a US ZIP code"),
        ("resident_age", "must be between 0 and 130"),
        ("resident_available_at", "must not be in the past"),
    ]
    # What the source gives for matching stays with the referral (for re-routing), not in events.
    tomorrow = int(time.time()) + 86400
    located = await create(
        resident_id="res-9",
        need_domain="food-insecurity",
        resident_zip="95202",
        resident_age=40,
        resident_available_at=Timestamp(seconds=tomorrow),  # no hours published here: nobody left out
    )
    async with sessions() as session:
        kept = await session.get(ReferralRecord, located.referral_id)
        events = (await session.exec(select(OutboxEvent))).all()
    assert kept is not None and (kept.match_zip, kept.match_age) == ("95202", 40)
    assert kept.match_available_at is not None and as_utc(kept.match_available_at).timestamp() == tomorrow
    assert not any(b"95202" in e.payload for e in events)
    unknown = await rpc_error(
        create(resident_id="res-9", need_domain="food-insecurity", target_service_id="svc-z")
    )
    assert violations(unknown) == [
        ("target_service_id", "svc-z is not an active service for food-insecurity")
    ]
    async with sessions() as session:
        created = (
            await session.exec(
                select(OutboxEvent).where(OutboxEvent.event_type == "ach.referrals.v1.ReferralCreated")
            )
        ).all()
        referral = await session.get(ReferralRecord, told.referral_id)
    assert len(created) == 3
    assert referral is not None and referral.timer_due_at is None  # informational: no reminders


async def test_only_partners_receive_referrals_and_a_suspension_counts_at_once(
    api: tuple[Stub, async_sessionmaker[AsyncSession]], monkeypatch: pytest.MonkeyPatch
) -> None:
    stub, sessions = api
    clinic = stub("clinic-1")
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        for service_id, organization, partner, languages, room in (
            ("svc-211", "hsds-org-1", "", ["en", "es"], 9),  # a 2-1-1 entry: ranks first, is no partner's
            ("svc-p", "hsds-org-2", "cbo-1", ["en"], 1),  # an HSDS organization linked to cbo-1
            ("svc-q", "cbo-2", "cbo-2", ["en"], 0),
        ):
            session.add(
                DirectoryServiceReplica(
                    service_id=service_id,
                    organization_id=organization,
                    partner_id=partner,
                    name=f"Service {service_id}",
                    phone="209-555-0100",
                    need_domains=["food-insecurity"],
                    languages=languages,
                    active=True,
                    capacity_available=room,
                    version=1,
                )
            )
        session.add(
            ConsentReplica(
                consent_id="c-7",
                resident_id="res-7",
                need_domains=[],
                partner_ids=[],
                status="active",
                given_at=now,
                version=1,
            )
        )
        session.add(ResidentLinkReplica(resident_id="res-7", partner_id="clinic-1", linked_at=now))

    def create(**fields: Any) -> Any:
        return clinic.CreateReferral(
            referrals_pb2.CreateReferralRequest(resident_id="res-7", need_domain="food-insecurity", **fields),
            timeout=5,
        )

    placed = await create(language="es")
    assert (placed.target_partner_id, placed.target_service_id) == ("cbo-1", "svc-p")  # the partner, by id
    to_211 = await rpc_error(create(target_service_id="svc-211"))
    assert (
        violations(to_211)[0][0] == "target_service_id" and "no network partner" in violations(to_211)[0][1]
    )
    told = await create(target_service_id="svc-211", informational=True)
    assert (told.status, told.informational, told.target_partner_id, told.target_service_id) == (
        referrals_pb2.REFERRAL_STATUS_COMPLETED,
        True,
        "",
        "svc-211",
    )
    history = await clinic.GetReferralHistory(
        referrals_pb2.GetReferralHistoryRequest(referral_id=told.referral_id), timeout=5
    )
    assert [(c.to_status, c.changed_by.partner_id) for c in history.changes] == [
        (referrals_pb2.REFERRAL_STATUS_COMPLETED, "clinic-1")
    ]
    async with sessions() as session:
        events = (await session.exec(select(OutboxEvent).where(OutboxEvent.key == told.referral_id))).all()
    created = referrals_pb2.ReferralCreated.FromString(events[0].payload)
    assert (created.service_information.name, created.service_information.phone) == (
        "Service svc-211",
        "209-555-0100",
    )

    # The registry decides at the moment of routing: cbo-1 suspended, then cbo-2 loses its role.
    monkeypatch.setitem(PARTNERS, "cbo-1", PartnerView("cbo-1", "cbo", frozenset({"referral-target"}), False))
    assert (await create()).target_partner_id == "cbo-2"
    monkeypatch.setitem(PARTNERS, "cbo-2", PartnerView("cbo-2", "cbo", frozenset(), True))
    none_left = await rpc_error(create())
    assert none_left.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no network partner serves food-insecurity" in (none_left.details() or "")
