"""gRPC API of the partner registry. Who may call what is the access policy's business."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import grpc
from ach.identity.v1 import identity_pb2, identity_pb2_grpc
from ach_events.outbox import Outbox
from ach_platform.clock import utc_now
from ach_platform.codes import code_of
from ach_platform.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, too_long
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_identity import domain
from ach_identity.publishers import publish_partner_changed, to_proto
from ach_identity.store import PartnerRecord

log = logging.getLogger(__name__)


def _codes(enum: object, values: Iterable[int], field: str, problems: list[FieldViolation]) -> list[str]:
    codes: list[str] = []
    for i, value in enumerate(values):
        try:
            codes.append(code_of(enum, value))
        except ValueError:
            problems.append(FieldViolation(f"{field}[{i}]", f"{value} is not a known value"))
    return codes


class PartnerRegistryApi(identity_pb2_grpc.PartnerRegistryServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: Outbox) -> None:
        self._sessions = sessions
        self._outbox = outbox

    async def RegisterPartner(
        self, request: identity_pb2.RegisterPartnerRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.Partner:
        problems: list[FieldViolation] = []
        type_code = (_codes(identity_pb2.PartnerType, [request.type], "type", problems) or [""])[0]
        roles = _codes(identity_pb2.PartnerRole, request.roles, "roles", problems)
        problems += domain.validate(
            domain.PartnerDraft(request.partner_id, request.name, type_code, tuple(roles))
        )
        if problems:
            raise InvalidArgument(problems)
        async with self._sessions() as session, session.begin():
            if await session.get(PartnerRecord, request.partner_id) is not None:
                raise FailedPrecondition(
                    f"partner {request.partner_id} is already registered",
                    violation_type="ALREADY_EXISTS",
                    subject=request.partner_id,
                )
            now = utc_now()
            record = PartnerRecord(
                id=request.partner_id,
                name=request.name.strip(),
                type=type_code,
                roles=roles,
                status="active",
                version=1,
                created_at=now,
                updated_at=now,
            )
            session.add(record)
            publish_partner_changed(session, self._outbox, record)
        return to_proto(record)

    async def UpdatePartner(
        self, request: identity_pb2.UpdatePartnerRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.Partner:
        problems: list[FieldViolation] = []
        roles = _codes(identity_pb2.PartnerRole, request.roles, "roles", problems)
        status = (_codes(identity_pb2.PartnerStatus, [request.status], "status", problems) or [""])[0]
        if problems:
            raise InvalidArgument(problems)
        async with self._sessions() as session, session.begin():
            record = await session.get(PartnerRecord, request.partner_id)
            if record is None:
                raise NotFound(f"partner {request.partner_id} not found")
            name = request.name.strip() or record.name
            problems = domain.validate(domain.PartnerDraft(record.id, name, record.type, tuple(roles)))
            if problems:
                raise InvalidArgument(problems)
            record.name, record.roles = name, roles
            record.status = status or record.status
            record.version += 1
            record.updated_at = utc_now()
            session.add(record)
            publish_partner_changed(session, self._outbox, record)
        return to_proto(record)

    async def RevokeCertificate(
        self, request: identity_pb2.RevokeCertificateRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.Partner:
        serial = domain.certificate_serial(request.serial_number)
        problems = (
            [] if serial else [FieldViolation("serial_number", "is a certificate serial in hexadecimal")]
        )
        problems += too_long((("reason", request.reason, 500),))
        if problems:
            raise InvalidArgument(problems)
        assert serial is not None
        async with self._sessions() as session, session.begin():
            record = await session.get(PartnerRecord, request.partner_id[:64])
            if record is None:
                raise NotFound(f"partner {request.partner_id[:64]} not found")
            if serial not in record.revoked_certificates:
                record.revoked_certificates = [*record.revoked_certificates, serial]
                record.version += 1
                record.updated_at = utc_now()
                session.add(record)
                publish_partner_changed(session, self._outbox, record)
        log.info("certificate %s of partner %s revoked", serial, record.id)
        return to_proto(record)

    async def GetPartner(
        self, request: identity_pb2.GetPartnerRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.Partner:
        async with self._sessions() as session:
            record = await session.get(PartnerRecord, request.partner_id)
        if record is None:
            raise NotFound(f"partner {request.partner_id} not found")
        return to_proto(record)

    async def ListPartners(
        self, request: identity_pb2.ListPartnersRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.ListPartnersResponse:
        async with self._sessions() as session:
            rows = (await session.exec(select(PartnerRecord).order_by(col(PartnerRecord.id)))).all()
        return identity_pb2.ListPartnersResponse(partners=[to_proto(r) for r in rows])
