"""Exports of a measure's published figures, with its definition and each value's confidentiality
status: CSV and JSON for spreadsheets and funders, FHIR R4 MeasureReport (populations and
stratifiers) for clinics' systems. Only published figures go in: a suppressed value is absent, its
status (SDMX A or D) present."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from google.protobuf.json_format import MessageToDict

from ach_measurement import mappers
from ach_measurement.domain.definitions import Calculation, Measure, MeasureUnit, Polarity
from ach_measurement.domain.publication import TOTAL, Figure, PeriodFigures

CSV_COLUMNS = (
    "measure_id",
    "measure_version",
    "period",
    "provisional",
    "dimension",
    "group",
    "status",
    "numerator",
    "denominator",
    "value",
    "low",
    "high",
    "unstable",
    "unit",
)
MEASURE_URL = "https://ach.local/fhir/Measure/"
STATUS_EXTENSION = "https://ach.local/fhir/StructureDefinition/confidentiality-status"
POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
IMPROVEMENT = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"
UNIT = {MeasureUnit.PERCENT: "%", MeasureUnit.DAYS: "d", MeasureUnit.COUNT: "1"}


def _rows(measure: Measure, periods: Sequence[PeriodFigures]) -> list[tuple[str, Figure, PeriodFigures]]:
    rows = []
    for p in periods:
        rows.append((TOTAL, p.total, p))
        for dimension, figures in p.groups.items():
            rows.extend((dimension, f, p) for f in figures)
    return rows


def _number(value: float | int | None) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def as_csv(measure: Measure, periods: Sequence[PeriodFigures]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for dimension, f, p in _rows(measure, periods):
        writer.writerow(
            (
                measure.id,
                p.definition_version or measure.version,
                p.period.label,
                str(p.provisional).lower(),
                dimension,
                f.group,
                f.status.value,
                _number(f.numerator),
                _number(f.denominator),
                _number(f.value),
                _number(f.low),
                _number(f.high),
                str(f.unstable).lower(),
                measure.unit.value,
            )
        )
    return out.getvalue()


def as_json(measure: Measure, periods: Sequence[PeriodFigures], as_of: datetime) -> str:
    document = {
        "measure": MessageToDict(mappers.definition(measure), preserving_proto_field_name=True),
        "as_of": as_of.isoformat(),
        "status_codes": {
            "F": "free",
            "A": "primary suppression (a small count)",
            "D": "secondary suppression",
        },
        "periods": [
            MessageToDict(mappers.period_figures(p), preserving_proto_field_name=True) for p in periods
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=1)


def _population(code: str, count: int | None, status: str) -> dict[str, Any]:
    population: dict[str, Any] = {"code": {"coding": [{"system": POPULATION, "code": code}]}}
    if count is not None:
        population["count"] = count
    else:
        population["extension"] = [{"url": STATUS_EXTENSION, "valueCode": status}]
    return population


def _populations(measure: Measure, f: Figure) -> list[dict[str, Any]]:
    status = f.status.value
    if measure.calculation is Calculation.RATIO:
        return [
            _population("initial-population", f.denominator, status),
            _population("denominator", f.denominator, status),
            _population("numerator", f.numerator, status),
        ]
    return [_population("initial-population", f.numerator, status)]


def _score(measure: Measure, f: Figure) -> dict[str, Any] | None:
    if f.value is None:
        return None
    score: dict[str, Any] = {"value": round(f.value, 6)}
    if measure.unit in UNIT:
        score |= {
            "unit": UNIT[measure.unit],
            "system": "http://unitsofmeasure.org",
            "code": UNIT[measure.unit],
        }
    return score


def measure_report(measure: Measure, p: PeriodFigures, as_of: datetime, zone: ZoneInfo) -> dict[str, Any]:
    group: dict[str, Any] = {"population": _populations(measure, p.total)}
    if (score := _score(measure, p.total)) is not None:
        group["measureScore"] = score
    stratifiers = []
    for dimension, figures in p.groups.items():
        strata = []
        for f in figures:
            stratum: dict[str, Any] = {"value": {"text": f.group}, "population": _populations(measure, f)}
            if (s := _score(measure, f)) is not None:
                stratum["measureScore"] = s
            strata.append(stratum)
        stratifiers.append({"code": [{"text": dimension}], "stratum": strata})
    if stratifiers:
        group["stratifier"] = stratifiers
    notation = "increase" if measure.polarity is Polarity.HIGHER_IS_BETTER else "decrease"
    return {
        "resourceType": "MeasureReport",
        "id": f"{measure.id}-{p.period.label}",
        "status": "pending" if p.provisional else "complete",
        "type": "summary",
        "measure": f"{MEASURE_URL}{measure.id}|{p.definition_version or measure.version}",
        "date": as_of.isoformat(),
        "period": {"start": p.period.start(zone).isoformat(), "end": p.period.end(zone).isoformat()},
        "improvementNotation": {"coding": [{"system": IMPROVEMENT, "code": notation}]},
        "group": [group],
    }


def as_fhir(measure: Measure, periods: Sequence[PeriodFigures], as_of: datetime, zone: ZoneInfo) -> str:
    """A Bundle (collection) of one MeasureReport per period."""
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": as_of.isoformat(),
        "entry": [{"resource": measure_report(measure, p, as_of, zone)} for p in periods],
    }
    return json.dumps(bundle, ensure_ascii=False)
