"""Events the screening service publishes (through the outbox): minimum necessary, no answers."""

from __future__ import annotations

import uuid

from ach.screening.v1 import screening_pb2
from ach_events.outbox import Outbox
from ach_events.topics import SCREENING_EVENTS
from ach_platform.clock import to_timestamp
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_screening.store import ScreeningRecord


def publish_screening_completed(
    session: AsyncSession, outbox: Outbox, record: ScreeningRecord, screener: str
) -> None:
    completed = screening_pb2.ScreeningCompleted(
        screening_id=record.id,
        resident_id=record.resident_id,
        instrument_id=record.instrument_id,
        instrument_version=record.instrument_version,
        positive_domains=record.positive_domains,
        urgent=record.urgent,
        language=record.language,
        site_id=record.site_id,
        screened_at=to_timestamp(record.screened_at),
    )
    completed.screened_by.partner_id = screener
    outbox.add(session, SCREENING_EVENTS, completed, key=record.resident_id, subject=record.id)
    for domain in record.positive_domains:
        need = screening_pb2.NeedIdentified(
            # Derived, so a replay of the same screening names the same need.
            need_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"ach:need:{record.id}:{domain}")),
            screening_id=record.id,
            resident_id=record.resident_id,
            need_domain=domain,
            urgent=record.urgent,
            language=record.language,
            identified_at=to_timestamp(record.screened_at),
            source_partner_id=screener,
        )
        outbox.add(session, SCREENING_EVENTS, need, key=record.resident_id, subject=record.id)
