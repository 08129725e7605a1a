"""Screening rules, pure: validation of a submission against its instrument, and scoring.

The AHC HRSN core questions and positive rules are those of the CMS Accountable Health Communities
screening tool (LOINC panel 96777-8); need domains are Gravity SDOH category codes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ach_platform.errors import FieldViolation


@dataclass(frozen=True)
class Question:
    code: str
    text: str
    answers: Mapping[str, str]  # LOINC answer code -> text
    multi_select: bool = False
    # Answer code -> points, for questions that add up to a score.
    points: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Instrument:
    id: str
    version: str
    questions: tuple[Question, ...]

    def question(self, code: str) -> Question | None:
        return next((q for q in self.questions if q.code == code), None)


@dataclass(frozen=True)
class AnswerGiven:
    question_code: str
    answer_codes: tuple[str, ...]
    declined: bool = False


@dataclass(frozen=True)
class Scored:
    positive_domains: tuple[str, ...]
    urgent: bool
    safety_score: int | None


OFTEN, SOMETIMES, NEVER = "LA28397-0", "LA6729-3", "LA28398-8"
YES, NO, SHUT_OFF = "LA33-6", "LA32-8", "LA32002-0"
FREQUENCY = {"LA6270-8": 1, "LA10066-1": 2, "LA10082-8": 3, "LA16644-9": 4, "LA6482-9": 5}
FREQUENCY_TEXT = {
    "LA6270-8": "Never",
    "LA10066-1": "Rarely",
    "LA10082-8": "Sometimes",
    "LA16644-9": "Fairly often",
    "LA6482-9": "Frequently",
}
SAFETY_QUESTIONS = ("95618-5", "95617-7", "95616-9", "95615-1")
SAFETY_POSITIVE_AT = 11
NONE_OF_THE_ABOVE = "LA9-3"

AHC_HRSN_CORE = Instrument(
    id="ahc-hrsn-core",
    version="1",
    questions=(
        Question(
            "71802-3",
            "What is your living situation today?",
            {
                "LA31993-1": "I have a steady place to live",
                "LA31994-9": "I have a place to live today, but I am worried about losing it in the future",
                "LA31995-6": "I do not have a steady place to live",
            },
        ),
        Question(
            "96778-6",
            "Think about the place you live. Do you have problems with any of the following?",
            {
                "LA31996-4": "Pests",
                "LA28580-1": "Mold",
                "LA31997-2": "Lead paint or pipes",
                "LA31998-0": "Lack of heat",
                "LA31999-8": "Oven or stove not working",
                "LA32000-4": "Smoke detectors missing or not working",
                "LA32001-2": "Water leaks",
                NONE_OF_THE_ABOVE: "None of the above",
            },
            multi_select=True,
        ),
        Question(
            "88122-7",
            "Within the past 12 months, you worried that your food would run out...",
            {OFTEN: "Often true", SOMETIMES: "Sometimes true", NEVER: "Never true"},
        ),
        Question(
            "88123-5",
            "Within the past 12 months, the food you bought just didn't last...",
            {OFTEN: "Often true", SOMETIMES: "Sometimes true", NEVER: "Never true"},
        ),
        Question(
            "93030-5",
            "In the past 12 months, has lack of reliable transportation kept you from...",
            {YES: "Yes", NO: "No"},
        ),
        Question(
            "96779-4",
            "In the past 12 months has the electric, gas, oil, or water company threatened "
            "to shut off services in your home?",
            {YES: "Yes", NO: "No", SHUT_OFF: "Already shut off"},
        ),
        Question(
            "95618-5",
            "How often does anyone, including family and friends, physically hurt you?",
            FREQUENCY_TEXT,
            points=FREQUENCY,
        ),
        Question(
            "95617-7",
            "How often does anyone, including family and friends, insult or talk down to you?",
            FREQUENCY_TEXT,
            points=FREQUENCY,
        ),
        Question(
            "95616-9",
            "How often does anyone, including family and friends, threaten you with harm?",
            FREQUENCY_TEXT,
            points=FREQUENCY,
        ),
        Question(
            "95615-1",
            "How often does anyone, including family and friends, scream or curse at you?",
            FREQUENCY_TEXT,
            points=FREQUENCY,
        ),
    ),
)

INSTRUMENTS: dict[tuple[str, str], Instrument] = {(AHC_HRSN_CORE.id, AHC_HRSN_CORE.version): AHC_HRSN_CORE}


def validate(
    instrument: Instrument | None,
    answers: Sequence[AnswerGiven],
    screened_at: datetime | None,
    now: datetime,
) -> list[FieldViolation]:
    """Every problem with the answers, one violation each (all at once, not the first only)."""
    problems: list[FieldViolation] = []
    if screened_at is not None and screened_at > now + timedelta(minutes=5):
        problems.append(FieldViolation("screened_at", "is in the future"))
    if instrument is None:
        return problems
    seen: set[str] = set()
    for i, answer in enumerate(answers):
        where = f"answers[{i}]"
        question = instrument.question(answer.question_code)
        if question is None:
            problems.append(
                FieldViolation(
                    f"{where}.question_code", f"{answer.question_code!r} is not a question of {instrument.id}"
                )
            )
            continue
        if answer.question_code in seen:
            problems.append(
                FieldViolation(f"{where}.question_code", f"{answer.question_code} is answered twice")
            )
        seen.add(answer.question_code)
        if answer.declined:
            if answer.answer_codes:
                problems.append(
                    FieldViolation(f"{where}.answer_codes", "a declined question has no answer codes")
                )
            continue
        if not answer.answer_codes:
            problems.append(
                FieldViolation(f"{where}.answer_codes", "no answer given (mark it declined instead)")
            )
            continue
        if len(answer.answer_codes) > 1 and not question.multi_select:
            problems.append(
                FieldViolation(
                    f"{where}.answer_codes",
                    f"{question.code} takes one answer, got {len(answer.answer_codes)}",
                )
            )
        for code in answer.answer_codes:
            if code not in question.answers:
                problems.append(
                    FieldViolation(f"{where}.answer_codes", f"{code!r} is not an answer to {question.code}")
                )
        if (
            question.multi_select
            and NONE_OF_THE_ABOVE in answer.answer_codes
            and len(answer.answer_codes) > 1
        ):
            problems.append(FieldViolation(f"{where}.answer_codes", "'none of the above' cannot be combined"))
    for question in instrument.questions:
        if question.code not in seen:
            problems.append(
                FieldViolation("answers", f"required question {question.code} is not answered or declined")
            )
    return problems


def score_ahc_hrsn(answers: Sequence[AnswerGiven]) -> Scored:
    """The official AHC HRSN positive rules. A declined item is never counted as a negative answer."""
    given = {a.question_code: set(a.answer_codes) for a in answers if not a.declined}
    domains: list[str] = []
    living = given.get("71802-3", set())
    if "LA31995-6" in living:
        domains.append("homelessness")
    elif "LA31994-9" in living:
        domains.append("housing-instability")
    problems = given.get("96778-6", set())
    if problems and problems != {NONE_OF_THE_ABOVE}:
        domains.append("inadequate-housing")
    if given.get("88122-7", set()) & {OFTEN, SOMETIMES} or given.get("88123-5", set()) & {OFTEN, SOMETIMES}:
        domains.append("food-insecurity")
    if YES in given.get("93030-5", set()):
        domains.append("transportation-insecurity")
    if given.get("96779-4", set()) & {YES, SHUT_OFF}:
        domains.append("utility-insecurity")
    safety_score: int | None = None
    if all(q in given for q in SAFETY_QUESTIONS):
        safety_score = sum(FREQUENCY[next(iter(given[q]))] for q in SAFETY_QUESTIONS)
        if safety_score >= SAFETY_POSITIVE_AT:
            domains.append("intimate-partner-violence")
    urgent = "intimate-partner-violence" in domains
    return Scored(tuple(domains), urgent, safety_score)


def score(instrument: Instrument, answers: Sequence[AnswerGiven]) -> Scored:
    if instrument.id == AHC_HRSN_CORE.id:
        return score_ahc_hrsn(answers)
    raise ValueError(f"no scoring rules for {instrument.id}")
