"""The HSDS 3.0 model and the rules a directory record must pass, pure (the official schemas are
given to it as parsed JSON): which entities there are, their fields, how a CSV cell becomes a value,
how nested HSDS JSON becomes one row per entity and back, and what makes a row acceptable beyond
the official schema (coordinates on the globe, a schedule that is a valid recurrence rule, an age
range that is a range, opening hours that are times of day)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ach_platform.errors import FieldViolation
from dateutil.rrule import rrulestr

# The tabular format's file for each entity (the HSDS CSV data package's names).
TABULAR_FILES: dict[str, str] = {
    "taxonomy": "taxonomies.csv",
    "taxonomy_term": "taxonomy_terms.csv",
    "organization": "organizations.csv",
    "organization_identifier": "organization_identifiers.csv",
    "program": "programs.csv",
    "service": "services.csv",
    "location": "locations.csv",
    "service_at_location": "service_at_location.csv",
    "contact": "contacts.csv",
    "phone": "phones.csv",
    "address": "addresses.csv",
    "schedule": "schedules.csv",
    "funding": "funding.csv",
    "service_area": "service_areas.csv",
    "required_document": "required_documents.csv",
    "language": "languages.csv",
    "accessibility": "accessibility.csv",
    "cost_option": "cost_options.csv",
    "service_capacity": "service_capacity.csv",  # HSDS 3.1 (see hsds_schema/service_capacity.json)
    "attribute": "attributes.csv",
    "metadata": "metadata.csv",
    "meta_table_description": "meta_table_descriptions.csv",
}
# Import order: what a row refers to is imported before it (the order of TABULAR_FILES).
ENTITIES: tuple[str, ...] = tuple(TABULAR_FILES)

# References that must resolve to a record of the directory (or of the same import).
REFERENCES: dict[str, dict[str, str]] = {
    "organization_identifier": {"organization_id": "organization"},
    "program": {"organization_id": "organization"},
    "service": {"organization_id": "organization", "program_id": "program"},
    "location": {"organization_id": "organization"},
    "service_at_location": {"service_id": "service", "location_id": "location"},
    "contact": {
        "organization_id": "organization",
        "service_id": "service",
        "service_at_location_id": "service_at_location",
        "location_id": "location",
    },
    "phone": {
        "location_id": "location",
        "service_id": "service",
        "organization_id": "organization",
        "contact_id": "contact",
        "service_at_location_id": "service_at_location",
    },
    "address": {"location_id": "location"},
    "schedule": {
        "service_id": "service",
        "location_id": "location",
        "service_at_location_id": "service_at_location",
    },
    "funding": {"organization_id": "organization", "service_id": "service"},
    "service_area": {"service_id": "service"},
    "required_document": {"service_id": "service"},
    "language": {"service_id": "service", "location_id": "location", "phone_id": "phone"},
    "accessibility": {"location_id": "location"},
    "cost_option": {"service_id": "service"},
    "service_capacity": {"service_id": "service"},
    "attribute": {"taxonomy_term_id": "taxonomy_term"},
}
# Kept as given, not resolved: they may name records outside this directory (a parent organization
# or a taxonomy published elsewhere) or any kind of record (attribute links, metadata).
UNRESOLVED = {
    ("organization", "parent_organization_id"),
    ("taxonomy_term", "parent_id"),
    ("taxonomy_term", "taxonomy_id"),
    ("attribute", "link_id"),
    ("metadata", "resource_id"),
}

TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "string" or "number", as the official schema has them
    required: bool = False
    enum: tuple[str, ...] = ()


@dataclass(frozen=True)
class Child:
    """A nested array of another entity in the HSDS JSON form (e.g. a service's phones)."""

    name: str
    entity: str


@dataclass(frozen=True)
class Entity:
    name: str
    fields: tuple[Field, ...]
    children: tuple[Child, ...]
    embedded: tuple[Child, ...]  # single nested objects (a service's organization and program)
    tabular_required: frozenset[str] = frozenset()

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


def entity_from_schema(schema: Mapping[str, Any], tabular_required: frozenset[str] = frozenset()) -> Entity:
    """An entity from its official JSON schema: scalar properties are its fields (its table's
    columns), arrays of other entities its children, single objects of other entities embedded."""
    name = str(schema["name"])
    required = set(schema.get("required", ()))
    fields: list[Field] = []
    children: list[Child] = []
    embedded: list[Child] = []
    for prop, spec in schema["properties"].items():
        ref = spec.get("$ref") or (spec.get("items") or {}).get("$ref")
        if ref:
            child = Child(prop, ref.removesuffix(".json").rsplit("/", 1)[-1])
            (children if spec.get("type") == "array" else embedded).append(child)
        elif spec.get("type") in ("string", "number", "integer"):
            kind = "string" if spec["type"] == "string" else "number"
            fields.append(Field(prop, kind, prop in required, tuple(spec.get("enum", ()))))
    return Entity(name, tuple(fields), tuple(children), tuple(embedded), tabular_required)


@dataclass(frozen=True)
class RowProblem:
    """What is wrong with one record, located the way its source names it: a CSV file and its row
    number (1 = the header), or a JSON file and the record's path."""

    source: str
    row: str
    field: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.source}, row {self.row}" if self.row.isdigit() else f"{self.source} {self.row}"
        return f"{where}: {self.field}: {self.problem}" if self.field else f"{where}: {self.problem}"

    def as_violation(self) -> FieldViolation:
        return FieldViolation(self.field or "record", f"{self.source} {self.row}: {self.problem}")


