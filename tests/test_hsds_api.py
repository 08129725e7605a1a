"""The HSDS HTTP API of the running directory (PostgreSQL), over a generated directory: the Page
object and records valid against the official schemas, the reference's filters, errors by
parameter, and schemathesis run against the API's own OpenAPI document (every check)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ach_directory.hsds_catalog import load_catalog
from ach_directory.sample_package import generate
from ach_platform.geo import distance_km
from ach_platform.zip_codes import centroid
from jsonschema import Draft202012Validator

from tests.harness import ROOT, Stack

pytestmark = pytest.mark.slow
CATALOG = load_catalog()


def get(base: str, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"{base}{path}", timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def valid(entity: str, record: dict[str, Any]) -> bool:
    errors = list(CATALOG.validators[entity].iter_errors(record))
    assert errors == [], (entity, [e.message for e in errors][:3])
    return True


def test_the_hsds_api_serves_the_directory_as_the_reference_defines_it(
    make_stack: Callable[[str], Stack], tmp_path: Path
) -> None:
    stack = make_stack("postgresql")
    stack.start("directory")
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    env["DIRECTORY_DATABASE_URL"] = stack.database_urls["directory"]
    package = tmp_path / "package"
    command = [sys.executable, "-m", "ach_directory.main"]
    subprocess.run(
        [*command, "generate", str(package), "--services", "400", "--seed", "3"], check=True, cwd=ROOT
    )
    done = subprocess.run(
        [*command, "import", str(package), "--quiet"], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    rows = generate(400, 3)
    base = f"http://127.0.0.1:{stack.services['directory'].env['HTTP_PORT']}"

    status, about = get(base, "/")
    assert status == 200 and about["version"] == "3.0" and about["openapi_url"].endswith("/openapi.json")
    status, page = get(base, "/services?per_page=7&page=2")
    assert status == 200
    document = json.loads(urllib.request.urlopen(f"{base}/openapi.json", timeout=10).read())
    page_schema = document["components"]["schemas"]["Page"]
    assert list(Draft202012Validator(page_schema).iter_errors(page)) == []
    assert (page["total_items"], page["total_pages"], page["page_number"], page["size"]) == (400, 58, 2, 7)
    assert not page["first_page"] and not page["last_page"] and not page["empty"]
    assert all(valid("service", s) for s in page["contents"])
    ids = sorted(s["id"] for s in rows["service"])
    assert [s["id"] for s in page["contents"]] == ids[7:14]

    # One service in full: nested records and its organization, valid against the official schema.
    status, full = get(base, f"/services/{ids[0]}")
    assert status == 200 and valid("service", full)
    assert full["organization"]["id"] == full["organization_id"] and full["service_at_locations"]
    assert full["languages"] and full["schedules"]

    # The reference's filters, AND-combined.
    org = rows["service"][0]["organization_id"]
    status, by_org = get(base, f"/services?organization_id={org}&per_page=100")
    assert {s["id"] for s in by_org["contents"]} == {
        s["id"] for s in rows["service"] if s["organization_id"] == org
    }
    term = rows["attribute"][0]["taxonomy_term_id"]
    status, by_term = get(base, f"/services?taxonomy_term_id={term}&per_page=100")
    assert {s["id"] for s in by_term["contents"]} == {
        a["link_id"] for a in rows["attribute"] if a["taxonomy_term_id"] == term
    }
    status, near = get(base, "/service_at_locations?postcode=90012&proximity=5000&per_page=100")
    assert status == 200 and near["total_items"] > 0
    places = {x["id"]: x for x in rows["location"]}
    point = centroid("90012")
    assert point is not None
    for at in near["contents"]:
        place = places[at["location_id"]]
        assert distance_km(point, (place["latitude"], place["longitude"])) <= 5.0
    status, later = get(base, "/services?modified_after=2999-01-01T00:00:00Z")
    assert status == 200 and later["empty"] and later["contents"] == []
    status, top = get(base, "/taxonomy_terms?top_only=true&per_page=100")
    assert (
        status == 200
        and top["total_items"] == len(rows["taxonomy_term"])
        and all(valid("taxonomy_term", t) for t in top["contents"])
    )
    status, organization = get(base, f"/organizations/{org}?full_service=true")
    assert status == 200 and valid("organization", organization) and organization["services"]

    # Bad parameters: 400 naming the parameter; no record: 404.
    assert get(base, "/services?per_page=1000") == (
        400,
        {"error": "must be between 1 and 100", "parameter": "per_page"},
    )
    assert get(base, "/services?page=0")[1]["parameter"] == "page"
    assert get(base, "/services?modified_after=yesterday")[1]["parameter"] == "modified_after"
    assert (
        get(base, "/services?proximity=100")[1]["total_items"] == 400
    )  # no postcode: no centre to measure from
    assert get(base, "/services/no-such-service")[0] == 404

    # schemathesis against the served OpenAPI document: every check, every operation.
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "40",
            "--seed",
            "7",
            "--request-timeout",
            "20",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-6000:]
    assert stack.stop_all() == {"identity": 0, "directory": 0}
