"""Wiring of the measurement service: consumes every domain's events into facts, serves the measures."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from ach.measurement.v1 import measurement_pb2_grpc
from ach_events.runtime import Command, Runtime, ServiceDefinition
from ach_events.runtime import cli as run_cli
from ach_platform.database import check_database, create_engine, session_factory
from ach_platform.leadership import HeldElsewhere, exclusively
from ach_platform.settings import ConfigError, ServiceSettings, kafka_bootstrap_servers
from tqdm import tqdm

from ach_measurement import subscribers
from ach_measurement.api import MeasurementApi
from ach_measurement.catalog import check_together, load_measures, load_scorecards, read_measure
from ach_measurement.domain.definitions import MeasureError
from ach_measurement.domain.indicators import IndicatorFileError, IndicatorFormat
from ach_measurement.indicator_imports import import_indicator_file, network_geographies, place_names
from ach_measurement.publications import Publications
from ach_measurement.rebuild import Rebuild, RebuildRefused
from ach_measurement.settings import MeasurementSettings


def wire(runtime: Runtime) -> None:
    settings = MeasurementSettings.load()
    try:
        measures = load_measures(settings.definitions_dir)
        scorecards = load_scorecards(measures, network_geographies())
    except MeasureError as exc:
        raise ConfigError(f"measure definitions rejected:\n{exc}") from None
    publications = Publications(runtime.sessions, measures, settings.zone, settings.refresh_s)
    api = MeasurementApi(runtime.sessions, publications, scorecards)
    runtime.serve(api, measurement_pb2_grpc.add_MeasurementServiceServicer_to_server)
    runtime.consume(subscribers.TOPICS, subscribers.HANDLERS)
    runtime.run_in_background(publications.warm)
    from ach_measurement.public_pages import PublicPages  # the service's only: commands need none of it
    from ach_measurement.store import StoredMoney

    public_url = settings.public_url or f"http://127.0.0.1:{runtime.settings.http_port}"

    pages = PublicPages(publications, scorecards, public_url, place_names(), StoredMoney(runtime.sessions))
    runtime.serve_http(pages.app(), "public scorecard")


def check_measures(paths: list[str]) -> int:
    """Check definition files before they are deployed: every problem, named by file and field."""
    status = 0
    loaded = []
    for path in paths:
        try:
            measure = read_measure(Path(path))
        except MeasureError as exc:
            print(f"ach-measurement: error: {exc}", file=sys.stderr)
            status = 2
            continue
        loaded.append((Path(path), measure))
        what = "imported" if measure.imported else f"{measure.calculation} of {measure.counted.kind}s"
        print(
            f"{path}: {measure.id} version {measure.version}: {what}, by {measure.period}, "
            f"{len(measure.breakdowns)} breakdowns"
        )
    try:
        check_together(loaded)
    except MeasureError as exc:
        print(f"ach-measurement: error: {exc}", file=sys.stderr)
        status = 2
    return status


def indicators_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["import"])
    parser.add_argument("--format", choices=[f.value for f in IndicatorFormat], required=True)
    parser.add_argument("--replace", action="store_true", help="revise values already stored")
    parser.add_argument("files", nargs="+", type=Path)


def import_indicators(args: argparse.Namespace) -> int:
    """Each file all or nothing; every problem named by file, row and column."""
    try:
        measures = load_measures(MeasurementSettings.load().definitions_dir)
    except MeasureError as exc:
        raise ConfigError(f"measure definitions rejected:\n{exc}") from None
    url = ServiceSettings.from_env(DEFINITION.name).database_url

    async def run() -> int:
        engine = create_engine(url)
        status = 0
        try:
            await check_database(engine, 10, tables=["indicator_value"])
            for path in args.files:
                try:
                    report = await import_indicator_file(
                        session_factory(engine), measures, path, IndicatorFormat(args.format), args.replace
                    )
                except IndicatorFileError as exc:
                    print(f"ach-measurement: error: {exc}", file=sys.stderr)
                    print(f"ach-measurement: {path}: nothing imported", file=sys.stderr)
                    status = 1
                    continue
                print(report.summary())
        finally:
            await engine.dispose()
        return status

    return asyncio.run(run())


def rebuild_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--restart", action="store_true", help="start again from offset zero, not where it stopped"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--accept-fewer", action="store_true", help="switch even if the topics no longer hold every live fact"
    )


def rebuild_facts(args: argparse.Namespace) -> int:
    url = ServiceSettings.from_env(DEFINITION.name).database_url

    async def run() -> int:
        engine = create_engine(url)
        try:
            await check_database(engine, 10, tables=["screening_fact", "rebuild_progress"])
            with tqdm(total=0, unit="event", disable=args.quiet, file=sys.stderr) as bar:

                def progress(done: int, total: int) -> None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()

                rebuild = Rebuild(
                    engine, kafka_bootstrap_servers(), subscribers.TOPICS, subscribers.HANDLERS, progress
                )
                try:
                    # One rebuild at a time in a cluster: two would switch tables under each other.
                    async with exclusively(DEFINITION.name, "rebuild"):
                        report = await rebuild.run(restart=args.restart, accept_fewer=args.accept_fewer)
                except (RebuildRefused, HeldElsewhere) as exc:
                    print(f"ach-measurement: {exc}", file=sys.stderr)
                    return 1
        finally:
            await engine.dispose()
        print(report.summary())
        return 0

    return asyncio.run(run())


SAMPLES = (
    ("county-health-rankings.csv", IndicatorFormat.CHR),
    ("cdc-places.csv", IndicatorFormat.PLACES),
    ("network-surveys.csv", IndicatorFormat.LONG),
)


async def load_sample_indicators(database_url: str) -> str:
    """The shipped sample files (``samples/``), for the example scorecards of the local stack."""
    measures = load_measures()
    engine = create_engine(database_url)
    try:
        await check_database(engine, 10, tables=["indicator_value"])
        reports = [
            await import_indicator_file(
                session_factory(engine), measures, Path(__file__).parent / "samples" / name, form
            )
            for name, form in SAMPLES
        ]
    finally:
        await engine.dispose()
    added = sum(r.added for r in reports)
    return (
        f"measurement: {sum(r.read for r in reports)} sample population indicator values ({added} new) "
        "for the scorecards jackson-shared-goals and south-stockton-focus-areas (illustrative figures)"
    )


def measures_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check"])
    parser.add_argument("files", nargs="+")


DEFINITION = ServiceDefinition(
    "measurement",
    Path(__file__).parent / "migrations",
    wire,
    commands=(
        Command(
            "measures",
            "check measure definition files",
            measures_arguments,
            lambda args: check_measures(args.files),
        ),
        Command(
            "rebuild",
            "rebuild the facts from offset zero, then switch to them",
            rebuild_arguments,
            rebuild_facts,
        ),
        Command(
            "indicators",
            "import population indicator files (County Health Rankings, CDC PLACES, long CSV)",
            indicators_arguments,
            import_indicators,
        ),
    ),
)


def cli(argv: list[str] | None = None) -> None:
    run_cli(DEFINITION, argv)


if __name__ == "__main__":
    cli()
