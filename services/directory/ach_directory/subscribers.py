"""Partners' reports about their services, from ach.partners.intake.v1 (admitted by the gateway
under the partner's identity): capacity, status and the service's HSDS record. Applied in order of
reported_at per service; refused with the reasons (dead letter, and ServiceUpdateRejected on the
partner's outbound topic) when they break a rule or name a service that is not the partner's."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, NoReturn

from ach.directory.v1 import directory_pb2
from ach.partners.v1 import partners_pb2
from ach_events.envelope import Envelope
from ach_events.outbox import Outbox
from ach_events.partner_refusal import partner_violations, refuse_report
from ach_platform.clock import as_utc, from_timestamp, utc_now
from ach_platform.errors import FieldViolation
from opentelemetry import metrics
from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_directory.domain.hsds import Record, flatten
from ach_directory.domain.services import ServiceUpdate, check_edited_records, check_update
from ach_directory.hsds_catalog import load_catalog
from ach_directory.hsds_import import import_records
from ach_directory.hsds_objects import hsds_object
from ach_directory.projection import apply, index
from ach_directory.publishers import publish_service_changed
from ach_directory.store import HSDS_TABLES, ServiceRecord
from ach_directory.summary_queries import summaries

PARTNER_SCHEME = "ach-partner"  # organization_identifier.identifier_scheme naming the partner id
STATUS_NAMES = {
    directory_pb2.SERVICE_STATUS_ACTIVE: "active",
    directory_pb2.SERVICE_STATUS_INACTIVE: "inactive",
    directory_pb2.SERVICE_STATUS_DEFUNCT: "defunct",
    directory_pb2.SERVICE_STATUS_TEMPORARILY_CLOSED: "temporarily closed",
}
stale_reports = metrics.get_meter(__name__).create_counter(
    "ach_directory_stale_reports",
    unit="{report}",
    description="Partner service reports older than the last one applied (ignored)",
)


async def owners_of(session: AsyncSession, record: ServiceRecord) -> set[str]:
    """The partners whose service it is: the organization id given through the API, or the partner
    ids an HSDS organization lists as its identifiers (scheme ach-partner)."""
    table = HSDS_TABLES["organization_identifier"]
    conn = await session.connection()
    rows = await conn.execute(
        select(table.c.identifier).where(
            table.c.organization_id == record.organization_id, table.c.identifier_scheme == PARTNER_SCHEME
        )
    )
    return {record.organization_id} | {str(r[0]) for r in rows}


class DirectorySubscribers:
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    async def on_service_update(
        self, session: AsyncSession, envelope: Envelope, event: partners_pb2.ServiceUpdateReported
    ) -> None:
        """A CBO's report about its service, admitted by the gateway under the partner's identity."""
        partner = envelope.source.removeprefix("/partners/")
        record = await session.get(ServiceRecord, event.service_id) if event.service_id else None
        update = ServiceUpdate(
            service_id=event.service_id,
            capacity_available=event.capacity_available if event.HasField("capacity_available") else None,
            capacity_maximum=event.capacity_maximum if event.HasField("capacity_maximum") else None,
            capacity_waitlist=event.capacity_waitlist if event.HasField("capacity_waitlist") else None,
            status=STATUS_NAMES.get(event.status, ""),
            has_reported_at=event.HasField("reported_at"),
        )
        problems = check_update(update, record.capacity_maximum if record else 0)
        if event.service_id and record is None:
            problems.append(FieldViolation("service_id", "is not a service of the directory"))
        elif record is not None and partner not in await owners_of(session, record):
            problems.append(FieldViolation("service_id", f"is not a service of {partner}'s organization"))
        edited: list[Record] = []
        if event.hsds_service_json and record is not None:
            edited, more = self._edited(event.service_id, event.hsds_service_json, record)
            problems += more
        if problems:
            self._reject(partner, event.service_id, problems)
        assert record is not None
        reported = from_timestamp(event.reported_at)
        assert reported is not None
        if record.reported_at is not None and reported <= as_utc(record.reported_at):
            stale_reports.add(1)
            return  # an older report than the one applied: the newer one stands
        if record.source == "hsds-import":
            await self._apply_to_hsds(session, update, reported, edited, partner)
            found = await summaries(session, {record.id})
            await apply(session, self._outbox, found)
            await session.refresh(record)
        else:
            self._apply_to_record(record, update)
            record.version += 1
            record.updated_at = utc_now()
            session.add(record)
            message = (await index(session, [record]))[record.id]
            publish_service_changed(session, self._outbox, message, record.version)
        record.reported_at = reported
        session.add(record)

    def _edited(
        self, service_id: str, document: str, record: ServiceRecord
    ) -> tuple[list[Record], list[FieldViolation]]:
        try:
            obj = json.loads(document)
        except json.JSONDecodeError as exc:
            return [], [FieldViolation("hsds_service_json", f"is not JSON: {exc.msg} at {exc.pos}")]
        if not isinstance(obj, dict):
            return [], [FieldViolation("hsds_service_json", "is not an HSDS service object")]
        catalog = load_catalog()
        obj.setdefault("organization_id", record.organization_id)
        records = list(flatten(catalog.entities, "service", obj, "hsds_service_json", "$"))
        problems = check_edited_records(service_id, [(r.entity, r.row, r.values) for r in records])
        if record.source != "hsds-import":
            problems.append(
                FieldViolation("hsds_service_json", "this service is kept through the API, not as HSDS")
            )
        return records, problems

    async def _apply_to_hsds(
        self,
        session: AsyncSession,
        update: ServiceUpdate,
        reported: datetime,
        edited: list[Record],
        partner: str,
    ) -> None:
        catalog = load_catalog()
        records = list(edited)
        if update.status:
            if not any(r.entity == "service" for r in records):
                current = await hsds_object(session, "service", update.service_id, depth=0)
                assert current is not None
                records.insert(0, Record("service", current, "report", "$"))
            for r in records:
                if r.entity == "service":
                    r.values["status"] = update.status
        if (
            update.capacity_available is not None
            or update.capacity_maximum is not None
            or update.capacity_waitlist is not None
        ):
            kept = await latest_capacity(session, update.service_id)
            capacity = {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ach:capacity:{update.service_id}")),
                "service_id": update.service_id,
                "available": _given(update.capacity_available, kept.get("available")),
                "maximum": _given(update.capacity_maximum, kept.get("maximum")),
                "waitlist": _given(update.capacity_waitlist, kept.get("waitlist")),
                "description": kept.get("description") or f"reported by {partner}",
                "updated": reported.isoformat().replace("+00:00", "Z"),
            }
            records.append(
                Record(
                    "service_capacity", {k: v for k, v in capacity.items() if v is not None}, "report", "$"
                )
            )
        if not records:
            return
        report = await import_records(session, catalog, ((r, []) for r in records))
        if report.problems:
            self._reject(partner, update.service_id, [p.as_violation() for p in report.problems])

    @staticmethod
    def _apply_to_record(record: ServiceRecord, update: ServiceUpdate) -> None:
        if update.capacity_available is not None:
            record.capacity_available = update.capacity_available
        if update.capacity_maximum is not None:
            record.capacity_maximum = update.capacity_maximum
        if update.capacity_waitlist is not None:
            record.capacity_waitlist = update.capacity_waitlist
        if update.status:
            record.status = next(code for code, name in STATUS_NAMES.items() if name == update.status)

    def _reject(self, partner: str, service_id: str, problems: list[FieldViolation]) -> NoReturn:
        answer = partners_pb2.ServiceUpdateRejected(
            service_id=service_id, violations=partner_violations(problems)
        )
        refuse_report(self._outbox, partner, answer, service_id, "service update", problems)


def _given(value: int | None, kept: Any) -> int | None:
    if value is not None:
        return value
    return int(kept) if isinstance(kept, int | float) else None


async def latest_capacity(session: AsyncSession, service_id: str) -> dict[str, Any]:
    table = HSDS_TABLES["service_capacity"]
    conn = await session.connection()
    rows = (await conn.execute(select(table).where(table.c.service_id == service_id))).mappings().all()
    latest = max(rows, key=lambda r: str(r["updated"] or ""), default=None)
    return dict(latest) if latest else {}
