"""Rules of the service records the gRPC API upserts: what makes one valid."""

from __future__ import annotations

from dataclasses import dataclass

from ach_platform.errors import FieldViolation
from ach_platform.vocabulary import LANGUAGE_TAG, NEED_DOMAINS

MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class ServiceDraft:
    service_id: str
    organization_id: str
    name: str
    need_domains: tuple[str, ...]
    languages: tuple[str, ...]
    capacity_available: int
    capacity_maximum: int


def validate_service(draft: ServiceDraft) -> list[FieldViolation]:
    problems: list[FieldViolation] = []
    for name, value in (
        ("service.service_id", draft.service_id),
        ("service.organization_id", draft.organization_id),
        ("service.name", draft.name),
    ):
        if not value.strip():
            problems.append(FieldViolation(name, "is required"))
    for i, domain in enumerate(draft.need_domains):
        if domain not in NEED_DOMAINS:
            problems.append(
                FieldViolation(f"service.need_domains[{i}]", f"{domain!r} is not a Gravity SDOH category")
            )
    for i, lang in enumerate(draft.languages):
        if not LANGUAGE_TAG.match(lang):
            problems.append(
                FieldViolation(f"service.languages[{i}]", f"{lang!r} is not a BCP 47 language tag")
            )
    if draft.capacity_available < 0:
        problems.append(FieldViolation("service.capacity_available", "cannot be negative"))
    if draft.capacity_maximum < 0:
        problems.append(FieldViolation("service.capacity_maximum", "cannot be negative"))
    elif draft.capacity_maximum and draft.capacity_available > draft.capacity_maximum:
        problems.append(FieldViolation("service.capacity_available", "exceeds capacity_maximum"))
    return problems
