"""Rules of the service records the gRPC API upserts: what makes one valid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ach_platform.errors import FieldViolation, too_long
from ach_platform.vocabulary import LANGUAGE_TAG, NEED_DOMAINS


@dataclass(frozen=True)
class ServiceDraft:
    service_id: str
    organization_id: str
    name: str
    need_domains: tuple[str, ...]
    languages: tuple[str, ...]
    capacity_available: int
    capacity_maximum: int


# As stored: longer is refused before anything else reads it.
SERVICE_LIMITS = (("service_id", 100), ("organization_id", 100), ("name", 500))


def validate_service(draft: ServiceDraft, description: str = "") -> list[FieldViolation]:
    problems: list[FieldViolation] = []
    for field, _ in SERVICE_LIMITS:
        if not getattr(draft, field).strip():
            problems.append(FieldViolation(f"service.{field}", "is required"))
    problems += too_long(
        [(f"service.{f}", getattr(draft, f), n) for f, n in SERVICE_LIMITS]
        + [("service.description", description, 10_000)]
    )
    if len(draft.need_domains) > 50 or len(draft.languages) > 50:
        problems.append(FieldViolation("service", "names at most 50 need domains and 50 languages"))
        return problems
    for i, domain in enumerate(draft.need_domains):
        if domain not in NEED_DOMAINS:
            problems.append(
                FieldViolation(
                    f"service.need_domains[{i}]", f"{domain[:40]!r} is not a Gravity SDOH category"
                )
            )
    for i, lang in enumerate(draft.languages):
        if len(lang) > 35 or not LANGUAGE_TAG.match(lang):
            problems.append(
                FieldViolation(f"service.languages[{i}]", f"{lang[:40]!r} is not a BCP 47 language tag")
            )
    if draft.capacity_available < 0:
        problems.append(FieldViolation("service.capacity_available", "cannot be negative"))
    if draft.capacity_maximum < 0:
        problems.append(FieldViolation("service.capacity_maximum", "cannot be negative"))
    elif draft.capacity_maximum and draft.capacity_available > draft.capacity_maximum:
        problems.append(FieldViolation("service.capacity_available", "exceeds capacity_maximum"))
    return problems


@dataclass(frozen=True)
class ServiceUpdate:
    """A partner's report about one of its services (capacity, status, its HSDS record)."""

    service_id: str
    capacity_available: int | None = None
    capacity_maximum: int | None = None
    capacity_waitlist: int | None = None
    status: str = ""  # an HSDS status, "" for unchanged
    has_reported_at: bool = True


# The records a partner may send with its service: the service's own, nothing another service shares.
EDITABLE_WITH_SERVICE = frozenset(
    {
        "service",
        "phone",
        "schedule",
        "language",
        "service_area",
        "required_document",
        "cost_option",
        "funding",
        "contact",
        "attribute",
        "metadata",
        "service_capacity",
    }
)


def check_update(update: ServiceUpdate, current_maximum: int) -> list[FieldViolation]:
    """What is wrong with a partner's report, by field; ``current_maximum`` is what the directory
    has, for a report that gives availability alone."""
    problems = []
    if not update.service_id.strip():
        problems.append(FieldViolation("service_id", "is required"))
    if not update.has_reported_at:
        problems.append(FieldViolation("reported_at", "is required (reports apply in its order)"))
    for name in ("capacity_available", "capacity_maximum", "capacity_waitlist"):
        value = getattr(update, name)
        if value is not None and value < 0:
            problems.append(FieldViolation(name, "cannot be negative"))
    maximum = update.capacity_maximum if update.capacity_maximum is not None else current_maximum
    if update.capacity_available is not None and maximum and update.capacity_available > maximum:
        problems.append(FieldViolation("capacity_available", f"exceeds the maximum ({maximum})"))
    return problems


def check_edited_records(
    service_id: str, records: Sequence[tuple[str, str, Mapping[str, object]]]
) -> list[FieldViolation]:
    """A service's HSDS record as a partner sends it: (entity, where, values) per nested record.
    It must be that service, and carry only records of its own."""
    problems = []
    services = [v for entity, _, v in records if entity == "service"]
    if not services or services[0].get("id") != service_id:
        problems.append(FieldViolation("hsds_service_json.id", f"must be the service_id {service_id!r}"))
    for entity, where, values in records:
        if entity not in EDITABLE_WITH_SERVICE:
            problems.append(
                FieldViolation(f"hsds_service_json{where[1:]}", f"a {entity} is not edited with a service")
            )
        elif entity != "service" and values.get("service_id") not in (None, service_id):
            problems.append(
                FieldViolation(f"hsds_service_json{where[1:]}.service_id", "names another service")
            )
    return problems


def claim_need_domains(
    requested: Sequence[str], approved: Sequence[str], claimed: Sequence[str], trusted: bool
) -> tuple[list[str], list[str]]:
    """The need domains a service serves (and routes referrals for) and those claimed for review,
    after an edit. A directory editor's word counts at once; a partner editing its own service may
    drop domains at once, but a domain it adds is only claimed until the ACH admin approves it: else
    a CBO could create a service for any need and route the network's referrals to itself."""
    if trusted:
        return list(dict.fromkeys(requested)), []
    serves = [d for d in dict.fromkeys(requested) if d in approved]
    waiting = [d for d in dict.fromkeys([*claimed, *requested]) if d in requested and d not in approved]
    return serves, waiting


def check_review(
    approve: Sequence[str], reject: Sequence[str], claimed: Sequence[str]
) -> list[FieldViolation]:
    problems = [
        FieldViolation(f"{name}[{i}]", "is not a need domain claimed for this service")
        for name, values in (("approve", approve), ("reject", reject))
        for i, d in enumerate(values)
        if d not in claimed
    ]
    problems += [
        FieldViolation(f"reject[{i}]", "is also approved") for i, d in enumerate(reject) if d in approve
    ]
    if not approve and not reject:
        problems.append(FieldViolation("approve", "approve or reject at least one claimed need domain"))
    return problems
