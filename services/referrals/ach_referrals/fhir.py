"""Referrals as FHIR R4 (Gravity SDOH Clinical Care IG), pure: a referral exported as a Bundle of its
ServiceRequest and Task (with the Consent it rests on referenced), and a partner's FHIR Task read
back as a status update.

Ids only about the resident: the Patient reference is the network's pseudonymous resident id; the
partner resolves it (GetResidentForReferral) under its own authorization and the resident's consent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ach_referrals.domain import Outcome, Status

SDOHCC = "http://hl7.org/fhir/us/sdoh-clinicalcare"
CATEGORY_SYSTEM = f"{SDOHCC}/CodeSystem/SDOHCC-CodeSystemTemporaryCodes"
SERVICE_REQUEST_PROFILE = f"{SDOHCC}/StructureDefinition/SDOHCC-ServiceRequest"
TASK_PROFILE = f"{SDOHCC}/StructureDefinition/SDOHCC-TaskForReferralManagement"
TASK_CODE_SYSTEM = "http://hl7.org/fhir/CodeSystem/task-code"
SNOMED = "http://snomed.info/sct"
REFERRAL_ID_SYSTEM = "urn:ach:referral"  # the network's referral ids, as FHIR identifiers
OUTCOME_SYSTEM = "urn:ach:referral-outcome"
# What the source asks for: a referral (SNOMED CT procedure); what for is the SDOH category.
REFERRAL_CODE = ("3457005", "Patient referral")
# The state machine's fields, as the Task names them.
TASK_FIELDS = {"status": "Task.status", "reason": "Task.statusReason", "outcome": "Task.output"}
# A referral's Task status is its own; the ServiceRequest's follows from it.
REQUEST_STATUS = {
    Status.DRAFT: "draft",
    Status.REQUESTED: "active",
    Status.ACCEPTED: "active",
    Status.IN_PROGRESS: "active",
    Status.ON_HOLD: "on-hold",
    Status.REJECTED: "revoked",
    Status.CANCELLED: "revoked",
    Status.FAILED: "revoked",
    Status.COMPLETED: "completed",
    Status.ENTERED_IN_ERROR: "entered-in-error",
}


@dataclass(frozen=True)
class ReferralView:
    """What the export needs of a referral (the store's record, without I/O)."""

    referral_id: str
    resident_id: str
    need_domain: str
    source_partner_id: str
    target_partner_id: str
    target_service_id: str
    status: Status
    outcome: str
    reason: str  # of the latest change
    created_at: datetime
    updated_at: datetime
    consent_id: str  # the consent the share with the target rests on; "" for none (a draft)


def _instant(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _organization(partner_id: str) -> dict[str, str]:
    return {"reference": f"Organization/{partner_id}"}


def referral_bundle(r: ReferralView) -> dict[str, Any]:
    """The referral as a FHIR R4 Bundle (type collection): ServiceRequest + Task."""
    code, display = REFERRAL_CODE
    request_id = f"{r.referral_id}-request"
    identifier = [{"system": REFERRAL_ID_SYSTEM, "value": r.referral_id}]
    service_request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": request_id,
        "meta": {"profile": [SERVICE_REQUEST_PROFILE]},
        "identifier": identifier,
        "status": REQUEST_STATUS[r.status],
        "intent": "order",
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": r.need_domain}]}],
        "code": {
            "coding": [{"system": SNOMED, "code": code, "display": display}],
            "text": f"Referral for {r.need_domain}",
        },
        "subject": {"reference": f"Patient/{r.resident_id}"},
        "authoredOn": _instant(r.created_at),
        "requester": _organization(r.source_partner_id),
    }
    if r.target_partner_id:
        service_request["performer"] = [_organization(r.target_partner_id)]
    if r.target_service_id:
        service_request["locationCode"] = [{"text": f"HSDS service {r.target_service_id}"}]
    if r.consent_id:
        service_request["supportingInfo"] = [{"reference": f"Consent/{r.consent_id}"}]
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": r.referral_id,
        "meta": {"profile": [TASK_PROFILE]},
        "identifier": identifier,
        "status": r.status.value,
        "intent": "order",
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "fulfill"}]},
        "focus": {"reference": f"ServiceRequest/{request_id}"},
        "for": {"reference": f"Patient/{r.resident_id}"},
        "authoredOn": _instant(r.created_at),
        "lastModified": _instant(r.updated_at),
        "requester": _organization(r.source_partner_id),
    }
    if r.target_partner_id:
        task["owner"] = _organization(r.target_partner_id)
    if r.reason and r.status in (Status.REJECTED, Status.CANCELLED, Status.ON_HOLD, Status.FAILED):
        task["statusReason"] = {"text": r.reason}
    if r.status is Status.COMPLETED and r.outcome:
        task["output"] = [
            {
                "type": {"coding": [{"system": CATEGORY_SYSTEM, "code": "resulting-activity"}]},
                "valueCodeableConcept": {"coding": [{"system": OUTCOME_SYSTEM, "code": r.outcome}]},
            }
        ]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": _instant(r.updated_at),
        "entry": [
            {"fullUrl": f"urn:ach:ServiceRequest/{request_id}", "resource": service_request},
            {"fullUrl": f"urn:ach:Task/{r.referral_id}", "resource": task},
        ],
    }


@dataclass(frozen=True)
class TaskUpdate:
    referral_id: str
    status: Status | None
    reason: str
    outcome: Outcome | None


def task_update(document: str) -> tuple[TaskUpdate | None, list[tuple[str, str]]]:
    """A partner's FHIR Task (JSON) read as a status update, or every problem as (field, why)."""
    try:
        task = json.loads(document)
    except json.JSONDecodeError as exc:
        return None, [("task_json", f"is not JSON: {exc.msg} at {exc.pos}")]
    if not isinstance(task, dict) or task.get("resourceType") != "Task":
        return None, [("task_json", "is not a FHIR Task resource")]
    problems: list[tuple[str, str]] = []
    referral_id = _referral_id(task)
    if not referral_id:
        problems.append(
            ("Task.identifier", f"names no referral (an identifier with system {REFERRAL_ID_SYSTEM})")
        )
    status: Status | None = None
    try:
        status = Status(task.get("status", ""))
    except ValueError:
        problems.append(
            ("Task.status", f"{task.get('status')!r} is not a Task status of the referral lifecycle")
        )
    reason = ""
    status_reason = task.get("statusReason")
    if isinstance(status_reason, dict):
        reason = str(status_reason.get("text") or "")
        if not reason:
            codings = status_reason.get("coding") or []
            reason = next(
                (str(c.get("display") or c.get("code")) for c in codings if isinstance(c, dict)), ""
            )
    outcome: Outcome | None = None
    for i, output in enumerate(task.get("output") or []):
        codings = ((output or {}).get("valueCodeableConcept") or {}).get("coding") or []
        for coding in codings:
            if isinstance(coding, dict) and coding.get("system") == OUTCOME_SYSTEM:
                try:
                    outcome = Outcome(coding.get("code", ""))
                except ValueError:
                    problems.append(
                        (
                            f"Task.output[{i}]",
                            f"{coding.get('code')!r} is not an outcome ({', '.join(Outcome)})",
                        )
                    )
    if problems:
        return None, problems
    return TaskUpdate(referral_id, status, reason, outcome), []


def _referral_id(task: dict[str, Any]) -> str:
    for identifier in task.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") == REFERRAL_ID_SYSTEM:
            return str(identifier.get("value") or "")
    return ""
