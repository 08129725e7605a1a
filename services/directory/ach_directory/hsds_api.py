"""The HSDS API (Open Referral's API reference for HSDS 3.0), read-only HTTP JSON, so existing 2-1-1
tools can read the directory: /services, /services/{id}, /organizations, /taxonomies,
/taxonomy_terms, /service_at_locations (and their /{id}), with the reference's parameters (AND
combined) and its paginated Page object; /openapi.json describes exactly what is served.

The directory is public information (no resident data), so the API asks for no credentials, like a
2-1-1's own; it serves HSDS records only, never the network's referrals or partners."""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import urlencode

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
from ach_directory.hsds_catalog import SCHEMA_DIR
from ach_directory.hsds_objects import hsds_object
from ach_directory.store import HSDS_TABLES, ServicePoint, hsds_values

MAX_PER_PAGE = 100
MAX_SEARCH = 200  # characters of a search (its words each become a condition)
MAX_PARAMETER = 200  # characters of any other query parameter
# At most 9,999,999 m (farther than the network reaches).
PROXIMITY = {"type": "string", "pattern": "^[0-9]{1,7}(\\.[0-9]{1,3})?$"}
POSTCODE = {"type": "string", "maxLength": 10}
DEFAULT_PER_PAGE = 50
MAX_PAGE = 1_000_000  # past any directory's last page, and an offset every database takes
OFFICIAL = "https://raw.githubusercontent.com/openreferral/specification/3.0/schema/"


class BadParameter(Exception):
    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


def _error(status: int, message: str, parameter: str = "") -> JSONResponse:
    body = {"error": message, **({"parameter": parameter} if parameter else {})}
    return JSONResponse(body, status_code=status)


@cache
def openapi_document() -> dict[str, Any]:
    """The official API reference with its external schema links resolved to the official entity
    schemas (shipped in hsds_schema/), plus what this server answers besides 200 (400, 404)."""
    document: dict[str, Any] = json.loads((SCHEMA_DIR / "openapi.json").read_text())
    document["info"] = {
        "title": "ACH directory: HSDS API",
        "version": "3.0",
        "summary": "The network's resource directory, read-only, as the HSDS 3.0 API reference defines it.",
        "description": "Open Referral HSDS 3.0 API reference (CC BY-SA 4.0), served by the ACH directory.",
        "license": {"name": "CC BY-SA 4.0", "identifier": "CC-BY-SA-4.0"},
    }
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        if path.stem == "openapi":
            continue
        schema = json.loads(path.read_text())
        for key in ("name", "path", "datapackage_metadata", "tabular_required"):
            schema.pop(key, None)
        schemas[path.stem] = _local_refs(schema)
    schemas["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "parameter": {"type": "string"}},
    }
    error = {
        "description": "A parameter that is not valid, or no such record",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            operation["responses"]["400"] = copy.deepcopy(error)
            if "{id}" in path:
                operation["responses"]["404"] = copy.deepcopy(error)
    document["paths"] = _local_refs(document["paths"])
    # The reference leaves these open; the server's limits are part of its contract.
    parameters = document["components"]["parameters"]
    parameters["page"]["schema"] = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}
    parameters["per_page"]["schema"] = {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE}
    # A search of a few words.
    parameters["proximity"]["schema"] = dict(PROXIMITY)
    parameters["postcode"]["schema"] = dict(POSTCODE)
    # /services takes them too (the reference lists them for /service_at_locations only): said in
    # the document, so the same check applies to both.
    services = document["paths"]["/services"]["get"]["parameters"]
    for name in ("postcode", "proximity"):
        ref = {"$ref": f"#/components/parameters/{name}"}
        if ref not in services:
            services.append(ref)
    parameters["search"]["schema"] = {"type": "string", "maxLength": MAX_SEARCH}
    parameters["modified_after"]["schema"] = {"type": "string", "format": "date-time"}
    parameters["format"]["schema"] = {"type": "string", "enum": ["json"]}
    return document


