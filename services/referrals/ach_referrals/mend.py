"""Mending referrals placed before only partners received referrals: a referral waiting for a
target that is no network partner (an HSDS organization id taken for a partner id, or a partner
without the referral-target role) is turned down by the network, with the reason, and re-routed by
the network's policy to a partner's service. Run once after the upgrade (ach-referrals
mend-targets), after the directory has published its services again with their partners."""

from __future__ import annotations

from dataclasses import dataclass, field

from ach_events.outbox import Outbox
from ach_events.partners import PartnerReplica
from ach_platform.clock import utc_now
from ach_platform.database import check_database, create_engine, session_factory
from ach_platform.settings import ServiceSettings

from ach_referrals import domain
from ach_referrals.store import open_referrals_with_target
from ach_referrals.workflow import ReferralWorkflow


@dataclass(frozen=True)
class ReroutePolicies:
    default: domain.ReroutePolicy
    by_domain: dict[str, domain.ReroutePolicy]
    timers: domain.TimerPolicy


@dataclass
class MendReport:
    checked: int = 0
    rerouted: list[str] = field(default_factory=list)
    left_to_source: list[str] = field(default_factory=list)  # rejected: the source chooses
    dry_run: bool = False

    def summary(self) -> str:
        if self.dry_run:
            return (
                f"ach-referrals: {self.checked} open referrals checked; {len(self.left_to_source)} would be"
                " turned down and re-routed by REFERRAL_REROUTE_POLICY (nothing changed)"
                + "".join(f"\n  {r}" for r in self.left_to_source)
            )
        return (
            f"ach-referrals: {self.checked} open referrals checked; "
            f"{len(self.rerouted) + len(self.left_to_source)} were with a target that is no partner: "
            f"{len(self.rerouted)} re-routed to a partner, {len(self.left_to_source)} turned down and"
            " left to their source (no other partner serves the need, or the policy is 'source')"
            + "".join(f"\n  re-routed {r}" for r in self.rerouted)
            + "".join(f"\n  left to the source {r}" for r in self.left_to_source)
        )


async def mend_targets(settings: ServiceSettings, policies: ReroutePolicies, *, dry_run: bool) -> MendReport:
    """One transaction: every change and its events commit together (the service's relay, running
    or at its next start, publishes them)."""
    engine = create_engine(settings.database_url)
    partners = PartnerReplica(settings.kafka_bootstrap_servers)
    report = MendReport(dry_run=dry_run)
    try:
        await check_database(engine, settings.connect_timeout_s, tables=["referral"])
        await partners.start(settings.connect_timeout_s)
        workflow = ReferralWorkflow(
            Outbox(source="/ach/referrals"),
            policies.default,
            policies.by_domain,
            policies.timers,
            partners=lambda: partners,
        )
        async with session_factory(engine)() as session, session.begin():
            waiting = await open_referrals_with_target(session)
            report.checked = len(waiting)
            for referral in waiting:
                if workflow.partner_taking_referrals(referral.target_partner_id):
                    continue
                if referral.status != domain.Status.REQUESTED.value:
                    continue  # accepted by someone who was a partner then: theirs to finish
                if dry_run:
                    report.left_to_source.append(referral.id)
                    continue
                why = domain.not_a_partner_reason(referral.target_partner_id)
                workflow.record_change(
                    session,
                    referral,
                    domain.Status.REJECTED,
                    utc_now(),
                    reason=why,
                    reason_code="not-a-partner",
                )
                await workflow.after_rejection(session, referral, "not-a-partner")
                moved = referral.status == domain.Status.REQUESTED.value
                (report.rerouted if moved else report.left_to_source).append(referral.id)
    finally:
        await partners.stop()
        await engine.dispose()
    return report
