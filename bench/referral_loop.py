"""The closed loop end to end: SubmitScreening (gRPC, mutual TLS) -> screening events -> a referral
placed with the CBO -> its notification -> the CBO's signed webhook arriving at a receiver (its own
process, checking each signature). BENCH_LOOP_RATE (50) screenings/s, each with one positive need
domain, for BENCH_LOOP_SECONDS (30), every service running as a process on this machine. Reports the
latency from submit to webhook (p50/p99), the events/s sustained (webhooks per second while the load
ran, beside the rate offered), and the backlog when the load stops (webhooks still to arrive) and how
long it takes to drain."""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ach.notifications.v1 import notifications_pb2, notifications_pb2_grpc
from ach.screening.v1 import screening_pb2_grpc
from ach_platform.dev_pki import create as create_pki
from ach_platform.grpc_client import partner_aio_channel

from bench.results import Figure
from bench.stacks import backends, bench_stack, p99
from tests.harness import TEST_PARTNER_ROLES, Stack, eventually, free_port
from tests.test_walking_skeleton import screening_request

SERVICES = ("directory", "screening", "referrals", "notifications")
RESIDENTS = 40  # screened again and again: each screening's need is a new referral


def start_sink(path: Path, secret_file: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.webhook_sink", str(port), str(secret_file), str(path)],
        cwd=Path(__file__).resolve().parents[1],
    )

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    eventually(listening, 30, "the webhook receiver listening")  # else the first webhooks back off
    return process, port


def arrivals(path: Path) -> dict[str, float]:
    """referral id -> when its first referral.created webhook arrived (epoch seconds)."""
    found: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            at, event_type, subject = line.split(" ")
            if event_type == "referral.created":
                found.setdefault(subject, float(at))
    return found


def all_arrived(expected: set[str], log: Path) -> bool:
    return expected <= set(arrivals(log))


async def offer_load(stack: Stack, residents: list[str], rate: float, seconds: float) -> dict[str, float]:
    """Open loop: one screening every 1/rate s, not waiting for answers; screening id -> sent at."""
    sent: dict[str, float] = {}
    service = stack.services["screening"]
    async with partner_aio_channel(
        service.address,
        stack.pki.ca_cert,
        cert=stack.pki.client_cert("clinic-1"),
        key=stack.pki.client_key("clinic-1"),
    ) as channel:
        stub = screening_pb2_grpc.ScreeningServiceStub(channel)

        async def one(i: int) -> None:
            request = screening_request(residents[i % len(residents)])
            at = time.time()
            answer = await stub.SubmitScreening(request, timeout=60)
            sent[answer.screening_id] = at

        started = time.monotonic()
        tasks = []
        for i in range(int(rate * seconds)):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return sent


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid(bootstrap: str) -> int | None:
    """The local broker's process (the one listening on the bootstrap port), when it runs here."""
    port = bootstrap.rsplit(":", 1)[-1]
    try:
        found = subprocess.run(["fuser", f"{port}/tcp"], capture_output=True, text=True, check=False)
    except FileNotFoundError:  # no psmisc here: the broker's share is left out
        return None
    pids = found.stdout.split()
    return int(pids[0]) if pids else None


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items() if Path(f"/proc/{pid}").exists()}


def register_webhook(stack: Stack, url: str, secret_file: Path) -> None:
    with stack.channel("notifications", "cbo-pantry") as channel:
        created = notifications_pb2_grpc.NotificationServiceStub(channel).RegisterChannel(
            notifications_pb2.RegisterChannelRequest(
                partner_id="cbo-pantry", kind=notifications_pb2.CHANNEL_KIND_WEBHOOK, address=url
            ),
            timeout=5,
        )
    secret_file.write_text(created.secret)


def run(bootstrap: str, postgres_server: str | None) -> list[Figure]:
    rate = float(os.environ.get("BENCH_LOOP_RATE", "50"))
    seconds = float(os.environ.get("BENCH_LOOP_SECONDS", "30"))
    only = os.environ.get("BENCH_LOOP_BACKENDS", "sqlite")
    figures: list[Figure] = []
    os.environ["NOTIFY_WEBHOOK_ALLOWLIST"] = "127.0.0.1"
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        pki = create_pki(work / "pki", list(TEST_PARTNER_ROLES))
        os.environ["ACH_PKI_DIR"] = str(pki.directory)
        namespace = f"bench-loop-{uuid.uuid4().hex[:8]}"
        os.environ["ACH_KAFKA_NAMESPACE"] = namespace
        for backend in [b for b in backends(postgres_server) if b in only.split(",")]:
            with bench_stack(
                work, backend, ("identity", *SERVICES), bootstrap, namespace, pki, postgres_server
            ) as stack:
                stack.start(*SERVICES)
                stack.add_pantry()
                residents = [
                    stack.consenting_resident("clinic-1", need_domains=("food-insecurity",))
                    for _ in range(RESIDENTS)
                ]
                stack.wait_consents_replicated(RESIDENTS)
                log, secret = work / f"{backend}-webhooks.log", work / f"{backend}-secret"
                sink, port = start_sink(log, secret)
                try:
                    register_webhook(stack, f"http://127.0.0.1:{port}/hook", secret)
                    pids = {n: p.process.pid for n, p in stack.services.items() if p.process is not None}
                    pids |= {"webhook receiver": sink.pid, "bench client": os.getpid()}
                    if (broker := broker_pid(bootstrap)) is not None:
                        pids["kafka broker"] = broker
                    cpu_before = cpu_of(pids)
                    started = time.time()
                    sent = asyncio.run(offer_load(stack, residents, rate, seconds))
                    stopped = time.time()
                    by_screening = dict(
                        stack.query("referrals", "SELECT screening_id, id FROM referral")  # type: ignore[arg-type]
                    )
                    landed_by_stop = sum(1 for at in arrivals(log).values() if at <= stopped)
                    expected = {by_screening.get(s, "") for s in sent} - {""}
                    eventually(functools.partial(all_arrived, expected, log), 300, "every referral's webhook")
                    cpu_used = {n: cpu - cpu_before[n] for n, cpu in cpu_of(pids).items()}
                    got = arrivals(log)
                    drained = max(got[r] for r in expected) - stopped
                    latencies = [
                        (got[by_screening[s]] - at) * 1000 for s, at in sent.items() if s in by_screening
                    ]
                    during = sum(1 for at in got.values() if started <= at <= stopped) / (stopped - started)
                finally:
                    sink.terminate()
                    sink.wait()
            figures += [
                Figure(
                    f"loop.screening_to_webhook_p50.{backend} ({rate:g}/s for {seconds:g} s)",
                    statistics.median(latencies),
                    "ms",
                ),
                Figure(f"loop.screening_to_webhook_p99.{backend}", p99(latencies), "ms"),
                Figure(f"loop.webhooks_per_s_during_load.{backend}", during, "events/s", "offered", rate),
                Figure(
                    f"loop.backlog_at_stop.{backend}",
                    len(expected) - landed_by_stop,
                    "webhooks",
                    "screenings sent",
                    len(sent),
                ),
                Figure(f"loop.drained_after_stop.{backend}", drained * 1000, "ms"),
            ]
            # Where the machine's CPU went, per screening sent (from the load's start until every
            # webhook arrived): what to make cheaper when the latency grows with the rate.
            figures += [
                Figure(f"loop.cpu_per_screening.{backend}.{name}", used * 1000 / len(sent), "ms CPU")
                for name, used in sorted(cpu_used.items(), key=lambda item: -item[1])
            ]
    return figures
