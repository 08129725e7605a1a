"""Instruments as data: the AHC HRSN core's official positive rules (every domain's boundary, and an
independent oracle over random answer sets), PRAPARE, validation, and malformed instrument files."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from ach_screening.catalog import SHIPPED, load_catalog, read_instrument
from ach_screening.domain import AnswerGiven, InstrumentError, parse_instrument, score, validate
from ach_screening.publishers import needs_identified
from ach_screening.store import ScreeningRecord
from hypothesis import given, settings
from hypothesis import strategies as st

CATALOG = load_catalog("")
AHC = CATALOG[("ahc-hrsn-core", "1")]
PRAPARE = CATALOG[("prapare", "1")]
NOW = datetime(2026, 11, 1, tzinfo=UTC)

NEGATIVE = {
    "71802-3": "LA31993-1",
    "96778-6": "LA9-3",
    "88122-7": "LA28398-8",
    "88123-5": "LA28398-8",
    "93030-5": "LA32-8",
    "96779-4": "LA32-8",
    "95618-5": "LA6270-8",
    "95617-7": "LA6270-8",
    "95616-9": "LA6270-8",
    "95615-1": "LA6270-8",
}
SAFETY = ("95618-5", "95617-7", "95616-9", "95615-1")
POINTS = {"LA6270-8": 1, "LA10066-1": 2, "LA10082-8": 3, "LA16644-9": 4, "LA6482-9": 5}
CODE_OF_POINTS = {p: c for c, p in POINTS.items()}


def answers(**changes: str | tuple[str, ...] | None) -> list[AnswerGiven]:
    """All-negative AHC answers with some changed (q71802_3="LA31994-9"); None declines a question."""
    result = []
    for code, default in NEGATIVE.items():
        value = changes.get("q" + code.replace("-", "_"), default)
        if value is None:
            result.append(AnswerGiven(code, (), declined=True))
        else:
            result.append(AnswerGiven(code, value if isinstance(value, tuple) else (value,)))
    return result


def safety(points: tuple[int, int, int, int]) -> dict[str, str]:
    return {f"q{q.replace('-', '_')}": CODE_OF_POINTS[p] for q, p in zip(SAFETY, points, strict=True)}


def ahc_oracle(given: Mapping[str, tuple[str, ...] | None]) -> tuple[set[str], bool, int | None]:
    """The AHC HRSN positive rules, written straight from the CMS guide (and the domain brief), apart
    from the data-driven engine: positive domains, urgency, and the safety total (None unless all
    four items are answered). ``None`` as an answer means declined."""
    domains = set()
    living = given.get("71802-3") or ()
    if "LA31994-9" in living:
        domains.add("housing-instability")
    if "LA31995-6" in living:
        domains.add("homelessness")
    problems = given.get("96778-6") or ()
    if any(code != "LA9-3" for code in problems):
        domains.add("inadequate-housing")
    for food in ("88122-7", "88123-5"):
        if set(given.get(food) or ()) & {"LA28397-0", "LA6729-3"}:
            domains.add("food-insecurity")
    if "LA33-6" in (given.get("93030-5") or ()):
        domains.add("transportation-insecurity")
    if set(given.get("96779-4") or ()) & {"LA33-6", "LA32002-0"}:
        domains.add("utility-insecurity")
    total: int | None = None
    safety_answers = [given.get(q) for q in SAFETY]
    if all(safety_answers):
        total = sum(POINTS[a[0]] for a in safety_answers if a)
        if total >= 11:
            domains.add("intimate-partner-violence")
    return domains, "intimate-partner-violence" in domains, total


def test_all_negative_is_negative_and_assesses_every_domain() -> None:
    scored = score(AHC, answers())
    assert scored.positive_domains == () and not scored.urgent
    assert set(scored.negative_domains) == {
        "homelessness",
        "housing-instability",
        "inadequate-housing",
        "food-insecurity",
        "transportation-insecurity",
        "utility-insecurity",
        "intimate-partner-violence",
    }


# Each AHC domain on both sides of its boundary: the negative answer right next to the positive one.
@pytest.mark.parametrize(
    ("changes", "positive"),
    [
        ({"q71802_3": "LA31993-1"}, ()),  # steady place
        ({"q71802_3": "LA31994-9"}, ("housing-instability",)),  # worried about losing it
        ({"q71802_3": "LA31995-6"}, ("homelessness",)),  # no steady place
        ({"q96778_6": "LA9-3"}, ()),  # none of the above
        ({"q96778_6": "LA32001-2"}, ("inadequate-housing",)),  # water leaks alone
        ({"q96778_6": ("LA31996-4", "LA28580-1")}, ("inadequate-housing",)),
        ({"q88122_7": "LA28398-8", "q88123_5": "LA28398-8"}, ()),  # never true on both
        ({"q88122_7": "LA6729-3"}, ("food-insecurity",)),  # sometimes true on the first
        ({"q88123_5": "LA6729-3"}, ("food-insecurity",)),  # sometimes true on the second
        ({"q88123_5": "LA28397-0"}, ("food-insecurity",)),  # often true
        ({"q93030_5": "LA32-8"}, ()),
        ({"q93030_5": "LA33-6"}, ("transportation-insecurity",)),
        ({"q96779_4": "LA32-8"}, ()),
        ({"q96779_4": "LA33-6"}, ("utility-insecurity",)),  # threatened
        ({"q96779_4": "LA32002-0"}, ("utility-insecurity",)),  # already shut off
    ],
)
def test_each_domain_boundary(changes: dict[str, str], positive: tuple[str, ...]) -> None:
    assert score(AHC, answers(**changes)).positive_domains == positive


@pytest.mark.parametrize(
    ("points", "positive"),
    [
        ((1, 1, 1, 1), False),  # the lowest total, 4
        ((4, 2, 2, 2), False),  # 10
        ((5, 2, 2, 2), True),  # 11
        ((2, 3, 3, 3), True),  # 11, another way
        ((5, 5, 5, 5), True),  # 20
    ],
)
def test_safety_total_boundary(points: tuple[int, int, int, int], positive: bool) -> None:
    scored = score(AHC, answers(**safety(points)))
    assert scored.totals == {"95614-4": sum(points)}
    assert ("intimate-partner-violence" in scored.positive_domains) is positive
    assert scored.urgent is positive


def test_declined_safety_item_is_never_counted_as_never() -> None:
    # Three "frequently" and a declined fourth: no total, not positive, and not assessed negative
    # either (a declined item is not "never"; the domain stays unknown).
    scored = score(AHC, answers(**{**safety((5, 5, 5, 1)), "q95615_1": None}))
    assert scored.totals == {} and "intimate-partner-violence" not in scored.positive_domains
    assert "intimate-partner-violence" not in scored.negative_domains


def test_declined_food_item_keeps_the_domain_unassessed_unless_the_other_is_positive() -> None:
    one_never = score(AHC, answers(q88122_7=None))
    assert "food-insecurity" not in one_never.positive_domains + one_never.negative_domains
    assert "food-insecurity" in score(AHC, answers(q88122_7=None, q88123_5="LA6729-3")).positive_domains


def test_findings_carry_the_answers_that_made_them_positive() -> None:
    scored = score(AHC, answers(q88123_5="LA28397-0", q96778_6=("LA9-3",)))
    (food,) = scored.findings
    assert food.domain == "food-insecurity" and food.evidence == (("88123-5", ("LA28397-0",)),)


ahc_answer = {
    q.code: (
        st.lists(
            st.sampled_from([o.code for o in q.options if o.code != "LA9-3"]), min_size=1, unique=True
        ).map(tuple)
        | st.just(("LA9-3",))
        if q.multi_select
        else st.sampled_from([o.code for o in q.options]).map(lambda c: (c,))
    )
    for q in AHC.questions
}


@st.composite
def ahc_answer_sets(draw: Any) -> dict[str, tuple[str, ...] | None]:
    """Random complete AHC answer sets, any question possibly declined."""
    return {code: draw(st.none() | strategy) for code, strategy in ahc_answer.items()}


@settings(max_examples=400, deadline=None)
@given(ahc_answer_sets())
def test_scoring_agrees_with_the_oracle(given_answers: dict[str, tuple[str, ...] | None]) -> None:
    submitted = [
        AnswerGiven(q, (), declined=True) if a is None else AnswerGiven(q, a)
        for q, a in given_answers.items()
    ]
    assert validate(AHC, submitted, NOW, NOW) == []
    domains, urgent, total = ahc_oracle(given_answers)
    scored = score(AHC, submitted)
    assert set(scored.positive_domains) == domains
    assert scored.urgent is urgent
    assert scored.totals.get("95614-4") == total


def test_each_need_identified_is_urgent_by_its_own_finding() -> None:
    scored = score(AHC, answers(q88123_5="LA28397-0", **safety((5, 5, 5, 5))))
    record = ScreeningRecord(
        id="s-1",
        submitter_partner_id="clinic-1",
        submitter_screening_id="c-1",
        resident_id="r-1",
        instrument_id=AHC.id,
        instrument_version=AHC.version,
        positive_domains=list(scored.positive_domains),
        findings=[],
        negative_domains=[],
        totals={},
        urgent=scored.urgent,
        screened_at=NOW,
        site_id="site-1",
        language="en",
        created_at=NOW,
    )
    urgency = {n.need_domain: n.urgent for n in needs_identified(record, scored)}
    assert scored.urgent and urgency == {"food-insecurity": False, "intimate-partner-violence": True}


def test_validation_names_every_problem_at_once() -> None:
    bad = [
        AnswerGiven("71802-3", ("LA31993-1", "LA31994-9")),  # two answers on single-select
        AnswerGiven("96778-6", ("LA9-3", "LA31996-4")),  # none of the above combined
        AnswerGiven("88122-7", ("LA-bogus",)),  # unknown answer
        AnswerGiven("12345-6", ("LA33-6",)),  # unknown question
        AnswerGiven("93030-5", ()),  # no answer, not declined
    ]
    problems = validate(AHC, bad, NOW + timedelta(days=1), NOW)
    fields = [p.field for p in problems]
    assert "screened_at" in fields
    assert {"answers[0].answer_codes", "answers[1].answer_codes", "answers[2].answer_codes"} <= set(fields)
    assert "answers[3].question_code" in fields and "answers[4].answer_codes" in fields
    missing = [p.description for p in problems if p.field == "answers"]
    assert len(missing) == 6  # 88123-5, 96779-4 and the four safety items
    assert all("required question" in m for m in missing)


def test_complete_answers_validate() -> None:
    assert validate(AHC, answers(q95615_1=None), NOW, NOW) == []


def prapare_answers(**changes: str | tuple[str, ...] | None) -> list[AnswerGiven]:
    base: dict[str, tuple[str, ...] | str] = {
        "56051-6": ("LA32-8",),
        "32624-9": ("LA4457-3",),
        "93035-4": ("LA32-8",),
        "93034-7": ("LA32-8",),
        "54899-0": ("LA43-5",),
        "63512-8": "3",
        "71802-3": ("LA30189-7",),
        "93033-9": ("LA32-8",),
        "82589-3": ("LA30193-9",),
        "67875-5": ("LA30136-8",),
        "76437-3": ("LA17849-3",),
        "63586-2": "32000",
        "93031-3": ("LA30122-8",),
        "93030-5": ("LA32-8",),
        "93029-7": ("LA30132-7",),
        "93038-8": ("LA6568-5",),
    }
    result = []
    for code, default in base.items():
        value = changes.get("q" + code.replace("-", "_"), default)
        if value is None:
            result.append(AnswerGiven(code, (), declined=True))
        elif isinstance(value, str) and not value.startswith("LA"):
            result.append(AnswerGiven(code, (), value=value))
        else:
            result.append(AnswerGiven(code, value if isinstance(value, tuple) else (value,)))
    return result


def test_prapare_negative_and_its_decline_code_is_a_decline() -> None:
    assert validate(PRAPARE, prapare_answers(), NOW, NOW) == []
    scored = score(PRAPARE, prapare_answers())
    assert scored.positive_domains == ()
    # "I choose not to answer" on the material-needs question: neither positive nor assessed.
    assert "food-insecurity" not in scored.negative_domains
    assert "homelessness" in scored.negative_domains


@pytest.mark.parametrize(
    ("changes", "positive"),
    [
        ({"q71802_3": "LA30190-5"}, ("homelessness",)),
        ({"q93033_9": "LA33-6"}, ("housing-instability",)),
        ({"q93031_3": ("LA30125-1", "LA30124-4")}, ("food-insecurity", "utility-insecurity")),
        ({"q93031_3": ("LA30128-5",)}, ("medical-cost-burden",)),
        ({"q93030_5": "LA30133-5"}, ("transportation-insecurity",)),
        ({"q93030_5": "LA30257-2"}, ()),  # unable to respond: a decline, never a "no"
        ({"q67875_5": "LA17956-6"}, ("employment-status",)),
        ({"q76437_3": "LA30194-7"}, ("health-insurance-coverage-status",)),
        ({"q93029_7": "LA30130-1"}, ("social-connection",)),
        ({"q93029_7": "LA30131-9"}, ()),
        ({"q93038_8": "LA13902-4"}, ("stress",)),
        ({"q93038_8": "LA13909-9"}, ()),
    ],
)
def test_prapare_rules(changes: dict[str, Any], positive: tuple[str, ...]) -> None:
    submitted = prapare_answers(**changes)
    assert validate(PRAPARE, submitted, NOW, NOW) == []
    assert score(PRAPARE, submitted).positive_domains == positive


def test_prapare_fear_of_a_partner_is_urgent() -> None:
    submitted = [*prapare_answers(), AnswerGiven("76501-6", ("LA33-6",))]
    scored = score(PRAPARE, submitted)
    assert scored.positive_domains == ("intimate-partner-violence",) and scored.urgent


def test_prapare_values_are_checked_by_type() -> None:
    problems = validate(PRAPARE, prapare_answers(q63512_8="2.5", q63586_2="lots"), NOW, NOW)
    assert [(p.field, p.description) for p in problems] == [
        ("answers[5].value", "63512-8 takes a whole number"),
        ("answers[11].value", "is not a number"),
    ]


def test_every_text_has_english_and_spanish() -> None:
    for instrument in CATALOG.values():
        assert {"en", "es"} <= set(instrument.languages)
        for question in instrument.questions:
            assert question.text["es"] and question.text["en"]
            assert all(o.text["es"] for o in question.options)


def ahc_data() -> dict[str, Any]:
    data = yaml.safe_load((SHIPPED / "ahc-hrsn-core.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_a_new_instrument_is_a_data_file(tmp_path: Path) -> None:
    data = {
        "id": "hunger-vital-sign",
        "version": "1",
        "loinc": "88121-9",
        "title": {"en": "Hunger Vital Sign", "es": "Signo vital del hambre"},
        "languages": ["en", "es"],
        "questions": ahc_data()["questions"][2:4],
        "rules": [ahc_data()["rules"][3]],
    }
    (tmp_path / "hvs.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    catalog = load_catalog(str(tmp_path))
    hvs = catalog[("hunger-vital-sign", "1")]
    assert set(catalog) == {("ahc-hrsn-core", "1"), ("prapare", "1"), ("hunger-vital-sign", "1")}
    both = [AnswerGiven("88122-7", ("LA6729-3",)), AnswerGiven("88123-5", ("LA28398-8",))]
    assert validate(hvs, both, NOW, NOW) == [] and score(hvs, both).positive_domains == ("food-insecurity",)


def rejected(data: Any) -> list[str]:
    with pytest.raises(InstrumentError) as caught:
        parse_instrument(data, "bad.yaml")
    assert str(caught.value).startswith("bad.yaml: ")
    return caught.value.problems


def test_malformed_instruments_name_the_question_and_the_problem() -> None:
    data = ahc_data()
    data["questions"][0]["code"] = "71802"  # not a LOINC code
    del data["questions"][2]["text"]["es"]  # a missing translation
    data["questions"][3]["answers"] = [{"code": "LA28397-0", "en": "Often true"}]  # one untranslated answer
    data["questions"][6]["answers"][0]["points"] = "one"
    data["rules"][5]["domain"] = "utilities"  # not a Gravity code
    data["rules"][4]["when"] = {"answer_in": {"question": "93030-5", "codes": ["LA9999-9"]}}
    problems = rejected(data)
    assert "question 71802: code '71802' is not a LOINC code (#####-#)" in problems
    assert "question 88122-7: text has no 'es' translation" in problems
    assert "question 88123-5: answer LA28397-0 has no 'es' translation" in problems
    assert "question 95618-5: answer LA6270-8: points must be a whole number" in problems
    assert "rules[5] (utilities): domain 'utilities' is not a Gravity SDOH category code" in problems
    assert (
        "rules[4] (transportation-insecurity): answer_in: 'LA9999-9' is not an answer to question 93030-5"
        in problems
    )
    # The rule on the renamed question cannot find it any more, and says so.
    assert any("refers to question '71802-3'" in p for p in problems)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.pop("version"), "version is required"),
        (lambda d: d.update(languages="en"), "languages must list"),
        (lambda d: d["questions"].append(d["questions"][0]), "question 71802-3: is defined twice"),
        (lambda d: d["questions"][4].update(type="slider"), "type 'slider' is not one of"),
        (
            lambda d: d["rules"][6]["when"]["total"].update(questions=["71802-3"]),
            "whose answers have no points",
        ),
        (lambda d: d["rules"][0].update(when={"sometimes": {}}), "unknown condition 'sometimes'"),
    ],
)
def test_more_malformed_instruments(change: Any, problem: str) -> None:
    data = ahc_data()
    change(data)
    assert any(problem in p for p in rejected(data)), rejected(data)


def test_a_file_that_is_not_yaml_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id: x\nquestions: [\n  - code: 1\n")
    with pytest.raises(InstrumentError) as caught:
        read_instrument(path)
    assert str(caught.value).startswith(f"{path}: is not valid YAML at line")


def test_two_files_cannot_define_the_same_version(tmp_path: Path) -> None:
    (tmp_path / "copy.yaml").write_text((SHIPPED / "ahc-hrsn-core.yaml").read_text())
    with pytest.raises(InstrumentError, match="ahc-hrsn-core version 1 is already defined"):
        load_catalog(str(tmp_path))
