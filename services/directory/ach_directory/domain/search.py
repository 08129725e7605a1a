"""Matching a service to what a resident needs, pure: need domain, taxonomy term, words, language,
distance, opening hours, eligibility (age, ZIP) and capacity, each filter giving the reason it
matched; ranking. (When a service is open: ach_platform.opening_hours.)"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ach_platform.errors import FieldViolation
from ach_platform.geo import distance_km
from ach_platform.opening_hours import Hours, is_open
from ach_platform.vocabulary import LANGUAGE_TAG, NEED_DOMAINS

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
MAX_RADIUS_KM = 500.0
ZIP = re.compile(r"^\d{5}$")


@dataclass(frozen=True)
class Place:
    location_id: str
    name: str
    latitude: float | None
    longitude: float | None
    postal_code: str = ""
    virtual: bool = False
    address: str = ""  # the physical address on one line, for residents


@dataclass(frozen=True)
class Candidate:
    """A service as search sees it."""

    service_id: str
    name: str
    active: bool
    need_domains: frozenset[str]
    term_ids: frozenset[str]
    languages: frozenset[str]
    text: str  # lower case: name, description, organization
    places: tuple[Place, ...] = ()
    hours: tuple[Hours, ...] = ()
    minimum_age: int = 0
    maximum_age: int = 0
    area_zips: frozenset[str] = frozenset()
    capacity_available: int = 0
    capacity_maximum: int = 0
    area_radius_km: float = 0.0  # serves residents this close to one of its places (0: not said)
    area_places: tuple[Place, ...] | None = None  # every located place, when places are only some


@dataclass(frozen=True)
class Query:
    need_domain: str = ""
    taxonomy_term_id: str = ""
    words: tuple[str, ...] = ()
    language: str = ""
    point: tuple[float, float] | None = None
    radius_km: float = 0.0
    open_at: datetime | None = None
    resident_age: int = 0
    resident_zip: str = ""
    with_capacity: bool = False
    include_inactive: bool = False
    near_zip: str = ""  # the ZIP the point is the centroid of, when the search gave one
    resident_point: tuple[float, float] | None = None  # the resident's ZIP centroid


@dataclass(frozen=True)
class Match:
    candidate: Candidate
    reasons: tuple[str, ...]
    distance_km: float | None = None
    location_id: str = ""
    score: float = 0.0


@dataclass
class QueryInput:
    """A search request's fields, before they are checked."""

    need_domain: str = ""
    language: str = ""
    page_size: int = 0
    page_token: str = ""
    text: str = ""
    latitude: float | None = None
    longitude: float | None = None
    near_zip: str = ""
    radius_km: float = 0.0
    resident_age: int = 0
    resident_zip: str = ""


def check_query(q: QueryInput, zip_known: Callable[[str], bool]) -> list[FieldViolation]:
    """Every problem of a search request, by field. ``zip_known`` tells a known ZIP code."""
    problems: list[FieldViolation] = []
    if q.need_domain and q.need_domain not in NEED_DOMAINS:
        problems.append(FieldViolation("need_domain", f"{q.need_domain!r} is not a Gravity SDOH category"))
    if q.language and not LANGUAGE_TAG.match(q.language):
        problems.append(FieldViolation("language", f"{q.language!r} is not a BCP 47 language tag"))
    if not 0 <= q.page_size <= MAX_PAGE_SIZE:
        problems.append(
            FieldViolation("page_size", f"must be between 1 and {MAX_PAGE_SIZE} (0: {DEFAULT_PAGE_SIZE})")
        )
    if q.page_token and not q.page_token.isdigit():
        problems.append(FieldViolation("page_token", "is not a token this API issued"))
    if q.radius_km < 0 or not math.isfinite(q.radius_km):
        problems.append(FieldViolation("radius_km", "cannot be negative"))
    elif q.radius_km > MAX_RADIUS_KM:
        problems.append(FieldViolation("radius_km", f"cannot exceed {MAX_RADIUS_KM:g} km"))
    if q.latitude is not None and q.longitude is not None:
        if not -90 <= q.latitude <= 90:
            problems.append(FieldViolation("near.latitude", f"{q.latitude} is out of range (-90 to 90)"))
        if not -180 <= q.longitude <= 180:
            problems.append(FieldViolation("near.longitude", f"{q.longitude} is out of range (-180 to 180)"))
        if q.near_zip:
            problems.append(FieldViolation("near_zip", "give a point or a ZIP code, not both"))
    if q.near_zip and not (ZIP.match(q.near_zip) and zip_known(q.near_zip)):
        problems.append(FieldViolation("near_zip", f"{q.near_zip!r} is not a known ZIP code"))
    if q.radius_km > 0 and q.latitude is None and not q.near_zip:
        problems.append(FieldViolation("radius_km", "needs a point (near) or a ZIP code (near_zip)"))
    if not 0 <= q.resident_age <= 130:
        problems.append(FieldViolation("resident_age", f"{q.resident_age} is not an age"))
    if q.resident_zip and not ZIP.match(q.resident_zip):
        problems.append(FieldViolation("resident_zip", f"{q.resident_zip!r} is not a 5-digit ZIP code"))
    if len(q.text) > 200:
        problems.append(FieldViolation("text", "is longer than 200 characters"))
    return problems


