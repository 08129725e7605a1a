"""Import and export of the HSDS directory.

An import checks every record on its own (the official schema, the directory's rules), then its
references in order, parents first (a reference to a record this import rejected is a problem of
its own), and writes the accepted records in one transaction: a record is written whole or not at
all, and one bad row does not stop the others. Upserts are idempotent: a record equal to the one
kept is left alone; a changed one gets a new version."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ach_platform.clock import utc_now
from sqlalchemy import bindparam, insert, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_directory.domain.hsds import (
    ENTITIES,
    REFERENCES,
    UNRESOLVED,
    Record,
    RowProblem,
    check_record,
    merged,
    normalized,
)
from ach_directory.hsds_catalog import Catalog
from ach_directory.store import BOOKKEEPING, HSDS_TABLES  # core statements: no ORM classes

CHUNK = 500


@dataclass
class ImportReport:
    problems: list[RowProblem] = field(default_factory=list)
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    # What the import wrote (ids by entity) and the services, locations and organizations those
    # records name: which service summaries to bring up to date.
    touched: dict[str, set[str]] = field(default_factory=dict)
    links: dict[str, set[str]] = field(default_factory=dict)
    services_changed: int = 0

    def wrote(self, entity: str, values: dict[str, Any]) -> None:
        self.touched.setdefault(entity, set()).add(str(values["id"]))
        for name in ("service_id", "location_id", "organization_id"):
            if values.get(name):
                self.links.setdefault(name.removesuffix("_id"), set()).add(str(values[name]))
        if entity == "attribute" and values.get("link_id"):
            self.links.setdefault("service", set()).add(str(values["link_id"]))

    def count(self, entity: str, outcome: str, n: int = 1) -> None:
        self.counts.setdefault(entity, Counter())[outcome] += n

    @property
    def rejected(self) -> int:
        return sum(c["rejected"] for c in self.counts.values())

    def summary(self) -> str:
        lines = [f"{'entity':<24}{'new':>8}{'changed':>9}{'same':>8}{'rejected':>10}"]
        for entity in ENTITIES:
            c = self.counts.get(entity)
            if c:
                lines.append(
                    f"{entity:<24}{c['inserted']:>8}{c['updated']:>9}{c['unchanged']:>8}{c['rejected']:>10}"
                )
        return "\n".join(lines)


@dataclass
class _Candidate:
    record: Record
    values: dict[str, Any]


def checked(
    catalog: Catalog,
    source: Iterable[tuple[Record | None, list[RowProblem]]],
    report: ImportReport,
    rejected: dict[str, set[str]],
) -> dict[str, dict[str, _Candidate]]:
    """Each record checked on its own; the ones that pass, by entity and id (``rejected`` gets the
    ids of the others). The same id twice in one import is fine when the content is the same; when
    it differs, neither is imported (which one is right is for the publisher to say)."""
    accepted: dict[str, dict[str, _Candidate]] = {e: {} for e in ENTITIES}
    for record, problems in source:
        if record is None:
            report.problems += problems
            continue
        entity = catalog.entities[record.entity]
        values = normalized(entity, record.values)
        present = {k: v for k, v in values.items() if v is not None}
        problems = [
            *problems,
            *(record.problem(f, p) for f, p in catalog.schema_problems(record.entity, present)),
            *check_record(entity, record),
        ]
        first = accepted[record.entity].get(record.id)
        if not problems and first is not None:
            if first.values == values:
                continue  # the same record again
            both = merged(first.values, values) if _nested(first.record) and _nested(record) else None
            if both is not None:  # nested twice in one HSDS JSON document, with a link in each place
                first.values.update(both)
                continue
            problems.append(
                record.problem(
                    "id",
                    f"{record.id} appears twice with different content "
                    f"(also at {first.record.source} {_where(first.record)}); neither is imported",
                )
            )
            del accepted[record.entity][record.id]
            report.count(record.entity, "rejected")
        elif not problems and record.id in rejected[record.entity]:
            problems.append(record.problem("id", f"{record.id} appears again after a rejected record"))
        if problems:
            report.problems += _unique(problems)
            report.count(record.entity, "rejected")
            rejected[record.entity].add(record.id)
            continue
        accepted[record.entity][record.id] = _Candidate(record, values)
    return accepted


def _nested(record: Record) -> bool:
    return record.row.startswith("$")


def _where(record: Record) -> str:
    return f"row {record.row}" if record.row.isdigit() else record.row


def _unique(problems: list[RowProblem]) -> list[RowProblem]:
    return list(dict.fromkeys(problems))


async def import_records(
    session: AsyncSession,
    catalog: Catalog,
    source: Iterable[tuple[Record | None, list[RowProblem]]],
    progress: Callable[[int], object] = lambda n: None,
) -> ImportReport:
    """Import into the caller's transaction; the report says what was written and every problem."""
    report = ImportReport()
    rejected_ids: dict[str, set[str]] = {e: set() for e in ENTITIES}
    accepted = checked(catalog, _counting(source, progress), report, rejected_ids)
    for entity in ENTITIES:
        needed = {
            target: {
                str(c.values[f])
                for c in accepted[entity].values()
                if c.values.get(f) is not None and str(c.values[f]) not in accepted[target]
            }
            for f, target in REFERENCES.get(entity, {}).items()
        }
        kept = {target: await _existing_ids(session, target, ids) for target, ids in needed.items()}
        for record_id, candidate in list(accepted[entity].items()):
            problems = []
            for f, target in REFERENCES.get(entity, {}).items():
                if (entity, f) in UNRESOLVED:
                    continue
                ref = candidate.values.get(f)
                if ref is None or str(ref) in accepted[target] or str(ref) in kept.get(target, set()):
                    continue
                why = "which this import rejected" if str(ref) in rejected_ids[target] else "unknown"
                problems.append(candidate.record.problem(f, f"refers to {target} {ref}, {why}"))
            if problems:
                report.problems += problems
                report.count(entity, "rejected")
                rejected_ids[entity].add(record_id)
                del accepted[entity][record_id]
        await _upsert(session, entity, accepted[entity], report)
    return report


