"""Opening hours as HSDS gives them (a schedule per location: an RRULE, opening and closing times,
validity dates, a time zone, closures), and whether a service is open at a given moment. Pure; the
directory's search and the referral service's matching both ask it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule, rrulestr

OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


@dataclass(frozen=True)
class Hours:
    location_id: str
    rrule: str
    opens_at: str = ""
    closes_at: str = ""
    valid_from: str = ""
    valid_to: str = ""
    time_zone: str = ""
    closed: bool = False


def zone(name: str) -> tzinfo:
    """An IANA time zone, or a UTC offset ("+03:00", or hours as HSDS gives them: "3", "-7.5")."""
    if not name:
        return UTC
    found = OFFSET.match(name)
    if found:
        sign = -1 if found.group(1) == "-" else 1
        return timezone(sign * timedelta(hours=int(found.group(2)), minutes=int(found.group(3))))
    try:
        return timezone(timedelta(hours=float(name)))
    except ValueError:
        pass
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def is_open(hours: Sequence[Hours], at: datetime, location_id: str) -> bool:
    """Whether the service is open at ``at`` (aware) at that location: some schedule of it (or of
    all its locations) has it open, and no closure covers the local date."""
    relevant = [h for h in hours if not h.location_id or not location_id or h.location_id == location_id]
    for h in relevant:
        if h.closed and _within(at.astimezone(zone(h.time_zone)).date(), h):
            return False
    for h in relevant:
        if h.closed or not h.opens_at or not h.closes_at:
            continue
        local = at.astimezone(zone(h.time_zone))
        day = local.date()
        if not _within(day, h) or not _occurs(h.rrule, h.valid_from, day):
            continue
        opens, closes = time.fromisoformat(h.opens_at), time.fromisoformat(h.closes_at)
        now = local.time().replace(tzinfo=None)
        if opens <= now < closes or (closes <= opens and (now >= opens or now < closes)):  # past midnight
            return True
    return False


def _within(day: date, h: Hours) -> bool:
    return (not h.valid_from or day >= date.fromisoformat(h.valid_from)) and (
        not h.valid_to or day <= date.fromisoformat(h.valid_to)
    )


def _occurs(rule: str, start: str, day: date) -> bool:
    if not rule:
        return True
    weekly = _plain_weekly(rule)
    if weekly is not None:  # the common case, without a date computation
        return WEEKDAYS[day.weekday()] in weekly
    parsed = _parsed(rule, start or "2000-01-01")
    midnight = datetime(day.year, day.month, day.day)
    return parsed.after(midnight - timedelta(microseconds=1)) == midnight


@lru_cache(maxsize=4096)
def _plain_weekly(rule: str) -> frozenset[str] | None:
    parts = dict(p.split("=", 1) for p in rule.split(";") if "=" in p)
    if parts.get("FREQ") != "WEEKLY" or set(parts) - {"FREQ", "BYDAY", "INTERVAL", "WKST"}:
        return None
    if parts.get("INTERVAL", "1") != "1":
        return None
    days = parts.get("BYDAY")
    return frozenset(days.split(",")) if days else None


@lru_cache(maxsize=4096)
def _parsed(rule: str, start: str) -> rrule:
    begin = date.fromisoformat(start)
    parsed = rrulestr(rule, dtstart=datetime(begin.year, begin.month, begin.day))
    assert isinstance(parsed, rrule)
    return parsed
