"""Wiring of the funding service: consumes referral outcomes, serves the ledger."""

from __future__ import annotations

from pathlib import Path

from ach.funding.v1 import funding_pb2_grpc
from ach.referrals.v1 import referrals_pb2
from ach_events.runtime import Runtime, ServiceDefinition
from ach_events.runtime import cli as run_cli
from ach_events.topics import REFERRAL_EVENTS

from ach_funding.api import FundingApi
from ach_funding.events import FundingEvents
from ach_funding.settings import FundingSettings


def wire(runtime: Runtime) -> None:
    settings = FundingSettings.load()
    events = FundingEvents(runtime.outbox, settings.pay_internal_referrals)
    api = FundingApi(runtime.sessions)
    runtime.serve(api, funding_pb2_grpc.add_FundingServiceServicer_to_server)
    runtime.consume([REFERRAL_EVENTS], {referrals_pb2.ReferralStatusChanged: events.on_status_changed})


DEFINITION = ServiceDefinition("funding", Path(__file__).parent / "migrations", wire)


def cli() -> None:
    run_cli(DEFINITION)


if __name__ == "__main__":
    cli()
