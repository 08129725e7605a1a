"""HSDS files in and out: a CSV data package (one CSV per entity + datapackage.json), the tabular
JSON form (``{"services.csv": [rows...], ...}``), or HSDS JSON objects (a service, an organization
with everything nested, a page of them, a list). Reading yields typed records with where each came
from; problems reading a cell are reported the same way as any other problem of its row."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ach_directory.domain.hsds import (
    ENTITIES,
    TABULAR_FILES,
    Entity,
    Record,
    RowProblem,
    flatten,
    from_cell,
    to_cell,
)

FILE_ENTITY = {file: entity for entity, file in TABULAR_FILES.items()}


class PackageError(Exception):
    """The source cannot be read at all (not a row's problem): no such file, not JSON, no CSV files."""


def read_source(
    path: Path, entities: Mapping[str, Entity]
) -> Iterator[tuple[Record | None, list[RowProblem]]]:
    """Every record of a data package directory, a datapackage.json, a CSV file of the package, or
    an HSDS JSON file; with each, the problems found reading it (its record is None when it cannot
    be read at all)."""
    if not path.exists():
        raise PackageError(f"{path}: no such file or directory")
    if path.is_dir():
        yield from _read_package(path, entities)
    elif path.name == "datapackage.json":
        yield from _read_package(path.parent, entities)
    elif path.suffix == ".csv":
        entity = FILE_ENTITY.get(path.name)
        if entity is None:
            raise PackageError(
                f"{path.name}: not a file of an HSDS data package ({', '.join(sorted(FILE_ENTITY))})"
            )
        yield from _read_csv(path, entities[entity])
    elif path.suffix == ".json":
        yield from _read_json(path, entities)
    else:
        raise PackageError(f"{path}: expected a data package directory, a .csv or a .json file")


def _read_package(
    directory: Path, entities: Mapping[str, Entity]
) -> Iterator[tuple[Record | None, list[RowProblem]]]:
    files = _package_files(directory)
    if not files:
        raise PackageError(f"{directory}: no HSDS CSV files ({', '.join(sorted(FILE_ENTITY))})")
    for entity in ENTITIES:  # parents first
        if entity in files:
            yield from _read_csv(files[entity], entities[entity])


def _package_files(directory: Path) -> dict[str, Path]:
    """The package's CSV files by entity: from datapackage.json's resources when it lists them,
    else by the HSDS file names."""
    descriptor = directory / "datapackage.json"
    files: dict[str, Path] = {}
    if descriptor.is_file():
        try:
            resources = json.loads(descriptor.read_text()).get("resources", [])
        except (json.JSONDecodeError, AttributeError):
            resources = []  # e.g. the official examples' descriptor is a link to the spec's own
        for resource in resources:
            if not isinstance(resource, dict):
                continue
            name, where = str(resource.get("name", ""))[:100], str(resource.get("path", ""))[:1000]
            if name not in TABULAR_FILES or not where:
                continue
            # A descriptor names files of its own package only: never "../x", "/etc/passwd" or a
            # link leading out of it.
            target = (directory / where).resolve()
            if not target.is_relative_to(directory.resolve()):
                raise PackageError(f"datapackage.json: resource {name!r} names a file outside the package")
            if target.is_file():
                files[name] = target
    for entity, file in TABULAR_FILES.items():
        if entity not in files and (directory / file).is_file():
            files[entity] = directory / file
    return files


def _read_csv(path: Path, entity: Entity) -> Iterator[tuple[Record | None, list[RowProblem]]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        known = set(entity.field_names)
        header = reader.fieldnames or []
        unknown = [c for c in header if c not in known]
        if unknown:
            # Columns HSDS does not define: named once, on the header row, and not imported.
            yield (
                None,
                [RowProblem(path.name, "1", c, "is not a field of HSDS " + entity.name) for c in unknown],
            )
        for number, row in enumerate(reader, start=2):
            values: dict[str, Any] = {}
            problems = []
            if None in row:
                problems.append(RowProblem(path.name, str(number), "", "has more cells than the header"))
            for f in entity.fields:
                cell = row.get(f.name)
                if cell is None:
                    continue
                value, problem = from_cell(f, cell)
                if problem:
                    problems.append(RowProblem(path.name, str(number), f.name, problem))
                elif value is not None:
                    values[f.name] = value
            yield Record(entity.name, values, path.name, str(number)), problems


def _read_json(
    path: Path, entities: Mapping[str, Entity]
) -> Iterator[tuple[Record | None, list[RowProblem]]]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"{path.name}: not readable as JSON: {exc}") from None
    if isinstance(document, dict) and any(k in FILE_ENTITY for k in document):
        yield from _read_tabular_json(path.name, document, entities)
        return
    entity = _entity_of_file(path.name)
    if isinstance(document, dict) and isinstance(document.get("contents"), list):  # a Page
        objects, prefix = document["contents"], "contents"
    elif isinstance(document, list):
        objects, prefix = document, ""
    else:
        objects, prefix = [document], None
    if entity is None:
        raise PackageError(
            f"{path.name}: cannot tell which HSDS entity it holds; name the file after one "
            f"(e.g. service.json, organization_list.json) or use the tabular form"
        )
    for i, obj in enumerate(objects):
        where = "$" if prefix is None else f"$.{prefix}[{i}]" if prefix else f"$[{i}]"
        if not isinstance(obj, dict):
            yield None, [RowProblem(path.name, where, "", f"is not an HSDS {entity} object")]
            continue
        for record in flatten(entities, entity, obj, path.name, where):
            yield record, []


def _read_tabular_json(
    source: str, document: Mapping[str, Any], entities: Mapping[str, Entity]
) -> Iterator[tuple[Record | None, list[RowProblem]]]:
    unknown = [k for k in document if k not in FILE_ENTITY]
    if unknown:
        yield (
            None,
            [RowProblem(source, f'$["{k}"]', "", "is not a file of an HSDS data package") for k in unknown],
        )
    for entity in ENTITIES:
        rows = document.get(TABULAR_FILES[entity], [])
        for i, row in enumerate(rows if isinstance(rows, list) else []):
            where = f'$["{TABULAR_FILES[entity]}"][{i}]'
            if not isinstance(row, dict):
                yield None, [RowProblem(source, where, "", f"is not an HSDS {entity} row")]
                continue
            # The tabular form is the CSV files' rows as JSON: values are read as CSV cells are, so
            # 1234567 in a text field is the text "1234567" (as the official tabular.json has it).
            spec = entities[entity]
            values: dict[str, Any] = {}
            problems = [
                RowProblem(source, where, k, f"is not a field of HSDS {entity}")
                for k in row
                if spec.field(k) is None
            ]
            for f in spec.fields:
                given = row.get(f.name)
                if given is None:
                    continue
                if isinstance(given, dict | list | bool):
                    problems.append(RowProblem(source, where, f.name, f"is not a {f.kind}"))
                    continue
                value, problem = from_cell(f, to_cell(given))
                if problem:
                    problems.append(RowProblem(source, where, f.name, problem))
                elif value is not None:
                    values[f.name] = value
            yield Record(entity, values, source, where), problems


def _entity_of_file(name: str) -> str | None:
    stem = name.removesuffix(".json").removesuffix("_full").removesuffix("_list")
    return stem if stem in TABULAR_FILES else None


def write_package(
    directory: Path, entities: Mapping[str, Entity], rows: Mapping[str, list[dict[str, Any]]]
) -> list[Path]:
    """A CSV data package: one file per entity (every field of the schema as a column, rows by id)
    and a datapackage.json describing them."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    resources = []
    for entity in ENTITIES:
        spec = entities[entity]
        path = directory / TABULAR_FILES[entity]
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(spec.field_names)
            for row in sorted(rows.get(entity, []), key=lambda r: str(r["id"])):
                writer.writerow([to_cell(row.get(f)) for f in spec.field_names])
        written.append(path)
        resources.append(
            {
                "name": entity,
                "path": TABULAR_FILES[entity],
                "profile": "tabular-data-resource",
                "format": "csv",
                "mediatype": "text/csv",
                "encoding": "utf-8",
                "schema": {
                    "fields": [
                        {
                            "name": f.name,
                            "type": f.kind,
                            **({"constraints": {"required": True}} if f.required else {}),
                        }
                        for f in spec.fields
                    ],
                    "primaryKey": "id",
                },
            }
        )
    descriptor = directory / "datapackage.json"
    descriptor.write_text(
        json.dumps(
            {"name": "hsds-directory", "profile": "tabular-data-package", "resources": resources}, indent=2
        )
        + "\n"
    )
    return [*written, descriptor]


def write_tabular_json(
    path: Path, entities: Mapping[str, Entity], rows: Mapping[str, list[dict[str, Any]]]
) -> None:
    """The whole directory in HSDS's tabular JSON form (as the official tabular.json)."""
    document = {
        TABULAR_FILES[entity]: [
            {k: v for k, v in row.items() if v is not None}
            for row in sorted(rows.get(entity, []), key=lambda r: str(r["id"]))
        ]
        for entity in ENTITIES
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
