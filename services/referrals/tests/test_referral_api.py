"""The referral gRPC API over a real server and database (SQLite and PostgreSQL): status codes with
details, and the state change and its event committed together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from ach.referrals.v1 import referrals_pb2, referrals_pb2_grpc
from ach_events.outbox import Outbox, OutboxEvent
from ach_platform import migrations
from ach_platform.database import create_engine, session_factory
from ach_platform.grpc_server import GrpcServer
from ach_referrals.api import ReferralApi
from ach_referrals.events import ReferralEvents
from ach_referrals.store import ReferralHistory, ReferralRecord
from google.protobuf import empty_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlmodel import select

MIGRATIONS = Path(__file__).resolve().parents[1] / "ach_referrals" / "migrations"
slow_call_finished = asyncio.Event()


async def slow(_request: empty_pb2.Empty, _context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
    await asyncio.sleep(5)
    slow_call_finished.set()
    return empty_pb2.Empty()


@pytest.fixture
async def api(
    database_url: str,
) -> AsyncIterator[tuple[referrals_pb2_grpc.ReferralServiceStub, grpc.aio.Channel, object]]:
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
    servicer = ReferralApi(sessions, ReferralEvents(Outbox("/ach/referrals")))
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

    def register(server: grpc.aio.Server) -> None:
        referrals_pb2_grpc.add_ReferralServiceServicer_to_server(servicer, server)
        server.add_generic_rpc_handlers((generic,))

    server = GrpcServer(0, [register], ["ach.referrals.v1.ReferralService"])
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.bound_port}")
    yield referrals_pb2_grpc.ReferralServiceStub(channel), channel, sessions
    await channel.close()
    await server.stop(1)
    await engine.dispose()


def update(
    status: referrals_pb2.ReferralStatus.ValueType,
    actor: str,
    reason: str = "",
    outcome: referrals_pb2.ReferralOutcome.ValueType = referrals_pb2.REFERRAL_OUTCOME_UNSPECIFIED,
) -> referrals_pb2.UpdateReferralStatusRequest:
    request = referrals_pb2.UpdateReferralStatusRequest(
        referral_id="ref-1", status=status, reason=reason, outcome=outcome
    )
    request.actor.partner_id = actor
    return request


async def rpc_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_status_codes_with_details(api: tuple) -> None:  # type: ignore[type-arg]
    stub, _, sessions = api
    missing = await rpc_error(
        stub.GetReferral(referrals_pb2.GetReferralRequest(referral_id="nope"), timeout=5)
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND

    empty = await rpc_error(stub.UpdateReferralStatus(referrals_pb2.UpdateReferralStatusRequest(), timeout=5))
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(empty)  # type: ignore[arg-type]
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    status.details[0].Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == ["referral_id", "actor.partner_id", "status"]

    other_cbo = await rpc_error(
        stub.UpdateReferralStatus(update(referrals_pb2.REFERRAL_STATUS_ACCEPTED, "cbo-2"), timeout=5)
    )
    assert other_cbo.code() == grpc.StatusCode.PERMISSION_DENIED

    illegal = await rpc_error(
        stub.UpdateReferralStatus(
            update(
                referrals_pb2.REFERRAL_STATUS_COMPLETED,
                "cbo-1",
                outcome=referrals_pb2.REFERRAL_OUTCOME_NEED_MET,
            ),
            timeout=5,
        )
    )
    assert illegal.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "cannot move a referral from requested to completed" in (illegal.details() or "")

    unknown = await rpc_error(stub.UpdateReferralStatus(update(99, "cbo-1", outcome=42), timeout=5))  # type: ignore[arg-type]
    assert unknown.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "99 is not a referral status; outcome: 42 is not a referral outcome" in (unknown.details() or "")

    no_reason = await rpc_error(
        stub.UpdateReferralStatus(update(referrals_pb2.REFERRAL_STATUS_REJECTED, "cbo-1"), timeout=5)
    )
    assert no_reason.code() == grpc.StatusCode.INVALID_ARGUMENT

    async with sessions() as session:  # nothing changed by the refused calls
        assert (await session.get(ReferralRecord, "ref-1")).status == "requested"
        assert (await session.exec(select(OutboxEvent))).all() == []

    accepted = await stub.UpdateReferralStatus(
        update(referrals_pb2.REFERRAL_STATUS_ACCEPTED, "cbo-1"), timeout=5
    )
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


async def test_deadline_is_honoured(api: tuple) -> None:  # type: ignore[type-arg]
    _, channel, _ = api
    sleep = channel.unary_unary(
        "/test.Slow/Sleep",
        request_serializer=empty_pb2.Empty.SerializeToString,
        response_deserializer=empty_pb2.Empty.FromString,
    )
    error = await rpc_error(sleep(empty_pb2.Empty(), timeout=0.3))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.sleep(0.2)
    assert not slow_call_finished.is_set(), "the handler kept running past the caller's deadline"
