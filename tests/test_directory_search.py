"""The directory end to end: a generated data package of realistic services (and the official
examples, mended) imported with the command line into the running directory's database; gRPC
search with every filter at once checked against an oracle written apart from the search code;
paging; bad requests; the HSDS records read back valid against the official schemas; and the
imported services published as ServiceChanged for the other services' replicas."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from ach.directory.v1 import directory_pb2, directory_pb2_grpc
from ach_directory.hsds_catalog import load_catalog
from ach_directory.sample_package import generate
from ach_events.topics import DIRECTORY_SERVICES
from ach_platform.zip_codes import centroid
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.harness import ROOT, Stack
from tests.test_screening_intake import events_about

pytestmark = pytest.mark.slow
N_SERVICES = 3000
SEED = 11
RADIUS_KM = 25.0
ZIP = "90012"  # downtown Los Angeles, where the generator puts most services
EXAMPLES = ROOT / "services" / "directory" / "tests" / "data" / "hsds-3.0" / "examples"
TERMS = ROOT / "services" / "directory" / "ach_directory" / "need_domain_terms.csv"


def import_package(stack: Stack, path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    env["DIRECTORY_DATABASE_URL"] = stack.database_urls["directory"]
    return subprocess.run(
        [sys.executable, "-m", "ach_directory.main", "import", str(path), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )


def oracle(
    rows: dict[str, list[dict[str, Any]]], point: tuple[float, float], at: datetime, every_filter: bool = True
) -> list[str]:
    """Services for: food-insecurity, Spanish, within RADIUS_KM, open at ``at`` (Pacific time), with
    capacity, for a 30-year-old living in ZIP: straight from the generated rows, nearest first.
    ``every_filter`` False: the need, language and distance only (what the search keys answer alone)."""
    areas = {a["service_id"]: set(a["extent"].split(",")) for a in rows.get("service_area", [])}
    with TERMS.open() as handle:
        codes = {(r["taxonomy"], r["code"]): r["need_domain"] for r in csv.DictReader(handle)}
    terms = {t["id"]: (t["taxonomy"], t["code"]) for t in rows["taxonomy_term"]}

    def domain_of(term_id: str) -> str:
        taxonomy, code = terms[term_id]
        return code if taxonomy == "ach-need-domain" else codes.get((taxonomy, code), "")

    food = {a["link_id"] for a in rows["attribute"] if domain_of(a["taxonomy_term_id"]) == "food-insecurity"}
    spanish = {x["service_id"] for x in rows["language"] if x["code"] == "es"}
    capacity = {c["service_id"] for c in rows.get("service_capacity", []) if c["available"] > 0}
    local = at.astimezone(ZoneInfo("America/Los_Angeles"))  # every generated place is in California
    weekday = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")[local.weekday()]
    clock = local.strftime("%H:%M")
    locations = {x["id"]: x for x in rows["location"]}
    best: dict[str, float] = {}
    for at_location in rows["service_at_location"]:
        sid, where = at_location["service_id"], locations[at_location["location_id"]]
        schedules = [s for s in rows["schedule"] if s.get("location_id") == where["id"]]
        closed = any(s.get("valid_from") == local.date().isoformat() for s in schedules)
        opened = any(
            weekday in s.get("byday", "").split(",") and s["opens_at"] <= clock < s["closes_at"]
            for s in schedules
            if "byday" in s
        )
        if every_filter and (not opened or closed):
            continue
        if where["location_type"] == "virtual":  # served remotely: in its area, after the places
            if ZIP in areas.get(sid, set()):
                best.setdefault(sid, math.inf)
            continue
        lat1, lon1, lat2, lon2 = map(math.radians, (*point, where["latitude"], where["longitude"]))
        a = (
            math.sin((lat2 - lat1) / 2) ** 2
            + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
        )
        km = 2 * 6371.0088 * math.asin(math.sqrt(a))
        if km <= RADIUS_KM:
            best[sid] = min(km, best.get(sid, math.inf))
    services = {s["id"]: s for s in rows["service"]}
    eligible = [
        sid
        for sid in best
        if services[sid]["status"] == "active"
        and sid in food & spanish
        and (
            not every_filter
            or (
                sid in capacity
                and services[sid].get("minimum_age", 0) <= 30 <= services[sid].get("maximum_age", 200)
                and (ZIP in areas[sid] if sid in areas else True)
            )
        )
    ]
    # Nearest first (ties by id); online services after, by name.
    return sorted(
        eligible, key=lambda sid: (best[sid], services[sid]["name"] if best[sid] == math.inf else "", sid)
    )


def violations(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return [v.field for v in bad.field_violations]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_search_finds_what_an_oracle_finds_with_every_filter(
    make_stack: Callable[[str], Stack], kafka_bootstrap: str, tmp_path: Path, backend: str
) -> None:
    stack = make_stack(backend)
    stack.start("directory")
    rows = generate(N_SERVICES, SEED)
    package = tmp_path / "generated"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ach_directory.main",
            "generate",
            str(package),
            "--services",
            str(N_SERVICES),
            "--seed",
            str(SEED),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    imported = import_package(stack, package)
    assert imported.returncode == 0, imported.stderr
    assert (
        f"services whose summary changed (searched, published as ServiceChanged): {N_SERVICES}"
        in imported.stdout
    )

    point = centroid(ZIP)
    assert point is not None
    at = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)  # Wednesday 12:00 in California
    when = Timestamp()
    when.FromDatetime(at)
    request = directory_pb2.SearchServicesRequest(
        need_domain="food-insecurity",
        language="es",
        near_zip=ZIP,
        radius_km=RADIUS_KM,
        open_at=when,
        with_capacity=True,
        resident_age=30,
        resident_zip=ZIP,
        page_size=100,
    )
    expected = oracle(rows, point, at)
    assert len(expected) >= 3  # the data makes the query meaningful
    with stack.channel("directory", "clinic-1") as channel:
        directory = directory_pb2_grpc.DirectoryServiceStub(channel)
        everything = directory.SearchServices(request, timeout=30)
        assert [r.service.service_id for r in everything.results] == expected
        assert everything.total == len(expected)
        first = everything.results[0]
        assert list(first.reasons[:2]) == ["addresses food-insecurity", "speaks es"]
        assert first.distance_km <= RADIUS_KM and first.location_id
        assert "open then" in first.reasons

        # Need, language and distance only: answered from the search keys, the same services.
        plain = directory.SearchServices(
            directory_pb2.SearchServicesRequest(
                need_domain="food-insecurity", language="es", near_zip=ZIP, radius_km=RADIUS_KM, page_size=100
            ),
            timeout=30,
        )
        plain_expected = oracle(rows, point, at, every_filter=False)
        assert plain.total == len(plain_expected) and len(plain_expected) > len(expected)
        assert [r.service.service_id for r in plain.results] == plain_expected[:100]
        pages: list[str] = []
        token = ""
        while len(pages) < 60:
            answer = directory.SearchServices(
                directory_pb2.SearchServicesRequest(
                    need_domain="food-insecurity",
                    language="es",
                    near_zip=ZIP,
                    radius_km=RADIUS_KM,
                    page_size=7,
                    page_token=token,
                ),
                timeout=30,
            )
            pages += [r.service.service_id for r in answer.results]
            token = answer.next_page_token
            if not token:
                break
        assert pages == plain_expected[: len(pages)] and len(pages) >= min(60, len(plain_expected))

        # Pages of 4 give the same list, each result once.
        paged: list[str] = []
        token = ""
        while True:
            page = directory.SearchServices(
                directory_pb2.SearchServicesRequest(
                    **{**_fields(request), "page_size": 4, "page_token": token}
                ),
                timeout=30,
            )
            paged += [r.service.service_id for r in page.results]
            token = page.next_page_token
            if not token:
                break
        assert paged == expected

        # Free text and a taxonomy term narrow as well.
        word = rows["service"][0]["name"].split()[0].lower()
        by_text = directory.SearchServices(
            directory_pb2.SearchServicesRequest(text=word, page_size=100), timeout=30
        )
        assert by_text.total > 0 and all(
            word in r.service.name.lower() or word in r.service.description.lower() for r in by_text.results
        )

        with pytest.raises(grpc.RpcError) as bad:
            directory.SearchServices(
                directory_pb2.SearchServicesRequest(need_domain="hunger", radius_km=-1, page_size=500),
                timeout=10,
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert violations(bad.value) == ["need_domain", "page_size", "radius_km"]

        # The HSDS records read back as HSDS JSON, valid against the official schemas.
        org_id = rows["organization"][0]["id"]
        organization = json.loads(
            directory.GetOrganization(directory_pb2.GetRecordRequest(id=org_id), timeout=10).hsds_json
        )
        catalog = load_catalog()
        assert list(catalog.validators["organization"].iter_errors(organization)) == []
        assert organization["services"] and organization["services"][0]["organization_id"] == org_id
        location = json.loads(
            directory.GetLocation(directory_pb2.GetRecordRequest(id=first.location_id), timeout=10).hsds_json
        )
        assert list(catalog.validators["location"].iter_errors(location)) == []
        assert location["addresses"][0]["postal_code"]
        service = directory.GetService(
            directory_pb2.GetServiceRequest(service_id=first.service.service_id), timeout=10
        )
        assert service.source == "hsds-import" and service.opening_hours and service.locations

    # Every imported service on the compacted topic, for the replicas of the other services.
    ids = {s["id"] for s in rows["service"][:50]}
    published = events_about(kafka_bootstrap, DIRECTORY_SERVICES.physical_name, ids, len(ids), timeout_s=120)
    assert {e.key for e in published} == ids
    assert stack.stop_all() == {"identity": 0, "directory": 0}


def _fields(request: directory_pb2.SearchServicesRequest) -> dict[str, Any]:
    return {f.name: v for f, v in request.ListFields()}


def mended_examples(tmp_path: Path) -> Path:
    """The official HSDS examples, placed in Stockton, California (their one location's latitude
    100 is off the globe) with the references that point outside the package mended."""
    package = tmp_path / "examples"
    shutil.copytree(EXAMPLES / "csv", package)
    (package / "datapackage.json").unlink()
    org = "d9d5e0f5-d3ce-4f73-9a2f-4dd0ecc6c610"
    for file, changes in {
        "locations.csv": {"latitude": "37.9577", "longitude": "-121.2908", "organization_id": org},
        "contacts.csv": {
            "organization_id": org,
            "service_at_location_id": "e94c9f38-1e8f-4564-91d4-d53501ab1765",
        },
    }.items():
        table = list(csv.DictReader((package / file).open(newline="")))
        for row in table:
            row.update(changes)
        with (package / file).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    return package


def test_the_official_examples_are_searchable_once_mended(
    make_stack: Callable[[str], Stack], tmp_path: Path
) -> None:
    stack = make_stack("sqlite")
    stack.start("directory")
    package = mended_examples(tmp_path)
    done = import_package(stack, package)
    assert done.returncode == 0, done.stderr
    with stack.channel("directory", "clinic-1") as channel:
        directory = directory_pb2_grpc.DirectoryServiceStub(channel)
        found = directory.SearchServices(
            directory_pb2.SearchServicesRequest(
                text="counselling", language="ur", near_zip="95202", radius_km=5
            ),
            timeout=10,
        )
    (result,) = found.results
    assert result.service.name == "Community Counselling" and result.service.minimum_age == 12
    assert "speaks ur" in result.reasons
