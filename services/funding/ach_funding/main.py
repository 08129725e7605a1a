"""Wiring of the funding service: consumes referral outcomes, keeps the Wellness Fund's ledger."""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import replace
from pathlib import Path

from ach.funding.v1 import funding_pb2_grpc
from ach.referrals.v1 import referrals_pb2
from ach_events.runtime import Command, Runtime, ServiceDefinition
from ach_events.runtime import cli as run_cli
from ach_events.topics import REFERRAL_EVENTS
from ach_platform.clock import utc_now
from ach_platform.database import check_database, create_engine, session_factory
from ach_platform.settings import ServiceSettings

from ach_funding import ledger, reports
from ach_funding.api import FundingApi
from ach_funding.community_bank import CommunityBank
from ach_funding.disbursements import Disbursements
from ach_funding.fund_catalog import FundCatalog, load_catalog
from ach_funding.journal_writer import JournalWriter
from ach_funding.ledger import Ledger
from ach_funding.outcome_payments import OutcomePayments
from ach_funding.partner_billing import PartnerBilling
from ach_funding.settings import FundingSettings
from ach_funding.subscribers import ReferralOutcomes
from ach_funding.wellness_fund import WellnessFund

log = logging.getLogger(__name__)


def catalog(settings: FundingSettings) -> FundCatalog:
    loaded = load_catalog(settings.funds_file)
    if settings.pay_internal_referrals:
        loaded = FundCatalog(
            tuple(replace(s, pays_internal_referrals=True) for s in loaded.streams), loaded.rates
        )
    return loaded


def wire(runtime: Runtime) -> None:
    settings = FundingSettings.load()
    fund = WellnessFund(Ledger(runtime.outbox), catalog(settings))
    payments = OutcomePayments(fund)
    api = FundingApi(
        runtime.sessions,
        fund,
        payments,
        Disbursements(fund, fund.catalog.approvals),
        PartnerBilling(fund),
        CommunityBank(fund),
        JournalWriter(runtime.sessions, fund.ledger),
    )
    runtime.serve(api, funding_pb2_grpc.add_FundingServiceServicer_to_server)
    runtime.consume(
        [REFERRAL_EVENTS], {referrals_pb2.ReferralStatusChanged: ReferralOutcomes(payments).on_status_changed}
    )

    async def sweep() -> None:
        """Open the books, then expire pending transactions past their deadline and pay what is owed."""
        while True:
            try:
                async with runtime.sessions() as session, session.begin():
                    await fund.open_books(session, utc_now())
                await fund.ledger.expire_due(runtime.sessions, utc_now())
                await payments.pay_waiting(runtime.sessions)
            except Exception as exc:  # the next round tries again; named by type only (no values)
                log.warning("funding sweep failed: %s", type(exc).__name__)
            await asyncio.sleep(settings.sweep_seconds)

    runtime.run_as_singleton(sweep)

    async def funder_of(stream_id: str) -> set[str] | None:
        stream = fund.catalog.stream(stream_id)
        return {stream.funder_partner_id} if stream else None

    runtime.resolve_owners("fund-stream", funder_of)


def verify_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def verify_command(args: argparse.Namespace) -> int:
    """``ach-funding verify``: re-compute the journal's hash chain and every account's totals."""

    async def run() -> ledger.Verification:
        engine = create_engine(ServiceSettings.from_env("funding").database_url)
        try:
            await check_database(engine, 10, tables=["ledger_transaction"])
            async with session_factory(engine)() as session:
                return await ledger.verify(session)
        finally:
            await engine.dispose()

    result = asyncio.run(run())
    if result.intact:
        print(f"journal intact: {result.transactions} transactions, every account's totals match its entries")
        return 0
    print(f"journal NOT intact at sequence {result.sequence}: {result.problem}")
    return 1


def report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--year", type=int, default=0, help="the budget year (default: this year)")
    parser.add_argument("--out", type=Path, default=Path("."), help="the folder the CSV files go to")


def report_command(args: argparse.Namespace) -> int:
    """``ach-funding report``: the year's fund report as CSV files, one a section."""
    today = utc_now().date()
    year = args.year or today.year
    if not 2000 <= year <= 2100:
        print(f"--year: {year} is not a year from 2000 to 2100")
        return 2

    async def run() -> reports.FundReport:
        engine = create_engine(ServiceSettings.from_env("funding").database_url)
        try:
            await check_database(engine, 10, tables=["ledger_transaction"])
            async with session_factory(engine)() as session:
                return await reports.fund_report(session, catalog(FundingSettings.load()), year, today)
        finally:
            await engine.dispose()

    written = reports.write_csv(asyncio.run(run()), args.out)
    print("\n".join(str(p) for p in written))
    return 0


DEFINITION = ServiceDefinition(
    "funding",
    Path(__file__).parent / "migrations",
    wire,
    commands=(
        Command(
            "verify",
            "check the journal's hash chain and the accounts' totals",
            verify_arguments,
            verify_command,
        ),
        Command("report", "the year's fund report as CSV files", report_arguments, report_command),
    ),
)


def cli() -> None:
    run_cli(DEFINITION)


if __name__ == "__main__":
    cli()
