"""A no-op unary method served two ways on the same mutual TLS, each in its own process: bare
grpcio, and behind the platform's whole chain (tracing, error mapping, audit to Kafka,
authentication, authorization against the partner registry, metrics), as every service serves its
methods. The request names a resident (GetResidentRequest), so the audited rule records the access
as it does for every resident-level call.

Usage: python -m bench.chain bare|chain|unaudited PORT PKI_DIR BOOTSTRAP"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from ach.residents.v1 import residents_pb2
from ach_events.audit_trail import KafkaAuditSink
from ach_events.kafka_clients import idempotent_producer
from ach_events.topics import AUDIT_EVENTS, ensure_topics
from ach_platform.access import ANY, POLICY, PartnerView, Rule
from ach_platform.auth import AuthSettings
from ach_platform.dev_pki import DevPki
from ach_platform.dev_pki import create as create_pki
from ach_platform.grpc_server import GrpcServer
from ach_platform.telemetry import setup_telemetry
from google.protobuf import empty_pb2

from bench.results import Figure
from tests.harness import free_port

SERVICE = "ach.bench.v1.Bench"
METHOD = f"/{SERVICE}/Nothing"
PARTNERS = {"clinic-1": PartnerView("clinic-1", "clinic", frozenset({"screener"}), True)}


async def nothing(
    request: residents_pb2.GetResidentRequest, context: grpc.aio.ServicerContext
) -> empty_pb2.Empty:
    return empty_pb2.Empty()


def register(server: grpc.aio.Server) -> None:
    handler = grpc.unary_unary_rpc_method_handler(
        nothing,
        request_deserializer=residents_pb2.GetResidentRequest.FromString,
        response_serializer=empty_pb2.Empty.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Nothing": handler}),))


def credentials(pki: DevPki) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.partners_ca_cert.read_bytes(),
        require_client_auth=True,
    )


async def serve(mode: str, port: int, pki: DevPki, bootstrap: str) -> None:
    if mode == "bare":
        server = grpc.aio.server()
        register(server)
        server.add_secure_port(f"127.0.0.1:{port}", credentials(pki))
        await server.start()
        await server.wait_for_termination()
        return
    setup_telemetry("bench", 0)  # the SDK's tracer and meter, as a service has them
    ensure_topics(bootstrap, (AUDIT_EVENTS,))
    producer = idempotent_producer(bootstrap, "bench-chain")
    await producer.start()
    audited = mode == "chain"
    rule = Rule(roles=frozenset({ANY}), audit_ids=("resident_id",) if audited else ())
    auth = AuthSettings(
        server_cert=pki.server_cert,
        server_key=pki.server_key,
        client_ca=pki.partners_ca_cert,
        jwks=pki.jwks,
    )
    platform = GrpcServer(
        port,
        [register],
        [SERVICE],
        auth=auth,
        partners=PARTNERS,
        policy={**POLICY, METHOD: rule},
        audit=KafkaAuditSink(producer, "bench"),
        service="bench",
    )
    await platform.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2]), DevPki(Path(sys.argv[3])), sys.argv[4]))


async def calls_per_second(address: str, pki: DevPki, clients: int, per_client: int) -> float:
    """``clients`` concurrent callers (one channel each, as clinic-1), ``per_client`` calls each."""
    from ach_platform.grpc_client import partner_aio_channel

    request = residents_pb2.GetResidentRequest(resident_id="resident-1")

    async def client() -> None:
        async with partner_aio_channel(
            address, pki.ca_cert, cert=pki.client_cert("clinic-1"), key=pki.client_key("clinic-1")
        ) as channel:
            call = channel.unary_unary(
                METHOD,
                request_serializer=residents_pb2.GetResidentRequest.SerializeToString,
                response_deserializer=empty_pb2.Empty.FromString,
            )
            await call(request, timeout=30)  # warm: the TLS handshake is not what is measured
            for _ in range(per_client):
                await call(request, timeout=30)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return clients * per_client / (time.perf_counter() - started)


def start(mode: str, pki: DevPki, bootstrap: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.chain", mode, str(port), str(pki.directory), bootstrap],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, f"127.0.0.1:{port}"


async def until_serving(address: str, pki: DevPki, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await calls_per_second(address, pki, 1, 1)
            return
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def run(bootstrap: str) -> list[Figure]:
    """Calls/s of the no-op, bare and behind the chain (audited, and with no audit record), each
    the median of ROUNDS interleaved rounds in the same run: the machine's drift falls on all."""
    clients = int(os.environ.get("BENCH_CLIENTS", "8"))
    per_client = int(os.environ.get("BENCH_CALLS", "300"))
    rounds = int(os.environ.get("BENCH_CHAIN_ROUNDS", "3"))
    modes = ("bare", "chain", "unaudited")
    with tempfile.TemporaryDirectory() as scratch:
        pki = create_pki(Path(scratch) / "pki", ["clinic-1"])
        servers = {mode: start(mode, pki, bootstrap) for mode in modes}
        try:
            rates: dict[str, list[float]] = {mode: [] for mode in modes}

            async def measure() -> None:
                for _, address in servers.values():
                    await until_serving(address, pki)
                for _ in range(rounds):
                    for mode, (_, address) in servers.items():
                        rates[mode].append(await calls_per_second(address, pki, clients, per_client))

            asyncio.run(measure())
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait()
    bare = statistics.median(rates["bare"])
    label = f"{clients} clients x {per_client} calls, median of {rounds}"
    return [
        Figure(f"chain.noop_bare_grpcio ({label})", bare, "calls/s"),
        Figure(
            "chain.noop_behind_full_chain_audited",
            statistics.median(rates["chain"]),
            "calls/s",
            "bare grpcio",
            bare,
        ),
        Figure(
            "chain.noop_behind_chain_unaudited",
            statistics.median(rates["unaudited"]),
            "calls/s",
            "bare grpcio",
            bare,
        ),
    ]
