"""Referrals as FHIR R4 (Gravity SDOHCC), without I/O: the exported Bundle is valid FHIR (checked with
the fhir.resources models, written apart from ours) and carries the profiles' required elements; a
partner's Task reads back as a status update, or names every problem by field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from ach_referrals.domain import Outcome, Status
from ach_referrals.fhir import (
    CATEGORY_SYSTEM,
    REFERRAL_ID_SYSTEM,
    SERVICE_REQUEST_PROFILE,
    TASK_PROFILE,
    ReferralView,
    referral_bundle,
    task_update,
)
from fhir.resources.R4B.bundle import Bundle

AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def view(status: Status = Status.REQUESTED, **more: Any) -> ReferralView:
    base: dict[str, Any] = {
        "referral_id": "5f0c1a9e-0000-4000-8000-000000000001",
        "resident_id": "res-7",
        "need_domain": "food-insecurity",
        "source_partner_id": "clinic-1",
        "target_partner_id": "cbo-pantry",
        "target_service_id": "svc-pantry",
        "status": status,
        "outcome": "",
        "reason": "",
        "created_at": AT,
        "updated_at": AT,
        "consent_id": "consent-3",
    }
    return ReferralView(**{**base, **more})


def resources(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}


@pytest.mark.parametrize("status", list(Status))
def test_every_status_exports_as_valid_fhir(status: Status) -> None:
    outcome = Outcome.NEED_MET.value if status is Status.COMPLETED else ""
    bundle = referral_bundle(view(status, outcome=outcome, reason="no capacity"))
    Bundle.model_validate(bundle)  # raises on anything FHIR R4 does not allow
    found = resources(bundle)
    assert found["Task"]["status"] == status.value


def test_the_profiles_required_elements_are_there() -> None:
    found = resources(referral_bundle(view()))
    request, task = found["ServiceRequest"], found["Task"]
    # SDOHCC ServiceRequest: status, intent, category (SDOH), code, subject, authoredOn, requester.
    assert request["meta"]["profile"] == [SERVICE_REQUEST_PROFILE]
    assert (request["status"], request["intent"]) == ("active", "order")
    assert request["category"] == [{"coding": [{"system": CATEGORY_SYSTEM, "code": "food-insecurity"}]}]
    assert request["code"]["coding"][0]["system"] == "http://snomed.info/sct"
    assert request["subject"] == {"reference": "Patient/res-7"}
    assert request["requester"] == {"reference": "Organization/clinic-1"}
    assert request["performer"] == [{"reference": "Organization/cbo-pantry"}]
    assert request["supportingInfo"] == [{"reference": "Consent/consent-3"}]
    # SDOHCC Task for referral management: status, intent, code fulfill, focus, for, owner, requester.
    assert task["meta"]["profile"] == [TASK_PROFILE]
    assert (task["intent"], task["code"]["coding"][0]["code"]) == ("order", "fulfill")
    assert task["focus"] == {"reference": f"ServiceRequest/{request['id']}"}
    assert task["for"] == {"reference": "Patient/res-7"}
    assert task["owner"] == {"reference": "Organization/cbo-pantry"}
    assert task["identifier"] == [{"system": REFERRAL_ID_SYSTEM, "value": view().referral_id}]
    # Ids only about the resident: no name, birth date or address anywhere.
    text = json.dumps(found)
    assert "Patient/res-7" in text and "name" not in text and "birthDate" not in text


def test_reason_and_outcome_travel() -> None:
    rejected = resources(referral_bundle(view(Status.REJECTED, reason="no capacity")))
    assert rejected["Task"]["statusReason"] == {"text": "no capacity"}
    assert rejected["ServiceRequest"]["status"] == "revoked"
    done = resources(referral_bundle(view(Status.COMPLETED, outcome="need-met")))
    assert done["Task"]["output"][0]["valueCodeableConcept"]["coding"][0]["code"] == "need-met"
    assert done["ServiceRequest"]["status"] == "completed"
    draft = resources(referral_bundle(view(Status.DRAFT, target_partner_id="", consent_id="")))
    assert "owner" not in draft["Task"] and "supportingInfo" not in draft["ServiceRequest"]


def test_an_exported_task_with_a_new_status_reads_back_as_an_update() -> None:
    task = resources(referral_bundle(view()))["Task"]
    task["status"] = "completed"
    task["output"] = [
        {
            "type": {"text": "outcome"},
            "valueCodeableConcept": {
                "coding": [{"system": "urn:ach:referral-outcome", "code": "need-partly-met"}]
            },
        }
    ]
    update, problems = task_update(json.dumps(task))
    assert problems == []
    assert update is not None
    assert (update.referral_id, update.status, update.outcome) == (
        view().referral_id,
        Status.COMPLETED,
        Outcome.NEED_PARTLY_MET,
    )
    task["status"], task["statusReason"] = (
        "rejected",
        {"coding": [{"code": "no-capacity", "display": "No capacity"}]},
    )
    del task["output"]
    update, _ = task_update(json.dumps(task))
    assert update is not None and (update.status, update.reason) == (Status.REJECTED, "No capacity")


@pytest.mark.parametrize(
    ("document", "problems"),
    [
        ("{not json", [("task_json", "is not JSON: Expecting property name enclosed in double quotes at 1")]),
        ('{"resourceType": "Patient"}', [("task_json", "is not a FHIR Task resource")]),
        (
            '{"resourceType": "Task", "status": "done", "output": [{"valueCodeableConcept": '
            '{"coding": [{"system": "urn:ach:referral-outcome", "code": "great"}]}}]}',
            [
                ("Task.identifier", f"names no referral (an identifier with system {REFERRAL_ID_SYSTEM})"),
                ("Task.status", "'done' is not a Task status of the referral lifecycle"),
                (
                    "Task.output[0]",
                    "'great' is not an outcome (need-met, need-partly-met, need-not-met, resident-declined,"
                    " unable-to-contact)",
                ),
            ],
        ),
    ],
)
def test_a_bad_task_names_every_problem(document: str, problems: list[tuple[str, str]]) -> None:
    assert task_update(document) == (None, problems)
