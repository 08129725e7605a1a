"""The HSDS model and row rules, without I/O: entities built from the official schemas, the
directory's own checks at their boundaries, and nested HSDS JSON flattened into rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ach_directory.domain.hsds import Record, check_record, flatten, merged, recurrence_rule
from ach_directory.hsds_catalog import load_catalog

EXAMPLES = Path(__file__).parent / "data" / "hsds-3.0" / "examples"
CATALOG = load_catalog()


def problems(entity: str, **values: Any) -> list[tuple[str, str]]:
    record = Record(entity, {"id": "00000000-0000-4000-8000-000000000001", **values}, "test.csv", "2")
    return [(p.field, p.problem) for p in check_record(CATALOG.entities[entity], record)]


def test_entities_come_from_the_official_schemas() -> None:
    service = CATALOG.entities["service"]
    assert {"id", "name", "status", "minimum_age", "maximum_age", "eligibility_description"} <= set(
        service.field_names
    )
    assert {c.name: c.entity for c in service.children}["service_at_locations"] == "service_at_location"
    assert {c.entity for c in service.embedded} == {"organization", "program"}
    assert service.tabular_required == {"organization_id"}
    assert CATALOG.entities["location"].field("location_type").enum == ("physical", "postal", "virtual")  # type: ignore[union-attr]
    assert len(CATALOG.entities) == 22  # HSDS 3.0's 21 and service_capacity (HSDS 3.1)


@pytest.mark.parametrize(
    ("lat", "lon", "expected"),
    [
        (90, 180, []),
        (-90, -180, []),
        (90.0001, 0, [("latitude", "90.0001 is out of range (-90 to 90)")]),
        (0, -180.5, [("longitude", "-180.5 is out of range (-180 to 180)")]),
        (100, 101, [("latitude", "100 is out of range (-90 to 90)")]),  # the official examples' location
        (37.9, None, [("longitude", "is required with the other")]),
    ],
)
def test_coordinates_must_be_on_the_globe(
    lat: float, lon: float | None, expected: list[tuple[str, str]]
) -> None:
    values = {"location_type": "physical", "latitude": lat}
    if lon is not None:
        values["longitude"] = lon
    assert problems("location", **values) == expected


def test_age_range() -> None:
    assert problems("service", organization_id="o", minimum_age=18, maximum_age=18) == []
    assert problems("service", organization_id="o", minimum_age=65, maximum_age=18) == [
        ("minimum_age", "65 is above maximum_age 18")
    ]
    assert problems("service", organization_id="o", minimum_age=-1) == [("minimum_age", "-1 is not an age")]
    assert problems("service", name="no organization") == [("organization_id", "is required")]


def test_schedules_are_recurrence_rules_with_times_of_day() -> None:
    weekly = {"freq": "WEEKLY", "byday": "MO,WE,FR", "opens_at": "09:00", "closes_at": "17:30:00"}
    assert problems("schedule", **weekly) == []
    assert recurrence_rule(weekly) == "FREQ=WEEKLY;BYDAY=MO,WE,FR"
    assert problems("schedule", freq="MONTHLY", byday="1TU", interval=1) == []
    assert problems("schedule", **{**weekly, "byday": "MO,XX"})[0][0] == "byday"
    assert problems("schedule", **{**weekly, "opens_at": "24:00"}) == [
        ("opens_at", "'24:00' is not a time of day (HH:MM or HH:MM:SS)")
    ]
    assert problems("schedule", valid_from="2026-02-30") == [
        ("valid_from", "'2026-02-30' is not a date (YYYY-MM-DD)")
    ]
    assert problems("schedule", timezone=15) == [("timezone", "15 is not a UTC offset in hours")]
    # A holiday closure: a dated schedule without opening hours.
    assert problems("schedule", valid_from="2026-12-25", valid_to="2026-12-25", description="Closed") == []


def test_nested_json_becomes_rows_with_their_links() -> None:
    document = json.loads((EXAMPLES / "service_full.json").read_text())
    records = list(flatten(CATALOG.entities, "service", document, "service_full.json", "$"))
    by_entity: dict[str, list[Record]] = {}
    for r in records:
        by_entity.setdefault(r.entity, []).append(r)
    (service,) = by_entity["service"]
    assert service.values["organization_id"] == document["organization"]["id"]
    assert service.values["program_id"] == document["program"]["id"]
    # Parents before the record that refers to them.
    assert records.index(by_entity["organization"][0]) < records.index(service)
    # The program twice (the organization's and the service's), linked to the organization both times.
    assert {p.values["organization_id"] for p in by_entity["program"]} == {document["organization"]["id"]}
    metadata = next(r for r in by_entity["metadata"] if r.row == "$.metadata[0]")
    assert metadata.values["resource_id"] == service.id  # its resource_type is kept as given
    sal = by_entity["service_at_location"][0]
    assert sal.values["service_id"] == service.id and sal.values["location_id"]


def test_one_record_nested_twice_merges_its_links_unless_they_disagree() -> None:
    assert merged({"id": "p", "contact_id": "c"}, {"id": "p", "organization_id": "o"}) == {
        "id": "p",
        "contact_id": "c",
        "organization_id": "o",
    }
    assert merged({"id": "p", "number": "1"}, {"id": "p", "number": "2"}) is None
