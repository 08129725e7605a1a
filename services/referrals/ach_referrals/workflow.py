"""The referral workflow, in the domain's words: a referral placed for an identified need with the
best-matching partner the resident consented to share with (or a draft saying why), informational
referrals, re-routing after a rejection (no wrong door), partners' status reports, the effects of a
revoked or new consent, and every status change with its history row and event in one transaction.
Servicers, subscribers and timers call it; the rules themselves are in ``domain``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from ach.screening.v1 import screening_pb2
from ach_events.outbox import Outbox
from ach_events.resident_replica import consent_terms, same_person_ids
from ach_platform.access import PartnerRoster
from ach_platform.clock import as_utc, utc_now
from ach_platform.consent import ConsentTerms, relied_on_by
from ach_platform.opening_hours import Hours
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_referrals import domain
from ach_referrals.mappers import (
    resident_facts,
    service_information,
)
from ach_referrals.publishers import ReferralPublisher
from ach_referrals.store import (
    DirectoryServiceReplica,
    ReferralHistory,
    ReferralRecord,
    organizations_that_rejected,
    referral_for_need,
    referrals_of,
    replica_services,
)


class ReferralWorkflow:
    def __init__(
        self,
        outbox: Outbox,
        reroute_default: domain.ReroutePolicy = domain.ReroutePolicy.AUTOMATIC,
        reroute_by_domain: dict[str, domain.ReroutePolicy] | None = None,
        timers: domain.TimerPolicy | None = None,
        partners: Callable[[], PartnerRoster | None] = lambda: None,
    ) -> None:
        self.publisher = ReferralPublisher(outbox)
        # The partner registry's replica: who receives referrals is its say, at the moment of routing.
        self._partners = partners
        self.timers = timers or domain.TimerPolicy()
        self._reroute_default = reroute_default
        self._reroute_by_domain = reroute_by_domain or {}

    async def place_for_need(self, session: AsyncSession, need: screening_pb2.NeedIdentified) -> None:
        """Place a referral for the need with the best-matching service the resident consented to
        share with. Otherwise the referral stays a draft, saying why, for the source to act on."""
        if await referral_for_need(session, need.need_id) is not None:
            return
        now = utc_now()
        routing = await self._route(
            session, need.resident_id, need.need_domain, need.language, now, need.source_partner_id
        )
        if routing.information is not None:
            await self.refer_informationally(
                session,
                routing.information,
                now,
                resident_id=need.resident_id,
                need_domain=need.need_domain,
                source_partner_id=need.source_partner_id,
                language=need.language or "en",
                need_id=need.need_id,
                screening_id=need.screening_id,
            )
            return
        referral = ReferralRecord(
            id=str(uuid.uuid4()),
            resident_id=need.resident_id,
            need_domain=need.need_domain,
            need_id=need.need_id,
            screening_id=need.screening_id,
            language=need.language or "en",
            source_partner_id=need.source_partner_id,
            status=(domain.Status.REQUESTED if routing.match else domain.Status.DRAFT).value,
            draft_reason=routing.draft_reason,
            created_at=now,
            updated_at=now,
        )
        if routing.match:
            referral.target_partner_id = routing.match.service.partner_id
            referral.target_service_id = routing.match.service.service_id
        self.schedule(referral)
        session.add(referral)
        self.publisher.created(session, referral)

    async def refer_informationally(
        self,
        session: AsyncSession,
        match: domain.Match,
        now: datetime,
        *,
        resident_id: str,
        need_domain: str,
        source_partner_id: str,
        language: str,
        need_id: str = "",
        screening_id: str = "",
        reason: str = "",
        actor_partner_id: str = "",
        actor_user_id: str = "",
        zip_code: str = "",
        age: int | None = None,
        available_at: datetime | None = None,
    ) -> ReferralRecord:
        """An informational referral: the resident is sent the service's details (by the channel and
        in the language they chose, through notifications); nothing goes to the organization, which
        is no party to it. Completed at once, with one history entry saying why."""
        referral = ReferralRecord(
            id=str(uuid.uuid4()),
            resident_id=resident_id,
            need_domain=need_domain,
            need_id=need_id,
            screening_id=screening_id,
            language=language,
            source_partner_id=source_partner_id,
            target_partner_id="",
            target_service_id=match.service.service_id,
            status=domain.Status.COMPLETED.value,
            informational=True,
            created_at=now,
            updated_at=now,
            sequence=1,
            match_zip=zip_code,
            match_age=age,
            match_available_at=available_at,
        )
        session.add(referral)
        replica = await session.get(DirectoryServiceReplica, match.service.service_id)
        session.add(
            ReferralHistory(
                referral_id=referral.id,
                sequence=1,
                from_status=domain.Status.DRAFT.value,
                to_status=domain.Status.COMPLETED.value,
                actor_partner_id=actor_partner_id,
                actor_user_id=actor_user_id,
                reason=reason or domain.informational_reason(need_domain, replica.name if replica else ""),
                changed_at=now,
                target_service_id=match.service.service_id,
            )
        )
        self.publisher.created(session, referral, service_information(replica, match.service.service_id))
        return referral

    def partner_taking_referrals(self, partner_id: str) -> str:
        """The partner id when the registry has it active with the referral-target role; else ""."""
        registry = self._partners()
        partner = registry.get(partner_id) if registry is not None and partner_id else None
        return (
            partner_id
            if partner is not None and partner.active and "referral-target" in partner.roles
            else ""
        )

    async def candidates(self, session: AsyncSession) -> list[domain.CandidateService]:
        """The services of the local directory replica, as matching sees them: a service names its
        partner only while the registry has that partner active and receiving referrals."""
        return [
            domain.CandidateService(
                r.service_id,
                r.organization_id,
                tuple(r.need_domains),
                tuple(r.languages),
                r.active,
                r.capacity_available,
                places=tuple((lat, lon) for lat, lon in r.places),
                minimum_age=r.minimum_age,
                maximum_age=r.maximum_age,
                area_zips=frozenset(r.area_zips),
                area_radius_km=r.area_radius_km,
                hours=tuple(Hours(**h) for h in r.opening_hours),
                partner_id=self.partner_taking_referrals(r.partner_id),
                name=r.name,
            )
            for r in await replica_services(session)
        ]

    async def _route(
        self,
        session: AsyncSession,
        resident_id: str,
        need_domain: str,
        language: str,
        at: datetime,
        source_partner_id: str,
    ) -> domain.Routing:
        consents = await self.consents(session, resident_id, source_partner_id)
        return domain.route(await self.candidates(session), need_domain, language, consents, at)

    def schedule(self, referral: ReferralRecord) -> None:
        """The referral's next timer, from its state (the timer worker fires it when due)."""
        timer = domain.next_timer(
            domain.Status(referral.status),
            as_utc(referral.updated_at),
            referral.reminders_sent,
            referral.escalated,
            self.timers,
        )
        referral.timer_due_at = timer.due_at if timer else None

    async def proposals(
        self,
        session: AsyncSession,
        referral: ReferralRecord,
        at: datetime,
        candidates: list[domain.CandidateService] | None = None,
    ) -> list[domain.Match]:
        """Ranked targets for a referral, without the organizations that turned it down."""
        return domain.proposals(
            candidates if candidates is not None else await self.candidates(session),
            referral.need_domain,
            referral.language,
            await self.consents(session, referral.resident_id, referral.source_partner_id),
            at,
            await organizations_that_rejected(session, referral.id) | {referral.target_partner_id},
            resident_facts(referral.match_zip, referral.match_age, referral.match_available_at, at),
        )

    def information_only(
        self, referral: ReferralRecord, at: datetime, candidates: list[domain.CandidateService]
    ) -> list[domain.Match]:
        """Services of organizations that are no partner, for the resident's information."""
        return domain.information_only(
            candidates,
            referral.need_domain,
            referral.language,
            resident_facts(referral.match_zip, referral.match_age, referral.match_available_at, at),
        )

    async def after_rejection(
        self, session: AsyncSession, referral: ReferralRecord, rejection_code: str
    ) -> None:
        """No wrong door: with the automatic policy for its need domain, a rejected referral goes
        on to the next suitable target at once. Otherwise (or with none left) it stays rejected and
        the source, told of the rejection, chooses (RerouteReferral)."""
        policy = domain.reroute_policy(referral.need_domain, self._reroute_by_domain, self._reroute_default)
        if policy is not domain.ReroutePolicy.AUTOMATIC:
            return
        now = utc_now()
        found = await self.proposals(session, referral, now)
        if found:
            self.reroute(
                session,
                referral,
                found[0],
                now,
                domain.rerouted_reason(rejection_code),
                reason_code=rejection_code,
            )

    def reroute(
        self,
        session: AsyncSession,
        referral: ReferralRecord,
        to: domain.Match,
        now: datetime,
        reason: str,
        *,
        actor_partner_id: str = "",
        actor_user_id: str = "",
        reason_code: str = "",
    ) -> None:
        previous = referral.target_partner_id
        referral.target_partner_id = to.service.partner_id
        referral.target_service_id = to.service.service_id
        self.record_change(
            session,
            referral,
            domain.Status.REQUESTED,
            now,
            reason=reason,
            actor_partner_id=actor_partner_id,
            actor_user_id=actor_user_id,
            reason_code=reason_code,
        )
        self.publisher.rerouted(
            session,
            referral,
            previous,
            now,
            reason,
            actor_partner_id=actor_partner_id,
            actor_user_id=actor_user_id,
            reason_code=reason_code,
        )

    async def consents(
        self, session: AsyncSession, resident_id: str, source_partner_id: str
    ) -> list[ConsentTerms]:
        """The resident's consents a referral from this source may rest on: those the source took
        (or the ACH admin took for the resident); another partner's consent covers its own
        disclosures, not the source's."""
        return self.relied_on_by(await consent_terms(session, resident_id), source_partner_id)

    def relied_on_by(self, terms: list[ConsentTerms], source_partner_id: str) -> list[ConsentTerms]:
        registry = self._partners()
        admins = registry.holding("ach-admin") if registry is not None else set()
        return relied_on_by(terms, {source_partner_id} | admins)

    async def apply_consents(self, session: AsyncSession, resident_id: str) -> None:
        """After the resident's consents changed (or two records merged): a revocation cancels the
        open referrals it no longer covers; a new consent routes the drafts that waited for one."""
        now = utc_now()
        terms = await consent_terms(session, resident_id)  # read once; each source's share is pure
        for referral in await referrals_of(session, await same_person_ids(session, resident_id)):
            status = domain.Status(referral.status)
            consents = self.relied_on_by(terms, referral.source_partner_id)
            if domain.withdraw_on_revocation(
                status, referral.need_domain, referral.target_partner_id, consents, now
            ):
                self.record_change(
                    session,
                    referral,
                    domain.Status.CANCELLED,
                    now,
                    reason=domain.CONSENT_REVOKED,
                    reason_code="consent-revoked",
                )
            elif status is domain.Status.DRAFT and referral.draft_reason == domain.CONSENT_REQUIRED:
                routing = await self._route(
                    session,
                    referral.resident_id,
                    referral.need_domain,
                    referral.language,
                    now,
                    referral.source_partner_id,
                )
                if routing.match:
                    referral.target_partner_id = routing.match.service.partner_id
                    referral.target_service_id = routing.match.service.service_id
                    referral.draft_reason = ""
                    self.record_change(
                        session, referral, domain.Status.REQUESTED, now, reason="consent recorded"
                    )

    def record_change(
        self,
        session: AsyncSession,
        referral: ReferralRecord,
        to: domain.Status,
        now: datetime,
        *,
        reason: str,
        actor_partner_id: str = "",
        actor_user_id: str = "",
        outcome: domain.Outcome | None = None,
        reason_code: str = "",
    ) -> None:
        """One status change: the referral, its history row and the event, in the caller's
        transaction. No actor: the network made it on the resident's behalf (e.g. a revocation)."""
        referral.sequence += 1
        change = ReferralHistory(
            referral_id=referral.id,
            sequence=referral.sequence,
            from_status=referral.status,
            to_status=to.value,
            actor_partner_id=actor_partner_id,
            actor_user_id=actor_user_id,
            reason=reason,
            reason_code=domain.reason_code_for(reason_code, reason) if actor_partner_id else reason_code,
            outcome=outcome.value if outcome else "",
            changed_at=now,
            target_partner_id=referral.target_partner_id,
            target_service_id=referral.target_service_id,
        )
        referral.status = to.value
        referral.outcome = outcome.value if outcome else referral.outcome
        referral.updated_at = now
        referral.reminders_sent, referral.escalated = 0, False  # activity: the clock starts again
        self.schedule(referral)
        session.add(referral)
        session.add(change)
        self.publisher.status_changed(session, referral, change)
