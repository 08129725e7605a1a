"""The measures this service publishes: the definition files shipped in ``ach_measurement/measures/``
and any in ``MEASUREMENT_DEFINITIONS_DIR``. A new measure is a new file, not new code. The service
refuses to start on a malformed file, naming it and every problem."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from ach_platform.data_files import DataFileError, data_files, read_data_file

from ach_measurement.domain.definitions import Calculation, Measure, MeasureError, parse_measure

SHIPPED = Path(__file__).parent / "measures"
SHIPPED_SCORECARDS = Path(__file__).parent / "scorecards"
MAX_FILE_BYTES = 256 * 1024


def read_measure(path: Path) -> Measure:
    try:
        data = read_data_file(path, MAX_FILE_BYTES)
    except DataFileError as exc:
        raise MeasureError(str(path), [str(exc)]) from None
    return parse_measure(data, str(path))


def check_together(measures: Sequence[tuple[Path, Measure]]) -> None:
    """Rules between files: one definition per measure id, one reporting period for every measure
    counted from events (a quarter next to its months would give a hidden month back), and funnel
    stages that nest."""
    seen: dict[str, Path] = {}
    for path, m in measures:
        if m.id in seen:
            raise MeasureError(str(path), [f"measure {m.id} is already defined in {seen[m.id]}"])
        seen[m.id] = path
    counted = [(path, m) for path, m in measures if not m.imported]
    if counted:
        first_path, first = counted[0]
        for path, m in counted[1:]:
            if m.period is not first.period:
                raise MeasureError(
                    str(path),
                    [
                        f"period: {m.period} differs from {first.period} in {first_path.name}; measures "
                        "counted from events share one reporting period"
                    ],
                )
    families: dict[str, list[tuple[Path, Measure]]] = {}
    for path, m in measures:
        if m.family is not None:
            families.setdefault(m.family[0], []).append((path, m))
    for members in families.values():
        ordered = sorted(members, key=lambda pm: pm[1].family[1] if pm[1].family else 0)
        for (_, before), (path, after) in pairwise(ordered):
            problems = []
            if after.family and before.family and after.family[1] == before.family[1]:
                problems.append(f"family: order {after.family[1]} is also {before.id}'s")
            if after.calculation is not Calculation.COUNT or before.calculation is not Calculation.COUNT:
                problems.append("family: funnel stages are count measures")
            elif after.counted.kind != before.counted.kind:
                problems.append(
                    f"family: counts {after.counted.kind}s but {before.id} counts {before.counted.kind}s"
                )
            elif any(c not in after.counted.where for c in before.counted.where):
                problems.append(f"family: a stage keeps every condition of the stage before ({before.id})")
            if after.breakdowns != before.breakdowns:
                problems.append(f"family: breakdowns must be {before.id}'s")
            if problems:
                raise MeasureError(str(path), problems)


def load_measures(extra_dir: str = "") -> tuple[Measure, ...]:
    directories = [SHIPPED]
    if extra_dir:
        path = Path(extra_dir)
        if not path.is_dir():
            raise MeasureError(extra_dir, ["MEASUREMENT_DEFINITIONS_DIR is not a directory"])
        directories.append(path)
    loaded = [(path, read_measure(path)) for path in data_files(directories)]
    check_together(loaded)
    return tuple(m for _, m in loaded)


@dataclass(frozen=True)
class ScorecardDefinition:
    """A named set of measures for one place: a network's shared goals, a neighbourhood's focus areas."""

    id: str
    name: Mapping[str, str]
    geography: str  # where its population indicators are read
    measures: tuple[str, ...]


def load_scorecards(
    measures: Sequence[Measure], geographies: frozenset[str]
) -> tuple[ScorecardDefinition, ...]:
    known = {m.id for m in measures}
    cards = []
    for path in data_files([SHIPPED_SCORECARDS]):
        try:
            data = read_data_file(path, MAX_FILE_BYTES)
        except DataFileError as exc:
            raise MeasureError(str(path), [str(exc)]) from None
        problems = []
        if not isinstance(data, Mapping) or not isinstance(data.get("measures"), list):
            raise MeasureError(str(path), ["a scorecard is a mapping with id, name, geography and measures"])
        name = data.get("name") or {}
        if not isinstance(name, Mapping) or not name.get("en") or not name.get("es"):
            problems.append("name: give it in en and es")
        geography = str(data.get("geography", ""))
        if geography not in geographies:
            problems.append(f"geography: {geography[:40]!r} is not a geography of the network")
        unknown = [str(m) for m in data["measures"] if str(m) not in known]
        if unknown:
            problems.append(f"measures: {', '.join(unknown)} are not measures")
        if problems:
            raise MeasureError(str(path), problems)
        cards.append(
            ScorecardDefinition(
                str(data.get("id", path.stem)), dict(name), geography, tuple(map(str, data["measures"]))
            )
        )
    return tuple(cards)
