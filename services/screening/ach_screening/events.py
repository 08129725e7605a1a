"""What the screening service publishes (through the outbox) and consumes.

Publishes, minimum necessary: ScreeningCompleted and one NeedIdentified per positive domain (no
answers, no identity); the demographics on their own topic, for measurement only; and to a partner
system that submitted on its topic, ScreeningAccepted (with the answers' codes: the partner gave
them) or ScreeningRejected (why). Consumes: partner submissions (ach.partners.intake.v1) and the
resident index's events (who may use which resident id, consents, merges)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from ach.partners.v1 import partners_pb2
from ach.residents.v1 import residents_pb2
from ach.screening.v1 import screening_pb2
from ach_events.audit_trail import access_recorded
from ach_events.consumer import PoisonEvent
from ach_events.envelope import Envelope
from ach_events.outbox import Outbox
from ach_events.partner_topics import outbound_topic
from ach_events.resident_replica import keep_consent, keep_link, keep_merge
from ach_events.topics import AUDIT_EVENTS, SCREENING_DEMOGRAPHICS, SCREENING_EVENTS
from ach_platform.audit import AuditEntry
from ach_platform.clock import from_timestamp, to_timestamp
from ach_platform.errors import InvalidArgument
from opentelemetry import trace
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_screening import domain
from ach_screening.domain.submission import Demographics, Submission
from ach_screening.store import ScreeningRecord

if TYPE_CHECKING:
    from ach_screening.intake import ScreeningIntake


def finding_proto(finding: domain.Finding, with_evidence: bool) -> screening_pb2.NeedFinding:
    return screening_pb2.NeedFinding(
        need_domain=finding.domain,
        urgent=finding.urgent,
        evidence=[screening_pb2.Answer(question_code=q, answer_codes=codes) for q, codes in finding.evidence]
        if with_evidence
        else [],
    )


def demographics_proto(d: Demographics) -> screening_pb2.Demographics:
    return screening_pb2.Demographics(
        race_codes=d.race_codes,
        ethnicity_code=d.ethnicity_code,
        preferred_language=d.preferred_language,
        age_band=d.age_band,
        zip=d.zip,
        neighbourhood=d.neighbourhood,
    )


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
    for finding in scored.findings:
        need = screening_pb2.NeedIdentified(
            need_id=need_id(record.id, finding.domain),
            screening_id=record.id,
            resident_id=record.resident_id,
            need_domain=finding.domain,
            urgent=record.urgent,
            language=record.language,
            identified_at=to_timestamp(record.screened_at),
            source_partner_id=record.submitter_partner_id,
            instrument_id=record.instrument_id,
            consent_id=record.consent_id,
        )
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


def demographics_of(d: screening_pb2.Demographics) -> Demographics:
    return Demographics(
        tuple(d.race_codes), d.ethnicity_code, d.preferred_language, d.age_band, d.zip, d.neighbourhood
    )


def submission_of(request: screening_pb2.SubmitScreeningRequest, submitter: str) -> Submission:
    """The domain's view of a submission, from the gRPC request or a partner's event."""
    return Submission(
        submitter_partner_id=submitter,
        submitter_screening_id=request.submitter_screening_id,
        resident_id=request.resident_id,
        instrument_id=request.instrument_id,
        instrument_version=request.instrument_version,
        answers=tuple(
            domain.AnswerGiven(a.question_code, tuple(a.answer_codes), a.declined, a.value)
            for a in request.answers
        ),
        screened_at=from_timestamp(request.screened_at) if request.HasField("screened_at") else None,
        site_id=request.site_id,
        language=request.language or "en",
        screener_user_id=request.screened_by.user_id,
        consent_id=request.consent_id,
        demographics=demographics_of(request.demographics),
    )


def _audit(
    session: AsyncSession,
    outbox: Outbox,
    submission: Submission,
    resources: dict[str, str],
    outcome: str,
) -> None:
    """Partner submissions come by Kafka, not gRPC: their audit record commits with their effects."""
    context = trace.get_current_span().get_span_context()
    entry = AuditEntry(
        service="screening",
        method="/ach.partners.v1/ScreeningSubmitted",
        partner_id=submission.submitter_partner_id,
        user_id=submission.screener_user_id,
        credential="kafka-sasl",
        purpose_of_use="TREAT",
        resources={k: v for k, v in resources.items() if v},
        outcome=outcome,
        trace_id=format(context.trace_id, "032x") if context.is_valid else "",
    )
    outbox.add(session, AUDIT_EVENTS, access_recorded(entry), key=submission.submitter_partner_id)


class ScreeningEvents:
    def __init__(self, outbox: Outbox, intake: ScreeningIntake) -> None:
        self._outbox = outbox
        self._intake = intake

    async def on_partner_screening(
        self, session: AsyncSession, envelope: Envelope, event: partners_pb2.ScreeningSubmitted
    ) -> None:
        """A screening from a partner's system, admitted by the gateway under the partner's identity."""
        partner = envelope.source.removeprefix("/partners/")
        submission = submission_of(event.submission, partner)
        ids = {
            "resident_id": submission.resident_id,
            "submitter_screening_id": submission.submitter_screening_id,
        }
        try:
            accepted = await self._intake.submit(session, submission)
        except InvalidArgument as exc:
            rejected = partners_pb2.ScreeningRejected(
                submitter_screening_id=submission.submitter_screening_id,
                violations=[
                    partners_pb2.FieldViolation(field=v.field, description=v.description)
                    for v in exc.violations
                ],
            )

            async def reject(s: AsyncSession) -> None:
                self._outbox.add(
                    s, outbound_topic(partner), rejected, key=submission.submitter_screening_id or envelope.id
                )
                _audit(s, self._outbox, submission, ids, "INVALID_ARGUMENT")

            raise PoisonEvent(f"invalid screening: {exc.message}", rejection=reject) from None
        ids["screening_id"] = accepted.record.id
        span = trace.get_current_span()
        span.set_attribute("ach.screening.id", accepted.record.id)
        span.set_attribute("ach.screening.positive_domain_count", len(accepted.scored.findings))
        _audit(session, self._outbox, submission, ids, "OK")
        answer = partners_pb2.ScreeningAccepted(
            submitter_screening_id=submission.submitter_screening_id,
            screening_id=accepted.record.id,
            findings=[finding_proto(f, with_evidence=True) for f in accepted.scored.findings],
            urgent=accepted.record.urgent,
            duplicate=accepted.duplicate,
        )
        self._outbox.add(session, outbound_topic(partner), answer, key=submission.submitter_screening_id)

    async def on_resident_linked(
        self, session: AsyncSession, envelope: Envelope, event: residents_pb2.ResidentLinked
    ) -> None:
        await keep_link(session, event)

    async def on_consent_changed(
        self, session: AsyncSession, envelope: Envelope, event: residents_pb2.ConsentChanged
    ) -> None:
        await keep_consent(session, event)

    async def on_residents_merged(
        self, session: AsyncSession, envelope: Envelope, event: residents_pb2.ResidentsMerged
    ) -> None:
        await keep_merge(session, event)
