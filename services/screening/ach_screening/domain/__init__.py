"""Screening rules, pure: instruments as data, validation of a submission against its instrument,
scoring by the instrument's rules, and the demographics kept apart from the answers."""

from ach_screening.domain.instruments import (
    GRAVITY_DOMAINS,
    AnswerOption,
    Instrument,
    InstrumentError,
    Question,
    ScoringRule,
    parse_instrument,
)
from ach_screening.domain.scoring import AnswerGiven, Finding, Scored, normalized, score, validate

__all__ = [
    "GRAVITY_DOMAINS",
    "AnswerGiven",
    "AnswerOption",
    "Finding",
    "Instrument",
    "InstrumentError",
    "Question",
    "Scored",
    "ScoringRule",
    "normalized",
    "parse_instrument",
    "score",
    "validate",
]
