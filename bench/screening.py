"""Screening intake under load, against the real services (processes, as deployed): gRPC
SubmitScreening with concurrent clients over mutual TLS, beside a bare grpcio unary call (same
message, same TLS, no interceptors, no database, in its own process) under the same load in the
same run; and events/s through the partner-topic path (intake topic -> screening -> the partner's
outbound topic)."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from ach.common.v1 import common_pb2
from ach.partners.v1 import partners_pb2
from ach.screening.v1 import screening_pb2, screening_pb2_grpc
from ach_events.envelope import Envelope
from ach_events.partner_topics import outbound_topic, provision_partner
from ach_events.topics import PARTNER_INTAKE
from ach_platform.dev_pki import DevPki
from ach_platform.dev_pki import create as create_pki
from ach_platform.grpc_client import partner_aio_channel
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from google.protobuf.timestamp_pb2 import Timestamp

from bench.results import Figure
from bench.stacks import backends, bench_stack, p99
from tests.harness import TEST_PARTNER_ROLES, Stack, free_port

ROOT = Path(__file__).resolve().parents[1]
PARTNER = "clinic-1"
ANSWERS = {
    "71802-3": "LA31994-9",
    "96778-6": "LA9-3",
    "88122-7": "LA6729-3",
    "88123-5": "LA28398-8",
    "93030-5": "LA32-8",
    "96779-4": "LA32002-0",
    "95618-5": "LA6270-8",
    "95617-7": "LA6270-8",
    "95616-9": "LA6270-8",
    "95615-1": "LA10066-1",
}


def submission(resident: str) -> screening_pb2.SubmitScreeningRequest:
    now = Timestamp()
    now.GetCurrentTime()
    return screening_pb2.SubmitScreeningRequest(
        submitter_screening_id=str(uuid.uuid4()),
        resident_id=resident,
        instrument_id="ahc-hrsn-core",
        instrument_version="1",
        answers=[screening_pb2.Answer(question_code=q, answer_codes=[a]) for q, a in ANSWERS.items()],
        screened_at=now,
        site_id="bench-site",
        language="en",
        screened_by=common_pb2.Actor(partner_id=PARTNER, user_id="bench"),
    )


async def load(
    address: str,
    pki: DevPki,
    residents: list[str],
    clients: int,
    per_client: int,
    method: str = "SubmitScreening",
) -> tuple[float, float, float]:
    """``clients`` concurrent callers (one channel each), ``per_client`` calls each: calls/s, p50, p99 ms.
    ``method``: SubmitScreening, or ListInstruments (the same server and interceptors, no storage)."""
    latencies: list[float] = []

    def request(resident: str) -> Any:
        if method == "ListInstruments":
            return screening_pb2.ListInstrumentsRequest(language="en")
        return submission(resident)

    async def client(index: int) -> None:
        async with partner_aio_channel(
            address, pki.ca_cert, cert=pki.client_cert(PARTNER), key=pki.client_key(PARTNER)
        ) as channel:
            call = getattr(screening_pb2_grpc.ScreeningServiceStub(channel), method)
            await call(request(residents[index % len(residents)]), timeout=30)  # warm
            for i in range(per_client):
                message = request(residents[(index + i) % len(residents)])
                started = time.perf_counter()
                await call(message, timeout=30)
                latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, statistics.median(latencies), p99(latencies)


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_server(pki: DevPki) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_grpc", str(port), str(pki.directory)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, f"127.0.0.1:{port}"


async def wait_serving(address: str, pki: DevPki, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await load(address, pki, ["warm"], 1, 1)
            return
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def partner_path(bootstrap: str, residents: list[str], n: int) -> float:
    """Events/s from the first submission on the intake topic to the last answer on the partner's
    outbound topic (what the partner system sees)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    reader = AIOKafkaConsumer(
        outbound_topic(PARTNER).physical_name,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="latest",
    )
    await producer.start()
    await reader.start()
    await reader.seek_to_end()
    ids = set()
    try:
        started = time.perf_counter()
        for i in range(n):
            request = submission(residents[i % len(residents)])
            ids.add(request.submitter_screening_id)
            event = partners_pb2.ScreeningSubmitted(submission=request)
            envelope = Envelope.wrap(event, source=f"/partners/{PARTNER}", key=request.submitter_screening_id)
            await producer.send(
                PARTNER_INTAKE.physical_name,
                envelope.payload,
                key=envelope.key.encode(),
                headers=envelope.headers(),
            )
        await producer.flush()
        answered = 0
        async with asyncio.timeout(600):
            while answered < n:
                for records in (await reader.getmany(timeout_ms=500)).values():
                    answered += sum((r.key or b"").decode() in ids for r in records)
        return n / (time.perf_counter() - started)
    finally:
        await producer.stop()
        await reader.stop()


