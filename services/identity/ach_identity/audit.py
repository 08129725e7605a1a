"""The audit log: kept from every service's audit events, queried by ACH admins (gRPC) and exported
(ach-identity audit export). Append-only: nothing here updates or deletes a record."""

from __future__ import annotations

from datetime import datetime

import grpc
from ach.audit.v1 import audit_pb2, audit_pb2_grpc
from ach_events.envelope import Envelope
from ach_platform.clock import as_utc, from_timestamp, to_timestamp
from ach_platform.database import insert_once
from ach_platform.errors import FieldViolation, InvalidArgument
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_identity.store import AuditRecord

MAX_PAGE_SIZE = 1000


async def on_access_recorded(
    session: AsyncSession, _envelope: Envelope, event: audit_pb2.AccessRecorded
) -> None:
    at = from_timestamp(event.at)
    await insert_once(
        session,
        AuditRecord,
        {
            "id": event.record_id,
            "at": at or as_utc(datetime.min),
            "service": event.service,
            "method": event.method,
            "partner_id": event.partner_id,
            "user_id": event.user_id,
            "credential": event.credential,
            "purpose_of_use": event.purpose_of_use,
            "resources": dict(event.resources),
            "resident_id": event.resources.get("resident_id", ""),
            "outcome": event.outcome,
            "trace_id": event.trace_id,
        },
    )


def to_proto(r: AuditRecord) -> audit_pb2.AccessRecorded:
    return audit_pb2.AccessRecorded(
        record_id=r.id,
        at=to_timestamp(r.at),
        service=r.service,
        method=r.method,
        partner_id=r.partner_id,
        user_id=r.user_id,
        credential=r.credential,
        purpose_of_use=r.purpose_of_use,
        resources=r.resources,
        outcome=r.outcome,
        trace_id=r.trace_id,
    )


async def query(
    sessions: async_sessionmaker[AsyncSession], request: audit_pb2.QueryAccessRequest
) -> audit_pb2.QueryAccessResponse:
    problems: list[FieldViolation] = []
    if not 0 <= request.page_size <= MAX_PAGE_SIZE:
        problems.append(FieldViolation("page_size", f"must be between 0 and {MAX_PAGE_SIZE}"))
    if request.page_token and not request.page_token.isdigit():
        problems.append(FieldViolation("page_token", "is not a token this API issued"))
    if problems:
        raise InvalidArgument(problems)
    size, offset = request.page_size or 100, int(request.page_token or 0)
    statement = select(AuditRecord).order_by(col(AuditRecord.at), col(AuditRecord.id))
    if request.partner_id:
        statement = statement.where(AuditRecord.partner_id == request.partner_id)
    if request.resident_id:
        statement = statement.where(AuditRecord.resident_id == request.resident_id)
    if (since := from_timestamp(request.since)) is not None:
        statement = statement.where(col(AuditRecord.at) >= since)
    if (until := from_timestamp(request.until)) is not None:
        statement = statement.where(col(AuditRecord.at) < until)
    async with sessions() as session:
        rows = list((await session.exec(statement.offset(offset).limit(size + 1))).all())
    return audit_pb2.QueryAccessResponse(
        records=[to_proto(r) for r in rows[:size]],
        next_page_token=str(offset + size) if len(rows) > size else "",
    )


class AuditLogApi(audit_pb2_grpc.AuditLogServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def QueryAccess(
        self, request: audit_pb2.QueryAccessRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.QueryAccessResponse:
        return await query(self._sessions, request)
