"""Disparities between groups, in absolute and relative terms, against a reference group: by
default the group with the best rate (by the measure's polarity), or one the definition names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ach_measurement.domain.definitions import Polarity

BEST = "best"


@dataclass(frozen=True)
class GroupDisparity:
    group: str
    rate_difference: float  # the group's rate minus the reference's, sign kept
    rate_ratio: float | None  # None when the reference rate is 0


@dataclass(frozen=True)
class Disparities:
    reference_group: str
    groups: tuple[GroupDisparity, ...]
    index_of_disparity: float | None  # mean |r_i - R| / R x 100
    # (overall - best) / overall for a lower-is-better measure, (best - overall) / overall for a
    # higher-is-better one: the share of the overall figure the gap to the best group stands for.
    attributable_proportion: float | None


def best_group(rates: Mapping[str, float], polarity: Polarity) -> str:
    choose = max if polarity is Polarity.HIGHER_IS_BETTER else min
    return choose(sorted(rates), key=lambda g: rates[g])


def disparities(
    rates: Mapping[str, float], overall: float, polarity: Polarity, reference: str = BEST
) -> Disparities | None:
    """Over the groups given (the caller passes only published groups, so nothing here can reveal a
    suppressed one); None with fewer than two groups or a reference that is not among them."""
    if len(rates) < 2:
        return None
    reference_group = best_group(rates, polarity) if reference == BEST else reference
    if reference_group not in rates:
        return None
    reference_rate = rates[reference_group]
    groups = tuple(
        GroupDisparity(
            group=g,
            rate_difference=rates[g] - reference_rate,
            rate_ratio=rates[g] / reference_rate if reference_rate else None,
        )
        for g in sorted(rates)
    )
    index = sum(abs(r - overall) for r in rates.values()) / len(rates) / overall * 100 if overall else None
    best = rates[best_group(rates, polarity)]
    gap = overall - best if polarity is Polarity.LOWER_IS_BETTER else best - overall
    return Disparities(
        reference_group=reference_group,
        groups=groups,
        index_of_disparity=index,
        attributable_proportion=gap / overall if overall else None,
    )
