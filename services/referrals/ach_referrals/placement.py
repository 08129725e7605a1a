"""A source places a referral itself (CreateReferral), in the domain's words: for a resident on its
own books, with the best-matching service for the need (or the one it chose), informationally
when it asks so; a hand-off only to a network partner, and only under the resident's consent
covering that partner for that need. The rules are in ``domain``; this is their order."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from ach_events.resident_replica import on_books_of
from ach_platform.errors import FailedPrecondition, InvalidArgument
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_referrals import domain
from ach_referrals.mappers import resident_facts
from ach_referrals.store import ReferralRecord
from ach_referrals.workflow import ReferralWorkflow


@dataclass(frozen=True)
class ReferralAsk:
    """What a source asks for, checked field by field by the servicer."""

    source_partner_id: str
    source_user_id: str
    resident_id: str
    need_domain: str
    language: str
    screening_id: str = ""
    target_service_id: str = ""  # the source's own choice among the matching services
    informational: bool = False  # give the resident the service's details; nothing is handed off
    zip_code: str = ""
    age: int | None = None
    available_at: datetime | None = None


async def place(
    session: AsyncSession, workflow: ReferralWorkflow, ask: ReferralAsk, now: datetime
) -> ReferralRecord:
    # Only for a resident the source has on its own books: knowing an id (from a notification,
    # a shared screen) gives no one the right to refer that person, or to be paid for it.
    if not await on_books_of(session, ask.source_partner_id, ask.resident_id):
        raise FailedPrecondition(
            f"resident {ask.resident_id} is not on {ask.source_partner_id}'s books: register the"
            " resident with the resident index first",
            violation_type="RESIDENT_NOT_REGISTERED",
            subject=ask.resident_id,
        )
    facts = resident_facts(ask.zip_code, ask.age, ask.available_at)
    ranked = domain.rank_targets(await workflow.candidates(session), ask.need_domain, ask.language, facts)
    if ask.target_service_id:
        ranked = [m for m in ranked if m.service.service_id == ask.target_service_id]
        if not ranked:
            raise InvalidArgument.of(
                "target_service_id", f"{ask.target_service_id} is not an active service for {ask.need_domain}"
            )
    if not ranked:
        raise FailedPrecondition(
            f"no active service for {ask.need_domain}", violation_type="NO_TARGET", subject=ask.need_domain
        )
    if ask.informational:
        return await workflow.refer_informationally(
            session,
            ranked[0],
            now,
            resident_id=ask.resident_id,
            need_domain=ask.need_domain,
            source_partner_id=ask.source_partner_id,
            language=ask.language,
            screening_id=ask.screening_id,
            reason="informational: the source gave the resident the service's details",
            actor_partner_id=ask.source_partner_id,
            actor_user_id=ask.source_user_id,
            zip_code=ask.zip_code,
            age=ask.age,
            available_at=ask.available_at,
        )
    # Only a network partner receives a referral; any other service is information only.
    partners = [m for m in ranked if m.service.takes_referrals]
    if not partners:
        if ask.target_service_id:
            raise InvalidArgument.of(
                "target_service_id",
                f"{ask.target_service_id} is a service of an organization that is no network partner:"
                " refer informationally (informational) to give the resident its details",
            )
        raise FailedPrecondition(
            f"no network partner serves {ask.need_domain}: an informational referral gives the"
            " resident a service's details",
            violation_type="NO_PARTNER",
            subject=ask.need_domain,
        )
    # A hand-off shares the resident with the CBO: only under a consent covering it.
    consents = await workflow.consents(session, ask.resident_id, ask.source_partner_id)
    covered = domain.proposals(
        [m.service for m in partners], ask.need_domain, ask.language, consents, now, resident=facts
    )
    if not covered:
        raise FailedPrecondition(
            f"the resident's consent does not cover sharing with {partners[0].service.partner_id}"
            f" for {ask.need_domain}",
            violation_type="CONSENT",
            subject=ask.resident_id,
        )
    chosen = covered[0]
    referral = ReferralRecord(
        id=str(uuid.uuid4()),
        resident_id=ask.resident_id,
        need_domain=ask.need_domain,
        screening_id=ask.screening_id,
        language=ask.language,
        source_partner_id=ask.source_partner_id,
        target_partner_id=chosen.service.partner_id,
        target_service_id=chosen.service.service_id,
        status=domain.Status.REQUESTED.value,
        created_at=now,
        updated_at=now,
        match_zip=ask.zip_code,
        match_age=ask.age,
        match_available_at=ask.available_at,
    )
    workflow.schedule(referral)
    session.add(referral)
    workflow.publisher.created(session, referral)
    return referral
