"""What the screening service publishes through the outbox, minimum necessary: ScreeningCompleted
and one NeedIdentified per positive domain (no answers, no identity), and the demographics on their
own topic, for measurement only."""

from __future__ import annotations

import uuid

from ach.screening.v1 import screening_pb2
from ach_events.outbox import Outbox
from ach_events.topics import SCREENING_DEMOGRAPHICS, SCREENING_EVENTS
from ach_platform.clock import to_timestamp
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_screening import domain
from ach_screening.domain.submission import Demographics
from ach_screening.mappers import demographics_proto, finding_proto
from ach_screening.store import ScreeningRecord


def need_id(screening_id: str, need_domain: str) -> str:
    """Derived, so a replay of the same screening names the same need."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ach:need:{screening_id}:{need_domain}"))


def publish_screening(
    session: AsyncSession,
    outbox: Outbox,
    record: ScreeningRecord,
    scored: domain.Scored,
    demographics: Demographics,
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
        consent_id=record.consent_id,
        findings=[finding_proto(f, with_evidence=False) for f in scored.findings],
        negative_domains=record.negative_domains,
    )
    completed.screened_by.partner_id = record.submitter_partner_id
    completed.screened_by.user_id = record.screener_user_id
    outbox.add(session, SCREENING_EVENTS, completed, key=record.resident_id, subject=record.id)
    for need in needs_identified(record, scored):
        outbox.add(session, SCREENING_EVENTS, need, key=record.resident_id, subject=record.id)
    if not demographics.empty:
        recorded = screening_pb2.ScreeningDemographicsRecorded(
            screening_id=record.id,
            resident_id=record.resident_id,
            site_id=record.site_id,
            screened_at=to_timestamp(record.screened_at),
            demographics=demographics_proto(demographics),
        )
        outbox.add(session, SCREENING_DEMOGRAPHICS, recorded, key=record.resident_id, subject=record.id)


def needs_identified(record: ScreeningRecord, scored: domain.Scored) -> list[screening_pb2.NeedIdentified]:
    """One per positive domain, each urgent by its own finding (a safety finding is urgent; the food
    need found in the same screening is not)."""
    return [
        screening_pb2.NeedIdentified(
            need_id=need_id(record.id, finding.domain),
            screening_id=record.id,
            resident_id=record.resident_id,
            need_domain=finding.domain,
            urgent=finding.urgent,
            language=record.language,
            identified_at=to_timestamp(record.screened_at),
            source_partner_id=record.submitter_partner_id,
            instrument_id=record.instrument_id,
            consent_id=record.consent_id,
        )
        for finding in scored.findings
    ]
