"""Consumes referral events and records one delivery per notice and partner channel, for the
delivery worker (``deliveries``) to send."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from ach.notifications.v1 import notifications_pb2
from ach.referrals.v1 import referrals_pb2
from ach.residents.v1 import residents_pb2
from ach_events.consumer import require_fields
from ach_events.envelope import Envelope
from ach_events.outbox import Outbox
from ach_events.resident_replica import keep_merge
from ach_platform.clock import utc_now
from ach_platform.codes import code_of
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_notifications import domain
from ach_notifications.deliveries import wake_after_commit
from ach_notifications.publishers import publish_delivered
from ach_notifications.residents import CHANNELS
from ach_notifications.store import (
    DeliveryRecord,
    PartnerChannel,
    ReferralParty,
    ResidentPreference,
    active_channels,
    preference_of,
)


class NotificationSubscribers:
    def __init__(
        self,
        outbox: Outbox,
        coordinator: str = "ach-backbone",
        new_deliveries: asyncio.Event | None = None,
        message_residents: bool = False,
        silent_domains: frozenset[str] = domain.DEFAULT_SILENT_DOMAINS,
        answer_channels: frozenset[str] = frozenset(),
    ) -> None:
        self._outbox = outbox
        self._new_deliveries = new_deliveries
        self._coordinator = coordinator  # the ACH coordinator's partner id: escalations reach it
        self._message_residents = message_residents  # identity can tell where messages go
        self._silent_domains = silent_domains  # need domains residents get no message about
        self._answer_channels = answer_channels  # where residents' answers can come back from

    async def on_referral_created(
        self, session: AsyncSession, envelope: Envelope, event: referrals_pb2.ReferralCreated
    ) -> None:
        require_fields(event, "referral_id", "source_partner_id")
        session.add(
            ReferralParty(
                referral_id=event.referral_id,
                source_partner_id=event.source_partner_id,
                target_partner_id=event.target_partner_id,
            )
        )
        if event.informational:
            # Nothing for any CBO to do; the resident is sent the service's details.
            info = event.service_information
            await self._message_resident(
                session,
                envelope,
                event.referral_id,
                event.resident_id,
                event.need_domain,
                domain.INFORMATIONAL,
                "",
                service={
                    "name": info.name,
                    "organization_name": info.organization_name,
                    "address": info.address,
                    "phone": info.phone,
                    "opening_hours": [
                        {f: getattr(h, f) for f in ("rrule", "opens_at", "closes_at", "closed")}
                        for h in info.opening_hours
                    ],
                },
            )
            return
        await self._deliver(
            session, envelope, domain.notices_for_referral_created(event.referral_id, event.target_partner_id)
        )
        if event.target_partner_id:
            await self._message_resident(
                session,
                envelope,
                event.referral_id,
                event.resident_id,
                event.need_domain,
                code_of(referrals_pb2.ReferralStatus, event.status),
                event.target_partner_id,
            )

    async def on_status_changed(
        self, session: AsyncSession, envelope: Envelope, event: referrals_pb2.ReferralStatusChanged
    ) -> None:
        require_fields(event, "referral_id")
        to_status = code_of(referrals_pb2.ReferralStatus, event.to_status)
        party = await session.get(ReferralParty, event.referral_id)
        source = party.source_partner_id if party else ""
        if party is not None and event.target_partner_id != party.target_partner_id:
            party.target_partner_id = event.target_partner_id  # re-routed to another target
            session.add(party)
        await self._deliver(
            session,
            envelope,
            domain.notices_for_status_changed(
                event.referral_id,
                source,
                event.target_partner_id,
                event.changed_by.partner_id,
                to_status,
            ),
            to_status,
        )
        await self._message_resident(
            session,
            envelope,
            event.referral_id,
            event.resident_id,
            event.need_domain,
            to_status,
            event.target_partner_id,
        )

    async def on_contact_preference_changed(
        self, session: AsyncSession, envelope: Envelope, event: residents_pb2.ContactPreferenceChanged
    ) -> None:
        """The replica of the resident's wish (newer versions only: a replay changes nothing)."""
        require_fields(event.preference, "resident_id")
        p = event.preference
        kept = await session.get(ResidentPreference, p.resident_id)
        if kept is not None and kept.version >= p.version:
            return
        kept = kept or ResidentPreference(resident_id=p.resident_id)
        kept.do_not_contact = p.do_not_contact
        kept.channel = CHANNELS.get(p.channel, "")
        kept.language = p.language
        kept.version = p.version
        session.add(kept)

    async def on_residents_merged(
        self, session: AsyncSession, envelope: Envelope, event: residents_pb2.ResidentsMerged
    ) -> None:
        """Which ids were merged into which: a referral under a merged-away id is messaged (or not)
        by the surviving record's preference, as identity decides when it gives the address."""
        await keep_merge(session, event)

    async def _message_resident(
        self,
        session: AsyncSession,
        envelope: Envelope,
        referral_id: str,
        resident_id: str,
        need_domain: str,
        to_status: str,
        organization_id: str,
        service: dict[str, Any] | None = None,
    ) -> None:
        """A message to the resident about their referral, when their preference and the need allow:
        queued with ids only (the address and the text are made when it is sent)."""
        if not self._message_residents or not resident_id:
            return
        kept = await preference_of(session, resident_id)
        preference = (
            domain.ContactPreference(kept.do_not_contact, kept.channel, kept.language) if kept else None
        )
        template = domain.resident_template(to_status, need_domain, preference, self._silent_domains)
        if not template or preference is None:
            return
        if template == domain.HELP_QUESTION and preference.channel not in self._answer_channels:
            return
        now = utc_now()
        session.add(
            DeliveryRecord(
                id=str(uuid.uuid4()),
                partner_id=domain.RESIDENTS,
                channel=preference.channel,
                channel_id="",
                subject_type="referral",
                subject_id=referral_id,
                event_type=f"resident.{template}",
                status=notifications_pb2.DELIVERY_STATUS_PENDING,
                source_event_id=envelope.id,
                created_at=now,
                payload={
                    "resident_id": resident_id,
                    "referral_id": referral_id,
                    "template": template,
                    "organization_id": organization_id,
                    **({"service": service} if service is not None else {}),
                },
                next_attempt_at=now,
                traceparent=envelope.trace_headers.get("traceparent", ""),
            )
        )
        if self._new_deliveries is not None:
            wake_after_commit(session, self._new_deliveries)

    async def on_reminder(
        self, session: AsyncSession, envelope: Envelope, event: referrals_pb2.ReferralReminderSent
    ) -> None:
        require_fields(event, "referral_id")
        await self._deliver(
            session,
            envelope,
            domain.notices_for_reminder(event.referral_id, event.target_partner_id),
            code_of(referrals_pb2.ReferralStatus, event.status),
        )

    async def on_escalated(
        self, session: AsyncSession, envelope: Envelope, event: referrals_pb2.ReferralEscalated
    ) -> None:
        require_fields(event, "referral_id")
        await self._deliver(
            session,
            envelope,
            domain.notices_for_escalation(event.referral_id, event.source_partner_id, self._coordinator),
            code_of(referrals_pb2.ReferralStatus, event.status),
        )

    async def _deliver(
        self, session: AsyncSession, envelope: Envelope, notices: list[domain.Notice], status: str = ""
    ) -> None:
        """One delivery per notice and active channel of the partner, pending for the delivery
        worker (in this transaction: a crash loses none). A partner without channels reads its
        delivery log (through the API): the notice is logged there as delivered."""
        now = utc_now()
        for notice in notices:
            channels: list[PartnerChannel | None] = [*await active_channels(session, notice.partner_id)]
            for channel in channels or [None]:
                delivery_id = str(uuid.uuid4())
                delivery = DeliveryRecord(
                    id=delivery_id,
                    partner_id=notice.partner_id,
                    channel=channel.kind if channel else "log",
                    channel_id=channel.id if channel else "",
                    subject_type=notice.subject_type,
                    subject_id=notice.subject_id,
                    event_type=notice.event_type,
                    status=notifications_pb2.DELIVERY_STATUS_PENDING
                    if channel
                    else notifications_pb2.DELIVERY_STATUS_DELIVERED,
                    attempts=0 if channel else 1,
                    source_event_id=envelope.id,
                    created_at=now,
                    delivered_at=None if channel else now,
                    payload=domain.webhook_body(delivery_id, notice, now, status),
                    next_attempt_at=now if channel else None,
                    traceparent=envelope.trace_headers.get("traceparent", ""),
                )
                session.add(delivery)
                if channel is not None and self._new_deliveries is not None:
                    wake_after_commit(session, self._new_deliveries)
                if channel is None:
                    publish_delivered(session, self._outbox, delivery, now)
