"""gRPC API of the directory service."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import grpc
from ach.directory.v1 import directory_pb2, directory_pb2_grpc
from ach_events.outbox import Outbox
from ach_platform import zip_codes
from ach_platform.access import PartnerLookup
from ach_platform.auth import principal
from ach_platform.clock import from_timestamp, utc_now
from ach_platform.errors import FieldViolation, InvalidArgument, NotFound
from opentelemetry import metrics
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_directory import domain
from ach_directory.domain.search import (
    DEFAULT_PAGE_SIZE,
    Query,
    QueryInput,
    check_query,
    words_of,
)
from ach_directory.hsds_objects import hsds_object
from ach_directory.mappers import to_proto
from ach_directory.partner_links import link_organization
from ach_directory.projection import SUMMARY_FORMAT, index
from ach_directory.publishers import publish_service_changed
from ach_directory.search_index import search
from ach_directory.store import ServiceRecord, services_with_claims

log = logging.getLogger(__name__)
claims_counter = metrics.get_meter("ach_directory.api").create_counter(
    "ach_directory_need_domain_claims",
    unit="{claim}",
    description="Need domains partners claimed for their services, awaiting the ACH admin's review",
)


def note_claims(service_id: str, claimed: list[str]) -> None:
    """The change log the ACH admin reviews (ListNeedDomainClaims): counted and logged."""
    claims_counter.add(len(claimed))
    log.info("service %s claims need domains %s: awaiting review", service_id, ",".join(claimed))


class DirectoryApi(directory_pb2_grpc.DirectoryServiceServicer):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        partners: Callable[[], PartnerLookup | None] = lambda: None,
    ) -> None:
        claims_counter.add(0)  # the series from the start: the dashboard shows 0, not "no data"
        self._sessions = sessions
        self._outbox = outbox
        self._partners = partners  # the partner registry's replica (once the service started)

    async def LinkOrganization(
        self, request: directory_pb2.LinkOrganizationRequest, context: grpc.aio.ServicerContext
    ) -> directory_pb2.LinkOrganizationResponse:
        problems: list[FieldViolation] = []
        if not request.organization_id:
            problems.append(FieldViolation("organization_id", "is required"))
        elif len(request.organization_id) > 100:
            problems.append(FieldViolation("organization_id", "is longer than 100 characters"))
        registry = self._partners()
        if request.partner_id and (registry is None or registry.get(request.partner_id) is None):
            problems.append(
                FieldViolation("partner_id", f"{request.partner_id[:100]!r} is not a registered partner")
            )
        if problems:
            raise InvalidArgument(problems)
        async with self._sessions() as session, session.begin():
            changed = await link_organization(
                session, self._outbox, request.organization_id, request.partner_id
            )
            if changed is None:
                raise NotFound(f"organization {request.organization_id} not found")
        return directory_pb2.LinkOrganizationResponse(
            organization_id=request.organization_id, partner_id=request.partner_id, services_changed=changed
        )

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
        problems = domain.validate_service(draft, s.description)
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
            registry = self._partners()
            editor = registry.get(principal().partner_id) if registry is not None else None
            record.need_domains, record.claimed_need_domains = domain.claim_need_domains(
                list(s.need_domains),
                record.need_domains,
                record.claimed_need_domains,
                trusted=editor is not None and "directory-editor" in editor.roles,
            )
            if record.claimed_need_domains:
                note_claims(s.service_id, record.claimed_need_domains)
            record.languages = list(s.languages)
            record.capacity_available = s.capacity_available
            record.capacity_maximum = s.capacity_maximum
            record.version += 1
            record.updated_at = utc_now()
            record.search_text = " ".join(words_of(f"{s.name} {s.description}"))
            record.source = "api"
            # A service kept through the API is the service of the partner named as its organization.
            record.partner_id = s.organization_id
            record.summary_format = SUMMARY_FORMAT
            session.add(record)
            result = (await index(session, [record]))[record.id]
            publish_service_changed(session, self._outbox, result, record.version)
        return result

    async def ListNeedDomainClaims(
        self, request: directory_pb2.ListNeedDomainClaimsRequest, context: grpc.aio.ServicerContext
    ) -> directory_pb2.ListNeedDomainClaimsResponse:
        async with self._sessions() as session:
            claimed = await services_with_claims(session)
        return directory_pb2.ListNeedDomainClaimsResponse(services=[to_proto(r) for r in claimed])

    async def ReviewNeedDomains(
        self, request: directory_pb2.ReviewNeedDomainsRequest, context: grpc.aio.ServicerContext
    ) -> directory_pb2.Service:
        if not request.service_id:
            raise InvalidArgument.of("service_id", "is required")
        async with self._sessions() as session, session.begin():
            record = await session.get(ServiceRecord, request.service_id[:100])
            if record is None:
                raise NotFound(f"service {request.service_id[:100]} not found")
            problems = domain.check_review(
                list(request.approve), list(request.reject), record.claimed_need_domains
            )
            if problems:
                raise InvalidArgument(problems)
            record.need_domains = list(dict.fromkeys([*record.need_domains, *request.approve]))
            decided = {*request.approve, *request.reject}
            record.claimed_need_domains = [d for d in record.claimed_need_domains if d not in decided]
            record.version += 1
            record.updated_at = utc_now()
            session.add(record)
            result = (await index(session, [record]))[record.id]
            if request.approve:  # only then does routing change
                publish_service_changed(session, self._outbox, result, record.version)
        log.info(
            "need domains reviewed for service %s: approved %s, rejected %s",
            record.id,
            ",".join(request.approve) or "-",
            ",".join(request.reject) or "-",
        )
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
        given = QueryInput(
            need_domain=request.need_domain,
            language=request.language,
            page_size=request.page_size,
            page_token=request.page_token,
            text=request.text,
            latitude=request.near.latitude if request.HasField("near") else None,
            longitude=request.near.longitude if request.HasField("near") else None,
            near_zip=request.near_zip,
            radius_km=request.radius_km,
            resident_age=request.resident_age,
            resident_zip=request.resident_zip,
        )
        problems = check_query(given, zip_codes.known)
        if problems:
            raise InvalidArgument(problems)
        point = (
            (request.near.latitude, request.near.longitude)
            if request.HasField("near")
            else zip_codes.centroid(request.near_zip)
            if request.near_zip
            else None
        )
        query = Query(
            need_domain=request.need_domain,
            taxonomy_term_id=request.taxonomy_term_id,
            words=words_of(request.text),
            language=request.language,
            point=point,
            radius_km=request.radius_km,
            open_at=from_timestamp(request.open_at) if request.HasField("open_at") else None,
            resident_age=request.resident_age,
            resident_zip=request.resident_zip,
            with_capacity=request.with_capacity,
            include_inactive=request.include_inactive,
            near_zip=request.near_zip,
            resident_point=zip_codes.centroid(request.resident_zip) if request.resident_zip else None,
        )
        size = request.page_size or DEFAULT_PAGE_SIZE
        offset = int(request.page_token or 0)
        async with self._sessions() as session:
            found = await search(session, query, offset, size)
        page, total, by_id = found.page, found.total, found.services
        return directory_pb2.SearchServicesResponse(
            results=[
                directory_pb2.SearchResult(
                    service=by_id[m.candidate.service_id],
                    distance_km=round(m.distance_km, 3) if m.distance_km is not None else 0.0,
                    location_id=m.location_id,
                    reasons=m.reasons,
                    score=m.score,
                )
                for m in page
            ],
            next_page_token=str(offset + size) if offset + size < total else "",
            total=total,
        )

    async def GetOrganization(
        self, request: directory_pb2.GetRecordRequest, context: grpc.aio.ServicerContext
    ) -> directory_pb2.HsdsRecord:
        return await self._record("organization", request.id)

    async def GetLocation(
        self, request: directory_pb2.GetRecordRequest, context: grpc.aio.ServicerContext
    ) -> directory_pb2.HsdsRecord:
        return await self._record("location", request.id)

    async def _record(self, entity: str, record_id: str) -> directory_pb2.HsdsRecord:
        if not record_id:
            raise InvalidArgument.of("id", "is required")
        async with self._sessions() as session:
            found = await hsds_object(session, entity, record_id)
        if found is None:
            raise NotFound(f"{entity} {record_id} not found")
        return directory_pb2.HsdsRecord(id=record_id, hsds_json=json.dumps(found, ensure_ascii=False))
