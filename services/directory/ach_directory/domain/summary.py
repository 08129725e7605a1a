"""What search and the other services need of a service, summarised from its HSDS records, pure:
its need domains (through the maintained table of taxonomy terms per need domain), languages,
places, opening hours, eligibility, service area and capacity."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ach_platform.opening_hours import Hours
from ach_platform.vocabulary import NEED_DOMAINS

from ach_directory.domain.hsds import recurrence_rule
from ach_directory.domain.search import Place, words_of

# Services classified with a term of this taxonomy whose code is a need domain address that domain.
OWN_TAXONOMY = "ach-need-domain"
ZIP_EXTENTS = {"zip", "zips", "zip_code", "zipcode", "postcode", "postal_code"}


@dataclass(frozen=True)
class DomainTerm:
    """One row of the maintained table: services classified under ``code`` (or a narrower code) of
    ``taxonomy`` address ``need_domain``."""

    need_domain: str
    taxonomy: str
    code: str


@dataclass(frozen=True)
class Summary:
    service_id: str
    organization_id: str
    name: str
    description: str
    status: str
    need_domains: tuple[str, ...]
    term_ids: tuple[str, ...]
    languages: tuple[str, ...]
    places: tuple[Place, ...]
    hours: tuple[Hours, ...]
    minimum_age: int
    maximum_age: int
    area_zips: tuple[str, ...]
    area_radius_km: float
    capacity_available: int
    capacity_maximum: int
    capacity_waitlist: int
    eligibility_description: str
    text: str = field(repr=False, default="")
    partner_id: str = ""  # the network partner that runs it ("": a plain 2-1-1 entry)
    organization_name: str = ""
    phone: str = ""


def need_domains_of(terms: Iterable[Mapping[str, Any]], table: Sequence[DomainTerm]) -> set[str]:
    """The need domains taxonomy terms stand for: by the maintained table (a code and every code
    under it: BD-1800 covers BD-1800.2000), or directly for the platform's own taxonomy."""
    found: set[str] = set()
    for term in terms:
        taxonomy = str(term.get("taxonomy") or "").strip().lower()
        code = str(term.get("code") or "").strip()
        if taxonomy == OWN_TAXONOMY and code in NEED_DOMAINS:
            found.add(code)
            continue
        for row in table:
            if row.taxonomy.lower() == taxonomy and (
                code == row.code or code.startswith(row.code + ".") or code.startswith(row.code + "-")
            ):
                found.add(row.need_domain)
    return found


def area_zips(areas: Iterable[Mapping[str, Any]]) -> set[str]:
    """ZIP codes a service's areas list (extent_type zip/postcode: the codes, comma separated)."""
    zips: set[str] = set()
    for area in areas:
        if str(area.get("extent_type") or "").strip().lower() in ZIP_EXTENTS:
            zips |= set(re.findall(r"\b\d{5}\b", str(area.get("extent") or "")))
    return zips


RADIUS_EXTENTS = {"radius", "distance"}
UNITS_KM = {"km": 1.0, "m": 0.001, "mi": 1.609344, "miles": 1.609344, "": 1.0}


def area_radius_km(areas: Iterable[Mapping[str, Any]]) -> float:
    """How far from its places a service serves, when an area says so (extent_type radius, extent
    such as "15 km", "8000 m", "10 mi"; a bare number is kilometres); the largest if several, 0 if none."""
    radius = 0.0
    for area in areas:
        if str(area.get("extent_type") or "").strip().lower() not in RADIUS_EXTENTS:
            continue
        found = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*", str(area.get("extent") or "").lower())
        if found and found.group(2) in UNITS_KM:
            radius = max(radius, float(found.group(1)) * UNITS_KM[found.group(2)])
    return radius


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _time(value: Any) -> str:
    return str(value) if value else ""


