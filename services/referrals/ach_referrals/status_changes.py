"""A party moves a referral on: its source or target by a call (gRPC, or a FHIR Task), or the
target's case-management system by a status report on its inbound topic. The state machine's
rules for the party's role (``domain``), then the change, its history row and events, and
re-routing after a rejection (the workflow)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from ach.partners.v1 import partners_pb2
from ach_events.partner_refusal import partner_violations, refuse_report
from ach_platform.clock import utc_now
from ach_platform.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_referrals import domain
from ach_referrals.mappers import requested_change
from ach_referrals.store import ReferralRecord, last_changed_by
from ach_referrals.workflow import ReferralWorkflow


async def move(
    session: AsyncSession,
    workflow: ReferralWorkflow,
    referral_id: str,
    to: domain.Status,
    now: datetime,
    *,
    actor_partner_id: str,
    actor_user_id: str,
    reason: str,
    outcome: domain.Outcome | None,
    reason_code: str = "",
    fields: Mapping[str, str] | None = None,
) -> ReferralRecord:
    """A party moves a referral on (gRPC or a FHIR Task): the state machine's rules for its
    role, the change and its events, re-routing after a rejection. ``fields`` names the
    request's fields where they differ from the domain's (a FHIR Task's)."""
    referral = await session.get(ReferralRecord, referral_id)
    if referral is None:
        raise NotFound(f"referral {referral_id} not found")
    role = domain.role_of(actor_partner_id, referral.source_partner_id, referral.target_partner_id)
    if role is None:
        raise PermissionDenied("only the referral's source or target may change it")
    errors = domain.check_transition(domain.Status(referral.status), to, role, reason or reason_code, outcome)
    bad_input = [e for e in errors if not e.precondition]
    if bad_input:
        named = fields or {}
        raise InvalidArgument([FieldViolation(named.get(e.field, e.field), e.description) for e in bad_input])
    if errors:
        raise FailedPrecondition(errors[0].description, violation_type="TRANSITION", subject=referral.id)
    workflow.record_change(
        session,
        referral,
        to,
        now,
        reason=reason,
        actor_partner_id=actor_partner_id,
        actor_user_id=actor_user_id,
        outcome=outcome,
        reason_code=reason_code,
    )
    if to is domain.Status.REJECTED:
        await workflow.after_rejection(session, referral, domain.reason_code_for(reason_code, reason))
    return referral


async def apply_status_report(
    session: AsyncSession,
    workflow: ReferralWorkflow,
    partner: str,
    event: partners_pb2.ReferralStatusReported,
) -> None:
    """A CBO's case-management system moves a referral on (admitted by the gateway under the
    partner's identity). Only the referral's target may; the same rules as through gRPC. A report
    of the status the partner already set is a repeat: nothing changes. Refusals go to the dead
    letter topic and, with the reasons, to the partner (ReferralUpdateRejected)."""
    update = event.update
    problems: list[FieldViolation] = []
    referral = await session.get(ReferralRecord, update.referral_id) if update.referral_id else None
    if not update.referral_id:
        problems.append(FieldViolation("update.referral_id", "is required"))
    elif referral is None:
        problems.append(FieldViolation("update.referral_id", "is not a referral"))
    elif partner != referral.target_partner_id:
        problems.append(FieldViolation("update.referral_id", f"{partner} is not this referral's target"))
    to, outcome, wrong = requested_change(update.status, update.outcome, "update.")
    problems += wrong
    problems += domain.check_reason(update.reason_code, update.reason, "update.")
    if referral is not None and to is not None and not problems:
        if to.value == referral.status and await last_changed_by(session, referral) == partner:
            return  # the partner's system sent it again: already applied
        problems += [
            FieldViolation(f"update.{e.field}", e.description)
            for e in domain.check_transition(
                domain.Status(referral.status),
                to,
                domain.Role.TARGET,
                update.reason or update.reason_code,
                outcome,
            )
        ]
    if problems:
        refuse_report(
            workflow.publisher.outbox,
            partner,
            partners_pb2.ReferralUpdateRejected(
                referral_id=update.referral_id, violations=partner_violations(problems)
            ),
            update.referral_id,
            "referral status report",
            problems,
        )
    assert referral is not None and to is not None
    workflow.record_change(
        session,
        referral,
        to,
        utc_now(),
        reason=update.reason,
        actor_partner_id=partner,
        actor_user_id=update.actor.user_id,
        outcome=outcome,
        reason_code=update.reason_code,
    )
    if to is domain.Status.REJECTED:
        await workflow.after_rejection(
            session, referral, domain.reason_code_for(update.reason_code, update.reason)
        )