@dataclass(frozen=True)
class Record:
    """One row of one entity, its values typed, with where it came from."""

    entity: str
    values: dict[str, Any]
    source: str
    row: str

    @property
    def id(self) -> str:
        return str(self.values.get("id", ""))

    def problem(self, field_name: str, problem: str) -> RowProblem:
        return RowProblem(self.source, self.row, field_name, problem)


def from_cell(f: Field, cell: str) -> tuple[Any, str | None]:
    """A CSV cell as the field's value (an empty cell is no value), or why it cannot be one."""
    if cell == "":
        return None, None
    if f.kind == "number":
        try:
            number = float(cell)
        except ValueError:
            return None, f"{cell!r} is not a number"
        if not math.isfinite(number):
            return None, f"{cell!r} is not a finite number"
        return (int(number) if number.is_integer() else number), None
    return cell, None


def to_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def normalized(entity: Entity, values: Mapping[str, Any]) -> dict[str, Any]:
    """A record's fields as stored and compared: every field present, absent ones None, integral
    numbers as integers (so 12 and 12.0 are the same record)."""
    out: dict[str, Any] = {}
    for f in entity.fields:
        value = values.get(f.name)
        if f.kind == "number" and isinstance(value, float) and value.is_integer():
            value = int(value)
        out[f.name] = value
    return out


def check_record(entity: Entity, record: Record) -> list[RowProblem]:
    """The directory's own rules, beyond the official schema's."""
    v = record.values
    problems: list[RowProblem] = []
    for name in sorted(entity.tabular_required):
        if v.get(name) in (None, ""):
            problems.append(record.problem(name, "is required"))
    if entity.name == "location":
        lat, lon = v.get("latitude"), v.get("longitude")
        if (lat is None) != (lon is None):
            problems.append(
                record.problem("latitude" if lat is None else "longitude", "is required with the other")
            )
        if isinstance(lat, int | float) and not -90 <= lat <= 90:
            problems.append(record.problem("latitude", f"{lat} is out of range (-90 to 90)"))
        if isinstance(lon, int | float) and not -180 <= lon <= 180:
            problems.append(record.problem("longitude", f"{lon} is out of range (-180 to 180)"))
    if entity.name == "service":
        low, high = v.get("minimum_age"), v.get("maximum_age")
        for name, age in (("minimum_age", low), ("maximum_age", high)):
            if isinstance(age, int | float) and not 0 <= age <= 150:
                problems.append(record.problem(name, f"{age} is not an age"))
        if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
            problems.append(record.problem("minimum_age", f"{low} is above maximum_age {high}"))
    if entity.name == "schedule":
        problems += _check_schedule(record)
    return problems


def _check_schedule(record: Record) -> list[RowProblem]:
    v = record.values
    problems = []
    for name in ("opens_at", "closes_at"):
        value = v.get(name)
        if value is not None and not TIME_OF_DAY.match(str(value)):
            problems.append(record.problem(name, f"{value!r} is not a time of day (HH:MM or HH:MM:SS)"))
    for name in ("valid_from", "valid_to", "dtstart", "until"):
        value = v.get(name)
        if value is not None and not _is_date(str(value)):
            problems.append(record.problem(name, f"{value!r} is not a date (YYYY-MM-DD)"))
    timezone = v.get("timezone")
    if isinstance(timezone, int | float) and not -12 <= timezone <= 14:
        problems.append(record.problem("timezone", f"{timezone} is not a UTC offset in hours"))
    if v.get("freq") and not problems:
        rule = recurrence_rule(v)
        try:
            rrulestr(rule, dtstart=datetime(2000, 1, 1))
        except (ValueError, TypeError) as exc:
            field_name = _rule_field(str(exc))
            problems.append(record.problem(field_name, f"not a valid recurrence rule ({rule}): {exc}"))
    return problems


