"""Importing population indicators into the service's database (SQLite and PostgreSQL): the shipped
samples load, a file with a bad row imports nothing, a revision needs --replace, and the published
figures follow, a small count hidden."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from ach_measurement.catalog import load_measures, load_scorecards
from ach_measurement.domain.indicators import IndicatorFileError, IndicatorFormat
from ach_measurement.domain.suppression import Status
from ach_measurement.indicator_imports import import_indicator_file, network_geographies
from ach_measurement.main import SAMPLES
from ach_measurement.publications import Publications
from ach_measurement.store import IndicatorValueRow
from ach_platform import migrations
from ach_platform.database import create_engine, session_factory
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "ach_measurement" / "samples"
LA = ZoneInfo("America/Los_Angeles")

pytestmark = pytest.mark.postgres
MIGRATIONS = Path(__file__).resolve().parents[1] / "ach_measurement" / "migrations"


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a fresh database migrated to the service's schema (SQLite and PostgreSQL)."""
    await asyncio.to_thread(migrations.upgrade, MIGRATIONS, database_url)
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int((await session.exec(select(func.count()).select_from(IndicatorValueRow))).one())


async def test_samples_load_once_and_feed_the_example_scorecards(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    measures = load_measures()
    first = [
        await import_indicator_file(sessions, measures, SAMPLE_DIR / name, form) for name, form in SAMPLES
    ]
    assert all(r.added == r.read > 0 for r in first)
    again = [
        await import_indicator_file(sessions, measures, SAMPLE_DIR / name, form) for name, form in SAMPLES
    ]
    assert all(r.unchanged == r.read and r.added == 0 for r in again)

    cards = {c.id: c for c in load_scorecards(measures, network_geographies())}
    assert set(cards) == {"jackson-shared-goals", "south-stockton-focus-areas"}
    publication = await Publications(sessions, measures, LA, 0.0).current()
    food = publication.indicators[("food-insecurity", cards["jackson-shared-goals"].geography)]
    assert [p.period.label for p in food.periods] == ["2019", "2020", "2021", "2022", "2023", "2024"]
    latest = food.periods[-1]
    assert latest.total.status is Status.FREE and latest.total.value is not None
    assert 5 < latest.total.value < 25  # a percent (County Health Rankings' proportion x 100)
    assert {f.group for f in latest.groups["race_ethnicity"]} == {
        "black-or-african-american",
        "white",
        "hispanic-or-latino",
    }
    assert latest.disparities["race_ethnicity"].reference_group == "white"  # the lowest food insecurity
    mental = publication.indicators[("frequent-mental-distress", "95206")]
    assert mental.periods and mental.periods[0].total.low is not None


async def test_a_bad_row_imports_nothing_and_a_revision_needs_replace(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    measures = load_measures()
    good = tmp_path / "survey.csv"
    good.write_text(
        "indicator,geography,period,value,numerator,denominator\n"
        "perceptions-of-safety,26075,2025,61.0,549,900\n"
        "kindergarten-readiness,26075,2025,7.0,7,100\n"
    )
    report = await import_indicator_file(sessions, measures, good, IndicatorFormat.LONG)
    assert report.added == 2
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "indicator,geography,period,value,numerator,denominator\n"
        "perceptions-of-safety,26075,2026,62.0,558,900\n"
        "perceptions-of-safety,00000,2026,62.0,,\n"
    )
    with pytest.raises(
        IndicatorFileError,
        match=re.escape("bad.csv: row 3, column geography: is not a geography of the network"),
    ):
        await import_indicator_file(sessions, measures, bad, IndicatorFormat.LONG)
    assert await count(sessions) == 2
    revised = tmp_path / "revised.csv"
    revised.write_text("indicator,geography,period,value\nperceptions-of-safety,26075,2025,60.5\n")
    with pytest.raises(
        IndicatorFileError,
        match=re.escape("row 2, column value: differs from the stored value (from survey.csv)"),
    ):
        await import_indicator_file(sessions, measures, revised, IndicatorFormat.LONG)
    report = await import_indicator_file(sessions, measures, revised, IndicatorFormat.LONG, revise=True)
    assert report.revised == 1

    publication = await Publications(
        sessions, measures, LA, 0.0, now=lambda: datetime(2026, 2, 1, tzinfo=UTC)
    ).current()
    ready = publication.indicators[("kindergarten-readiness", "26075")].periods[-1].total
    assert ready.status is Status.PRIMARY and ready.value is None  # 7 children: a small count
    safe = publication.indicators[("perceptions-of-safety", "26075")].periods[-1].total
    assert safe.value == 60.5


async def test_partners_figures_are_kept_for_a_bounded_number_of_partners(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A viewer may name any partner: what is kept for partners stays bounded."""
    from ach_measurement.publications import KEPT_PARTNERS

    publications = Publications(sessions, load_measures(), LA, 60.0)
    await publications.current()
    for i in range(KEPT_PARTNERS + 8):
        await publications.current(f"partner-{i}")
    kept = publications._kept
    assert len(kept) == KEPT_PARTNERS + 1 and "" in kept and f"partner-{KEPT_PARTNERS + 7}" in kept
    assert "partner-0" not in kept


async def test_the_networks_figures_are_made_at_start_and_a_failure_there_is_left_to_the_first_caller(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    publications = Publications(sessions, load_measures(), LA, 60.0)
    await publications.warm()
    assert "" in publications._kept

    broken = create_engine(f"sqlite+aiosqlite:///{tmp_path}/missing/none.db")
    unready = Publications(session_factory(broken), load_measures(), LA, 60.0)
    await unready.warm()
    assert not unready._kept and "figures not computed at start: OperationalError" in caplog.text
    await broken.dispose()


async def test_values_under_a_revised_definition_are_kept_beside_the_earlier_versions(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """A publisher changes how an indicator is measured: the definition's version goes up, the new
    release imports as new values (no --replace), the earlier version's stay, the figures follow
    the newest and say which version they are."""
    measures = load_measures()
    first = tmp_path / "survey-2025.csv"
    first.write_text(
        "indicator,geography,period,value\nperceptions-of-safety,26075,2024,58.0\n"
        "perceptions-of-safety,26075,2025,61.0\n"
    )
    await import_indicator_file(sessions, measures, first, IndicatorFormat.LONG)
    old = next(m for m in measures if m.id == "perceptions-of-safety")
    revised = [replace(m, version=old.version + 1) if m is old else m for m in measures]
    again = tmp_path / "survey-2025-new-method.csv"
    again.write_text("indicator,geography,period,value\nperceptions-of-safety,26075,2025,55.5\n")
    report = await import_indicator_file(sessions, revised, again, IndicatorFormat.LONG)
    assert (report.added, report.revised) == (1, 0)
    assert await count(sessions) == 3

    publication = await Publications(
        sessions, revised, LA, 0.0, now=lambda: datetime(2026, 2, 1, tzinfo=UTC)
    ).current()
    periods = publication.indicators[("perceptions-of-safety", "26075")].periods
    assert [(p.period.label, p.total.value, p.definition_version) for p in periods] == [
        ("2024", 58.0, old.version),
        ("2025", 55.5, old.version + 1),
    ]