def hours_of(
    schedules: Iterable[Mapping[str, Any]], zone_of_location: Mapping[str, str]
) -> tuple[Hours, ...]:
    """HSDS schedules as opening hours: a recurrence with times, or a dated closure (no times)."""
    out = []
    for s in sorted(schedules, key=lambda s: str(s["id"])):
        location = str(s.get("location_id") or "")
        timezone = s.get("timezone")
        zone = f"{timezone:+g}" if isinstance(timezone, int | float) else zone_of_location.get(location, "")
        has_times = bool(s.get("opens_at") and s.get("closes_at"))
        closed = not has_times and bool(s.get("valid_from") or s.get("dtstart"))
        out.append(
            Hours(
                location_id=location,
                rrule=recurrence_rule(s) if s.get("freq") else "",
                opens_at=_time(s.get("opens_at")),
                closes_at=_time(s.get("closes_at")),
                valid_from=str(s.get("valid_from") or s.get("dtstart") or ""),
                valid_to=str(s.get("valid_to") or s.get("until") or ""),
                time_zone=zone,
                closed=closed,
            )
        )
    return tuple(out)


PARTNER_SCHEME = "ach-partner"  # organization_identifier.identifier_scheme naming the partner id


def partner_of(identifiers: Iterable[Mapping[str, Any]]) -> str:
    """The network partner an organization is, by its identifiers of scheme ach-partner ("" when
    none; the lowest when several, so the answer never depends on the order of rows)."""
    ids = sorted(
        str(i.get("identifier") or "").strip()
        for i in identifiers
        if str(i.get("identifier_scheme") or "").strip() == PARTNER_SCHEME
    )
    return next((i for i in ids if i), "")


def address_line(address: Mapping[str, Any]) -> str:
    """An HSDS address on one line: "1 Main St, Suite 2, Stockton, CA 95202"."""
    region = " ".join(
        p
        for p in (
            str(address.get("state_province") or "").strip(),
            str(address.get("postal_code") or "").strip(),
        )
        if p
    )
    parts = [str(address.get(k) or "").strip() for k in ("address_1", "address_2", "city")] + [region]
    return ", ".join(p for p in parts if p)


def phone_number(phone: Mapping[str, Any]) -> str:
    number = str(phone.get("number") or "").strip()
    extension = phone.get("extension")
    return f"{number} ext. {extension:g}" if isinstance(extension, int | float) and number else number


def summarize(
    service: Mapping[str, Any],
    organization: Mapping[str, Any] | None,
    places: Sequence[Place],
    languages: Iterable[str],
    schedules: Iterable[Mapping[str, Any]],
    zone_of_location: Mapping[str, str],
    areas: Sequence[Mapping[str, Any]],
    terms: Sequence[Mapping[str, Any]],
    capacity: Mapping[str, Any] | None,
    table: Sequence[DomainTerm],
    partner_id: str = "",
    phone: str = "",
) -> Summary:
    name = str(service.get("name") or "")
    description = str(service.get("description") or "")
    org_name = str((organization or {}).get("name") or "")
    return Summary(
        service_id=str(service["id"]),
        organization_id=str(service.get("organization_id") or ""),
        name=name,
        description=description,
        status=str(service.get("status") or "active"),
        need_domains=tuple(sorted(need_domains_of(terms, table))),
        term_ids=tuple(sorted(str(t["id"]) for t in terms)),
        languages=tuple(sorted({lang for lang in languages if lang})),
        places=tuple(sorted(places, key=lambda p: p.location_id)),
        hours=hours_of(schedules, zone_of_location),
        minimum_age=_int(service.get("minimum_age")),
        maximum_age=_int(service.get("maximum_age")),
        area_zips=tuple(sorted(area_zips(areas))),
        area_radius_km=area_radius_km(areas),
        capacity_available=_int((capacity or {}).get("available")),
        capacity_maximum=_int((capacity or {}).get("maximum")),
        capacity_waitlist=_int((capacity or {}).get("waitlist")),
        eligibility_description=str(service.get("eligibility_description") or ""),
        text=" ".join(words_of(f"{name} {description} {org_name}")),
        partner_id=partner_id,
        organization_name=org_name,
        phone=phone,
    )