def _counting(
    source: Iterable[tuple[Record | None, list[RowProblem]]], progress: Callable[[int], object]
) -> Iterator[tuple[Record | None, list[RowProblem]]]:
    for item in source:
        progress(1)
        yield item


async def _existing_ids(session: AsyncSession, entity: str, ids: set[str]) -> set[str]:
    table = HSDS_TABLES[entity]
    found: set[str] = set()
    wanted = sorted(ids)
    for i in range(0, len(wanted), CHUNK):
        rows = await (await session.connection()).execute(
            select(table.c.id).where(table.c.id.in_(wanted[i : i + CHUNK]))
        )
        found |= {str(r[0]) for r in rows}
    return found


async def _upsert(
    session: AsyncSession, entity: str, candidates: dict[str, _Candidate], report: ImportReport
) -> None:
    if not candidates:
        return
    table = HSDS_TABLES[entity]
    fields = [c.name for c in table.columns if c.name not in BOOKKEEPING]
    ids = sorted(candidates)
    kept: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), CHUNK):
        rows = await (await session.connection()).execute(
            select(table).where(table.c.id.in_(ids[i : i + CHUNK]))
        )
        for row in rows.mappings():
            kept[str(row["id"])] = dict(row)
    now = utc_now().replace(tzinfo=None)
    inserts, updates = [], []
    for record_id in ids:
        values = candidates[record_id].values
        old = kept.get(record_id)
        if old is None:
            report.wrote(entity, values)
            inserts.append(
                {**{f: values.get(f) for f in fields}, "record_version": 1, "record_modified_at": now}
            )
        elif any(_differs(old.get(f), values.get(f)) for f in fields):
            report.wrote(entity, values)
            report.wrote(entity, old)  # what it was linked to before changes too
            updates.append(
                {
                    **{f"v_{f}": values.get(f) for f in fields},
                    "v_record_version": int(old["record_version"]) + 1,
                    "v_record_modified_at": now,
                }
            )
    if inserts:
        await (await session.connection()).execute(insert(table), inserts)
    if updates:
        statement = (
            update(table)
            .where(table.c.id == bindparam("v_id"))
            .values({f: bindparam(f"v_{f}") for f in [*fields, *BOOKKEEPING] if f != "id"})
        )
        await (await session.connection()).execute(statement, updates)
    report.count(entity, "inserted", len(inserts))
    report.count(entity, "updated", len(updates))
    report.count(entity, "unchanged", len(ids) - len(inserts) - len(updates))


def _differs(kept: Any, given: Any) -> bool:
    if isinstance(kept, float) or isinstance(given, float):
        return kept is None or given is None or float(kept) != float(given)
    return bool(kept != given)


async def export_rows(session: AsyncSession, catalog: Catalog) -> dict[str, list[dict[str, Any]]]:
    """Every record of the directory by entity, as HSDS fields (no bookkeeping), numbers integral
    where they are whole."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for entity in ENTITIES:
        table = HSDS_TABLES[entity]
        result = await (await session.connection()).execute(select(table).order_by(table.c.id))
        rows[entity] = [normalized(catalog.entities[entity], dict(r)) for r in result.mappings()]
    return rows
