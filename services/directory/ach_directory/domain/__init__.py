"""Directory rules, pure: service records, and the HSDS 3.0 model with its row rules."""

from ach_directory.domain.services import (
    ServiceDraft,
    ServiceUpdate,
    check_edited_records,
    check_review,
    check_update,
    claim_need_domains,
    validate_service,
)

__all__ = [
    "ServiceDraft",
    "ServiceUpdate",
    "check_edited_records",
    "check_review",
    "check_update",
    "claim_need_domains",
    "validate_service",
]
