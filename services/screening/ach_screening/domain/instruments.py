"""Screening instruments as data: questions with LOINC codes, answer options with LOINC answer codes,
translations, and scoring rules that map answers to need domains (Gravity SDOH category codes).

An instrument is defined in a data file (see ``ach_screening/instruments/``); ``parse_instrument``
turns the file's content into these frozen dataclasses and names every problem it finds (the file,
the question, the problem), so a malformed file is rejected when it is loaded, never half-used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ach_platform.vocabulary import LANGUAGE_TAG, NEED_DOMAINS

GRAVITY_DOMAINS = NEED_DOMAINS
LOINC_CODE = re.compile(r"^\d{1,7}-\d$")
LOINC_ANSWER_CODE = re.compile(r"^LA\d{1,7}-\d$")
INSTRUMENT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
QUESTION_TYPES = ("choice", "integer", "decimal", "text")
# Questions whose answers are demographics: kept apart from the answers, for equity measurement.
DEMOGRAPHIC_KINDS = ("race", "ethnicity", "language")


@dataclass(frozen=True)
class AnswerOption:
    code: str
    text: Mapping[str, str]  # language -> display
    points: int | None = None
    exclusive: bool = False  # e.g. "none of the above": cannot be combined with another option
    # For a demographic question: the OMB category (CDC code) or language (BCP 47) it stands for.
    category: str = ""


@dataclass(frozen=True)
class Question:
    code: str
    text: Mapping[str, str]
    type: str = "choice"
    options: tuple[AnswerOption, ...] = ()
    multi_select: bool = False
    required: bool = True
    section: str = ""
    demographic: str = ""
    keep: bool = True  # False: accepted and never stored (identity belongs in the resident index)

    def option(self, code: str) -> AnswerOption | None:
        return next((o for o in self.options if o.code == code), None)


@dataclass(frozen=True)
class AnswerIn:
    """The answer to ``question`` includes one of ``codes``."""

    question: str
    codes: frozenset[str]


@dataclass(frozen=True)
class AnswerOutside:
    """The answer to ``question`` includes a code not among ``codes`` (e.g. anything but "none")."""

    question: str
    codes: frozenset[str]


@dataclass(frozen=True)
class AnyOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class TotalAtLeast:
    """Every question answered (none declined) and the answers' points add up to ``at_least``."""

    code: str  # LOINC code the total is recorded under, e.g. 95614-4
    questions: tuple[str, ...]
    at_least: int


Condition = AnswerIn | AnswerOutside | AnyOf | TotalAtLeast


@dataclass(frozen=True)
class ScoringRule:
    domain: str
    when: Condition
    urgent: bool = False


@dataclass(frozen=True)
class Instrument:
    id: str
    version: str
    loinc: str
    title: Mapping[str, str]
    languages: tuple[str, ...]
    questions: tuple[Question, ...]
    rules: tuple[ScoringRule, ...]
    decline_codes: frozenset[str] = frozenset()
    # FHIR Questionnaire canonical URLs whose responses are this instrument (besides LOINC's own).
    questionnaires: tuple[str, ...] = ()
    _by_code: Mapping[str, Question] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_code", {q.code: q for q in self.questions})

    @property
    def key(self) -> tuple[str, str]:
        return self.id, self.version

    def question(self, code: str) -> Question | None:
        return self._by_code.get(code)


