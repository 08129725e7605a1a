"""Wiring of the directory service: its gRPC API; it publishes service changes."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from ach.directory.v1 import directory_pb2_grpc
from ach.partners.v1 import partners_pb2
from ach_events.outbox import Outbox
from ach_events.runtime import Command, Runtime, ServiceDefinition
from ach_events.runtime import cli as run_cli
from ach_events.topics import PARTNER_INTAKE
from ach_platform import zip_codes
from ach_platform.database import check_database, create_engine, session_factory
from ach_platform.settings import ConfigError, ServiceSettings
from sqlalchemy import text
from tqdm import tqdm

from ach_directory.api import DirectoryApi
from ach_directory.hsds_api import HsdsApi
from ach_directory.hsds_catalog import load_catalog
from ach_directory.hsds_files import PackageError, read_source, write_package, write_tabular_json
from ach_directory.hsds_import import ImportReport, export_rows, import_records
from ach_directory.projection import apply, refresh_summaries
from ach_directory.sample_package import generate
from ach_directory.settings import network_time_zone
from ach_directory.store import ServiceRecord
from ach_directory.subscribers import DirectorySubscribers, owners_of
from ach_directory.summary_queries import affected_services, summaries

log = logging.getLogger(__name__)


def wire(runtime: Runtime) -> None:
    zip_codes.known("00000")  # loaded at start-up (and frozen with it), not on the first search
    network_time_zone()  # a bad ACH_TIME_ZONE stops the service now, not at the first projection
    api = DirectoryApi(runtime.sessions, runtime.outbox, lambda: runtime.partners)
    runtime.serve(api, directory_pb2_grpc.add_DirectoryServiceServicer_to_server)

    runtime.serve_http(HsdsApi(runtime.sessions).app(), "HSDS API")

    async def refresh() -> None:
        published = await refresh_summaries(runtime.sessions, runtime.outbox)
        if published:
            log.info("service summaries brought up to date", extra={"published": published})

    runtime.run_in_background(refresh)

    reports = DirectorySubscribers(runtime.outbox)
    runtime.consume((PARTNER_INTAKE,), {partners_pb2.ServiceUpdateReported: reports.on_service_update})

    runtime.owned_by("service", ServiceRecord, owners_of)


async def import_directory(database_url: str, path: Path, *, show_progress: bool = True) -> ImportReport:
    """Import an HSDS data package or JSON file into the directory's database (one transaction)."""
    catalog = load_catalog()
    engine = create_engine(database_url)
    try:
        await check_database(engine, 10, tables=["hsds_service"])
        with tqdm(
            desc=f"importing {path.name}",
            unit=" records",
            disable=None if show_progress else True,
            file=sys.stderr,
        ) as bar:
            async with session_factory(engine)() as session, session.begin():
                report = await import_records(
                    session, catalog, read_source(path, catalog.entities), bar.update
                )
                # The services' summaries (search, ServiceChanged) in the same transaction: the
                # running service's relay publishes the events once it commits.
                affected = await affected_services(session, report.touched, report.links)
                if affected is None or affected:
                    found = await summaries(session, affected)
                    report.services_changed = await apply(session, Outbox(source="/ach/directory"), found)
        # Fresh statistics, so the query planner knows the new sizes (a bulk import changes them);
        # on PostgreSQL a vacuum too, so the search keys' index-only scans need not visit the table.
        async with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await auto.execute(text("VACUUM (ANALYZE)"))
            else:
                await conn.execute(text("ANALYZE"))
                await conn.commit()
        return report
    finally:
        await engine.dispose()


async def export_directory(database_url: str, path: Path, form: str) -> list[Path]:
    """The whole directory as an HSDS CSV data package (a directory) or tabular JSON (a file)."""
    catalog = load_catalog()
    engine = create_engine(database_url)
    try:
        await check_database(engine, 10, tables=["hsds_service"])
        async with session_factory(engine)() as session:
            rows = await export_rows(session, catalog)
    finally:
        await engine.dispose()
    if form == "json":
        write_tabular_json(path, catalog.entities, rows)
        return [path]
    return write_package(path, catalog.entities, rows)


def import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="a directory (csv) or a file (json)")
    parser.add_argument("--format", choices=["csv", "json"], default="csv")


def generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="the package's directory")
    parser.add_argument("--services", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)


def generate_command(args: argparse.Namespace) -> int:
    if args.services < 1:
        raise ConfigError("--services must be at least 1")
    rows = generate(args.services, args.seed)
    write_package(args.path, load_catalog().entities, rows)
    print(
        f"ach-directory: {sum(map(len, rows.values()))} records, {args.services} services in {args.path}",
        file=sys.stderr,
    )
    return 0


def export_command(args: argparse.Namespace) -> int:
    url = ServiceSettings.from_env(DEFINITION.name).database_url
    written = asyncio.run(export_directory(url, args.path, args.format))
    print(f"ach-directory: exported {len(written)} files to {args.path}", file=sys.stderr)
    return 0


def import_command(args: argparse.Namespace) -> int:
    url = ServiceSettings.from_env(DEFINITION.name).database_url
    try:
        report = asyncio.run(import_directory(url, args.path, show_progress=not args.quiet))
    except PackageError as exc:
        raise ConfigError(str(exc)) from None
    for problem in report.problems:
        print(f"ach-directory: {problem}", file=sys.stderr)
    print(report.summary())
    print(
        f"services whose summary changed (searched, published as ServiceChanged): {report.services_changed}"
    )
    if report.problems:
        print(
            f"ach-directory: {len(report.problems)} problems; {report.rejected} records not imported",
            file=sys.stderr,
        )
    return 1 if report.rejected else 0


DEFINITION = ServiceDefinition(
    "directory",
    Path(__file__).parent / "migrations",
    wire,
    commands=(
        Command(
            "import",
            "import an HSDS CSV data package (directory) or JSON file",
            import_arguments,
            import_command,
        ),
        Command("export", "export the directory as HSDS", export_arguments, export_command),
        Command(
            "generate", "write a realistic generated HSDS data package", generate_arguments, generate_command
        ),
    ),
)


def cli(argv: list[str] | None = None) -> None:
    run_cli(DEFINITION, argv)


if __name__ == "__main__":
    cli()
