"""The official HSDS 3.0 schemas shipped with the service (``hsds_schema/``), read once: the
entities the directory's tables and import are built from, and a validator per entity."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from ach_directory.domain.hsds import ENTITIES, Entity, entity_from_schema

SCHEMA_DIR = Path(__file__).parent / "hsds_schema"


@dataclass(frozen=True)
class Catalog:
    entities: dict[str, Entity]
    validators: dict[str, Draft202012Validator]

    def schema_problems(self, entity: str, values: dict[str, Any]) -> list[tuple[str, str]]:
        """(field, problem) for each way a record breaks its official schema."""
        problems = []
        for error in sorted(self.validators[entity].iter_errors(values), key=lambda e: list(e.path)):
            where = ".".join(str(p) for p in error.path)
            if error.validator == "required":
                missing = str(error.message).split("'")[1] if "'" in error.message else ""
                problems.append((missing, "is required"))
            else:
                problems.append((where, _short(error.message)))
        return problems


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:197] + "..."


def tabular_required() -> dict[str, frozenset[str]]:
    """Fields the tabular form requires although the JSON form nests them (a service's organization)."""
    required: dict[str, set[str]] = {}
    with (SCHEMA_DIR / "tabular.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["constraints_tablular_required"] == "true":  # sic: the spec's column name
                required.setdefault(row["table_name"], set()).add(row["name"])
    return {k: frozenset(v) for k, v in required.items()}


@cache
def load_catalog() -> Catalog:
    schemas = {name: json.loads((SCHEMA_DIR / f"{name}.json").read_text()) for name in ENTITIES}
    registry: Registry[Any] = Registry().with_resources(
        (f"{name}.json", Resource.from_contents(schema, default_specification=_spec()))
        for name, schema in schemas.items()
    )
    required = tabular_required()
    entities = {
        name: entity_from_schema(schema, required.get(name, frozenset())) for name, schema in schemas.items()
    }
    checker = FormatChecker(formats=("uuid", "email"))
    validators = {
        name: Draft202012Validator(schema, registry=registry, format_checker=checker)
        for name, schema in schemas.items()
    }
    return Catalog(entities, validators)


def _spec() -> Any:
    from referencing.jsonschema import DRAFT202012

    return DRAFT202012
