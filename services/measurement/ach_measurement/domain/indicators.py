"""Population indicators: community data as its publishers release it (County Health Rankings'
analytic CSV, CDC PLACES' long format, or a plain long CSV), read into values that keep the
indicator's definition version and their source. Reading checks every row and reports each
problem by file, row and column; a file with any problem imports nothing."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

MAX_ROWS = 200_000
MAX_FIELD = 200


class IndicatorFormat(StrEnum):
    CHR = "chr"  # County Health Rankings & Roadmaps analytic data
    PLACES = "places"  # CDC PLACES, long format
    LONG = "long"  # indicator, geography, period, value, numerator, denominator, interval, source


@dataclass(frozen=True)
class IndicatorValue:
    indicator: str  # the measure id of a population-indicator definition
    geography: str
    period: str  # a year
    group: str  # "" for everyone; a race group for County Health Rankings' race columns
    value: float
    numerator: float | None
    denominator: float | None
    low: float | None
    high: float | None
    source: str
    definition_version: int = 0  # of its indicator's definition, when it was imported
    row: int = field(default=0, compare=False)  # where in its file, for messages

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.indicator, self.geography, self.period, self.group)


@dataclass(frozen=True)
class Problem:
    row: int  # 1 for the header; 0 for the file as a whole
    column: str
    text: str

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row else "file"
        return f"{where}, column {self.column}: {self.text}" if self.column else f"{where}: {self.text}"


class IndicatorFileError(Exception):
    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        shown = "\n".join(f"{source}: {p}" for p in self.problems[:50])
        more = f"\n{source}: ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(shown + more)


@dataclass(frozen=True)
class IndicatorCodes:
    """How one indicator is named in each format: ``v001`` (CHR), ``ACCESS2`` (PLACES), its own id (long)."""

    indicator: str
    chr: str = ""
    places: str = ""
    chr_scale: float = 1.0  # County Health Rankings gives proportions (0.135) where the measure shows 13.5%


# County Health Rankings' race column suffixes, as the measures' race groups.
CHR_RACES = {
    "aian": "american-indian-or-alaska-native",
    "asian": "asian",
    "black": "black-or-african-american",
    "hispanic": "hispanic-or-latino",
    "white": "white",
    "nhopi": "native-hawaiian-or-other-pacific-islander",
}
_YEAR = re.compile(r"^\d{4}$")


class _Rows:
    def __init__(self, source: str, geographies: frozenset[str]) -> None:
        self.source = source
        self.geographies = geographies
        self.problems: list[Problem] = []
        self.values: dict[tuple[str, str, str, str], tuple[IndicatorValue, int]] = {}

    def problem(self, row: int, column: str, text: str) -> None:
        self.problems.append(Problem(row, column, text))

    def number(self, row: int, column: str, raw: str, required: bool = False) -> float | None:
        text = raw.strip()
        if not text:
            if required:
                self.problem(row, column, "a value is required")
            return None
        try:
            value = float(text.replace(",", ""))
        except ValueError:
            self.problem(row, column, "is not a number")
            return None
        if not math.isfinite(value):
            self.problem(row, column, "is not a finite number")
            return None
        return value

    def add(self, row: int, value: IndicatorValue, columns: Mapping[str, str]) -> None:
        if value.geography not in self.geographies:
            self.problem(row, columns["geography"], "is not a geography of the network")
            return
        if not _YEAR.match(value.period):
            self.problem(row, columns["period"], "is not a year (YYYY)")
            return
        if (
            value.numerator is not None
            and value.denominator is not None
            and value.numerator > value.denominator
        ):
            self.problem(row, columns["numerator"], "is above its denominator")
        if value.low is not None and value.high is not None and value.low > value.high:
            self.problem(row, columns["low"], "the interval's low end is above its high end")
        earlier = self.values.get(value.key)
        if earlier is not None and earlier[0].value != value.value:
            self.problem(
                row,
                columns["value"],
                f"{value.indicator} for {value.geography} in {value.period} differs from row {earlier[1]}",
            )
            return
        self.values[value.key] = (replace(value, row=row), row)


def _reader(text: str, source: str) -> tuple[list[str], Iterable[list[str]]]:
    rows = csv.reader(io.StringIO(text))
    try:
        header = next(rows)
    except StopIteration:
        raise IndicatorFileError(source, [Problem(0, "", "is empty")]) from None
    return [h.strip() for h in header], rows


def _cells(header: Sequence[str], row: Sequence[str]) -> dict[str, str]:
    return {name: (row[i] if i < len(row) else "") for i, name in enumerate(header)}


def _check_sizes(number: int, cells: Mapping[str, str], reading: _Rows) -> bool:
    if number > MAX_ROWS:
        reading.problem(number, "", f"the file has more than {MAX_ROWS} rows")
        return False
    for column, value in cells.items():
        if len(value) > MAX_FIELD:
            reading.problem(number, column, f"is longer than {MAX_FIELD} characters")
    return True


def read_indicators(
    text: str,
    form: IndicatorFormat,
    codes: Sequence[IndicatorCodes],
    geographies: frozenset[str],
    source: str,
) -> list[IndicatorValue]:
    """Every value of the indicators named in ``codes``; IndicatorFileError lists every problem."""
    reading = _Rows(source, geographies)
    header, rows = _reader(text, source)
    if form is IndicatorFormat.CHR and "fipscode" not in header:
        # The analytic file's first row holds labels; the variable names are on the second.
        try:
            header = [h.strip() for h in next(iter(rows))]
            offset = 2
        except StopIteration:
            header, offset = [], 1
    else:
        offset = 1
    required = {
        IndicatorFormat.CHR: ("fipscode", "year"),
        IndicatorFormat.PLACES: ("LocationID", "MeasureId", "Data_Value", "Year"),
        IndicatorFormat.LONG: ("indicator", "geography", "period", "value"),
    }[form]
    missing = [c for c in required if c not in header]
    if missing:
        raise IndicatorFileError(source, [Problem(offset, c, "the column is missing") for c in missing])
    scales = {c.indicator: c.chr_scale for c in codes}
    by_code = {
        IndicatorFormat.CHR: {c.chr: c.indicator for c in codes if c.chr},
        IndicatorFormat.PLACES: {c.places: c.indicator for c in codes if c.places},
        IndicatorFormat.LONG: {c.indicator: c.indicator for c in codes},
    }[form]
    for number, row in enumerate(rows, offset + 1):
        if not any(cell.strip() for cell in row):
            continue
        cells = _cells(header, row)
        if not _check_sizes(number, cells, reading):
            break
        if form is IndicatorFormat.CHR:
            _chr_row(number, cells, by_code, scales, reading)
        elif form is IndicatorFormat.PLACES:
            _places_row(number, cells, by_code, reading)
        else:
            _long_row(number, cells, by_code, reading)
    if reading.problems:
        raise IndicatorFileError(source, reading.problems)
    return [v for v, _ in reading.values.values()]


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else round(value * scale, 10)


def _chr_row(
    number: int,
    cells: Mapping[str, str],
    by_code: Mapping[str, str],
    scales: Mapping[str, float],
    reading: _Rows,
) -> None:
    geography = cells["fipscode"].strip().zfill(5)
    period = cells["year"].strip()
    for code, indicator in by_code.items():
        value_column = f"{code}_rawvalue"
        if value_column not in cells:
            reading.problem(number, value_column, "the column is missing")
            continue
        scale = scales.get(indicator, 1.0)
        value = _scaled(reading.number(number, value_column, cells[value_column]), scale)
        if value is None:
            continue  # County Health Rankings leaves a value out where it suppressed it
        columns = {
            "geography": "fipscode",
            "period": "year",
            "value": value_column,
            "numerator": f"{code}_numerator",
            "low": f"{code}_cilow",
        }
        reading.add(
            number,
            IndicatorValue(
                indicator=indicator,
                geography=geography,
                period=period,
                group="",
                value=value,
                numerator=reading.number(number, f"{code}_numerator", cells.get(f"{code}_numerator", "")),
                denominator=reading.number(
                    number, f"{code}_denominator", cells.get(f"{code}_denominator", "")
                ),
                low=_scaled(reading.number(number, f"{code}_cilow", cells.get(f"{code}_cilow", "")), scale),
                high=_scaled(
                    reading.number(number, f"{code}_cihigh", cells.get(f"{code}_cihigh", "")), scale
                ),
                source="County Health Rankings & Roadmaps",
            ),
            columns,
        )
        for suffix, group in CHR_RACES.items():
            column = f"{code}_race_{suffix}"
            if column not in cells:
                continue
            raced = _scaled(reading.number(number, column, cells[column]), scale)
            if raced is not None:
                reading.add(
                    number,
                    IndicatorValue(
                        indicator,
                        geography,
                        period,
                        group,
                        raced,
                        None,
                        None,
                        None,
                        None,
                        "County Health Rankings & Roadmaps",
                    ),
                    {**columns, "value": column},
                )


def _places_row(number: int, cells: Mapping[str, str], by_code: Mapping[str, str], reading: _Rows) -> None:
    indicator = by_code.get(cells["MeasureId"].strip())
    if indicator is None:
        return  # PLACES files hold many measures; the network follows some
    value = reading.number(number, "Data_Value", cells["Data_Value"], required=True)
    if value is None:
        return
    reading.add(
        number,
        IndicatorValue(
            indicator=indicator,
            geography=cells["LocationID"].strip(),
            period=cells["Year"].strip(),
            group="",
            value=value,
            numerator=None,
            denominator=reading.number(number, "TotalPopulation", cells.get("TotalPopulation", "")),
            low=reading.number(number, "Low_Confidence_Limit", cells.get("Low_Confidence_Limit", "")),
            high=reading.number(number, "High_Confidence_Limit", cells.get("High_Confidence_Limit", "")),
            source=f"CDC PLACES ({cells.get('Data_Value_Type', '').strip() or 'crude'})",
        ),
        {
            "geography": "LocationID",
            "period": "Year",
            "value": "Data_Value",
            "numerator": "Data_Value",
            "low": "Low_Confidence_Limit",
        },
    )


def _interval(number: int, raw: str, reading: _Rows) -> tuple[float | None, float | None]:
    text = raw.strip()
    if not text:
        return None, None
    parts = text.split("-") if text.count("-") == 1 else []
    if len(parts) != 2:
        reading.problem(number, "interval", "is not an interval such as 12.1-15.3")
        return None, None
    return reading.number(number, "interval", parts[0], True), reading.number(
        number, "interval", parts[1], True
    )


def _long_row(number: int, cells: Mapping[str, str], by_code: Mapping[str, str], reading: _Rows) -> None:
    indicator = cells["indicator"].strip()
    if indicator not in by_code:
        reading.problem(number, "indicator", "is not a population indicator of the network")
        return
    value = reading.number(number, "value", cells["value"], required=True)
    if value is None:
        return
    low, high = _interval(number, cells.get("interval", ""), reading)
    reading.add(
        number,
        IndicatorValue(
            indicator=indicator,
            geography=cells["geography"].strip(),
            period=cells["period"].strip(),
            group="",
            value=value,
            numerator=reading.number(number, "numerator", cells.get("numerator", "")),
            denominator=reading.number(number, "denominator", cells.get("denominator", "")),
            low=low,
            high=high,
            source=cells.get("source", "").strip(),
        ),
        {
            "geography": "geography",
            "period": "period",
            "value": "value",
            "numerator": "numerator",
            "low": "interval",
        },
    )
