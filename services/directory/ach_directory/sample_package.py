"""A realistic generated HSDS data package, for tests, demos and the search bench: organizations and
their services spread over California's cities (located at real ZIP codes), with the need domains a
network refers to most (food and housing first), the languages its residents speak (English,
Spanish, then Vietnamese, Chinese, Tagalog, Punjabi...), weekly opening hours with holiday closures,
age limits, ZIP service areas and capacity. Deterministic for a seed.

``ach-directory generate OUT --services N [--seed S]`` writes one."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Sequence
from typing import Any

from ach_platform import zip_codes

from ach_directory.domain.summary import OWN_TAXONOMY
from ach_directory.summary_queries import domain_terms

# City centres (a real ZIP code each) and how much of the directory is there.
CITIES: tuple[tuple[str, str, float], ...] = (
    ("Los Angeles", "90012", 0.30),
    ("San Diego", "92101", 0.10),
    ("San Jose", "95112", 0.08),
    ("San Francisco", "94103", 0.08),
    ("Fresno", "93721", 0.07),
    ("Sacramento", "95814", 0.08),
    ("Oakland", "94612", 0.07),
    ("Stockton", "95206", 0.08),
    ("Bakersfield", "93301", 0.06),
    ("Modesto", "95354", 0.05),
    ("Redding", "96001", 0.03),
)
DOMAINS: tuple[tuple[str, float], ...] = (
    ("food-insecurity", 0.28),
    ("housing-instability", 0.18),
    ("homelessness", 0.08),
    ("transportation-insecurity", 0.09),
    ("utility-insecurity", 0.09),
    ("financial-insecurity", 0.07),
    ("employment-status", 0.06),
    ("intimate-partner-violence", 0.05),
    ("health-insurance-coverage-status", 0.05),
    ("inadequate-housing", 0.03),
    ("social-connection", 0.02),
)
LANGUAGES: tuple[tuple[str, str, float], ...] = (
    ("es", "Spanish", 0.45),
    ("vi", "Vietnamese", 0.08),
    ("zh", "Chinese", 0.08),
    ("tl", "Tagalog", 0.06),
    ("pa", "Punjabi", 0.04),
    ("hmn", "Hmong", 0.03),
    ("ko", "Korean", 0.03),
    ("ar", "Arabic", 0.02),
)
KINDS = {
    "food-insecurity": ("Food Pantry", "Community Meals", "Groceries Delivered"),
    "housing-instability": ("Rental Assistance", "Eviction Prevention", "Housing Navigation"),
    "homelessness": ("Emergency Shelter", "Street Outreach", "Transitional Housing"),
    "transportation-insecurity": ("Rides to Appointments", "Bus Passes"),
    "utility-insecurity": ("Utility Bill Help", "Weatherization"),
    "financial-insecurity": ("Benefits Enrollment", "Free Tax Preparation"),
    "employment-status": ("Job Training", "Employment Services"),
    "intimate-partner-violence": ("Domestic Violence Hotline", "Safe Housing"),
    "health-insurance-coverage-status": ("Medi-Cal Enrollment", "Health Coverage Counseling"),
    "inadequate-housing": ("Home Repair", "Accessibility Modifications"),
    "social-connection": ("Senior Social Club", "Peer Support"),
}
WEEKDAY_PATTERNS = (
    ("MO,TU,WE,TH,FR", 0.6),
    ("MO,WE,FR", 0.15),
    ("TU,TH,SA", 0.1),
    ("SA,SU", 0.05),
    ("MO,TU,WE,TH,FR,SA,SU", 0.1),
)
HOURS = (("09:00", "17:00"), ("08:00", "16:30"), ("10:00", "18:00"), ("12:00", "20:00"), ("07:00", "11:00"))
HOLIDAYS = ("2026-11-26", "2026-12-25", "2027-01-01")
NAMES = (
    "Harvest",
    "Valley",
    "Unity",
    "Hope",
    "Bridge",
    "Cornerstone",
    "Open Door",
    "Sunrise",
    "Delta",
    "Oak",
    "Mission",
    "Family",
)


def _pick(rng: random.Random, weighted: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    return rng.choices(weighted, weights=[w[-1] for w in weighted])[0]


def _zips_near(center: str, within_km: float = 35.0) -> list[tuple[str, float, float]]:
    origin = zip_codes.centroid(center)
    assert origin is not None, center
    found = []
    for code in zip_codes.all_codes():
        point = zip_codes.centroid(code)
        if point is None:
            continue
        dlat = math.radians(point[0] - origin[0])
        dlon = math.radians(point[1] - origin[1]) * math.cos(math.radians(origin[0]))
        if 6371 * math.hypot(dlat, dlon) <= within_km:
            found.append((code, *point))
    return found


def generate(services: int, seed: int = 7) -> dict[str, list[dict[str, Any]]]:
    """The rows of a directory with ``services`` services, by entity."""
    rng = random.Random(seed)
    namespace = uuid.UUID(int=seed)

    def new_id(kind: str, n: int) -> str:
        return str(uuid.uuid5(namespace, f"{kind}:{n}"))

    rows: dict[str, list[dict[str, Any]]] = {}

    def add(entity: str, **values: Any) -> str:
        rows.setdefault(entity, []).append({k: v for k, v in values.items() if v is not None})
        return str(values["id"])

    taxonomy_own = add(
        "taxonomy",
        id=new_id("taxonomy", 0),
        name=OWN_TAXONOMY,
        description="Gravity SDOH categories (need domains)",
    )
    taxonomy_airs = add(
        "taxonomy",
        id=new_id("taxonomy", 1),
        name="AIRS",
        description="211 HSIS (AIRS/211 LA County) taxonomy",
    )
    terms: dict[str, list[str]] = {}
    for i, (domain, _) in enumerate(DOMAINS):
        terms.setdefault(domain, []).append(
            add(
                "taxonomy_term",
                id=new_id("term-own", i),
                code=domain,
                name=domain.replace("-", " "),
                description=domain,
                taxonomy=OWN_TAXONOMY,
                taxonomy_id=taxonomy_own,
            )
        )
    for i, row in enumerate(domain_terms()):
        terms.setdefault(row.need_domain, []).append(
            add(
                "taxonomy_term",
                id=new_id("term-airs", i),
                code=row.code,
                name=row.code,
                description=f"{row.taxonomy} {row.code}",
                taxonomy="AIRS",
                taxonomy_id=taxonomy_airs,
            )
        )

    cities = [(name, _zips_near(center), weight) for name, center, weight in CITIES]
    organizations = max(1, services // 3)
    org_city: list[tuple[str, list[tuple[str, float, float]], float]] = []
    for o in range(organizations):
        city = _pick(rng, cities)
        org_city.append(city)  # type: ignore[arg-type]
        add(
            "organization",
            id=new_id("organization", o),
            name=f"{rng.choice(NAMES)} {city[0]} Community Services {o}",
            description=f"A community-based organization serving {city[0]}.",
            email=f"info{o}@example.org",
            website=f"https://example.org/{o}",
        )
    counter = {"location": 0, "schedule": 0, "language": 0, "attribute": 0, "other": 0}

    def next_id(kind: str) -> str:
        counter[kind if kind in counter else "other"] += 1
        return new_id(kind, counter[kind if kind in counter else "other"])

    for s in range(services):
        org = s % organizations
        city_name, zips, _ = org_city[org]
        domain = str(_pick(rng, DOMAINS)[0])
        service_id = new_id("service", s)
        status = "active" if rng.random() < 0.93 else rng.choice(("inactive", "temporarily closed"))
        low, high = rng.choice(((None, None),) * 6 + ((18, None), (0, 17), (60, None), (18, 64)))
        add(
            "service",
            id=service_id,
            organization_id=new_id("organization", org),
            name=f"{rng.choice(KINDS[domain])} {s}",
            description=f"{rng.choice(KINDS[domain])} for residents of {city_name} and nearby.",
            status=status,
            minimum_age=low,
            maximum_age=high,
            eligibility_description="Open to all."
            if low is None and high is None
            else f"Ages {low or 0} to {high or 'any'}.",
        )
        for term in {rng.choice(terms[domain])} | (
            {rng.choice(terms[d])}
            if (d := str(_pick(rng, DOMAINS)[0])) != domain and rng.random() < 0.2
            else set()
        ):
            add(
                "attribute",
                id=next_id("attribute"),
                link_id=service_id,
                link_type="service_taxonomy",
                link_entity="service",
                taxonomy_term_id=term,
            )
        virtual = rng.random() < 0.04
        for _ in range(1 if rng.random() < 0.9 else 2):
            code, lat, lon = rng.choice(zips)
            location_id = next_id("location")
            if virtual:
                add(
                    "location",
                    id=location_id,
                    location_type="virtual",
                    name=f"{city_name} online",
                    organization_id=new_id("organization", org),
                    url="https://example.org/online",
                )
            else:
                add(
                    "location",
                    id=location_id,
                    location_type="physical",
                    name=f"{city_name} site {location_id[:8]}",
                    organization_id=new_id("organization", org),
                    latitude=round(lat + rng.gauss(0, 0.01), 6),
                    longitude=round(lon + rng.gauss(0, 0.01), 6),
                )
                add(
                    "address",
                    id=next_id("other"),
                    location_id=location_id,
                    address_1=f"{rng.randint(1, 9999)} Main Street",
                    city=city_name,
                    state_province="CA",
                    postal_code=code,
                    country="US",
                    address_type="physical",
                )
            add("service_at_location", id=next_id("other"), service_id=service_id, location_id=location_id)
            days = str(_pick(rng, WEEKDAY_PATTERNS)[0])
            opens, closes = rng.choice(HOURS)
            add(
                "schedule",
                id=next_id("schedule"),
                service_id=service_id,
                location_id=location_id,
                freq="WEEKLY",
                byday=days,
                opens_at=opens,
                closes_at=closes,
                description=f"{days} {opens}-{closes}",
            )
            if rng.random() < 0.3:
                holiday = rng.choice(HOLIDAYS)
                add(
                    "schedule",
                    id=next_id("schedule"),
                    service_id=service_id,
                    location_id=location_id,
                    valid_from=holiday,
                    valid_to=holiday,
                    description="Closed for the holiday",
                )
        add("language", id=next_id("language"), service_id=service_id, name="English", code="en")
        for code, name, share in LANGUAGES:
            if rng.random() < share:
                add("language", id=next_id("language"), service_id=service_id, name=name, code=code)
        add(
            "phone",
            id=next_id("other"),
            service_id=service_id,
            number=f"+1 209 555 {s % 10000:04d}",
            type="voice",
        )
        if rng.random() < 0.25:
            served = sorted({rng.choice(zips)[0] for _ in range(rng.randint(2, 8))})
            add(
                "service_area",
                id=next_id("other"),
                service_id=service_id,
                name=f"{city_name} ZIP codes",
                extent=",".join(served),
                extent_type="zip",
            )
        if rng.random() < 0.4:
            maximum = rng.choice((10, 25, 50, 100, 200))
            add(
                "service_capacity",
                id=next_id("other"),
                service_id=service_id,
                available=rng.randint(0, maximum),
                maximum=maximum,
                waitlist=rng.choice((0, 0, 0, rng.randint(1, 40))),
                description="places",
                updated="2026-11-01T09:00:00Z",
            )
    return rows


def link_partners(rows: dict[str, list[dict[str, Any]]], partner_ids: Sequence[str]) -> dict[str, str]:
    """Make the first organizations of a generated directory network partners (an "ach-partner"
    identifier each, as an import from the ACH's own records would carry); the others stay plain
    2-1-1 entries. Returns organization id -> partner id."""
    links = {str(o["id"]): p for o, p in zip(rows["organization"], partner_ids, strict=False)}
    rows.setdefault("organization_identifier", []).extend(
        {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ach:partner-link:{organization}")),
            "organization_id": organization,
            "identifier_scheme": "ach-partner",
            "identifier_type": "ACH network partner id",
            "identifier": partner,
        }
        for organization, partner in links.items()
    )
    return links
