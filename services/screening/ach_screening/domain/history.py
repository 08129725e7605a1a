"""A resident's needs over time: re-screening shows whether a need is resolved. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

ACTIVE, RESOLVED = "active", "resolved"


@dataclass(frozen=True)
class ScreeningOutcome:
    screening_id: str
    screened_at: datetime
    positive: tuple[tuple[str, bool], ...]  # (domain, urgent)
    negative: tuple[str, ...]  # assessed and negative


@dataclass(frozen=True)
class NeedStatus:
    domain: str
    state: str
    urgent: bool
    first_identified_at: datetime
    last_positive_at: datetime
    last_positive_screening_id: str
    resolved_at: datetime | None = None
    resolved_by_screening_id: str = ""


def need_history(outcomes: Iterable[ScreeningOutcome]) -> list[NeedStatus]:
    """Each domain ever found positive, with its state after the latest screening that assessed it.
    A need positive again after it was resolved starts a new episode (identified anew)."""
    needs: dict[str, NeedStatus] = {}
    for outcome in sorted(outcomes, key=lambda o: (o.screened_at, o.screening_id)):
        for domain, urgent in outcome.positive:
            need = needs.get(domain)
            if need is None or need.state == RESOLVED:
                needs[domain] = NeedStatus(
                    domain, ACTIVE, urgent, outcome.screened_at, outcome.screened_at, outcome.screening_id
                )
            else:
                needs[domain] = replace(
                    need,
                    urgent=urgent,
                    last_positive_at=outcome.screened_at,
                    last_positive_screening_id=outcome.screening_id,
                )
        for domain in outcome.negative:
            need = needs.get(domain)
            if need is not None and need.state == ACTIVE:
                needs[domain] = replace(
                    need,
                    state=RESOLVED,
                    resolved_at=outcome.screened_at,
                    resolved_by_screening_id=outcome.screening_id,
                )
    return sorted(needs.values(), key=lambda n: (n.state != ACTIVE, n.domain))
