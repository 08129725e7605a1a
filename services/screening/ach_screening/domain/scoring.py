"""Validation of a screening's answers against its instrument, and scoring by the instrument's rules.

Pure: no I/O. The rules are the instrument's data; nothing here knows one instrument from another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from ach_platform.errors import FieldViolation

from ach_screening.domain.instruments import (
    AnswerIn,
    AnswerOutside,
    AnyOf,
    Condition,
    Instrument,
    Question,
    TotalAtLeast,
)

# A clock a few minutes ahead on the submitter's side is not a screening from the future.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class AnswerGiven:
    question_code: str
    answer_codes: tuple[str, ...] = ()
    declined: bool = False
    value: str = ""  # for integer, decimal and text questions


@dataclass(frozen=True)
class Finding:
    """One positive need domain and the answers that made it positive (codes only)."""

    domain: str
    urgent: bool
    evidence: tuple[tuple[str, tuple[str, ...]], ...]  # (question code, answer codes)


@dataclass(frozen=True)
class Scored:
    findings: tuple[Finding, ...]
    totals: Mapping[str, int]  # e.g. {"95614-4": 12}: the interpersonal-safety total
    # Domains assessed and found negative: every question of the rule answered (none declined), so
    # a later negative screening can resolve an earlier need; a declined question resolves nothing.
    negative_domains: tuple[str, ...] = ()

    @property
    def positive_domains(self) -> tuple[str, ...]:
        return tuple(f.domain for f in self.findings)

    @property
    def urgent(self) -> bool:
        return any(f.urgent for f in self.findings)


def normalized(instrument: Instrument, answers: Sequence[AnswerGiven]) -> list[AnswerGiven]:
    """An instrument's own "I choose not to answer" codes become a declined answer."""
    result = []
    for answer in answers:
        if answer.answer_codes and set(answer.answer_codes) <= instrument.decline_codes:
            result.append(AnswerGiven(answer.question_code, (), True, ""))
        else:
            result.append(answer)
    return result


MAX_VALUE = 200  # characters of a number or text answer (as stored)


def _value_problem(question: Question, value: str) -> str | None:
    """What is wrong with a value answer, never quoting it: answers are PHI, and problems travel
    into error details, dead-letter reasons and logs."""
    if len(value) > MAX_VALUE:
        return f"is longer than {MAX_VALUE} characters"
    if question.type == "text":
        return None if value.strip() else "no answer given (mark it declined instead)"
    try:
        number = Decimal(value)
    except InvalidOperation:
        return "is not a number"
    if not number.is_finite():
        return "is not a number"
    if question.type == "integer" and number != number.to_integral_value():
        return f"{question.code} takes a whole number"
    if number < 0:
        return f"{question.code} takes a number of zero or more"
    return None


def validate(
    instrument: Instrument,
    answers: Sequence[AnswerGiven],
    screened_at: datetime | None,
    now: datetime,
    field_prefix: str = "answers",
) -> list[FieldViolation]:
    """Every problem with the answers, one violation each (all at once, not the first only)."""
    problems: list[FieldViolation] = []
    if screened_at is not None and screened_at > now + CLOCK_SKEW:
        problems.append(FieldViolation("screened_at", "is in the future"))
    seen: set[str] = set()
    for i, answer in enumerate(answers):
        where = f"{field_prefix}[{i}]"
        question = instrument.question(answer.question_code)
        if question is None:
            problems.append(
                FieldViolation(
                    f"{where}.question_code",
                    f"{answer.question_code[:50]!r} is not a question of"
                    f" {instrument.id} {instrument.version}",
                )
            )
            continue
        if answer.question_code in seen:
            problems.append(
                FieldViolation(f"{where}.question_code", f"{answer.question_code} is answered twice")
            )
        seen.add(answer.question_code)
        if answer.declined:
            if answer.answer_codes or answer.value:
                problems.append(FieldViolation(f"{where}.answer_codes", "a declined question has no answer"))
            continue
        if question.type != "choice":
            if answer.answer_codes:
                problems.append(
                    FieldViolation(
                        f"{where}.answer_codes", f"{question.code} takes a {question.type} value, not codes"
                    )
                )
            elif (problem := _value_problem(question, answer.value)) is not None:
                problems.append(FieldViolation(f"{where}.value", problem))
            continue
        if answer.value:
            problems.append(
                FieldViolation(f"{where}.value", f"{question.code} takes answer codes, not a value")
            )
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
        if len(set(answer.answer_codes)) != len(answer.answer_codes):
            problems.append(FieldViolation(f"{where}.answer_codes", "an answer code is given twice"))
        for code in answer.answer_codes:
            option = question.option(code)
            if option is None:
                problems.append(
                    FieldViolation(
                        f"{where}.answer_codes", f"{code[:50]!r} is not an answer to {question.code}"
                    )
                )
            elif option.exclusive and len(answer.answer_codes) > 1:
                problems.append(
                    FieldViolation(
                        f"{where}.answer_codes", f"{code} ({option.text.get('en', code)}) cannot be combined"
                    )
                )
            elif code in instrument.decline_codes and len(answer.answer_codes) > 1:
                problems.append(
                    FieldViolation(f"{where}.answer_codes", f"{code} (declined) cannot be combined")
                )
    for question in instrument.questions:
        if question.required and question.code not in seen:
            problems.append(
                FieldViolation(field_prefix, f"required question {question.code} is not answered or declined")
            )
    return problems


