"""Partner registry rules, pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ach_platform.errors import FieldViolation

PARTNER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$")
TYPES = frozenset({"clinic", "cbo", "county", "funder", "backbone"})
ROLES = frozenset(
    {
        "screener",
        "referral-source",
        "referral-target",
        "directory-editor",
        "fund-manager",
        "measurement-viewer",
        "ach-admin",
    }
)
# Which roles a type of organization may hold: a CBO is not a HIPAA covered entity, so it does not
# screen and refer on its own clinical authority here; only the backbone administers the network.
ROLES_BY_TYPE: dict[str, frozenset[str]] = {
    "clinic": frozenset({"screener", "referral-source", "measurement-viewer"}),
    "cbo": frozenset({"screener", "referral-source", "referral-target", "measurement-viewer"}),
    "county": frozenset({"screener", "referral-source", "measurement-viewer"}),
    "funder": frozenset({"fund-manager", "measurement-viewer"}),
    "backbone": ROLES,
}


@dataclass(frozen=True)
class PartnerDraft:
    partner_id: str
    name: str
    type: str
    roles: tuple[str, ...]


def validate(draft: PartnerDraft) -> list[FieldViolation]:
    problems: list[FieldViolation] = []
    if not PARTNER_ID.match(draft.partner_id):
        problems.append(FieldViolation("partner_id", "3-64 lowercase letters, digits and dashes"))
    if not draft.name.strip():
        problems.append(FieldViolation("name", "is required"))
    if draft.type not in TYPES:
        problems.append(FieldViolation("type", "is required"))
        return problems
    allowed = ROLES_BY_TYPE[draft.type]
    for i, role in enumerate(draft.roles):
        if role not in ROLES:
            problems.append(FieldViolation(f"roles[{i}]", "is not a role"))
        elif role not in allowed:
            problems.append(FieldViolation(f"roles[{i}]", f"a {draft.type} cannot hold the role {role}"))
    if len(set(draft.roles)) != len(draft.roles):
        problems.append(FieldViolation("roles", "lists a role twice"))
    return problems
