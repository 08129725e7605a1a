"""gRPC API of the directory service."""

from __future__ import annotations

import grpc
from ach.directory.v1 import directory_pb2, directory_pb2_grpc
from ach_events.outbox import Outbox
from ach_platform.clock import to_timestamp, utc_now
from ach_platform.errors import FieldViolation, InvalidArgument, NotFound
from ach_platform.vocabulary import NEED_DOMAINS
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_directory import domain
from ach_directory.events import publish_service_changed
from ach_directory.store import ServiceRecord


def to_proto(r: ServiceRecord) -> directory_pb2.Service:
    return directory_pb2.Service(
        service_id=r.id,
        organization_id=r.organization_id,
        name=r.name,
        description=r.description,
        status=r.status,  # type: ignore[arg-type]
        need_domains=r.need_domains,
        languages=r.languages,
        capacity_available=r.capacity_available,
        capacity_maximum=r.capacity_maximum,
        updated_at=to_timestamp(r.updated_at),
    )


class DirectoryApi(directory_pb2_grpc.DirectoryServiceServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: Outbox) -> None:
        self._sessions = sessions
        self._outbox = outbox

    async def UpsertService(
        self, request: directory_pb2.UpsertServiceRequest, context: grpc.aio.ServicerContext
    ) -> directory_pb2.Service:
        s = request.service
        draft = domain.ServiceDraft(
            s.service_id,
            s.organization_id,
            s.name,
            tuple(s.need_domains),
            tuple(s.languages),
            s.capacity_available,
            s.capacity_maximum,
        )
        problems = domain.validate_service(draft)
        if problems:
            raise InvalidArgument(problems)
        async with self._sessions() as session, session.begin():
            record = await session.get(ServiceRecord, s.service_id)
            if record is None:
                record = ServiceRecord(
                    id=s.service_id,
                    organization_id=s.organization_id,
                    name=s.name,
                    status=0,
                    need_domains=[],
                    languages=[],
                    updated_at=utc_now(),
                )
            record.organization_id = s.organization_id
            record.name = s.name
            record.description = s.description
            record.status = s.status or directory_pb2.SERVICE_STATUS_ACTIVE
            record.need_domains = list(s.need_domains)
            record.languages = list(s.languages)
            record.capacity_available = s.capacity_available
            record.capacity_maximum = s.capacity_maximum
            record.version += 1
            record.updated_at = utc_now()
            session.add(record)
            result = to_proto(record)
            publish_service_changed(session, self._outbox, result, record.version)
        return result

    async def GetService(
        self, request: directory_pb2.GetServiceRequest, context: grpc.aio.ServicerContext
    ) -> directory_pb2.Service:
        if not request.service_id:
            raise InvalidArgument.of("service_id", "is required")
        async with self._sessions() as session:
            record = await session.get(ServiceRecord, request.service_id)
        if record is None:
            raise NotFound(f"service {request.service_id} not found")
        return to_proto(record)

    async def SearchServices(
        self, request: directory_pb2.SearchServicesRequest, context: grpc.aio.ServicerContext
    ) -> directory_pb2.SearchServicesResponse:
        problems: list[FieldViolation] = []
        if request.need_domain and request.need_domain not in NEED_DOMAINS:
            problems.append(
                FieldViolation("need_domain", f"{request.need_domain!r} is not a Gravity SDOH category")
            )
        if request.page_size < 0 or request.page_size > domain.MAX_PAGE_SIZE:
            problems.append(FieldViolation("page_size", f"must be between 0 and {domain.MAX_PAGE_SIZE}"))
        if request.page_token and not request.page_token.isdigit():
            problems.append(FieldViolation("page_token", "is not a token this API issued"))
        if problems:
            raise InvalidArgument(problems)
        size = request.page_size or 20
        offset = int(request.page_token or 0)
        async with self._sessions() as session:
            rows = (await session.exec(select(ServiceRecord).order_by(col(ServiceRecord.id)))).all()
        # A plain filter for now; indexed search (need, language, distance, hours)
        # comes with the full directory.
        hits = [
            r
            for r in rows
            if (not request.need_domain or request.need_domain in r.need_domains)
            and (not request.language or request.language in r.languages)
        ]
        page = hits[offset : offset + size]
        next_token = str(offset + size) if offset + size < len(hits) else ""
        return directory_pb2.SearchServicesResponse(
            services=[to_proto(r) for r in page], next_page_token=next_token
        )
