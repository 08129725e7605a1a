"""A screening submission, whichever way it came in (gRPC, a partner's topic, a FHIR import), and
every check it must pass before anything is stored or emitted. Pure: the facts that need a database
(is the resident id the submitter's to use, is the consent valid) are given to it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ach_platform.errors import FieldViolation, too_long
from ach_platform.vocabulary import LANGUAGE_TAG

from ach_screening.domain.instruments import Instrument
from ach_screening.domain.scoring import CLOCK_SKEW, AnswerGiven, validate

# OMB race and ethnicity categories as CDC Race & Ethnicity codes (urn:oid:2.16.840.1.113883.6.238).
OMB_RACE = {
    "1002-5": "American Indian or Alaska Native",
    "2028-9": "Asian",
    "2054-5": "Black or African American",
    "2076-8": "Native Hawaiian or Other Pacific Islander",
    "2106-3": "White",
}
OMB_ETHNICITY = {"2135-2": "Hispanic or Latino", "2186-5": "Not Hispanic or Latino"}
DECLINED = "ASKU"  # HL7 null flavor: asked but unknown (the resident declined)
AGE_BANDS = ("0-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75+")
ZIP = re.compile(r"^\d{5}$")
MAX_ID = 200


@dataclass(frozen=True)
class Demographics:
    race_codes: tuple[str, ...] = ()
    ethnicity_code: str = ""
    preferred_language: str = ""
    age_band: str = ""
    zip: str = ""
    neighbourhood: str = ""

    @property
    def empty(self) -> bool:
        return self == Demographics()


@dataclass(frozen=True)
class Submission:
    submitter_partner_id: str
    submitter_screening_id: str
    resident_id: str
    instrument_id: str
    instrument_version: str
    answers: tuple[AnswerGiven, ...]
    screened_at: datetime | None
    site_id: str = ""
    language: str = "en"
    screener_user_id: str = ""
    consent_id: str = ""
    demographics: Demographics = field(default_factory=Demographics)


NOT_REGISTERED = FieldViolation(
    "resident_id", "is not a resident this partner has registered with the resident index (register first)"
)


@dataclass(frozen=True)
class Facts:
    """What the database knows about the submission's references."""

    resident_usable: bool  # the resident id is known to the network and linked to the submitter
    consent_problem: str | None = None  # why the given consent cannot be referenced, if it cannot


def validate_demographics(d: Demographics, prefix: str = "demographics") -> list[FieldViolation]:
    problems = []
    for code in d.race_codes:
        if code not in OMB_RACE and code != DECLINED:
            problems.append(
                FieldViolation(f"{prefix}.race_codes", f"{code[:20]!r} is not an OMB race category code")
            )
    if DECLINED in d.race_codes and len(d.race_codes) > 1:
        problems.append(FieldViolation(f"{prefix}.race_codes", f"{DECLINED} (declined) cannot be combined"))
    if len(set(d.race_codes)) != len(d.race_codes):
        problems.append(FieldViolation(f"{prefix}.race_codes", "a race category is given twice"))
    if d.ethnicity_code and d.ethnicity_code not in OMB_ETHNICITY and d.ethnicity_code != DECLINED:
        problems.append(
            FieldViolation(
                f"{prefix}.ethnicity_code", f"{d.ethnicity_code[:20]!r} is not an OMB ethnicity code"
            )
        )
    if len(d.preferred_language) > 35:
        problems.append(FieldViolation(f"{prefix}.preferred_language", "is longer than 35 characters"))
    elif d.preferred_language and not LANGUAGE_TAG.match(d.preferred_language):
        problems.append(
            FieldViolation(f"{prefix}.preferred_language", f"{d.preferred_language!r} is not a BCP 47 tag")
        )
    if d.age_band and d.age_band not in AGE_BANDS:
        problems.append(
            FieldViolation(f"{prefix}.age_band", f"{d.age_band[:20]!r} is not one of {', '.join(AGE_BANDS)}")
        )
    if d.zip and not ZIP.match(d.zip):
        problems.append(FieldViolation(f"{prefix}.zip", "must be a five-digit ZIP code"))
    if len(d.neighbourhood) > 100:
        problems.append(FieldViolation(f"{prefix}.neighbourhood", "is longer than 100 characters"))
    return problems


