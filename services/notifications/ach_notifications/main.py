"""Wiring of the notifications service: consumes referral events into deliveries, runs the delivery
worker (webhooks, e-mail), serves partners' channels and the delivery log."""

from __future__ import annotations

import logging
from pathlib import Path

from ach.notifications.v1 import notifications_pb2_grpc
from ach.referrals.v1 import referrals_pb2
from ach.residents.v1 import residents_pb2
from ach_events.runtime import Runtime, ServiceDefinition
from ach_events.runtime import cli as run_cli
from ach_events.topics import REFERRAL_EVENTS, RESIDENT_EVENTS
from ach_platform.settings import ConfigError
from starlette.applications import Starlette

from ach_notifications.answer_pages import AnswerPages
from ach_notifications.api import NotificationApi
from ach_notifications.deliveries import DeliveryWorker
from ach_notifications.residents import IdentityContacts
from ach_notifications.sealing import SecretBox
from ach_notifications.settings import NotificationSettings
from ach_notifications.sms_replies import SmsReplies
from ach_notifications.store import DeliveryRecord, PartnerChannel, seal_stored_secrets
from ach_notifications.subscribers import NotificationSubscribers
from ach_notifications.transports import ADDRESS_DIGESTS

log = logging.getLogger(__name__)


def wire(runtime: Runtime) -> None:
    config = NotificationSettings.load()
    settings = config.delivery()
    coordinator = config.coordinator
    residents = IdentityContacts.from_settings(config)
    if residents is None:
        log.warning("messages to residents are off: NOTIFY_IDENTITY_ADDRESS is not set")

    def organization_name(partner_id: str) -> str:
        known = runtime.partners.get(partner_id) if runtime.partners else None
        return known.name if known and known.name else partner_id

    box = SecretBox.from_file(config.secrets_key_file)
    worker = DeliveryWorker(
        runtime.sessions,
        runtime.outbox,
        settings,
        residents=residents,
        organization_name=organization_name,
        box=box,
    )
    events = NotificationSubscribers(
        runtime.outbox,
        coordinator,
        worker.new_deliveries,
        message_residents=residents is not None,
        silent_domains=config.silent_domains(),
        answer_channels=config.answer_channels(),
    )
    api = NotificationApi(runtime.sessions, destinations=settings.destinations, box=box)

    async def seal_older_secrets() -> None:
        sealed = await seal_stored_secrets(runtime.sessions, box)
        if sealed:
            log.info("webhook secrets sealed at rest", extra={"channels": sealed})

    runtime.run_in_background(seal_older_secrets)
    runtime.serve(api, notifications_pb2_grpc.add_NotificationServiceServicer_to_server)

    runtime.owned_by("channel", PartnerChannel, lambda channel: {channel.partner_id})
    runtime.owned_by("delivery", DeliveryRecord, lambda delivery: {delivery.partner_id})
    runtime.consume(
        [REFERRAL_EVENTS],
        {
            referrals_pb2.ReferralCreated: events.on_referral_created,
            referrals_pb2.ReferralStatusChanged: events.on_status_changed,
            referrals_pb2.ReferralReminderSent: events.on_reminder,
            referrals_pb2.ReferralEscalated: events.on_escalated,
        },
    )
    runtime.consume(
        [RESIDENT_EVENTS],
        {
            residents_pb2.ContactPreferenceChanged: events.on_contact_preference_changed,
            residents_pb2.ResidentsMerged: events.on_residents_merged,
        },
    )
    runtime.run_in_background(worker.run)
    if config.answer_channels():
        if not runtime.settings.http_port:
            raise ConfigError("NOTIFY_SMS_REPLY_URL and NOTIFY_ANSWER_URL need HTTP_PORT: answers come there")
        key = box.derived_key(ADDRESS_DIGESTS)
        routes = AnswerPages(runtime.sessions, runtime.outbox, key).routes() if config.answer_url else []
        if config.sms_reply_url:
            token = config.sms_gateway_token.get_secret_value()
            routes += SmsReplies(runtime.sessions, runtime.outbox, token, config.sms_reply_url, key).routes()
        runtime.serve_http(Starlette(routes=routes), "residents' answers")


DEFINITION = ServiceDefinition("notifications", Path(__file__).parent / "migrations", wire)


def cli() -> None:
    run_cli(DEFINITION)


if __name__ == "__main__":
    cli()
