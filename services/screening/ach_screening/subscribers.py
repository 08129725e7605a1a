"""What the screening service consumes."""

from __future__ import annotations

from ach.partners.v1 import partners_pb2
from ach_events.audit_trail import access_recorded
from ach_events.consumer import PoisonEvent
from ach_events.envelope import Envelope
from ach_events.outbox import Outbox
from ach_events.partner_topics import outbound_topic
from ach_events.topics import AUDIT_EVENTS
from ach_platform.audit import AuditEntry
from ach_platform.errors import InvalidArgument
from opentelemetry import trace
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_screening.domain.submission import Submission
from ach_screening.intake import ScreeningIntake
from ach_screening.mappers import finding_proto, submission_of


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


class ScreeningSubscribers:
    """Partners' submissions (ach.partners.intake.v1), answered on the partner's own topic with
    ScreeningAccepted (the answers' codes: the partner gave them) or ScreeningRejected (why); and the
    resident index's events (who may use which resident id, consents, merges) kept as replicas."""

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