class InstrumentError(Exception):
    """A malformed instrument definition: every problem, each naming where it is."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__("\n".join(f"{source}: {p}" for p in self.problems))


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, problem: str) -> None:
        self.items.append(f"{where}: {problem}" if where else problem)


def _texts(
    value: Any, languages: tuple[str, ...], where: str, what: str, problems: _Problems
) -> dict[str, str]:
    if not isinstance(value, Mapping):
        problems.add(where, f"{what} must map each language to a text")
        return {}
    texts = {str(k): str(v).strip() for k, v in value.items() if isinstance(v, str | int | float)}
    for language in languages:
        if not texts.get(language):
            problems.add(where, f"{what} has no {language!r} translation")
    return texts


def _option(raw: Any, languages: tuple[str, ...], where: str, problems: _Problems) -> AnswerOption | None:
    if not isinstance(raw, Mapping):
        problems.add(where, "an answer must be a mapping with a code and its texts")
        return None
    code = str(raw.get("code", ""))
    if not LOINC_ANSWER_CODE.match(code):
        problems.add(where, f"answer code {code!r} is not a LOINC answer code (LA#####-#)")
    texts = _texts(
        {k: v for k, v in raw.items() if k not in {"code", "points", "exclusive", "category"}},
        languages,
        where,
        f"answer {code}",
        problems,
    )
    points = raw.get("points")
    if points is not None and (not isinstance(points, int) or isinstance(points, bool)):
        problems.add(where, f"answer {code}: points must be a whole number")
        points = None
    return AnswerOption(code, texts, points, bool(raw.get("exclusive", False)), str(raw.get("category", "")))


def _question(raw: Any, languages: tuple[str, ...], index: int, problems: _Problems) -> Question | None:
    if not isinstance(raw, Mapping):
        problems.add(f"questions[{index}]", "a question must be a mapping")
        return None
    code = str(raw.get("code", ""))
    where = f"question {code}" if code else f"questions[{index}]"
    if not LOINC_CODE.match(code):
        problems.add(where, f"code {code!r} is not a LOINC code (#####-#)")
    kind = str(raw.get("type", "choice"))
    if kind not in QUESTION_TYPES:
        problems.add(where, f"type {kind!r} is not one of {', '.join(QUESTION_TYPES)}")
    demographic = str(raw.get("demographic", ""))
    if demographic and demographic not in DEMOGRAPHIC_KINDS:
        problems.add(where, f"demographic {demographic!r} is not one of {', '.join(DEMOGRAPHIC_KINDS)}")
    texts = _texts(raw.get("text"), languages, where, "text", problems)
    raw_options = raw.get("answers", [])
    options: list[AnswerOption] = []
    if kind == "choice":
        if not isinstance(raw_options, list) or not raw_options:
            problems.add(where, "a choice question needs a list of answers")
            raw_options = []
        for raw_option in raw_options:
            option = _option(raw_option, languages, where, problems)
            if option is not None:
                if any(o.code == option.code for o in options):
                    problems.add(where, f"answer {option.code} is listed twice")
                options.append(option)
        scored = [o for o in options if o.points is not None]
        if scored and len(scored) != len(options):
            problems.add(where, "either every answer has points or none has")
    elif raw_options:
        problems.add(where, f"a {kind} question has no answer options")
    multi = bool(raw.get("multi_select", False))
    if multi and kind != "choice":
        problems.add(where, "only a choice question can be multi-select")
    return Question(
        code=code,
        text=texts,
        type=kind,
        options=tuple(options),
        multi_select=multi,
        required=bool(raw.get("required", True)),
        section=str(raw.get("section", "")),
        demographic=demographic,
        keep=bool(raw.get("keep", True)),
    )


def _condition(
    raw: Any, questions: Mapping[str, Question], where: str, problems: _Problems
) -> Condition | None:
    if not isinstance(raw, Mapping) or len(raw) != 1:
        problems.add(where, "a condition is exactly one of answer_in, answer_outside, any, total")
        return None
    ((kind, body),) = raw.items()
    if kind in {"answer_in", "answer_outside"}:
        if not isinstance(body, Mapping):
            problems.add(where, f"{kind} needs a question and codes")
            return None
        code = str(body.get("question", ""))
        codes = body.get("codes")
        question = questions.get(code)
        if question is None:
            problems.add(where, f"{kind} refers to question {code!r}, which the instrument does not have")
            return None
        if not isinstance(codes, list) or not codes:
            problems.add(where, f"{kind} on question {code} needs a list of answer codes")
            return None
        for answer in codes:
            if question.option(str(answer)) is None:
                problems.add(where, f"{kind}: {answer!r} is not an answer to question {code}")
        cls = AnswerIn if kind == "answer_in" else AnswerOutside
        return cls(code, frozenset(str(c) for c in codes))
    if kind == "any":
        if not isinstance(body, list) or not body:
            problems.add(where, "any needs a list of conditions")
            return None
        parts = [_condition(part, questions, where, problems) for part in body]
        return AnyOf(tuple(p for p in parts if p is not None))
    if kind == "total":
        if not isinstance(body, Mapping):
            problems.add(where, "total needs a code, questions and at_least")
            return None
        code = str(body.get("code", ""))
        if not LOINC_CODE.match(code):
            problems.add(where, f"total code {code!r} is not a LOINC code")
        listed = body.get("questions")
        at_least = body.get("at_least")
        if not isinstance(listed, list) or not listed:
            problems.add(where, "total needs a list of questions")
            listed = []
        for q in listed:
            question = questions.get(str(q))
            if question is None:
                problems.add(where, f"total refers to question {q!r}, which the instrument does not have")
            elif not question.options or any(o.points is None for o in question.options):
                problems.add(where, f"total over question {q}, whose answers have no points")
        if not isinstance(at_least, int) or isinstance(at_least, bool):
            problems.add(where, "total needs a whole-number at_least")
            at_least = 0
        return TotalAtLeast(code, tuple(str(q) for q in listed), at_least)
    problems.add(where, f"unknown condition {kind!r} (answer_in, answer_outside, any, total)")
    return None


def parse_instrument(data: Any, source: str) -> Instrument:
    """An instrument from a data file's content; raises InstrumentError naming every problem."""
    problems = _Problems()
    if not isinstance(data, Mapping):
        raise InstrumentError(source, ["the file must hold one mapping (id, version, questions, rules...)"])
    instrument_id = str(data.get("id", ""))
    if not INSTRUMENT_ID.match(instrument_id):
        problems.add("", f"id {instrument_id!r} must be lower-case letters, digits and dashes")
    version = str(data.get("version", "")).strip()
    if not version:
        problems.add("", "version is required")
    loinc = str(data.get("loinc", ""))
    if not LOINC_CODE.match(loinc):
        problems.add("", f"loinc {loinc!r} is not a LOINC panel code")
    raw_languages = data.get("languages")
    languages: tuple[str, ...] = ()
    if not isinstance(raw_languages, list) or not raw_languages:
        problems.add("", "languages must list the languages every text is given in (e.g. [en, es])")
    else:
        languages = tuple(str(lang) for lang in raw_languages)
        for lang in languages:
            if not LANGUAGE_TAG.match(lang):
                problems.add("", f"language {lang!r} is not a BCP 47 tag")
    title = _texts(data.get("title"), languages, "", "title", problems)
    decline_codes = data.get("decline_codes", [])
    if not isinstance(decline_codes, list) or any(not LOINC_ANSWER_CODE.match(str(c)) for c in decline_codes):
        problems.add("", "decline_codes must list LOINC answer codes")
        decline_codes = []

    questionnaires = data.get("questionnaires", [])
    if not isinstance(questionnaires, list) or any(
        not str(q).startswith(("http://", "https://")) for q in questionnaires
    ):
        problems.add("", "questionnaires must list canonical URLs")
        questionnaires = []

    raw_questions = data.get("questions")
    questions: list[Question] = []
    if not isinstance(raw_questions, list) or not raw_questions:
        problems.add("", "questions must be a non-empty list")
        raw_questions = []
    for index, raw in enumerate(raw_questions):
        question = _question(raw, languages, index, problems)
        if question is None:
            continue
        if any(q.code == question.code for q in questions):
            problems.add(f"question {question.code}", "is defined twice")
        questions.append(question)
    by_code = {q.code: q for q in questions}

    raw_rules = data.get("rules", [])
    rules: list[ScoringRule] = []
    if not isinstance(raw_rules, list):
        problems.add("", "rules must be a list")
        raw_rules = []
    for index, raw in enumerate(raw_rules):
        where = f"rules[{index}]"
        if not isinstance(raw, Mapping):
            problems.add(where, "a rule must be a mapping with a domain and a condition (when)")
            continue
        domain = str(raw.get("domain", ""))
        where = f"rules[{index}] ({domain})" if domain else where
        if domain not in GRAVITY_DOMAINS:
            problems.add(where, f"domain {domain!r} is not a Gravity SDOH category code")
        condition = _condition(raw.get("when"), by_code, where, problems)
        if condition is not None:
            rules.append(ScoringRule(domain, condition, bool(raw.get("urgent", False))))

    if problems.items:
        raise InstrumentError(source, problems.items)
    return Instrument(
        id=instrument_id,
        version=version,
        loinc=loinc,
        title=title,
        languages=languages,
        questions=tuple(questions),
        rules=tuple(rules),
        decline_codes=frozenset(str(c) for c in decline_codes),
        questionnaires=tuple(str(q) for q in questionnaires),
    )
