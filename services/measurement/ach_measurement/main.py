"""Wiring of the measurement service: consumes every domain's events, serves the funnel."""

from __future__ import annotations

from pathlib import Path

from ach.measurement.v1 import measurement_pb2_grpc
from ach.notifications.v1 import notifications_pb2
from ach.referrals.v1 import referrals_pb2
from ach.screening.v1 import screening_pb2
from ach_events.runtime import Runtime, ServiceDefinition
from ach_events.runtime import cli as run_cli
from ach_events.topics import (
    NOTIFICATION_EVENTS,
    REFERRAL_EVENTS,
    SCREENING_DEMOGRAPHICS,
    SCREENING_EVENTS,
)

from ach_measurement import events
from ach_measurement.api import MeasurementApi


def wire(runtime: Runtime) -> None:
    api = MeasurementApi(runtime.sessions)
    runtime.serve(api, measurement_pb2_grpc.add_MeasurementServiceServicer_to_server)
    runtime.consume(
        [SCREENING_EVENTS, SCREENING_DEMOGRAPHICS, REFERRAL_EVENTS, NOTIFICATION_EVENTS],
        {
            screening_pb2.ScreeningCompleted: events.on_screening_completed,
            screening_pb2.NeedIdentified: events.on_need_identified,
            referrals_pb2.ReferralCreated: events.on_referral_created,
            referrals_pb2.ReferralStatusChanged: events.on_status_changed,
            notifications_pb2.NotificationDelivered: events.on_notification_delivered,
            screening_pb2.ScreeningDemographicsRecorded: events.on_demographics_recorded,
        },
    )


DEFINITION = ServiceDefinition("measurement", Path(__file__).parent / "migrations", wire)


def cli() -> None:
    run_cli(DEFINITION)


if __name__ == "__main__":
    cli()
