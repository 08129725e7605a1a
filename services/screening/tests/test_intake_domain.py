"""Submissions, FHIR QuestionnaireResponse import, demographics and need history, without I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from ach_screening.catalog import load_catalog
from ach_screening.domain import AnswerGiven, score
from ach_screening.domain.fhir import located, read_questionnaire_response
from ach_screening.domain.history import ACTIVE, RESOLVED, ScreeningOutcome, need_history
from ach_screening.domain.submission import (
    Demographics,
    Facts,
    Submission,
    check,
    demographics_from_answers,
    kept_answers,
    validate_demographics,
)

CATALOG = load_catalog("")
AHC = CATALOG[("ahc-hrsn-core", "1")]
PRAPARE = CATALOG[("prapare", "1")]
NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
AHC_ANSWERS = {
    "71802-3": "LA31994-9",
    "96778-6": "LA9-3",
    "88122-7": "LA6729-3",
    "88123-5": "LA28398-8",
    "93030-5": "LA32-8",
    "96779-4": "LA32002-0",
    "95618-5": "LA6270-8",
    "95617-7": "LA6270-8",
    "95616-9": "LA6270-8",
}


def ahc_response(**overrides: Any) -> dict[str, Any]:
    """An AHC HRSN QuestionnaireResponse shaped like the US Core example: a panel group, LOINC
    linkIds, the safety total as a computed item, and the last safety item declined."""
    items: list[dict[str, Any]] = [
        {"linkId": f"/{q}", "answer": [{"valueCoding": {"system": "http://loinc.org", "code": a}}]}
        for q, a in AHC_ANSWERS.items()
    ]
    items.append(
        {
            "linkId": "/95615-1",
            "answer": [
                {
                    "extension": [
                        {
                            "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                            "valueCode": "asked-declined",
                        }
                    ]
                }
            ],
        }
    )
    items.append({"linkId": "/95614-4", "answer": [{"valueInteger": 3}]})
    resource = {
        "resourceType": "QuestionnaireResponse",
        "id": "qr-1",
        "identifier": {"system": "urn:example:ehr", "value": "ehr-screening-77"},
        "questionnaire": "http://loinc.org/q/96777-8",
        "status": "completed",
        "language": "es",
        "authored": "2026-10-30T09:15:00-07:00",
        "item": [{"linkId": "/96777-8", "text": "AHC HRSN", "item": items}],
    }
    resource.update(overrides)
    return resource


def test_a_fhir_response_reads_as_the_same_answers() -> None:
    imported, problems = read_questionnaire_response(json.dumps(ahc_response()), CATALOG)
    assert problems == [] and imported is not None
    assert imported.instrument is AHC and imported.resource_id == "ehr-screening-77"
    assert imported.language == "es"
    assert imported.screened_at == datetime(2026, 10, 30, 16, 15, tzinfo=UTC)
    assert AnswerGiven("95615-1", (), declined=True) in imported.answers
    assert AnswerGiven("88122-7", ("LA6729-3",)) in imported.answers
    assert all(a.question_code != "95614-4" for a in imported.answers)  # the total is ours to compute
    scored = score(AHC, imported.answers)
    assert scored.positive_domains == ("housing-instability", "food-insecurity", "utility-insecurity")


def test_fhir_problems_point_into_the_resource() -> None:
    resource = ahc_response(status="in-progress", authored="yesterday")
    resource["item"][0]["item"][2]["answer"][0]["valueCoding"]["code"] = "LA0-0"
    resource["item"][0]["item"][4]["answer"][0]["valueCoding"]["system"] = "http://snomed.info/sct"
    imported, problems = read_questionnaire_response(json.dumps(resource), CATALOG)
    assert imported is not None
    fields = {p.field for p in problems}
    assert "questionnaire_response_json.status" in fields
    assert "questionnaire_response_json.authored" in fields
    assert "questionnaire_response_json.item[0].item[4].answer[0].valueCoding.system" in fields
    # Answer problems found later (by the instrument's validation) are renamed to where they are.
    from ach_screening.domain import validate

    renamed = located(validate(AHC, imported.answers, None, NOW), imported.paths)
    assert [(v.field, v.description) for v in renamed] == [
        ("questionnaire_response_json.item[0].item[2].answer", "'LA0-0' is not an answer to 88122-7")
    ]


def test_unknown_questionnaires_and_non_json_are_refused() -> None:
    assert read_questionnaire_response("{", CATALOG)[1][0].field == "questionnaire_response_json"
    _, problems = read_questionnaire_response(
        json.dumps(ahc_response(questionnaire="http://example.org/Questionnaire/phq-9", item=[])), CATALOG
    )
    assert [p.field for p in problems] == ["questionnaire_response_json.questionnaire"]
    _, problems = read_questionnaire_response(json.dumps({"resourceType": "Patient"}), CATALOG)
    assert problems[0].description == "must be QuestionnaireResponse"


def test_prapare_from_fhir_by_its_panel_item() -> None:
    resource = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "http://hl7.org/fhir/us/core/Questionnaire/prapare-example",
        "status": "completed",
        "authored": "2026-10-01",
        "item": [
            {
                "linkId": "/93025-5",
                "item": [
                    {
                        "linkId": "/93043-8",
                        "item": [
                            {"linkId": "/93043-8/32624-9", "answer": [{"valueCoding": {"code": "LA4457-3"}}]},
                        ],
                    },
                    {
                        "linkId": "/93042-0",
                        "item": [
                            {"linkId": "/93042-0/63512-8", "answer": [{"valueInteger": 6}]},
                            {"linkId": "/93042-0/56799-0", "answer": [{"valueString": "Broadway"}]},
                        ],
                    },
                ],
            }
        ],
    }
    imported, problems = read_questionnaire_response(json.dumps(resource), CATALOG)
    assert problems == [] and imported is not None and imported.instrument is PRAPARE
    assert AnswerGiven("63512-8", (), False, "6") in imported.answers
    # The address is accepted and never kept; race goes to the demographics, not the answers.
    kept = {a.question_code for a in kept_answers(PRAPARE, imported.answers)}
    assert kept == {"63512-8"}
    demographics = demographics_from_answers(PRAPARE, imported.answers, Demographics(zip="95206"))
    assert demographics == Demographics(race_codes=("2106-3",), zip="95206")


def submission(**changes: Any) -> Submission:
    base: dict[str, Any] = {
        "submitter_partner_id": "clinic-1",
        "submitter_screening_id": "s-1",
        "resident_id": "r-1",
        "instrument_id": "ahc-hrsn-core",
        "instrument_version": "1",
        "answers": (
            *tuple(AnswerGiven(q, (a,)) for q, a in AHC_ANSWERS.items()),
            AnswerGiven("95615-1", (), True),
        ),
        "screened_at": NOW,
    }
    return Submission(**(base | changes))


def test_a_good_submission_has_no_problems() -> None:
    assert check(submission(), CATALOG, Facts(resident_usable=True), NOW) == []


def test_every_problem_of_a_submission_at_once() -> None:
    bad = submission(
        submitter_screening_id="",
        instrument_version="9",
        screened_at=NOW + timedelta(days=2),
        language="Spanish!",
        demographics=Demographics(race_codes=("2106-3", "ASKU"), age_band="30-40", zip="9520"),
    )
    problems = check(bad, CATALOG, Facts(resident_usable=False, consent_problem="is revoked"), NOW)
    assert [p.field for p in problems] == [
        "submitter_screening_id",
        "resident_id",
        "language",
        "consent_id",
        "instrument_version",
        "screened_at",
        "demographics.race_codes",
        "demographics.age_band",
        "demographics.zip",
    ]
    assert "known: 1" in problems[4].description


def test_demographics_rules() -> None:
    assert (
        validate_demographics(Demographics(("ASKU",), "ASKU", "es", "75+", "95206", "South Stockton")) == []
    )
    assert [v.field for v in validate_demographics(Demographics(("white",), "latino", "!"))] == [
        "demographics.race_codes",
        "demographics.ethnicity_code",
        "demographics.preferred_language",
    ]


def test_prapare_demographic_answers_declined() -> None:
    answers = (AnswerGiven("32624-9", ("LA30122-8",)), AnswerGiven("56051-6", ("LA33-6",)))
    assert demographics_from_answers(PRAPARE, answers, Demographics()) == Demographics(("ASKU",), "2135-2")


def day(n: int) -> datetime:
    return NOW + timedelta(days=n)


def test_rescreening_resolves_a_need_and_a_recurrence_starts_anew() -> None:
    history = need_history(
        [
            ScreeningOutcome("s3", day(60), (("food-insecurity", False),), ()),
            ScreeningOutcome("s1", day(0), (("food-insecurity", False), ("housing-instability", False)), ()),
            ScreeningOutcome("s2", day(30), (), ("food-insecurity",)),  # housing not assessed (declined)
        ]
    )
    by_domain = {n.domain: n for n in history}
    assert by_domain["housing-instability"].state == ACTIVE  # never assessed again: still active
    food = by_domain["food-insecurity"]
    assert (food.state, food.first_identified_at, food.last_positive_screening_id) == (ACTIVE, day(60), "s3")
    resolved = need_history(
        [
            ScreeningOutcome("s1", day(0), (("food-insecurity", True),), ()),
            ScreeningOutcome("s2", day(30), (), ("food-insecurity",)),
        ]
    )
    assert (resolved[0].state, resolved[0].resolved_by_screening_id, resolved[0].resolved_at) == (
        RESOLVED,
        "s2",
        day(30),
    )
