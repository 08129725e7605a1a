"""Intervals and small-number rules: the Wilson score interval for proportions, the exact Poisson
(gamma) interval for counts and rates on small counts (Fay and Feuer's interval reduces to it for a
crude rate), and the line under which a rate is flagged unstable."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from typing import Any

UNSTABLE_BELOW = 20  # events: NCHS and County Health Rankings flag rates on fewer as unstable
CONFIDENCE = 0.95


@cache
def _stats() -> Any:
    """scipy.stats, imported when an interval is first computed (not by the rebuild, the CLI...)."""
    import scipy.stats

    return scipy.stats


def wilson_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Bounds of a proportion (0..1); (0, 1) when there are no trials."""
    if trials <= 0:
        return (0.0, 1.0)
    z = float(_stats().norm.ppf(1 - (1 - confidence) / 2))
    p = successes / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    scale = 1 + z * z / trials
    return (max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale))


def gamma_interval(events: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact bounds of a Poisson count: chi-square quantiles on 2k and 2(k+1) degrees of freedom."""
    alpha = 1 - confidence
    low = 0.0 if events == 0 else float(_stats().chi2.ppf(alpha / 2, 2 * events)) / 2
    high = float(_stats().chi2.ppf(1 - alpha / 2, 2 * (events + 1))) / 2
    return (low, high)


def rate_interval(events: int, population: int, per: int) -> tuple[float, float]:
    low, high = gamma_interval(events)
    return (low / population * per, high / population * per) if population > 0 else (0.0, 0.0)


def unstable(events: int) -> bool:
    return events < UNSTABLE_BELOW


def median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
