"""The HSDS API's query parameters, bounded and checked against the OpenAPI document it serves
(the reference's, with this directory's limits), before any of them reaches a query."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse

from ach_directory.hsds_catalog import SCHEMA_DIR

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


def error_response(status: int, message: str, parameter: str = "") -> JSONResponse:
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
        schemas[path.stem] = local_refs(schema)
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
    document["paths"] = local_refs(document["paths"])
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


def local_refs(node: Any) -> Any:
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
                out[key] = local_refs(value)
        return out
    if isinstance(node, list):
        return [local_refs(v) for v in node]
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
            problem = schema_problem(schema, value)
            if problem:
                raise BadParameter(name, problem)


def schema_problem(schema: dict[str, Any], value: str) -> str | None:
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
            instant_parameter(value)
        except ValueError:
            return f"{value!r} is not an ISO 8601 date-time"
    return None


# Parameters were checked against the API document (check_query) before a handler reads them.
def int_parameter(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    return int(raw) if raw else default


def bool_parameter(request: Request, name: str) -> bool:
    return request.query_params.get(name) == "true"


def instant_parameter(value: str) -> datetime:
    """An ISO 8601 date-time (Z or an offset) as the naive UTC the tables keep."""
    found = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return found.astimezone(UTC).replace(tzinfo=None) if found.tzinfo else found


def without_nul(request: Request) -> Request:
    query = urlencode([(k, v.replace("\x00", "")) for k, v in request.query_params.multi_items()])
    return Request({**request.scope, "query_string": query.encode()}, request.receive)
