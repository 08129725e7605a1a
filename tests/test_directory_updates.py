"""Live directory updates from partners, end to end over the real broker: a CBO's system reports
capacity, status and its service's HSDS record through the partner SDK (SASL_SSL); the directory
applies them in order, searches see them and ServiceChanged carries them; a report about another
organization's service, or one that breaks a rule, changes nothing and is answered with the reasons
(ServiceUpdateRejected on the partner's topic, the record on the dead-letter topic)."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from ach.directory.v1 import directory_pb2, directory_pb2_grpc
from ach.partners.v1 import partners_pb2
from ach_events.partner_topics import provision_partner
from ach_events.topics import DIRECTORY_SERVICES, dead_letter_topic
from ach_partner_sdk import PartnerClient
from aiokafka import AIOKafkaConsumer
from google.protobuf.timestamp_pb2 import Timestamp

from tests.harness import ROOT, Stack, eventually
from tests.test_screening_intake import events_about

pytestmark = pytest.mark.slow
ORG, OTHER_ORG = "0a000000-0000-4000-8000-000000000001", "0a000000-0000-4000-8000-000000000002"
MINE, THEIRS = "5e000000-0000-4000-8000-000000000001", "5e000000-0000-4000-8000-000000000002"
PLACE = "10000000-0000-4000-8000-000000000001"


def write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def package(to: Path) -> Path:
    to.mkdir()
    write(
        to / "organizations.csv",
        ["id", "name", "description"],
        [[ORG, "Valley Food Bank", "Food for the valley"], [OTHER_ORG, "Another CBO", "Not cbo-1"]],
    )
    # The directory knows which partner an HSDS organization is by this identifier.
    write(
        to / "organization_identifiers.csv",
        ["id", "organization_id", "identifier_scheme", "identifier_type", "identifier"],
        [["1d000000-0000-4000-8000-000000000001", ORG, "ach-partner", "partner id", "cbo-1"]],
    )
    write(
        to / "services.csv",
        ["id", "organization_id", "name", "status"],
        [[MINE, ORG, "Pantry", "active"], [THEIRS, OTHER_ORG, "Meals", "active"]],
    )
    write(
        to / "locations.csv",
        ["id", "location_type", "name", "latitude", "longitude"],
        [[PLACE, "physical", "Warehouse", "37.9577", "-121.2908"]],
    )
    write(
        to / "service_at_location.csv",
        ["id", "service_id", "location_id"],
        [
            ["5a000000-0000-4000-8000-000000000001", MINE, PLACE],
            ["5a000000-0000-4000-8000-000000000002", THEIRS, PLACE],
        ],
    )
    write(
        to / "service_capacity.csv",
        ["id", "service_id", "available", "maximum", "updated"],
        [["ca000000-0000-4000-8000-000000000001", MINE, "5", "10", "2026-11-01T00:00:00Z"]],
    )
    return to


def stamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def search(stack: Stack, language: str = "", with_capacity: bool = False) -> list[directory_pb2.SearchResult]:
    request = directory_pb2.SearchServicesRequest(language=language, with_capacity=with_capacity)
    with stack.channel("directory", "clinic-1") as channel:
        found = directory_pb2_grpc.DirectoryServiceStub(channel).SearchServices(request, timeout=10)
    return list(found.results)


def service(stack: Stack, service_id: str) -> directory_pb2.Service:
    with stack.channel("directory", "clinic-1") as channel:
        found: directory_pb2.Service = directory_pb2_grpc.DirectoryServiceStub(channel).GetService(
            directory_pb2.GetServiceRequest(service_id=service_id), timeout=10
        )
    return found


async def dead_letters(bootstrap: str, n: int) -> list[tuple[str, str]]:
    reader = AIOKafkaConsumer(
        dead_letter_topic("directory").physical_name,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
    )
    await reader.start()
    found: list[tuple[str, str]] = []
    try:
        async with asyncio.timeout(60):
            while len(found) < n:
                for records in (await reader.getmany(timeout_ms=500)).values():
                    for r in records:
                        headers = dict(r.headers)
                        found.append((headers["ce_type"].decode(), headers["ach_dlq_reason"].decode()))
    finally:
        await reader.stop()
    return found


def test_a_cbo_updates_its_services_in_order_and_nothing_else(
    make_stack: Callable[[str], Stack], kafka_bootstrap: str, sasl_bootstrap: tuple[str, str], tmp_path: Path
) -> None:
    bootstrap, cafile = sasl_bootstrap
    password = uuid.uuid4().hex
    provision_partner(kafka_bootstrap, "cbo-1", password)
    stack = make_stack("sqlite")
    stack.start("directory")
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    env["DIRECTORY_DATABASE_URL"] = stack.database_urls["directory"]
    done = subprocess.run(
        [sys.executable, "-m", "ach_directory.main", "import", str(package(tmp_path / "p")), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert [r.service.service_id for r in search(stack, with_capacity=True)] == [MINE]
    now = time.time()

    with PartnerClient(
        "cbo-1", bootstrap, password=password, cafile=cafile, namespace=stack.namespace
    ) as cbo:
        # Full now, and closed for a while.
        cbo.report_service_update(
            partners_pb2.ServiceUpdateReported(
                service_id=MINE,
                capacity_available=0,
                capacity_waitlist=12,
                status=directory_pb2.SERVICE_STATUS_TEMPORARILY_CLOSED,
                reported_at=stamp(now),
            )
        )
        eventually(lambda: service(stack, MINE).capacity_waitlist == 12, 60, "the capacity report applied")
        changed = service(stack, MINE)
        assert changed.capacity_available == 0 and changed.capacity_maximum == 10
        assert changed.status == directory_pb2.SERVICE_STATUS_TEMPORARILY_CLOSED
        assert search(stack, with_capacity=True) == []

        # An older report arriving late changes nothing; the HSDS record edited by its owner does.
        cbo.report_service_update(
            partners_pb2.ServiceUpdateReported(
                service_id=MINE, capacity_available=9, reported_at=stamp(now - 60)
            )
        )
        record = {
            "id": MINE,
            "name": "Pantry and Hot Meals",
            "status": "active",
            "languages": [{"id": "1a000000-0000-4000-8000-000000000001", "name": "Spanish", "code": "es"}],
        }
        cbo.report_service_update(
            partners_pb2.ServiceUpdateReported(
                service_id=MINE,
                capacity_available=4,
                hsds_service_json=json.dumps(record),
                reported_at=stamp(now + 1),
            )
        )
        eventually(
            lambda: service(stack, MINE).name == "Pantry and Hot Meals", 60, "the edited record applied"
        )
        edited = service(stack, MINE)
        assert edited.capacity_available == 4 and list(edited.languages) == ["es"]
        assert edited.status == directory_pb2.SERVICE_STATUS_ACTIVE
        (hit,) = search(stack, language="es", with_capacity=True)
        assert hit.service.service_id == MINE and "4 of 10 places available" in hit.reasons
        assert hit.service == edited  # the message kept with the record follows every change

        # Another organization's service, and a report that breaks a rule: refused, with why.
        cbo.report_service_update(partners_pb2.ServiceUpdateReported(service_id=THEIRS, capacity_available=1))
        cbo.report_service_update(partners_pb2.ServiceUpdateReported(service_id=MINE, capacity_available=11))
        replies: list[partners_pb2.ServiceUpdateRejected] = []
        for reply in cbo.replies(timeout_s=60):
            assert isinstance(reply.message, partners_pb2.ServiceUpdateRejected)
            replies.append(reply.message)
            if len(replies) == 2:
                break
    rejected = {r.service_id: [(v.field, v.description) for v in r.violations] for r in replies}
    assert rejected == {
        THEIRS: [("service_id", "is not a service of cbo-1's organization")],
        MINE: [("capacity_available", "exceeds the maximum (10)")],
    }
    letters = asyncio.run(dead_letters(kafka_bootstrap, 2))
    assert {t for t, _ in letters} == {"ach.partners.v1.ServiceUpdateReported"}
    assert any("is not a service of cbo-1's organization" in reason for _, reason in letters)
    assert service(stack, THEIRS).capacity_available == 0 and service(stack, MINE).capacity_available == 4

    # The replicas' topic carries each version: the import's, the report's, the edit's.
    versions = events_about(kafka_bootstrap, DIRECTORY_SERVICES.physical_name, {MINE}, 3)
    assert [e.message().version for e in versions] == [1, 2, 3]  # type: ignore[attr-defined]
    assert stack.stop_all() == {"identity": 0, "directory": 0}