def check(
    submission: Submission,
    instruments: Mapping[tuple[str, str], Instrument],
    facts: Facts,
    now: datetime,
) -> list[FieldViolation]:
    """Every problem with the submission, one field violation each (all at once)."""
    problems: list[FieldViolation] = []

    for name, value in (
        ("submitter_screening_id", submission.submitter_screening_id),
        ("resident_id", submission.resident_id),
        ("screened_by.partner_id", submission.submitter_partner_id),
    ):
        if not value.strip():
            problems.append(FieldViolation(name, "is required"))
    # Every string bounded as stored, checked before anything is written: one caller's long value
    # must fail its own call, never a batch of other partners' screenings committed with it.
    problems += too_long(
        (
            ("submitter_screening_id", submission.submitter_screening_id, MAX_ID),
            ("resident_id", submission.resident_id, 100),
            ("screened_by.partner_id", submission.submitter_partner_id, 100),
            ("site_id", submission.site_id, 100),
            ("screened_by.user_id", submission.screener_user_id, 100),
            ("language", submission.language, 35),
            ("consent_id", submission.consent_id, 36),
            ("instrument_id", submission.instrument_id, 100),
            ("instrument_version", submission.instrument_version, 50),
        )
    )
    if submission.resident_id.strip() and len(submission.resident_id) <= 100 and not facts.resident_usable:
        problems.append(NOT_REGISTERED)
    if submission.screened_at is None:
        problems.append(FieldViolation("screened_at", "is required"))
    if len(submission.language) <= 35 and not LANGUAGE_TAG.match(submission.language):
        problems.append(FieldViolation("language", f"{submission.language!r} is not a BCP 47 tag"))
    if facts.consent_problem:
        problems.append(FieldViolation("consent_id", facts.consent_problem))
    instrument = instruments.get((submission.instrument_id, submission.instrument_version))
    if instrument is None:
        known = sorted(v for i, v in instruments if i == submission.instrument_id)
        problems.append(
            FieldViolation(
                "instrument_version" if known else "instrument_id",
                f"unknown version {submission.instrument_version[:50]!r} of {submission.instrument_id[:100]} "
                f"(known: {', '.join(known)})"
                if known
                else f"unknown instrument {submission.instrument_id[:100]!r} "
                f"(known: {', '.join(sorted({i for i, _ in instruments}))})",
            )
        )
        if submission.screened_at is not None:
            problems += validate_dates(submission.screened_at, now)
    else:
        problems += validate(instrument, submission.answers, submission.screened_at, now)
    problems += validate_demographics(submission.demographics)
    return problems


def validate_dates(screened_at: datetime, now: datetime) -> list[FieldViolation]:
    return [FieldViolation("screened_at", "is in the future")] if screened_at > now + CLOCK_SKEW else []


def demographics_from_answers(
    instrument: Instrument, answers: tuple[AnswerGiven, ...], given: Demographics
) -> Demographics:
    """Demographics the instrument itself asks (PRAPARE's race, ethnicity and language questions),
    where the submitter did not give them separately."""
    race: tuple[str, ...] = given.race_codes
    ethnicity, language = given.ethnicity_code, given.preferred_language
    for answer in answers:
        question = instrument.question(answer.question_code)
        if question is None or not question.demographic:
            continue
        if answer.declined or set(answer.answer_codes) <= instrument.decline_codes:
            categories: tuple[str, ...] = (DECLINED,)
        else:
            categories = tuple(
                dict.fromkeys(
                    o.category
                    for c in answer.answer_codes
                    if (o := question.option(c)) is not None and o.category
                )
            )
        if question.demographic == "race" and not race:
            race = categories
        elif question.demographic == "ethnicity" and not ethnicity and categories:
            ethnicity = categories[0]
        elif question.demographic == "language" and not language and categories and categories[0] != DECLINED:
            language = categories[0]
    return Demographics(race, ethnicity, language, given.age_band, given.zip, given.neighbourhood)


def kept_answers(instrument: Instrument, answers: tuple[AnswerGiven, ...]) -> tuple[AnswerGiven, ...]:
    """The answers stored with the screening: not the demographic ones (kept apart) and not those
    the instrument says never to keep (identity, e.g. an address)."""
    result = []
    for answer in answers:
        question = instrument.question(answer.question_code)
        if question is not None and question.keep and not question.demographic:
            result.append(answer)
    return tuple(result)
