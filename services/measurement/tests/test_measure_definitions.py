"""Measure definitions are data: the shipped ones load, and a malformed one is refused naming the
file and every problem."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ach_measurement.catalog import SHIPPED, load_measures, read_measure
from ach_measurement.domain.definitions import Calculation, MeasureError, RbaKind, parse_measure
from ach_measurement.domain.facts import UnitKind

GOOD: dict[str, Any] = {
    "id": "referred-quickly",
    "version": 1,
    "name": {"en": "Referred quickly", "es": "Referidos rápido"},
    "kind": "how-well",
    "calculation": "ratio",
    "unit": "percent",
    "polarity": "higher-is-better",
    "period": "month",
    "numerator": {"count": "need", "where": [{"referred_within": "7d"}]},
    "denominator": {"count": "need"},
    "source": {"en": "events", "es": "eventos"},
}


def test_every_shipped_measure_loads_with_both_languages() -> None:
    measures = load_measures()
    ids = {m.id for m in measures}
    assert len(measures) == len(list(SHIPPED.glob("*.yaml"))) >= 25
    for required in (
        "screenings",
        "positive-screens",
        "cms-sdoh-1",
        "cms-sdoh-2-food",
        "ncqa-sns-e-intervention",
        "referred-within-7-days",
        "median-days-to-acceptance",
        "accepted-within-time-limit",
        "rejections-by-reason",
        "reroutes",
        "need-met-within-30-days",
        "need-met-within-90-days",
        "resolved-on-rescreen",
        "residents-served",
        "funnel-6-need-met",
        "unresolved-reasons",
    ):
        assert required in ids
    for m in measures:
        assert m.name["en"] and m.name["es"] and m.source["es"]
    sns = next(m for m in measures if m.id == "ncqa-sns-e-intervention")
    assert "age_group" in sns.breakdowns and sns.counted.kind is UnitKind.NEED
    # Equity by default: a definition without breakdowns gets race and ethnicity, language, age...
    screenings = next(m for m in measures if m.id == "screenings")
    assert screenings.breakdowns[:3] == ("race_ethnicity", "language", "age_band")
    assert {m.kind for m in measures} >= {RbaKind.HOW_MUCH, RbaKind.HOW_WELL, RbaKind.BETTER_OFF}
    assert {m.calculation for m in measures} == set(Calculation)


def test_a_good_definition_parses() -> None:
    m = parse_measure(GOOD, "good.yaml")
    assert m.factor == 100 and m.denominator is not None and m.counted.where[0].name == "referred_within"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"name": {"en": "Only English"}}, "name.es: Field required"),
        ({"colour": "red"}, "colour: is not a field of a measure definition"),
        ({"polarity": "up"}, "polarity: Input should be 'higher-is-better' or 'lower-is-better'"),
        (
            {"numerator": {"count": "need", "where": ["teleported"]}},
            "numerator.where[0]: 'teleported' is not a condition of a need",
        ),
        (
            {"numerator": {"count": "need", "where": [{"referred_within": "soon"}]}},
            "'soon' is not a duration",
        ),
        ({"numerator": {"count": "need", "where": ["referred_within"]}}, "referred_within needs an argument"),
        (
            {"numerator": {"count": "referral", "where": ["accepted"]}},
            "numerator counts referrals but the denominator counts needs",
        ),
        (
            {"denominator": {"count": "need", "where": ["consented"]}},
            "numerator must count a subset of the denominator's units: add consented to numerator.where",
        ),
        ({"denominator": None}, "denominator: a ratio needs a denominator"),
        ({"unit": "count"}, "unit: a ratio is a percent or a rate"),
        ({"breakdowns": ["shoe_size"]}, "breakdowns: 'shoe_size' is not a dimension of a need"),
        ({"targets": {"2027-13": 5}}, "targets: '2027-13' is not a month (YYYY-MM)"),
        ({"baseline": {"period": "2026-Q1", "value": 3}}, "baseline.period: '2026-Q1' is not a month"),
        (
            {"numerator": {"count": "need", "filter": {"need_domain": []}}, "denominator": {"count": "need"}},
            "list the groups kept",
        ),
        ({"calculation": "median"}, "denominator: a median measure has none"),
        ({"kind": "population-indicator"}, "population indicators are imported"),
    ],
)
def test_a_malformed_definition_is_refused_naming_the_problem(change: dict[str, Any], problem: str) -> None:
    data = {**GOOD, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(MeasureError) as caught:
        parse_measure(data, "measures/bad.yaml")
    assert any(problem in p for p in caught.value.problems), caught.value.problems
    assert str(caught.value).startswith("measures/bad.yaml: ")


def test_files_are_checked_together(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(GOOD))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({**GOOD, "id": "quarterly", "period": "quarter"}))
    with pytest.raises(MeasureError, match=re.escape("b.yaml: period: quarter differs from month")):
        load_measures(str(tmp_path))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(GOOD))
    with pytest.raises(MeasureError, match=re.escape("measure referred-quickly is already defined")):
        load_measures(str(tmp_path))
    (tmp_path / "b.yaml").write_text("id: [unclosed")
    with pytest.raises(MeasureError, match=r"b.yaml: is not valid YAML at line 1"):
        read_measure(tmp_path / "b.yaml")
    with pytest.raises(MeasureError, match=re.escape("MEASUREMENT_DEFINITIONS_DIR is not a directory")):
        load_measures(str(tmp_path / "missing"))


def test_funnel_stages_must_nest(tmp_path: Path) -> None:
    stage = {**GOOD, "calculation": "count", "unit": "count", "denominator": None, "breakdowns": []}
    stage = {k: v for k, v in stage.items() if v is not None}
    (tmp_path / "s1.yaml").write_text(
        yaml.safe_dump(
            {
                **stage,
                "id": "s1",
                "numerator": {"count": "need", "where": ["consented"]},
                "family": {"id": "f", "order": 1},
            }
        )
    )
    (tmp_path / "s2.yaml").write_text(
        yaml.safe_dump(
            {
                **stage,
                "id": "s2",
                "numerator": {"count": "need", "where": ["referred"]},
                "family": {"id": "f", "order": 2},
            }
        )
    )
    with pytest.raises(
        MeasureError, match=re.escape("s2.yaml: family: a stage keeps every condition of the stage before")
    ):
        load_measures(str(tmp_path))
