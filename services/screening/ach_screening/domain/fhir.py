"""FHIR R4 QuestionnaireResponse (JSON) to the answers of one of our instruments. Pure.

Which instrument: the response's ``questionnaire`` canonical URL (one the instrument file lists, or
one that names the instrument's LOINC panel), else a top-level item whose linkId is the panel code.
Items: a linkId's last segment is the LOINC question code ("/93042-0/71802-3" -> 71802-3); groups are
walked; an instrument's computed totals (e.g. 95614-4) are ignored, since we compute them. Answers:
valueCoding (LOINC) codes, or a value; the data-absent-reason "asked-declined" marks one declined.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ach_platform.errors import FieldViolation

from ach_screening.domain.instruments import Instrument, TotalAtLeast
from ach_screening.domain.scoring import AnswerGiven

FIELD = "questionnaire_response_json"
LOINC_SYSTEM = "http://loinc.org"
DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
DECLINED_REASONS = {"asked-declined", "asked-unknown"}
FHIR_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class ImportedResponse:
    instrument: Instrument
    answers: tuple[AnswerGiven, ...]
    paths: tuple[str, ...]  # where each answer is in the resource, for error messages
    screened_at: datetime | None
    language: str
    resource_id: str


def _instrument_for(
    resource: Mapping[str, Any], instruments: Mapping[tuple[str, str], Instrument]
) -> Instrument | None:
    canonical = str(resource.get("questionnaire", ""))
    url, _, version = canonical.partition("|")
    top_codes = {
        str(item.get("linkId", "")).strip("/").rsplit("/", 1)[-1]
        for item in resource.get("item", []) or []
        if isinstance(item, Mapping)
    }
    matches = [
        i
        for i in instruments.values()
        if url in i.questionnaires
        or (url and re.search(rf"(^|[/=:]){re.escape(i.loinc)}($|[/?|])", url))
        or i.loinc in top_codes
    ]
    if not matches:
        return None
    exact = [i for i in matches if i.version == version]
    return (exact or sorted(matches, key=lambda i: i.version))[-1]


def _declined(node: Mapping[str, Any]) -> bool:
    for extension in node.get("extension", []) or []:
        if (
            isinstance(extension, Mapping)
            and extension.get("url") == DATA_ABSENT_REASON
            and str(extension.get("valueCode", "")) in DECLINED_REASONS
        ):
            return True
    return False


def _value(answer: Mapping[str, Any]) -> str | None:
    for key in ("valueInteger", "valueDecimal", "valueString"):
        if key in answer:
            return str(answer[key])
    quantity = answer.get("valueQuantity")
    if isinstance(quantity, Mapping) and "value" in quantity:
        return str(quantity["value"])
    return None


def _screened_at(authored: Any, problems: list[FieldViolation]) -> datetime | None:
    if not isinstance(authored, str) or not authored:
        problems.append(FieldViolation(f"{FIELD}.authored", "is required"))
        return None
    try:
        if FHIR_DATE.match(authored):
            return datetime.fromisoformat(authored).replace(tzinfo=UTC)
        when = datetime.fromisoformat(authored.replace("Z", "+00:00"))
    except ValueError:
        problems.append(FieldViolation(f"{FIELD}.authored", f"{authored!r} is not a FHIR dateTime"))
        return None
    if when.tzinfo is None:
        problems.append(FieldViolation(f"{FIELD}.authored", "a dateTime with a time needs a time zone"))
        return None
    return when.astimezone(UTC)


def read_questionnaire_response(
    text: str, instruments: Mapping[tuple[str, str], Instrument]
) -> tuple[ImportedResponse | None, list[FieldViolation]]:
    """The instrument and answers of a QuestionnaireResponse, or the problems that prevent reading it."""
    problems: list[FieldViolation] = []
    try:
        resource = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [
            FieldViolation(FIELD, f"is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})")
        ]
    if not isinstance(resource, dict) or resource.get("resourceType") != "QuestionnaireResponse":
        return None, [FieldViolation(f"{FIELD}.resourceType", "must be QuestionnaireResponse")]
    if resource.get("status") not in {"completed", "amended"}:
        problems.append(
            FieldViolation(
                f"{FIELD}.status", f"is {resource.get('status')!r}: only a completed response is imported"
            )
        )
    instrument = _instrument_for(resource, instruments)
    if instrument is None:
        problems.append(
            FieldViolation(
                f"{FIELD}.questionnaire",
                f"{resource.get('questionnaire', '')!r} is not a questionnaire of a known instrument "
                f"(panels: {', '.join(sorted({i.loinc for i in instruments.values()}))})",
            )
        )
        return None, problems
    screened_at = _screened_at(resource.get("authored"), problems)
    totals = {c.code for r in instrument.rules for c in _totals_of(r.when)}
    answers: list[AnswerGiven] = []
    paths: list[str] = []

    def walk(items: Any, path: str) -> None:
        if not isinstance(items, list):
            problems.append(FieldViolation(path, "must be a list of items"))
            return
        for index, item in enumerate(items):
            where = f"{path}[{index}]"
            if not isinstance(item, Mapping):
                problems.append(FieldViolation(where, "must be an item"))
                continue
            code = str(item.get("linkId", "")).strip("/").rsplit("/", 1)[-1]
            raw_answers = item.get("answer", []) or []
            if item.get("item"):
                walk(item["item"], f"{where}.item")
            if code in totals or code == instrument.loinc or not (raw_answers or _declined(item)):
                continue
            if _declined(item) or any(isinstance(a, Mapping) and _declined(a) for a in raw_answers):
                answers.append(AnswerGiven(code, (), True))
                paths.append(where)
                continue
            codes: list[str] = []
            value = ""
            for a_index, raw in enumerate(raw_answers):
                if not isinstance(raw, Mapping):
                    problems.append(FieldViolation(f"{where}.answer[{a_index}]", "must be an answer"))
                    continue
                coding = raw.get("valueCoding")
                if isinstance(coding, Mapping):
                    system = coding.get("system", LOINC_SYSTEM)
                    if system != LOINC_SYSTEM:
                        problems.append(
                            FieldViolation(
                                f"{where}.answer[{a_index}].valueCoding.system",
                                f"{system!r}: answers are LOINC answer codes ({LOINC_SYSTEM})",
                            )
                        )
                    codes.append(str(coding.get("code", "")))
                elif (found := _value(raw)) is not None:
                    value = found
                else:
                    problems.append(
                        FieldViolation(f"{where}.answer[{a_index}]", "has no valueCoding, number or text")
                    )
                for nested_index, nested in enumerate(raw.get("item", []) or []):
                    walk([nested], f"{where}.answer[{a_index}].item[{nested_index}]")
            answers.append(AnswerGiven(code, tuple(codes), False, value))
            paths.append(where)

    walk(resource.get("item", []), f"{FIELD}.item")
    identifier = resource.get("identifier")
    resource_id = str(identifier.get("value", "")) if isinstance(identifier, Mapping) else ""
    language = str(resource.get("language", "") or "en")
    return (
        ImportedResponse(
            instrument,
            tuple(answers),
            tuple(paths),
            screened_at,
            language,
            resource_id or str(resource.get("id", "")),
        ),
        problems,
    )


def _totals_of(condition: Any) -> list[TotalAtLeast]:
    if isinstance(condition, TotalAtLeast):
        return [condition]
    return [t for c in getattr(condition, "conditions", ()) for t in _totals_of(c)]


def located(violations: list[FieldViolation], paths: tuple[str, ...]) -> list[FieldViolation]:
    """Violations about answers[i] renamed to where that answer is in the FHIR resource."""
    result = []
    for v in violations:
        match = re.match(r"^answers\[(\d+)\](.*)$", v.field)
        if match and int(match.group(1)) < len(paths):
            suffix = match.group(2).replace(".answer_codes", ".answer").replace(".value", ".answer")
            result.append(FieldViolation(paths[int(match.group(1))] + suffix, v.description))
        elif v.field == "answers":
            result.append(FieldViolation(f"{FIELD}.item", v.description))
        elif v.field == "screened_at":
            result.append(FieldViolation(f"{FIELD}.authored", v.description))
        elif v.field == "language":
            result.append(FieldViolation(f"{FIELD}.language", v.description))
        else:
            result.append(v)
    return result
