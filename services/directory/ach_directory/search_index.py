"""The candidates of a search, narrowed by the database's indexes (need domain, language, a box
around the point, status) before matching decides in full."""

from __future__ import annotations

from ach.directory.v1 import directory_pb2
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_directory.domain.search import Query, bounding_box
from ach_directory.store import ServiceLanguage, ServiceNeedDomain, ServicePoint, ServiceRecord


async def candidates(session: AsyncSession, q: Query) -> list[ServiceRecord]:
    statement = select(ServiceRecord)
    if not q.include_inactive:
        statement = statement.where(ServiceRecord.status == directory_pb2.SERVICE_STATUS_ACTIVE)
    if q.need_domain:
        statement = statement.where(
            col(ServiceRecord.id).in_(
                select(ServiceNeedDomain.service_id).where(ServiceNeedDomain.need_domain == q.need_domain)
            )
        )
    if q.language:
        statement = statement.where(
            col(ServiceRecord.id).in_(
                select(ServiceLanguage.service_id).where(
                    ServiceLanguage.language == q.language.split("-")[0].lower()
                )
            )
        )
    for word in q.words:  # every word, anywhere in the text (matching checks the same)
        statement = statement.where(col(ServiceRecord.search_text).contains(word, autoescape=True))
    if q.point is not None and q.radius_km > 0:
        low_lat, high_lat, low_lon, high_lon = bounding_box(q.point, q.radius_km)
        near = select(ServicePoint.service_id).where(
            col(ServicePoint.latitude).between(low_lat, high_lat),
            col(ServicePoint.longitude).between(low_lon, high_lon),
        )
        statement = statement.where(or_(col(ServiceRecord.id).in_(near), col(ServiceRecord.remote)))
    return list((await session.exec(statement)).all())
