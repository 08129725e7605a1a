"""Importing population indicators: a file as its publisher released it, into the indicator values,
all of it or nothing. A value that differs from the one stored for the same indicator, geography,
period and group is a revision: refused unless the operator asks to revise (``--replace``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from ach_platform.clock import utc_now
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_measurement.domain.definitions import Measure, MeasureUnit
from ach_measurement.domain.indicators import (
    IndicatorCodes,
    IndicatorFileError,
    IndicatorFormat,
    Problem,
    read_indicators,
)
from ach_measurement.store import IndicatorValueRow

GEOGRAPHIES = Path(__file__).parent / "geographies.yaml"
MAX_FILE_BYTES = 64 * 1024 * 1024


def place_names(path: Path = GEOGRAPHIES) -> dict[str, str]:
    """The counties' names by FIPS code (ZIP codes and neighbourhoods are their own names)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {str(code): str(name) for code, name in data.get("counties", {}).items()}


def network_geographies(path: Path = GEOGRAPHIES) -> frozenset[str]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return frozenset(
        [str(c) for c in data.get("counties", {})]
        + [str(z) for z in data.get("zips", [])]
        + [str(n) for n in data.get("neighbourhoods", [])]
    )


def _read_text(path: Path) -> str:
    source = str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise IndicatorFileError(
                source, [Problem(0, "", f"is larger than {MAX_FILE_BYTES // 2**20} MiB")]
            )
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise IndicatorFileError(source, [Problem(0, "", f"cannot be read ({exc.strerror})")]) from None
    except UnicodeDecodeError:
        raise IndicatorFileError(source, [Problem(0, "", "is not UTF-8 text")]) from None


def codes_of(measures: Sequence[Measure]) -> list[IndicatorCodes]:
    return [
        IndicatorCodes(
            m.id,
            chr=m.codes.get("chr", ""),
            places=m.codes.get("places", ""),
            chr_scale=100.0 if m.unit is MeasureUnit.PERCENT else 1.0,
        )
        for m in measures
        if m.imported
    ]


@dataclass
class ImportReport:
    file: str
    read: int = 0
    added: int = 0
    unchanged: int = 0
    revised: int = 0

    def summary(self) -> str:
        return (
            f"{self.file}: {self.read} values read, {self.added} added, {self.unchanged} unchanged, "
            f"{self.revised} revised"
        )


async def import_indicator_file(
    sessions: async_sessionmaker[AsyncSession],
    measures: Sequence[Measure],
    path: Path,
    form: IndicatorFormat,
    revise: bool = False,
    geographies: frozenset[str] | None = None,
) -> ImportReport:
    source = str(path)
    text = await asyncio.to_thread(_read_text, path)
    by_id = {m.id: m for m in measures}
    values = read_indicators(text, form, codes_of(measures), geographies or network_geographies(), source)
    report = ImportReport(source, read=len(values))
    now = utc_now()
    async with sessions() as session, session.begin():
        problems = []
        for v in values:
            # Under its indicator's current definition: a value of an earlier version stays beside it.
            version = by_id[v.indicator].version
            stored = await session.get(IndicatorValueRow, (*v.key, version))
            if stored is not None and stored.value == v.value:
                report.unchanged += 1
                continue
            if stored is not None and not revise:
                problems.append(
                    Problem(
                        v.row,
                        "value",
                        f"differs from the stored value (from {stored.imported_from}); "
                        "import with --replace to revise it",
                    )
                )
                continue
            row = stored or IndicatorValueRow(
                indicator=v.indicator,
                geography=v.geography,
                period=v.period,
                group=v.group,
                definition_version=version,
                value=0.0,
                source="",
                imported_from="",
                imported_at=now,
            )
            row.value, row.numerator, row.denominator = v.value, v.numerator, v.denominator
            row.ci_low, row.ci_high = v.low, v.high
            row.source, row.imported_from, row.imported_at = v.source[:200], path.name[:200], now
            session.add(row)
            if stored is None:
                report.added += 1
            else:
                report.revised += 1
        if problems:
            raise IndicatorFileError(source, problems)  # leaves the transaction: nothing is kept
    return report