def words_of(text: str) -> tuple[str, ...]:
    return tuple(w for w in re.split(r"\W+", text.lower()) if w)


def speaks(languages: frozenset[str], wanted: str) -> bool:
    """'es' is spoken by a service that lists es or es-MX; 'es-MX' by one that lists es-MX or es."""
    wanted = wanted.lower()
    primary = wanted.split("-")[0]
    return any(
        lang.lower() in (wanted, primary) or lang.lower().split("-")[0] == wanted for lang in languages
    )


def match(c: Candidate, q: Query) -> Match | None:
    """The candidate with why it matches every filter of the query, or None."""
    reasons: list[str] = []
    if not c.active and not q.include_inactive:
        return None
    if q.need_domain:
        if q.need_domain not in c.need_domains:
            return None
        reasons.append(f"addresses {q.need_domain}")
    if q.taxonomy_term_id:
        if q.taxonomy_term_id not in c.term_ids:
            return None
        reasons.append(f"classified under taxonomy term {q.taxonomy_term_id}")
    if q.words:
        if not all(w in c.text for w in q.words):
            return None
        reasons.append("mentions " + ", ".join(repr(w) for w in q.words))
    if q.language:
        if not speaks(c.languages, q.language):
            return None
        reasons.append(f"speaks {q.language}")
    if q.resident_age:
        if (c.minimum_age and q.resident_age < c.minimum_age) or (
            c.maximum_age and q.resident_age > c.maximum_age
        ):
            return None
        if c.minimum_age or c.maximum_age:
            reasons.append(f"ages {c.minimum_age or 0}-{c.maximum_age or 'any'} include {q.resident_age}")
        else:
            reasons.append("no age limit")
    if q.resident_zip:
        area = _area_reason(c, q)
        if area is None:
            return None
        reasons.append(area)
    if q.with_capacity:
        if c.capacity_available <= 0:
            return None
        reasons.append(f"{c.capacity_available} of {c.capacity_maximum or '?'} places available")
    places = list(c.places) or [Place("", "", None, None)]
    nearest: tuple[float | None, Place] | None = None
    for place in places:
        d = _distance_to(place, q)
        if q.point is not None and q.radius_km > 0:
            if place.virtual and not _serves_remotely(c, q):
                continue
            if not place.virtual and (d is None or d > q.radius_km):
                continue
        if q.open_at is not None and not is_open(c.hours, q.open_at, place.location_id):
            continue
        if nearest is None or _closer(d, nearest[0]):
            nearest = (d, place)
    if nearest is None:
        return None
    d, place = nearest
    if q.point is not None:
        reasons.append(
            "served remotely"
            if place.virtual
            else f"{d:.1f} km away"
            if d is not None
            else "no location given"
        )
    if q.open_at is not None:
        reasons.append("open then")
    score = (1.0 / (1.0 + d) if d is not None else 0.0) + (0.1 if c.capacity_available > 0 else 0.0)
    return Match(c, tuple(reasons), d, place.location_id, round(score, 6))


def _area_reason(c: Candidate, q: Query) -> str | None:
    """Whether the resident's ZIP is in the service's area (its ZIP codes, or within its radius of
    one of its places), and how; None when it is not. No area given: no limit."""
    if not c.area_zips and not c.area_radius_km:
        return "no service-area limit"
    if q.resident_zip in c.area_zips:
        return f"serves ZIP {q.resident_zip}"
    if c.area_radius_km and q.resident_point is not None:
        for place in c.area_places if c.area_places is not None else c.places:
            if place.latitude is None or place.longitude is None:
                continue
            if distance_km(q.resident_point, (place.latitude, place.longitude)) <= c.area_radius_km:
                return f"serves within {c.area_radius_km:g} km of ZIP {q.resident_zip}"
    return None


def _serves_remotely(c: Candidate, q: Query) -> bool:
    """A service online or by phone is near whoever lives in its service area: within a distance
    search it matches when its area names the resident's (or the searched) ZIP code."""
    wanted = {z for z in (q.resident_zip, q.near_zip) if z}
    return bool(wanted & c.area_zips)


def _distance_to(place: Place, q: Query) -> float | None:
    if q.point is None:
        return None
    if place.virtual:
        return None  # served remotely: matches any distance, ranked after the places nearby
    if place.latitude is None or place.longitude is None:
        return None
    return distance_km(q.point, (place.latitude, place.longitude))


def _closer(d: float | None, best: float | None) -> bool:
    return d is not None and (best is None or d < best)


def ranked(matches: Sequence[Match], by_distance: bool) -> list[Match]:
    """Nearest first when a point was given (remote services and unknown distances after, by name),
    else by score then name; the service id breaks ties so pages are stable."""
    if by_distance:
        return sorted(
            matches,
            key=lambda m: (
                m.distance_km is None,
                m.distance_km or 0.0,
                m.candidate.name if m.distance_km is None else "",
                m.candidate.service_id,
            ),
        )
    return sorted(matches, key=lambda m: (-m.score, m.candidate.name, m.candidate.service_id))
