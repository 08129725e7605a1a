"""Search rules without I/O: request checks by field, each filter with its reason, opening hours
(weekly and monthly rules, closures, time zones, past midnight), ranking, and the summary's need
domains through the maintained term table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from ach_directory.domain.search import (
    Candidate,
    Place,
    Query,
    QueryInput,
    check_query,
    match,
    ranked,
    speaks,
)
from ach_directory.domain.summary import DomainTerm, area_zips, hours_of, need_domains_of
from ach_platform.geo import bounding_box, distance_km
from ach_platform.opening_hours import Hours, is_open

STOCKTON = (37.9577, -121.2908)
LODI = (38.1302, -121.2724)  # about 19 km north


def candidate(**changes: object) -> Candidate:
    base: dict[str, object] = {
        "service_id": "s1",
        "name": "Food Pantry",
        "active": True,
        "need_domains": frozenset({"food-insecurity"}),
        "term_ids": frozenset({"t1"}),
        "languages": frozenset({"en", "es-MX"}),
        "text": "food pantry groceries valley",
        "places": (Place("l1", "Downtown", *STOCKTON, "95202"),),
        "hours": (
            Hours("", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "09:00", "17:00", time_zone="America/Los_Angeles"),
        ),
        "minimum_age": 18,
        "maximum_age": 64,
        "area_zips": frozenset({"95202", "95206"}),
        "capacity_available": 3,
        "capacity_maximum": 10,
    }
    return Candidate(**{**base, **changes})  # type: ignore[arg-type]


def fields(q: QueryInput) -> list[str]:
    return [v.field for v in check_query(q, lambda z: z == "95206")]


def test_bad_requests_name_every_field() -> None:
    assert fields(QueryInput()) == []
    assert fields(
        QueryInput(
            need_domain="hunger",
            language="Spanish",
            page_size=101,
            page_token="abc",
            radius_km=-1,
            resident_age=200,
            resident_zip="9520",
        )
    ) == ["need_domain", "language", "page_size", "page_token", "radius_km", "resident_age", "resident_zip"]
    assert fields(QueryInput(radius_km=10)) == ["radius_km"]  # a radius needs a point
    assert fields(QueryInput(near_zip="00000", radius_km=10)) == ["near_zip"]
    assert fields(QueryInput(latitude=91, longitude=0)) == ["near.latitude"]
    assert fields(QueryInput(latitude=0, longitude=0, near_zip="95206")) == ["near_zip"]
    assert fields(QueryInput(near_zip="95206", radius_km=500.5)) == ["radius_km"]


def test_each_filter_matches_with_its_reason_and_refuses_otherwise() -> None:
    c = candidate()
    wednesday_noon = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)  # 12:00 in Stockton
    found = match(
        c,
        Query(
            need_domain="food-insecurity",
            taxonomy_term_id="t1",
            words=("pantry",),
            language="es",
            point=LODI,
            radius_km=25,
            open_at=wednesday_noon,
            resident_age=30,
            resident_zip="95206",
            with_capacity=True,
        ),
    )
    assert found is not None
    assert found.reasons[:8] == (
        "addresses food-insecurity",
        "classified under taxonomy term t1",
        "mentions 'pantry'",
        "speaks es",
        "ages 18-64 include 30",
        "serves ZIP 95206",
        "3 of 10 places available",
        "19.2 km away",
    )
    assert found.reasons[-1] == "open then" and found.location_id == "l1"
    refused = [
        Query(need_domain="housing-instability"),
        Query(taxonomy_term_id="t2"),
        Query(words=("pantry", "shelter")),
        Query(language="vi"),
        Query(point=LODI, radius_km=15),
        Query(open_at=wednesday_noon + timedelta(hours=6)),  # 18:00 local
        Query(resident_age=17),
        Query(resident_age=65),
        Query(resident_zip="95210"),
    ]
    assert [match(c, q) for q in refused] == [None] * len(refused)
    assert match(candidate(capacity_available=0), Query(with_capacity=True)) is None
    assert match(candidate(active=False), Query()) is None
    assert match(candidate(active=False), Query(include_inactive=True)) is not None
    # No limits given: nothing to refuse on.
    open_to_all = candidate(minimum_age=0, maximum_age=0, area_zips=frozenset())
    assert match(open_to_all, Query(resident_age=90, resident_zip="10001")).reasons == (  # type: ignore[union-attr]
        "no age limit",
        "no service-area limit",
    )


def test_language_subtags() -> None:
    assert speaks(frozenset({"es-MX"}), "es") and speaks(frozenset({"es"}), "es-MX")
    assert not speaks(frozenset({"es-MX"}), "en") and not speaks(frozenset({"zh-Hant"}), "zh-Hans")


def test_remote_services_match_any_distance_after_the_places_nearby() -> None:
    remote = candidate(service_id="r", places=(Place("v", "Online", None, None, virtual=True),))
    near = candidate(service_id="n")
    far = candidate(service_id="f", places=(Place("l2", "Lodi", *LODI),))
    q = Query(point=STOCKTON, radius_km=50, near_zip="95206")
    found = ranked([m for c in (remote, far, near) if (m := match(c, q))], by_distance=True)
    assert [m.candidate.service_id for m in found] == ["n", "f", "r"]
    assert found[2].reasons == ("served remotely",)
    # Online, but for another area (or none given): not near anyone in particular.
    assert match(remote, Query(point=STOCKTON, radius_km=50, near_zip="95210")) is None
    assert match(candidate(places=remote.places, area_zips=frozenset()), q) is None
    assert match(remote, Query(point=STOCKTON, radius_km=50, resident_zip="95202")) is not None
    assert match(candidate(places=()), Query(point=STOCKTON, radius_km=5)) is None


def test_distance_and_box() -> None:
    assert distance_km(STOCKTON, LODI) == pytest.approx(19.2, abs=0.1)
    low_lat, high_lat, low_lon, high_lon = bounding_box(STOCKTON, 10)
    assert low_lat < STOCKTON[0] - 0.08 and high_lat > STOCKTON[0] + 0.08
    assert high_lon - low_lon > high_lat - low_lat  # longitude degrees are shorter away from the equator


def pacific(y: int, m: int, d: int, h: int, minute: int = 0) -> datetime:
    return datetime(y, m, d, h, minute, tzinfo=timezone(timedelta(hours=-8)))


def test_opening_hours() -> None:
    weekdays = Hours(
        "", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "09:00", "17:00", time_zone="America/Los_Angeles"
    )
    assert is_open([weekdays], pacific(2026, 11, 25, 9), "l1")  # Wednesday, opening time
    assert not is_open([weekdays], pacific(2026, 11, 25, 17), "l1")  # closing time
    assert not is_open([weekdays], pacific(2026, 11, 28, 12), "l1")  # Saturday
    closure = Hours(
        "", "", valid_from="2026-11-26", valid_to="2026-11-26", time_zone="America/Los_Angeles", closed=True
    )
    assert not is_open([weekdays, closure], pacific(2026, 11, 26, 12), "l1")  # Thanksgiving
    assert is_open([weekdays, closure], pacific(2026, 11, 27, 12), "l1")
    # The first Tuesday of the month only (a MONTHLY rule), in an HSDS hours offset.
    first_tuesday = Hours("", "FREQ=MONTHLY;BYDAY=1TU", "10:00", "12:00", time_zone="-8")
    assert is_open([first_tuesday], pacific(2026, 12, 1, 11), "l1")
    assert not is_open([first_tuesday], pacific(2026, 12, 8, 11), "l1")
    # Overnight hours, and hours that belong to another location.
    night = Hours("l2", "FREQ=WEEKLY;BYDAY=FR", "22:00", "06:00", time_zone="America/Los_Angeles")
    assert is_open([night], pacific(2026, 11, 27, 23), "l2")
    assert not is_open([night], pacific(2026, 11, 27, 23), "l1")
    valid = Hours("", "FREQ=WEEKLY;BYDAY=WE", "09:00", "17:00", valid_from="2027-01-01")
    assert not is_open([valid], datetime(2026, 11, 25, 12, tzinfo=UTC), "")


def test_summaries_read_need_domains_areas_and_schedules() -> None:
    table = [
        DomainTerm("food-insecurity", "AIRS", "BD-1800"),
        DomainTerm("utility-insecurity", "AIRS", "BV-8900"),
    ]
    terms = [
        {"id": "a", "taxonomy": "AIRS", "code": "BD-1800.2000"},  # narrower than BD-1800
        {"id": "b", "taxonomy": "airs", "code": "BV-89001"},  # not under BV-8900
        {"id": "c", "taxonomy": "ach-need-domain", "code": "homelessness"},
        {"id": "d", "taxonomy": "ach-need-domain", "code": "not-a-domain"},
    ]
    assert need_domains_of(terms, table) == {"food-insecurity", "homelessness"}
    assert area_zips(
        [
            {"extent_type": "zip", "extent": "95202, 95206 95207"},
            {"extent_type": "geojson", "extent": "95210"},
        ]
    ) == {
        "95202",
        "95206",
        "95207",
    }
    (hours, closure) = hours_of(
        [
            {
                "id": "1",
                "location_id": "l1",
                "freq": "WEEKLY",
                "byday": "MO",
                "opens_at": "09:00",
                "closes_at": "12:00",
            },
            {
                "id": "2",
                "location_id": "l1",
                "valid_from": "2026-12-25",
                "valid_to": "2026-12-25",
                "timezone": -8,
            },
        ],
        {"l1": "America/Los_Angeles"},
    )
    assert hours.rrule == "FREQ=WEEKLY;BYDAY=MO" and hours.time_zone == "America/Los_Angeles"
    assert closure.closed and closure.time_zone == "-8"


def test_partner_reports_are_checked_by_field() -> None:
    from ach_directory.domain import ServiceUpdate, check_edited_records, check_update

    assert check_update(ServiceUpdate("s", capacity_available=10), current_maximum=10) == []
    assert [
        (v.field, v.description) for v in check_update(ServiceUpdate("s", capacity_available=11), 10)
    ] == [("capacity_available", "exceeds the maximum (10)")]
    assert check_update(ServiceUpdate("s", capacity_available=11, capacity_maximum=20), 10) == []
    fields = [
        v.field for v in check_update(ServiceUpdate("", capacity_waitlist=-1, has_reported_at=False), 0)
    ]
    assert fields == ["service_id", "reported_at", "capacity_waitlist"]
    own = [("service", "$", {"id": "s"}), ("phone", "$.phones[0]", {"id": "p", "service_id": "s"})]
    assert check_edited_records("s", own) == []
    wrong = [
        ("service", "$", {"id": "t"}),
        ("location", "$.service_at_locations[0].location", {"id": "l"}),
        ("schedule", "$.schedules[0]", {"id": "x", "service_id": "u"}),
    ]
    assert [v.field for v in check_edited_records("s", wrong)] == [
        "hsds_service_json.id",
        "hsds_service_json.service_at_locations[0].location",
        "hsds_service_json.schedules[0].service_id",
    ]


def test_service_areas_by_radius() -> None:
    from ach_directory.domain.summary import area_radius_km

    assert area_radius_km([{"extent_type": "radius", "extent": "15 km"}]) == 15
    assert area_radius_km(
        [{"extent_type": "radius", "extent": "8000 m"}, {"extent_type": "radius", "extent": "10 mi"}]
    ) == pytest.approx(16.09344)
    assert (
        area_radius_km(
            [{"extent_type": "radius", "extent": "far"}, {"extent_type": "zip", "extent": "95206"}]
        )
        == 0
    )
    # Stockton's service serves 25 km around it: Lodi (19 km) is in, Sacramento (70 km) is not.
    c = candidate(area_zips=frozenset(), area_radius_km=25.0)
    near = match(c, Query(resident_zip="95240", resident_point=LODI))
    assert near is not None and "serves within 25 km of ZIP 95240" in near.reasons
    assert match(c, Query(resident_zip="95814", resident_point=(38.58, -121.49))) is None
    # Either its ZIP codes or its radius.
    both = candidate(area_zips=frozenset({"95814"}), area_radius_km=25.0)
    assert match(both, Query(resident_zip="95814", resident_point=(38.58, -121.49))) is not None
