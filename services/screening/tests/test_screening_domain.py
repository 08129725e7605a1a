"""AHC HRSN core scoring and validation, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ach_screening.domain import AHC_HRSN_CORE, AnswerGiven, score_ahc_hrsn, validate

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
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def answers(**changes: str | tuple[str, ...] | None) -> list[AnswerGiven]:
    """All-negative answers with some changed; None marks a question declined."""
    result = []
    for code, default in NEGATIVE.items():
        value = changes.get("q" + code.replace("-", "_"), default)
        if value is None:
            result.append(AnswerGiven(code, (), declined=True))
        else:
            result.append(AnswerGiven(code, value if isinstance(value, tuple) else (value,)))
    return result


def test_all_negative() -> None:
    assert score_ahc_hrsn(answers()).positive_domains == ()


@pytest.mark.parametrize(
    ("changes", "domain"),
    [
        ({"q71802_3": "LA31994-9"}, "housing-instability"),
        ({"q71802_3": "LA31995-6"}, "homelessness"),
        ({"q96778_6": ("LA31996-4", "LA28580-1")}, "inadequate-housing"),
        ({"q88122_7": "LA6729-3"}, "food-insecurity"),
        ({"q88123_5": "LA28397-0"}, "food-insecurity"),
        ({"q93030_5": "LA33-6"}, "transportation-insecurity"),
        ({"q96779_4": "LA33-6"}, "utility-insecurity"),
        ({"q96779_4": "LA32002-0"}, "utility-insecurity"),  # already shut off
    ],
)
def test_each_domain_positive(changes: dict[str, str], domain: str) -> None:
    assert score_ahc_hrsn(answers(**changes)).positive_domains == (domain,)


def safety(points: tuple[int, int, int, int]) -> dict[str, str]:
    code = {1: "LA6270-8", 2: "LA10066-1", 3: "LA10082-8", 4: "LA16644-9", 5: "LA6482-9"}
    return {
        f"q{q.replace('-', '_')}": code[p]
        for q, p in zip(("95618-5", "95617-7", "95616-9", "95615-1"), points, strict=True)
    }


def test_safety_total_10_is_negative_and_11_is_positive_and_urgent() -> None:
    ten = score_ahc_hrsn(answers(**safety((4, 2, 2, 2))))
    assert ten.safety_score == 10 and ten.positive_domains == () and not ten.urgent
    eleven = score_ahc_hrsn(answers(**safety((5, 2, 2, 2))))
    assert (
        eleven.safety_score == 11
        and eleven.positive_domains == ("intimate-partner-violence",)
        and eleven.urgent
    )


def test_declined_safety_item_is_not_scored_as_never() -> None:
    declined = score_ahc_hrsn(answers(**{**safety((5, 5, 5, 1)), "q95615_1": None}))
    assert declined.safety_score is None and declined.positive_domains == ()


def test_validation_names_every_problem() -> None:
    bad = [
        AnswerGiven("71802-3", ("LA31993-1", "LA31994-9")),  # two answers on single-select
        AnswerGiven("96778-6", ("LA9-3", "LA31996-4")),  # none of the above combined
        AnswerGiven("88122-7", ("LA-bogus",)),  # unknown answer
        AnswerGiven("12345-6", ("LA33-6",)),  # unknown question
    ]
    problems = validate(AHC_HRSN_CORE, bad, NOW + timedelta(days=1), NOW)
    fields = [p.field for p in problems]
    assert "screened_at" in fields
    assert "answers[0].answer_codes" in fields and "answers[1].answer_codes" in fields
    assert "answers[2].answer_codes" in fields and "answers[3].question_code" in fields
    missing = [p for p in problems if p.field == "answers"]
    assert len(missing) == 7  # 88123-5, 93030-5, 96779-4 and the four safety items


def test_complete_answers_validate() -> None:
    assert validate(AHC_HRSN_CORE, answers(q95615_1=None), NOW, NOW) == []
