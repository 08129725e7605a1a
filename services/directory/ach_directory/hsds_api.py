"""The HSDS API (Open Referral's API reference for HSDS 3.0), read-only HTTP JSON, so existing 2-1-1
tools can read the directory: /services, /services/{id}, /organizations, /taxonomies,
/taxonomy_terms, /service_at_locations (and their /{id}), with the reference's parameters (AND
combined) and its paginated Page object; /openapi.json describes exactly what is served.

The directory is public information (no resident data), so the API asks for no credentials, like a
2-1-1's own; it serves HSDS records only, never the network's referrals or partners."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from ach_platform import zip_codes
from ach_platform.geo import bounding_box, distance_km
from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ach_directory.domain.summary import ZIP_EXTENTS
from ach_directory.hsds_objects import hsds_object, hsds_objects
from ach_directory.hsds_parameters import (
    DEFAULT_PER_PAGE,
    BadParameter,
    bool_parameter,
    check_query,
    error_response,
    instant_parameter,
    int_parameter,
    openapi_document,
    without_nul,
)
from ach_directory.store import HSDS_TABLES, ServicePoint, hsds_values


class HsdsApi:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    def app(self) -> Starlette:
        """The API's routes; a NUL character (which no record holds, and PostgreSQL refuses in
        text) in a parameter finds nothing instead of failing."""

        def guarded(
            handler: Callable[[Request], Awaitable[Response]], path: str = ""
        ) -> Callable[[Request], Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                if any("\x00" in v for v in request.path_params.values()):
                    return error_response(404, "no such record")
                if any("\x00" in v for v in request.query_params.values()):
                    request = without_nul(request)
                try:
                    if path:
                        check_query(path, request)
                    if request.query_params.get("format", "json") != "json":
                        raise BadParameter("format", "only json is served")
                    return await handler(request)
                except BadParameter as exc:
                    return error_response(400, exc.problem, exc.name)

            return endpoint

        routes = [
            Route("/", guarded(self.about)),
            Route("/openapi.json", guarded(self.openapi), name="openapi"),
            Route("/services", guarded(self.services, "/services")),
            Route("/services/{id}", guarded(self.one("service"), "/services/{id}")),
            Route("/organizations", guarded(self.organizations, "/organizations")),
            Route("/organizations/{id}", guarded(self.organization, "/organizations/{id}")),
            Route("/taxonomies", guarded(self.listing("taxonomy"), "/taxonomies")),
            Route("/taxonomies/{id}", guarded(self.one("taxonomy", depth=0), "/taxonomies/{id}")),
            Route("/taxonomy_terms", guarded(self.taxonomy_terms, "/taxonomy_terms")),
            Route(
                "/taxonomy_terms/{id}", guarded(self.one("taxonomy_term", depth=0), "/taxonomy_terms/{id}")
            ),
            Route("/service_at_locations", guarded(self.service_at_locations, "/service_at_locations")),
            Route(
                "/service_at_locations/{id}",
                guarded(self.one("service_at_location"), "/service_at_locations/{id}"),
            ),
        ]
        return Starlette(routes=routes)

    async def about(self, request: Request) -> Response:
        return JSONResponse(
            {
                "version": "3.0",
                "profile": "https://docs.openreferral.org/en/3.0/",
                "openapi_url": f"{request.base_url}openapi.json",
            }
        )

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())

    def one(self, entity: str, depth: int = 2) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            async with self._sessions() as session:
                found = await hsds_object(session, entity, request.path_params["id"], depth=depth)
                if found is not None and entity == "service":
                    await self._embed_parents(session, found)
            if found is None:
                return error_response(404, f"no {entity} {request.path_params['id']}")
            return JSONResponse(found)

        return handler

    async def _embed_parents(self, session: AsyncSession, service: dict[str, Any]) -> None:
        """A full service names its organization and program as the official service_full does."""
        for entity in ("organization", "program"):
            parent_id = service.get(f"{entity}_id")
            if parent_id:
                parent = await hsds_object(session, entity, str(parent_id), depth=0)
                if parent is not None:
                    service[entity] = parent

    def listing(self, entity: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            return await self._page(request, entity, [])

        return handler

    async def services(self, request: Request) -> Response:
        table = HSDS_TABLES["service"]
        where = self._common_filters(request, table)
        where += self._classified(request, table.c.id)
        if request.query_params.get("organization_id"):
            where.append(table.c.organization_id == request.query_params["organization_id"])
        where += await self._where_near(request, table.c.id)
        minimal, full = bool_parameter(request, "minimal"), bool_parameter(request, "full")
        return await self._page(request, "service", where, full=full, minimal=minimal)

    async def organizations(self, request: Request) -> Response:
        table = HSDS_TABLES["organization"]
        where = self._common_filters(request, table)
        service = HSDS_TABLES["service"]
        classified = self._classified(request, service.c.id)
        if classified:
            where.append(
                exists(select(service.c.id).where(service.c.organization_id == table.c.id, *classified))
            )
        full = bool_parameter(request, "full_service") or bool_parameter(request, "full")
        return await self._page(request, "organization", where, full=full)

    async def organization(self, request: Request) -> Response:
        full_service = bool_parameter(request, "full_service")
        async with self._sessions() as session:
            found = await hsds_object(
                session, "organization", request.path_params["id"], depth=2 if full_service else 1
            )
        if found is None:
            return error_response(404, f"no organization {request.path_params['id']}")
        return JSONResponse(found)

    async def taxonomy_terms(self, request: Request) -> Response:
        table = HSDS_TABLES["taxonomy_term"]
        where = self._common_filters(request, table, text_columns=("name", "code", "description"))
        if request.query_params.get("taxonomy_id"):
            where.append(table.c.taxonomy_id == request.query_params["taxonomy_id"])
        if request.query_params.get("parent_id"):
            where.append(table.c.parent_id == request.query_params["parent_id"])
        if bool_parameter(request, "top_only"):
            where.append(table.c.parent_id.is_(None))
        return await self._page(request, "taxonomy_term", where)

    async def service_at_locations(self, request: Request) -> Response:
        table = HSDS_TABLES["service_at_location"]
        where = self._common_filters(request, table, text_columns=("description",))
        where += self._classified(request, table.c.service_id)
        if request.query_params.get("organization_id"):
            service = HSDS_TABLES["service"]
            where.append(
                table.c.service_id.in_(
                    select(service.c.id).where(
                        service.c.organization_id == request.query_params["organization_id"]
                    )
                )
            )
        where += await self._where_near(request, table.c.service_id, location=table.c.location_id)
        return await self._page(request, "service_at_location", where, full=bool_parameter(request, "full"))

    def _common_filters(
        self, request: Request, table: Any, text_columns: tuple[str, ...] = ("name", "description")
    ) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        text = request.query_params.get("search", "").strip()
        for word in text.split():
            columns = [table.c[c] for c in text_columns if c in table.c]
            where.append(or_(*(func.lower(c).contains(word.lower(), autoescape=True) for c in columns)))
        raw = request.query_params.get("modified_after")
        if raw:
            after = instant_parameter(raw)
            where.append(table.c.record_modified_at >= after)
        return where

    def _classified(self, request: Request, service_id: Any) -> list[ColumnElement[bool]]:
        """Services attributed with a taxonomy term, or with any term of a taxonomy."""
        attribute, term = HSDS_TABLES["attribute"], HSDS_TABLES["taxonomy_term"]
        where: list[ColumnElement[bool]] = []
        term_id = request.query_params.get("taxonomy_term_id")
        if term_id:
            where.append(
                exists(
                    select(attribute.c.id).where(
                        attribute.c.link_id == service_id, attribute.c.taxonomy_term_id == term_id
                    )
                )
            )
        taxonomy_id = request.query_params.get("taxonomy_id")
        if taxonomy_id:
            where.append(
                exists(
                    select(attribute.c.id).where(
                        attribute.c.link_id == service_id,
                        attribute.c.taxonomy_term_id.in_(
                            select(term.c.id).where(term.c.taxonomy_id == taxonomy_id)
                        ),
                    )
                )
            )
        return where

    async def _where_near(
        self, request: Request, service_id: Any, location: Any = None
    ) -> list[ColumnElement[bool]]:
        """postcode: the service's area includes it (a service without ZIP areas serves everyone);
        with proximity (metres): a place of the service within that distance of its centroid."""
        postcode = request.query_params.get("postcode", "").strip()
        proximity = request.query_params.get("proximity", "").strip()
        if not postcode:  # proximity is from a postcode's centroid: without one, it says nothing
            return []
        area = HSDS_TABLES["service_area"]
        zip_areas = func.lower(area.c.extent_type).in_(sorted(ZIP_EXTENTS))
        where: list[ColumnElement[bool]] = [
            or_(
                service_id.not_in(select(area.c.service_id).where(zip_areas)),
                service_id.in_(
                    select(area.c.service_id).where(
                        zip_areas, area.c.extent.contains(postcode[:5], autoescape=True)
                    )
                ),
            )
        ]
        if proximity:
            metres = float(proximity)  # digits, as the API document's pattern has it
            point = zip_codes.centroid(postcode[:5])
            if point is None:  # not a place we know: nothing is near it
                return [*where, service_id.in_([])]
            low_lat, high_lat, low_lon, high_lon = bounding_box(point, metres / 1000)
            points = ServicePoint.__table__.c  # type: ignore[attr-defined]
            async with self._sessions() as session:
                conn = await session.connection()
                rows = await conn.execute(
                    select(points.service_id, points.location_id, points.latitude, points.longitude).where(
                        points.latitude.between(low_lat, high_lat),
                        points.longitude.between(low_lon, high_lon),
                    )
                )
                near = [r for r in rows if distance_km(point, (r.latitude, r.longitude)) * 1000 <= metres]
            if location is None:
                where.append(service_id.in_(sorted({r.service_id for r in near})))
            else:
                where.append(
                    or_(*(and_(service_id == r.service_id, location == r.location_id) for r in near))
                    if near
                    else service_id.in_([])
                )
        return where

    async def _page(
        self,
        request: Request,
        entity: str,
        where: list[ColumnElement[bool]],
        *,
        full: bool = False,
        minimal: bool = False,
    ) -> Response:
        page = int_parameter(request, "page", 1)
        per_page = int_parameter(request, "per_page", DEFAULT_PER_PAGE)
        table = HSDS_TABLES[entity]
        async with self._sessions() as session:
            conn = await session.connection()
            total = (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
            rows = (
                await conn.execute(
                    select(table)
                    .where(*where)
                    .order_by(table.c.id)
                    .offset((page - 1) * per_page)
                    .limit(per_page)
                )
            ).mappings()
            listed = [dict(row) for row in rows]
            if full:
                contents = await hsds_objects(conn, entity, listed, 2)
                if entity == "service":
                    for found in contents:
                        await self._embed_parents(session, found)
            elif minimal:
                brief = ("id", "name", "status", "last_modified")
                contents = [{k: v for k, v in hsds_values(row).items() if k in brief} for row in listed]
            else:
                contents = [hsds_values(row) for row in listed]
        pages = max(1, math.ceil(total / per_page))
        return JSONResponse(
            {
                "total_items": total,
                "total_pages": pages,
                "page_number": page,
                "size": len(contents),
                "first_page": page == 1,
                "last_page": page >= pages,
                "empty": total == 0,
                "contents": contents,
            }
        )
