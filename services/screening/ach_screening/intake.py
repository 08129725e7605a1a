"""One pipeline for every way a screening comes in: the same checks, scoring, storage and events,
in the caller's transaction (a gRPC call's own, or a consumer's with its inbox record)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ach_events.outbox import Outbox
from ach_events.resident_replica import consents_for, person_of, terms_of
from ach_platform.clock import as_utc, utc_now
from ach_platform.consent import ACTIVE
from ach_platform.errors import FieldViolation, InvalidArgument
from opentelemetry import trace
from sqlalchemy import insert
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_screening import domain
from ach_screening.domain.submission import (
    Facts,
    Submission,
    check,
    demographics_from_answers,
    kept_answers,
)
from ach_screening.events import publish_screening
from ach_screening.store import (
    ScreeningAnswer,
    ScreeningDemographics,
    ScreeningRecord,
    find_by_submitter,
    findings_of,
    partners_of,
)


@dataclass(frozen=True)
class Accepted:
    record: ScreeningRecord
    scored: domain.Scored
    duplicate: bool


class ScreeningIntake:
    def __init__(self, outbox: Outbox, instruments: Mapping[tuple[str, str], domain.Instrument]) -> None:
        self._outbox = outbox
        self.instruments = instruments

    async def submit(
        self, session: AsyncSession, submission: Submission, problems: Sequence[FieldViolation] = ()
    ) -> Accepted:
        """Validate, score, store and emit, or raise InvalidArgument with every problem (and then
        nothing is stored or emitted), including ``problems`` the caller found in the submission's
        source (e.g. a FHIR resource). A resubmission of a screening id returns the first result."""
        existing = await find_by_submitter(
            session, submission.submitter_partner_id, submission.submitter_screening_id
        )
        if existing is not None:
            return Accepted(existing, domain.Scored(findings_of(existing), existing.totals), duplicate=True)
        now = utc_now()
        resident_id, ids = (
            await person_of(session, submission.resident_id) if submission.resident_id else ("", set())
        )
        facts, consent_id = await self._facts(session, submission, ids, now)
        found = [*problems, *check(submission, self.instruments, facts, now)]
        if found:
            raise InvalidArgument(found)
        instrument = self.instruments[(submission.instrument_id, submission.instrument_version)]
        assert submission.screened_at is not None
        scored = domain.score(instrument, submission.answers)
        trace.get_current_span().set_attribute("ach.screening.positive_domain_count", len(scored.findings))

        record = ScreeningRecord(
            id=str(uuid.uuid4()),
            submitter_partner_id=submission.submitter_partner_id,
            submitter_screening_id=submission.submitter_screening_id,
            resident_id=resident_id,
            instrument_id=instrument.id,
            instrument_version=instrument.version,
            positive_domains=list(scored.positive_domains),
            findings=[{"domain": f.domain, "urgent": f.urgent} for f in scored.findings],
            negative_domains=list(scored.negative_domains),
            totals=dict(scored.totals),
            urgent=scored.urgent,
            screened_at=as_utc(submission.screened_at),
            site_id=submission.site_id,
            language=submission.language,
            screener_user_id=submission.screener_user_id,
            consent_id=consent_id,
            created_at=now,
        )
        session.add(record)
        await session.flush()
        kept = kept_answers(instrument, tuple(domain.normalized(instrument, submission.answers)))
        if kept:  # one statement for all of them: the hot path of intake
            await session.exec(
                insert(ScreeningAnswer),  # type: ignore[call-overload]
                params=[
                    {
                        "screening_id": record.id,
                        "question_code": a.question_code,
                        "answer_codes": list(a.answer_codes),
                        "declined": a.declined,
                        "value": a.value,
                    }
                    for a in kept
                ],
            )
        demographics = demographics_from_answers(instrument, submission.answers, submission.demographics)
        if not demographics.empty:
            session.add(
                ScreeningDemographics(
                    screening_id=record.id,
                    race_codes=list(demographics.race_codes),
                    ethnicity_code=demographics.ethnicity_code,
                    preferred_language=demographics.preferred_language,
                    age_band=demographics.age_band,
                    zip=demographics.zip,
                    neighbourhood=demographics.neighbourhood,
                )
            )
        publish_screening(session, self._outbox, record, scored, demographics)
        trace.get_current_span().set_attribute("ach.screening.id", record.id)
        return Accepted(record, scored, duplicate=False)

    async def _facts(
        self, session: AsyncSession, submission: Submission, ids: set[str], now: datetime
    ) -> tuple[Facts, str]:
        """Whether the submitter may use the resident id, and the consent the screening references."""
        if not ids:
            return Facts(resident_usable=False), ""
        usable = submission.submitter_partner_id in await partners_of(session, ids)
        consents = {c.consent_id: c for c in await consents_for(session, ids)}
        if not submission.consent_id:
            in_force = [t for t in map(terms_of, consents.values()) if t.in_force(now)]
            latest = max(in_force, key=lambda c: c.given_at) if in_force else None
            return Facts(usable), latest.consent_id if latest else ""
        consent = consents.get(submission.consent_id)
        problem = None
        if consent is None:  # unknown, or another resident's: the caller learns neither which
            problem = "is not a consent of this resident"
        elif consent.status != ACTIVE:
            problem = f"is {consent.status}"
        elif consent.expires_at is not None and as_utc(consent.expires_at) <= now:
            problem = "has expired"
        return Facts(usable, problem), submission.consent_id