async def measure(
    stack: Stack, residents: list[str], clients: int, calls: int, n_partner: int
) -> dict[str, float]:
    service = stack.services["screening"]
    assert service.process is not None
    cpu_before = cpu_seconds(service.process.pid)
    rate, p50, p99 = await load(service.address, stack.pki, residents, clients, calls // clients)
    cpu = (cpu_seconds(service.process.pid) - cpu_before) * 1000 / (clients * (calls // clients + 1))
    partner_rate = await partner_path(stack.kafka_bootstrap, residents, n_partner)
    # The ceiling for any method of this server: the same TLS, interceptors (authentication,
    # authorization, tracing, metrics) and servicer, and no storage or events at all.
    floor, _, _ = await load(
        service.address, stack.pki, residents, clients, calls // clients, "ListInstruments"
    )
    return {"rate": rate, "p50": p50, "p99": p99, "partner": partner_rate, "cpu": cpu, "floor": floor}


def run(bootstrap: str, postgres_server: str | None) -> list[Figure]:
    clients = int(os.environ.get("BENCH_CLIENTS", "16"))
    calls = int(os.environ.get("BENCH_CALLS", "2000"))
    n_partner = int(os.environ.get("BENCH_PARTNER_N", "1000"))
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        pki = create_pki(work / "pki", list(TEST_PARTNER_ROLES))
        os.environ["ACH_PKI_DIR"] = str(pki.directory)
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        os.environ["ACH_KAFKA_NAMESPACE"] = namespace
        provision_partner(bootstrap, PARTNER)  # its outbound topic, where the partner's answers go

        bare, bare_address = bare_server(pki)
        try:
            asyncio.run(wait_serving(bare_address, pki))
            cpu_before = cpu_seconds(bare.pid)
            bare_rate, bare_p50, bare_p99 = asyncio.run(
                load(bare_address, pki, ["r"], clients, calls // clients)
            )
            bare_cpu = (cpu_seconds(bare.pid) - cpu_before) * 1000 / (clients * (calls // clients + 1))
        finally:
            bare.terminate()
            bare.wait()
        figures += [
            Figure(f"screening.bare_grpc_unary ({clients} clients)", bare_rate, "calls/s"),
            Figure("screening.bare_grpc_unary_p50", bare_p50, "ms"),
            Figure("screening.bare_grpc_unary_p99", bare_p99, "ms"),
            Figure("screening.bare_grpc_unary_server_cpu", bare_cpu, "ms/call"),
        ]
        for backend in backends(postgres_server):
            with bench_stack(
                work, backend, ("identity", "screening"), bootstrap, namespace, pki, postgres_server
            ) as stack:
                stack.start("screening")
                residents = [stack.resident(PARTNER) for _ in range(20)]
                got = asyncio.run(measure(stack, residents, clients, calls, n_partner))
                stack.stop_all()
            figures += [
                Figure(
                    f"screening.submit_grpc.{backend} ({clients} clients)",
                    got["rate"],
                    "calls/s",
                    "bare grpcio unary",
                    bare_rate,
                ),
                Figure(f"screening.submit_grpc_p50.{backend}", got["p50"], "ms"),
                Figure(f"screening.submit_grpc_p99.{backend}", got["p99"], "ms"),
                # Why the ratio is what it is: the server's CPU per call, beside the bare call's.
                Figure(
                    f"screening.submit_grpc_server_cpu.{backend}",
                    got["cpu"],
                    "ms/call",
                    "bare grpcio unary",
                    bare_cpu,
                ),
                Figure(
                    f"screening.partner_topic_to_answer.{backend} (N={n_partner})", got["partner"], "events/s"
                ),
                Figure(
                    f"screening.list_instruments_grpc.{backend} (no storage: the server's ceiling)",
                    got["floor"],
                    "calls/s",
                    "bare grpcio unary",
                    bare_rate,
                ),
            ]
    return figures
