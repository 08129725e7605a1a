"""What of a screening one partner may see when another partner took it, pure."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from ach_platform.consent import ConsentTerms, consent_for_share, relied_on_by

WHOLE = None  # the caller sees the whole screening (without answers, as every list does)


def shared_domains(
    submitter: str,
    caller: str,
    caller_is_admin: bool,
    assessed: Iterable[str],
    consents: Iterable[ConsentTerms],
    admins: Collection[str],
    at: datetime,
) -> frozenset[str] | None:
    """``WHOLE`` for the partner that took the screening and for the ACH admin; for anyone else only
    the need domains the submitter's consent (or one the ACH took for the resident) lets it share
    with the caller: knowing a resident's name and birth date shows no one the other needs, say
    intimate-partner violence, screened elsewhere."""
    if caller_is_admin or submitter == caller:
        return WHOLE
    terms = relied_on_by(consents, {submitter, *admins})
    return frozenset(d for d in assessed if consent_for_share(terms, d, caller, at) is not None)
