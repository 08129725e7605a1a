"""Wiring of the notifications service: consumes referral events into deliveries, runs the delivery
worker (webhooks, e-mail), serves partners' channels and the delivery log."""

from __future__ import annotations

import os
from pathlib import Path

from ach.notifications.v1 import notifications_pb2_grpc
from ach_events.runtime import Runtime, ServiceDefinition
from ach_events.runtime import cli as run_cli
from ach_events.topics import REFERRAL_EVENTS

from ach_notifications.api import NotificationApi
from ach_notifications.deliveries import DeliverySettings, DeliveryWorker
from ach_notifications.events import NotificationEvents
from ach_notifications.store import DeliveryRecord, PartnerChannel


def wire(runtime: Runtime) -> None:
    settings = DeliverySettings.from_env()
    worker = DeliveryWorker(runtime.sessions, runtime.outbox, settings)
    events = NotificationEvents(
        runtime.outbox, os.environ.get("NOTIFY_COORDINATOR", "ach-backbone"), worker.new_deliveries
    )
    api = NotificationApi(runtime.sessions, insecure_webhooks=settings.insecure_webhooks)
    runtime.serve_grpc(
        lambda server: notifications_pb2_grpc.add_NotificationServiceServicer_to_server(api, server),
        "ach.notifications.v1.NotificationService",
    )

    async def channel_owner(channel_id: str) -> set[str] | None:
        async with runtime.sessions() as session:
            channel = await session.get(PartnerChannel, channel_id)
        return {channel.partner_id} if channel else None

    async def delivery_owner(delivery_id: str) -> set[str] | None:
        async with runtime.sessions() as session:
            delivery = await session.get(DeliveryRecord, delivery_id)
        return {delivery.partner_id} if delivery else None

    runtime.resolve_owners("channel", channel_owner)
    runtime.resolve_owners("delivery", delivery_owner)
    runtime.consume(
        [REFERRAL_EVENTS],
        {
            "ach.referrals.v1.ReferralCreated": events.on_referral_created,
            "ach.referrals.v1.ReferralStatusChanged": events.on_status_changed,
            "ach.referrals.v1.ReferralReminderSent": events.on_reminder,
            "ach.referrals.v1.ReferralEscalated": events.on_escalated,
        },
    )
    runtime.run_in_background(worker.run)


DEFINITION = ServiceDefinition("notifications", Path(__file__).parent / "migrations", wire)


def cli() -> None:
    run_cli(DEFINITION)


if __name__ == "__main__":
    cli()