def _holds(
    condition: Condition, given: Mapping[str, tuple[str, ...]], instrument: Instrument
) -> list[tuple[str, tuple[str, ...]]]:
    """The evidence that the condition holds (question, answer codes); empty when it does not."""
    if isinstance(condition, AnswerIn):
        codes = tuple(c for c in given.get(condition.question, ()) if c in condition.codes)
        return [(condition.question, codes)] if codes else []
    if isinstance(condition, AnswerOutside):
        codes = tuple(c for c in given.get(condition.question, ()) if c not in condition.codes)
        return [(condition.question, codes)] if codes else []
    if isinstance(condition, AnyOf):
        evidence: list[tuple[str, tuple[str, ...]]] = []
        for part in condition.conditions:
            evidence += _holds(part, given, instrument)
        return evidence
    total = _total(condition, given, instrument)
    if total is None or total < condition.at_least:
        return []
    return [(q, given[q]) for q in condition.questions]


def _total(
    condition: TotalAtLeast, given: Mapping[str, tuple[str, ...]], instrument: Instrument
) -> int | None:
    """The points of the answers; None unless every question is answered (a declined one is never "never")."""
    points = 0
    for code in condition.questions:
        question = instrument.question(code)
        if code not in given or question is None:
            return None
        for answer in given[code]:
            option = question.option(answer)
            if option is None or option.points is None:
                return None
            points += option.points
    return points


def _totals(
    condition: Condition, given: Mapping[str, tuple[str, ...]], instrument: Instrument
) -> dict[str, int]:
    if isinstance(condition, TotalAtLeast):
        total = _total(condition, given, instrument)
        return {} if total is None else {condition.code: total}
    if isinstance(condition, AnyOf):
        result: dict[str, int] = {}
        for part in condition.conditions:
            result |= _totals(part, given, instrument)
        return result
    return {}


def questions_of(condition: Condition) -> set[str]:
    if isinstance(condition, AnswerIn | AnswerOutside):
        return {condition.question}
    if isinstance(condition, AnyOf):
        return set().union(*(questions_of(c) for c in condition.conditions))
    return set(condition.questions)


def score(instrument: Instrument, answers: Sequence[AnswerGiven]) -> Scored:
    """The instrument's rules over valid answers. A declined question counts for no rule."""
    given = {
        a.question_code: a.answer_codes
        for a in normalized(instrument, answers)
        if not a.declined and a.answer_codes
    }
    findings: list[Finding] = []
    assessed: list[str] = []
    totals: dict[str, int] = {}
    for rule in instrument.rules:
        totals |= _totals(rule.when, given, instrument)
        evidence = _holds(rule.when, given, instrument)
        if evidence and rule.domain not in {f.domain for f in findings}:
            findings.append(Finding(rule.domain, rule.urgent, tuple(evidence)))
        elif not evidence and questions_of(rule.when) <= given.keys() and rule.domain not in assessed:
            assessed.append(rule.domain)
    positive = {f.domain for f in findings}
    return Scored(tuple(findings), totals, tuple(d for d in assessed if d not in positive))
