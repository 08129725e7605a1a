"""Wiring of the referral service: its gRPC API; it consumes identified needs, directory changes
and residents' consents."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from ach.directory.v1 import directory_pb2
from ach.partners.v1 import partners_pb2
from ach.referrals.v1 import referrals_pb2_grpc
from ach.screening.v1 import screening_pb2
from ach_events.resident_replica import replica_handlers
from ach_events.runtime import Command, Runtime, ServiceDefinition
from ach_events.runtime import cli as run_cli
from ach_events.topics import (
    DIRECTORY_SERVICES,
    PARTNER_INTAKE,
    RESIDENT_EVENTS,
    SCREENING_EVENTS,
)
from ach_platform.settings import ServiceSettings

from ach_referrals.api import ReferralApi
from ach_referrals.mend import ReroutePolicies, mend_targets
from ach_referrals.settings import ReferralSettings
from ach_referrals.store import ReferralRecord
from ach_referrals.subscribers import ReferralSubscribers
from ach_referrals.timers import TimerWorker
from ach_referrals.workflow import ReferralWorkflow


def wire(runtime: Runtime) -> None:
    settings = ReferralSettings.load()
    default, by_domain = settings.reroute_policy
    workflow = ReferralWorkflow(
        runtime.outbox, default, by_domain, settings.timers, partners=lambda: runtime.partners
    )
    api = ReferralApi(runtime.sessions, workflow)
    events = ReferralSubscribers(workflow)
    runtime.serve(api, referrals_pb2_grpc.add_ReferralServiceServicer_to_server)

    runtime.owned_by("referral", ReferralRecord, lambda r: {r.source_partner_id, r.target_partner_id})
    runtime.owned_by("referral-source", ReferralRecord, lambda r: {r.source_partner_id})
    runtime.consume(
        [SCREENING_EVENTS, DIRECTORY_SERVICES, RESIDENT_EVENTS],
        {
            **replica_handlers(after_consent=workflow.apply_consents, after_merge=workflow.apply_consents),
            screening_pb2.NeedIdentified: events.on_need_identified,
            directory_pb2.ServiceChanged: events.on_service_changed,
        },
    )
    runtime.run_as_singleton(TimerWorker(runtime.sessions, workflow).run)
    # CBOs' case-management systems report statuses through their inbound topics (the gateway).
    runtime.consume(
        [PARTNER_INTAKE], {partners_pb2.ReferralStatusReported: events.on_referral_status_reported}
    )


def mend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")


def mend_command(args: argparse.Namespace) -> int:
    settings = ReferralSettings.load()
    default, by_domain = settings.reroute_policy
    report = asyncio.run(
        mend_targets(
            ServiceSettings.from_env(DEFINITION.name),
            ReroutePolicies(default, by_domain, settings.timers),
            dry_run=args.dry_run,
        )
    )
    print(report.summary())
    return 0


DEFINITION = ServiceDefinition(
    "referrals",
    Path(__file__).parent / "migrations",
    wire,
    commands=(
        Command(
            "mend-targets",
            "once, after the upgrade that routes only to partners: referrals waiting for a target that"
            " is no network partner receiving referrals are turned down by the network and re-routed"
            " (by REFERRAL_REROUTE_POLICY), each with a history entry saying why",
            mend_arguments,
            mend_command,
        ),
    ),
)


def cli(argv: list[str] | None = None) -> None:
    run_cli(DEFINITION, argv)


if __name__ == "__main__":
    cli()
