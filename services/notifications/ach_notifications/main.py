"""Wiring of the notifications service: consumes referral events, serves the delivery log."""

from __future__ import annotations

from pathlib import Path

from ach.notifications.v1 import notifications_pb2_grpc
from ach_events.runtime import Runtime, ServiceDefinition
from ach_events.runtime import cli as run_cli
from ach_events.topics import REFERRAL_EVENTS

from ach_notifications.api import NotificationApi
from ach_notifications.events import NotificationEvents


def wire(runtime: Runtime) -> None:
    events = NotificationEvents(runtime.outbox)
    api = NotificationApi(runtime.sessions)
    runtime.serve_grpc(
        lambda server: notifications_pb2_grpc.add_NotificationServiceServicer_to_server(api, server),
        "ach.notifications.v1.NotificationService",
    )
    runtime.consume(
        [REFERRAL_EVENTS],
        {
            "ach.referrals.v1.ReferralCreated": events.on_referral_created,
            "ach.referrals.v1.ReferralStatusChanged": events.on_status_changed,
        },
    )


DEFINITION = ServiceDefinition("notifications", Path(__file__).parent / "migrations", wire)


def cli() -> None:
    run_cli(DEFINITION)


if __name__ == "__main__":
    cli()
