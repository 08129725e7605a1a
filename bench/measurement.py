"""Measurement's projection: (1) a rebuild of the facts from BENCH_MEASURE_N events (1,000,000 by
default) by ``ach-measurement rebuild`` into a fresh SQLite database, events/s beside a raw aiokafka
consume of the same topics in the same run, and the rebuild's peak memory; (2) live projection lag
at BENCH_MEASURE_RATE events/s (50) for BENCH_MEASURE_SECONDS (30): from an event's send to its fact
being stored, p50 and p99."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ach_events.envelope import Envelope
from ach_events.topics import ALL_TOPICS, ensure_topics, namespaced
from ach_measurement import subscribers
from ach_measurement.synthetic import events_of, sample_facts
from ach_platform.dev_pki import create as create_pki
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.results import Figure
from bench.stacks import bench_stack, p99

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {
    "ach.screening.events.v1": "/ach/screening",
    "ach.screening.demographics.v1": "/ach/screening",
    "ach.referrals.events.v1": "/ach/referrals",
    "ach.notifications.events.v1": "/ach/notifications",
}
PER_CHUNK = 10_000  # screenings per generated chunk (about 50,000 events)


async def produce_network(bootstrap: str, n: int) -> int:
    """About ``n`` events of a made-up network, generated and sent a chunk at a time."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    sent = 0
    try:
        chunk = 0
        while sent < n:
            facts = sample_facts(seed=chunk, screenings=PER_CHUNK, months=12, prefix=f"b{chunk}-")
            for topic, key, message in events_of(facts):
                if sent >= n:
                    break
                envelope = Envelope.wrap(message, source=SOURCES[topic], key=key)
                await producer.send(
                    namespaced(topic), envelope.payload, key=key.encode(), headers=envelope.headers()
                )
                sent += 1
            chunk += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def raw_consume(bootstrap: str) -> tuple[int, float]:
    """Every record of the measurement topics, read and decoded as envelopes, as fast as aiokafka goes."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(t.physical_name, p) for t in subscribers.TOPICS for p in range(t.partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        total = sum(ends.values())
        seen = 0
        started = time.perf_counter()
        while seen < total:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for r in records:
                    Envelope.from_record(r.key, r.value, r.headers).message()
                seen += len(records)
        return seen, seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def service_command(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ach_measurement.main", *arguments],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )


def high_water_kb(pid: int) -> int:
    """A running process's peak resident memory so far (kB), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rebuild_figures(bootstrap: str, n: int, work: Path) -> list[Figure]:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{work / 'rebuild.db'}",
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
    }
    ensure_topics(bootstrap, ALL_TOPICS)
    sent = asyncio.run(produce_network(bootstrap, n))
    read, raw_rate = asyncio.run(raw_consume(bootstrap))
    service_command(env, "migrate")
    started = time.perf_counter()
    rebuild = subprocess.Popen(
        [sys.executable, "-m", "ach_measurement.main", "rebuild", "--quiet"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    # The child's own peak (VmHWM of its memory after exec): its rusage maxrss would also count the
    # bench process it was forked from, large after producing the events.
    peak_kb = 0
    while rebuild.poll() is None:
        peak_kb = max(peak_kb, high_water_kb(rebuild.pid))
        time.sleep(0.05)
    status = rebuild.returncode
    seconds = time.perf_counter() - started
    summary = rebuild.stdout.read() if rebuild.stdout else ""
    if status != 0:
        raise RuntimeError(f"ach-measurement rebuild failed ({status})")
    peak_mb = peak_kb / 1024
    print(f"bench: measurement: {summary.strip()}", file=sys.stderr)
    return [
        Figure(f"measurement.raw_consume ({read:,} events)", raw_rate, "events/s"),
        Figure(
            f"measurement.rebuild ({sent:,} events)",
            sent / seconds,
            "events/s",
            "raw aiokafka consume",
            raw_rate,
        ),
        Figure("measurement.rebuild_peak_memory", peak_mb, "MB"),
    ]


def lag_figures(
    bootstrap: str, postgres_server: str | None, rate: float, seconds: float, work: Path
) -> list[Figure]:
    pki = create_pki(work / "pki", [])
    os.environ["ACH_PKI_DIR"] = str(pki.directory)
    facts = sample_facts(seed=99, screenings=int(rate * seconds), months=1, prefix="lag-")
    screenings = [
        (topic, key, m) for topic, key, m in events_of(facts) if type(m).__name__ == "ScreeningCompleted"
    ]
    with bench_stack(
        work, "sqlite", ["identity", "measurement"], bootstrap, os.environ["ACH_KAFKA_NAMESPACE"], pki, None
    ) as stack:
        stack.start("measurement")
        database = stack.services["measurement"].database_url.removeprefix("sqlite:///")

        async def send_and_watch() -> list[float]:
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
            await producer.start()
            sent_at: list[float] = []
            try:

                async def send() -> None:
                    for topic, key, message in screenings:
                        envelope = Envelope.wrap(message, source=SOURCES[topic], key=key)
                        sent_at.append(time.perf_counter())
                        await producer.send_and_wait(
                            namespaced(topic), envelope.payload, key=key.encode(), headers=envelope.headers()
                        )
                        await asyncio.sleep(max(0.0, sent_at[0] + len(sent_at) / rate - time.perf_counter()))

                async def watch() -> list[float]:
                    stored_at: list[float] = []
                    with sqlite3.connect(database) as conn:
                        while len(stored_at) < len(screenings):
                            count = conn.execute("SELECT COUNT(*) FROM screening_fact").fetchone()[0]
                            now = time.perf_counter()
                            stored_at += [now] * (count - len(stored_at))
                            await asyncio.sleep(0.02)
                    return stored_at

                _, stored = await asyncio.gather(send(), watch())
            finally:
                await producer.stop()
            return [(b - a) * 1000 for a, b in zip(sent_at, stored, strict=True)]

        lags = asyncio.run(send_and_watch())
    ordered = sorted(lags)
    return [
        Figure(
            f"measurement.live_lag_p50 ({rate:g} events/s for {seconds:g} s)",
            ordered[len(ordered) // 2],
            "ms",
        ),
        Figure("measurement.live_lag_p99", p99(lags), "ms"),
    ]


def run(bootstrap: str, postgres_server: str | None) -> list[Figure]:
    n = int(os.environ.get("BENCH_MEASURE_N", "1000000"))
    rate = float(os.environ.get("BENCH_MEASURE_RATE", "50"))
    seconds = float(os.environ.get("BENCH_MEASURE_SECONDS", "30"))
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        os.environ["ACH_KAFKA_NAMESPACE"] = f"bench-{uuid.uuid4().hex[:8]}"
        figures += rebuild_figures(bootstrap, n, work)
        os.environ["ACH_KAFKA_NAMESPACE"] = f"bench-{uuid.uuid4().hex[:8]}"
        figures += lag_figures(bootstrap, postgres_server, rate, seconds, work)
    return figures
