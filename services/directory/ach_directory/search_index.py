"""The candidates of a search, narrowed by the database's indexes before matching decides in full:
with a point and a radius, the services with a place in the box around it (the most selective
filter: a few hundred of 100,000) plus the remote ones, then the need domain and language checked
per candidate through their primary keys; without, the need domain and language indexes."""

from __future__ import annotations

from ach.directory.v1 import directory_pb2
from sqlmodel import col, select, union
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_directory.domain.search import Query, bounding_box
from ach_directory.store import ServiceLanguage, ServiceNeedDomain, ServicePoint, ServiceRecord


async def candidates(session: AsyncSession, q: Query) -> list[ServiceRecord]:
    statement = select(ServiceRecord)
    if q.point is not None and q.radius_km > 0:
        low_lat, high_lat, low_lon, high_lon = bounding_box(q.point, q.radius_km)
        near = select(ServicePoint.service_id).where(
            col(ServicePoint.latitude).between(low_lat, high_lat),
            col(ServicePoint.longitude).between(low_lon, high_lon),
        )
        if q.resident_zip or q.near_zip:  # remote services match only by their service area
            near = union(near, select(ServiceRecord.id).where(col(ServiceRecord.remote)))  # type: ignore[assignment]
        statement = statement.where(col(ServiceRecord.id).in_(near))
    if not q.include_inactive:
        statement = statement.where(ServiceRecord.status == directory_pb2.SERVICE_STATUS_ACTIVE)
    if q.need_domain:
        statement = statement.where(
            select(ServiceNeedDomain.service_id)
            .where(
                ServiceNeedDomain.need_domain == q.need_domain,
                ServiceNeedDomain.service_id == ServiceRecord.id,
            )
            .exists()
        )
    if q.language:
        statement = statement.where(
            select(ServiceLanguage.service_id)
            .where(
                ServiceLanguage.language == q.language.split("-")[0].lower(),
                ServiceLanguage.service_id == ServiceRecord.id,
            )
            .exists()
        )
    for word in q.words:  # every word, anywhere in the text (matching checks the same)
        statement = statement.where(col(ServiceRecord.search_text).contains(word, autoescape=True))
    return list((await session.exec(statement)).all())
