"""US ZIP codes: centroids (for "near a ZIP code" in the directory, a resident's ZIP in referral
matching) and time zones (a location's opening hours are in
its ZIP's zone unless its schedule says otherwise), from the zipcodes package's bundled data."""

from __future__ import annotations

from functools import cache

import zipcodes


@cache
def _table() -> dict[str, tuple[float, float, str]]:
    table = {}
    for z in zipcodes.list_all():  # type: ignore[no-untyped-call]
        try:
            table[z["zip_code"]] = (float(z["lat"]), float(z["long"]), str(z.get("timezone") or ""))
        except (KeyError, TypeError, ValueError):
            continue  # a ZIP without coordinates (e.g. a military one): not a place to search from
    return table


def centroid(zip_code: str) -> tuple[float, float] | None:
    found = _table().get(zip_code)
    return (found[0], found[1]) if found else None


def time_zone(zip_code: str) -> str:
    found = _table().get(zip_code[:5])
    return found[2] if found else ""


def known(zip_code: str) -> bool:
    return zip_code in _table()


def all_codes() -> list[str]:
    return sorted(_table())