def _local_refs(node: Any) -> Any:
    """$refs to the official schema files (as published, or beside each other) made local."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if (
                key == "$ref"
                and isinstance(value, str)
                and value.endswith(".json")
                and not value.startswith("#")
            ):
                name = value.rsplit("/", 1)[-1].removesuffix(".json").removesuffix("_list")
                out[key] = f"#/components/schemas/{name}"
            else:
                out[key] = _local_refs(value)
        return out
    if isinstance(node, list):
        return [_local_refs(v) for v in node]
    return node


@cache
def query_parameters(path: str) -> dict[str, dict[str, Any]]:
    """The query parameters the API document gives an operation, by name, with their schemas."""
    document = openapi_document()
    shared = document["components"]["parameters"]
    operation = document["paths"][path]["get"]
    found = {}
    for parameter in operation.get("parameters", []):
        if "$ref" in parameter:
            parameter = {
                **shared[parameter["$ref"].rsplit("/", 1)[-1]],
                **{k: v for k, v in parameter.items() if k != "$ref"},
            }
        if parameter.get("in") == "query":
            found[parameter["name"]] = parameter.get("schema", {})
    return found


def check_query(path: str, request: Request) -> None:
    """Every documented query parameter given is what its schema says (each value, when repeated):
    the API refuses what its document does not allow, as it accepts what it does."""
    for name, schema in query_parameters(path).items():
        for value in request.query_params.getlist(name):
            problem = _schema_problem(schema, value)
            if problem:
                raise BadParameter(name, problem)


def _schema_problem(schema: dict[str, Any], value: str) -> str | None:
    # Length first: no pattern runs over a long value, and no long value is echoed back.
    limit = int(schema.get("maxLength", MAX_PARAMETER))
    if len(value) > limit:
        return f"must be at most {limit} characters"
    kind = schema.get("type", "string")
    if kind == "integer":
        if not re.fullmatch(r"-?[0-9]{1,18}", value):
            return f"{value!r} is not an integer"
        number = int(value)
        if ("minimum" in schema and number < schema["minimum"]) or (
            "maximum" in schema and number > schema["maximum"]
        ):
            return f"must be between {schema.get('minimum', '-inf')} and {schema.get('maximum', 'inf')}"
    elif kind == "boolean":
        if value not in ("true", "false"):
            return f"{value!r} is not true or false"
    elif "enum" in schema and value not in schema["enum"]:
        return f"{value!r} is not one of {', '.join(schema['enum'])}"
    elif "pattern" in schema and not re.fullmatch(schema["pattern"].strip("^$"), value):
        return f"{value!r} is not in the expected form"
    elif schema.get("format") == "date-time":
        try:
            if "T" not in value.upper():
                raise ValueError
            _instant(value)
        except ValueError:
            return f"{value!r} is not an ISO 8601 date-time"
    return None


# Parameters were checked against the API document (check_query) before a handler reads them.
def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    return int(raw) if raw else default


def _bool(request: Request, name: str) -> bool:
    return request.query_params.get(name) == "true"


def _instant(value: str) -> datetime:
    """An ISO 8601 date-time (Z or an offset) as the naive UTC the tables keep."""
    found = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return found.astimezone(UTC).replace(tzinfo=None) if found.tzinfo else found


def _without_nul(request: Request) -> Request:
    query = urlencode([(k, v.replace("\x00", "")) for k, v in request.query_params.multi_items()])
    return Request({**request.scope, "query_string": query.encode()}, request.receive)


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
                    return _error(404, "no such record")
                if any("\x00" in v for v in request.query_params.values()):
                    request = _without_nul(request)
                try:
                    if path:
                        check_query(path, request)
                    if request.query_params.get("format", "json") != "json":
                        raise BadParameter("format", "only json is served")
                    return await handler(request)
                except BadParameter as exc:
                    return _error(400, exc.problem, exc.name)

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
                return _error(404, f"no {entity} {request.path_params['id']}")
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
        minimal, full = _bool(request, "minimal"), _bool(request, "full")
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
        full = _bool(request, "full_service") or _bool(request, "full")
        return await self._page(request, "organization", where, full=full)

    async def organization(self, request: Request) -> Response:
        full_service = _bool(request, "full_service")
        async with self._sessions() as session:
            found = await hsds_object(
                session, "organization", request.path_params["id"], depth=2 if full_service else 1
            )
        if found is None:
            return _error(404, f"no organization {request.path_params['id']}")
        return JSONResponse(found)

    async def taxonomy_terms(self, request: Request) -> Response:
        table = HSDS_TABLES["taxonomy_term"]
        where = self._common_filters(request, table, text_columns=("name", "code", "description"))
        if request.query_params.get("taxonomy_id"):
            where.append(table.c.taxonomy_id == request.query_params["taxonomy_id"])
        if request.query_params.get("parent_id"):
            where.append(table.c.parent_id == request.query_params["parent_id"])
        if _bool(request, "top_only"):
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
        return await self._page(request, "service_at_location", where, full=_bool(request, "full"))

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
            after = _instant(raw)
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
        page = _int(request, "page", 1)
        per_page = _int(request, "per_page", DEFAULT_PER_PAGE)
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
            contents = []
            for row in rows:
                if full:
                    found = await hsds_object(session, entity, str(row["id"]), depth=2)
                    if found is not None and entity == "service":
                        await self._embed_parents(session, found)
                    contents.append(found)
                elif minimal:
                    contents.append(
                        {
                            k: v
                            for k, v in hsds_values(dict(row)).items()
                            if k in ("id", "name", "status", "last_modified")
                        }
                    )
                else:
                    contents.append(hsds_values(dict(row)))
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