def recurrence_rule(v: Mapping[str, Any]) -> str:
    """The iCalendar RRULE a schedule row's fields spell."""
    parts = [f"FREQ={v['freq']}"]
    for name in ("interval", "count", "wkst", "byday", "byweekno", "bymonthday", "byyearday"):
        value = v.get(name)
        if value not in (None, ""):
            parts.append(f"{name.upper()}={to_cell(value).replace(' ', '')}")
    if v.get("until"):
        parts.append(f"UNTIL={str(v['until']).replace('-', '')}")
    return ";".join(parts)


def _rule_field(message: str) -> str:
    lowered = message.lower()
    for name in ("byday", "byweekno", "bymonthday", "byyearday", "wkst", "interval", "count", "until"):
        if name in lowered or (name == "byday" and "weekday" in lowered):
            return name
    return "freq"


def _is_date(value: str) -> bool:
    if not DATE.match(value):
        return False
    try:
        datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        return False
    return True


def flatten(
    entities: Mapping[str, Entity],
    entity: str,
    obj: Mapping[str, Any],
    source: str,
    path: str,
    parent: tuple[str, str] | None = None,
) -> Iterator[Record]:
    """Rows of a nested HSDS JSON object: the object's own fields, then each nested record with the
    reference to its parent filled in (a service's phones get the service's id)."""
    spec = entities[entity]
    values = {f: obj[f] for f in spec.field_names if f in obj and obj[f] is not None}
    if parent is not None:
        parent_entity, parent_id = parent
        link = f"{parent_entity}_id"
        if link in spec.field_names and link not in values:
            values[link] = parent_id
        if entity == "attribute" and "link_id" not in values:
            values["link_id"] = parent_id
            values.setdefault("link_entity", parent_entity)
        if entity == "metadata" and "resource_id" not in values:
            values["resource_id"] = parent_id
            values.setdefault("resource_type", parent_entity)
    record_id = str(values.get("id", ""))
    embeddings = [(e.name, e.entity) for e in spec.embedded]
    if entity == "service_at_location":
        embeddings.append(("service", "service"))  # service_at_location_full.json nests its service
    for name, embedded in embeddings:
        nested = obj.get(name)
        if isinstance(nested, Mapping) and embedded in entities:
            # Parents first: a service's organization is a row the service refers to. What the host
            # says of the parent's own references holds for it too (a program nested in a service
            # is the service's organization's).
            host_links = {
                f: values[f]
                for f in entities[embedded].field_names
                if f.endswith("_id") and f in values and nested.get(f) is None
            }
            yield from flatten(entities, embedded, {**nested, **host_links}, source, f"{path}.{name}")
            link = f"{embedded}_id"
            if link in spec.field_names and "id" in nested and link not in values:
                values[link] = nested["id"]
    yield Record(entity, values, source, path)
    for child in spec.children:
        items = obj.get(child.name)
        if not isinstance(items, Sequence) or child.entity not in entities:
            continue
        for i, item in enumerate(items):
            if isinstance(item, Mapping):
                yield from flatten(
                    entities, child.entity, item, source, f"{path}.{child.name}[{i}]", (entity, record_id)
                )
    # An organization's services, which organization_full.json nests without its schema naming them.
    if entity == "organization" and isinstance(obj.get("services"), Sequence):
        for i, item in enumerate(obj["services"]):
            if isinstance(item, Mapping):
                yield from flatten(
                    entities, "service", item, source, f"{path}.services[{i}]", (entity, record_id)
                )


def merged(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any] | None:
    """One record nested in two places of an HSDS JSON document (a phone under its organization
    and under a contact) is one record with both links; None when the two disagree on a value."""
    out = dict(first)
    for name, value in second.items():
        if value is None:
            continue
        if out.get(name) is None:
            out[name] = value
        elif out[name] != value:
            return None
    return out
