"""Wiring of the screening service: its gRPC API, partner submissions from ach.partners.intake.v1,
and the resident index's events; and the `instruments` command that checks instrument files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ach.partners.v1 import partners_pb2
from ach.screening.v1 import screening_pb2_grpc
from ach_events.resident_replica import replica_handlers, same_person_ids
from ach_events.runtime import Command, Runtime, ServiceDefinition
from ach_events.runtime import cli as run_cli
from ach_events.topics import PARTNER_INTAKE, RESIDENT_EVENTS
from ach_platform.settings import ConfigError

from ach_screening.api import ScreeningApi
from ach_screening.catalog import load_catalog, read_instrument
from ach_screening.domain import InstrumentError
from ach_screening.intake import ScreeningIntake
from ach_screening.settings import ScreeningSettings
from ach_screening.store import ScreeningRecord, partners_of
from ach_screening.subscribers import ScreeningSubscribers


def wire(runtime: Runtime) -> None:
    try:
        instruments = load_catalog(ScreeningSettings.load().instruments_dir)
    except InstrumentError as exc:
        raise ConfigError(f"instrument definitions rejected:\n{exc}") from None
    intake = ScreeningIntake(runtime.outbox, instruments)
    api = ScreeningApi(runtime.sessions, intake, partners=lambda: runtime.partners)
    runtime.serve(api, screening_pb2_grpc.add_ScreeningServiceServicer_to_server)
    events = ScreeningSubscribers(runtime.outbox, intake)
    runtime.consume(
        (PARTNER_INTAKE, RESIDENT_EVENTS),
        {
            partners_pb2.ScreeningSubmitted: events.on_partner_screening,
            **replica_handlers(),
        },
    )

    async def resident_owners(resident_id: str) -> set[str] | None:
        """The partners that have the resident on their books (under any of the person's ids)."""
        async with runtime.sessions() as session:
            owners = await partners_of(session, await same_person_ids(session, resident_id))
        return owners or None

    runtime.owned_by("screening", ScreeningRecord, lambda record: {record.submitter_partner_id})
    runtime.resolve_owners("resident", resident_owners)


def check_instruments(paths: list[str]) -> int:
    """Check instrument files before they are deployed: every problem, named by file and question."""
    status = 0
    for path in paths:
        try:
            instrument = read_instrument(Path(path))
        except InstrumentError as exc:
            print(f"ach-screening: error: {exc}", file=sys.stderr)
            status = 2
            continue
        print(
            f"{path}: {instrument.id} version {instrument.version}: {len(instrument.questions)} questions, "
            f"{len(instrument.rules)} rules, languages {', '.join(instrument.languages)}"
        )
    return status


def instruments_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check"])
    parser.add_argument("files", nargs="+")


DEFINITION = ServiceDefinition(
    "screening",
    Path(__file__).parent / "migrations",
    wire,
    commands=(
        Command(
            "instruments",
            "check instrument definition files",
            instruments_arguments,
            lambda args: check_instruments(args.files),
        ),
    ),
)


def cli(argv: list[str] | None = None) -> None:
    run_cli(DEFINITION, argv)


if __name__ == "__main__":
    cli()
