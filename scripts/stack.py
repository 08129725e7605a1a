"""The local stack: broker, migrations, every service, demo data — under one supervisor (honcho).

Run by `make run`. Ctrl-C stops every process cleanly (SIGTERM, then a kill after a grace period).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from honcho.manager import Manager
from honcho.printer import Printer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from ach_identity.main import bootstrap  # noqa: E402
from ach_platform import dev_pki, migrations  # noqa: E402
from ach_platform.auth import AuthSettings  # noqa: E402
from ach_platform.settings import DEFAULT_PORTS, ConfigError, ServiceSettings, kafka_bootstrap_servers  # noqa: E402
from demo_data import BACKBONE, DEMO_CBOS, PARTNERS, load, load_fund, register_partners  # noqa: E402

SERVICES = list(DEFAULT_PORTS)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def ensure_pki() -> dev_pki.DevPki:
    """The local stack runs with authentication on: a development CA and a certificate per demo
    partner under ACH_PKI_DIR (default .data/pki), made once."""
    directory = Path(os.environ.get("ACH_PKI_DIR", ROOT / ".data" / "pki"))
    pki = dev_pki.DevPki(directory)
    if not pki.ca_cert.is_file():
        dev_pki.create(directory, PARTNERS)
        print(f"stack: created a development PKI in {directory}", flush=True)
    for partner in PARTNERS:
        if not pki.client_cert(partner).is_file():
            dev_pki.add_partner(pki, partner)
    return pki


def wait_serving(addr: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with grpc.insecure_channel(addr) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
        except grpc.RpcError:
            pass
        time.sleep(0.5)
    return False


def announce(pki: dev_pki.DevPki) -> None:
    deadline = time.monotonic() + 180
    settings = {name: ServiceSettings.from_env(name) for name in SERVICES}
    # Plain sockets first: gRPC's threads must not be running in this process while the supervisor
    # is still forking the services (a fork then can abort the child inside gRPC's poller).
    for name in SERVICES:
        while not port_open("127.0.0.1", settings[name].health_port) and time.monotonic() < deadline:
            time.sleep(0.5)
    for name in SERVICES:
        if not wait_serving(f"127.0.0.1:{settings[name].health_port}", deadline):
            print(f"stack: {name} did not become healthy; see its log lines above", file=sys.stderr)
            return
    try:
        lines = register_partners(pki, f"127.0.0.1:{settings['identity'].grpc_port}")
        lines += load(
            pki,
            f"127.0.0.1:{settings['identity'].grpc_port}",
            f"127.0.0.1:{settings['directory'].grpc_port}",
            f"127.0.0.1:{settings['screening'].grpc_port}",
        )
        lines += load_fund(pki, f"127.0.0.1:{settings['funding'].grpc_port}")
    except grpc.RpcError as exc:
        lines = [f"demo data not loaded: {exc.code().name}: {exc.details()}"]  # type: ignore[attr-defined]
    lines.append(load_directory(settings["directory"].database_url))
    lines.append(load_indicators(settings["measurement"].database_url))
    table = [
        "",
        "ACH platform is up. Demo data:",
        *[f"  - {line}" for line in lines],
        "",
        f"  {'service':<14} {'gRPC (TLS)':<18} {'health (plain)':<18} {'metrics (Prometheus)'}",
    ]
    for name in SERVICES:
        s = settings[name]
        table.append(
            f"  {name:<14} 127.0.0.1:{s.grpc_port:<8} 127.0.0.1:{s.health_port:<8} "
            f"http://127.0.0.1:{s.metrics_port}/metrics"
        )
    table += [
        f"  {'HSDS API':<14} http://127.0.0.1:{settings['directory'].http_port}/services (read-only)",
        f"  {'scorecard':<14} http://127.0.0.1:{settings['measurement'].http_port}/en/ "
        f"(public page; /es/ en español)",
        f"  {'kafka':<14} {kafka_bootstrap_servers()}",
        "",
        "  Calls need a partner's client certificate (or a bearer token); the demo partners' are in",
        f"  {pki.directory}:",
        f"  grpcurl -cacert {pki.ca_cert} -cert {pki.client_cert('ach-backbone')} \\",
        f"    -key {pki.client_key('ach-backbone')} 127.0.0.1:7054 "
        "ach.measurement.v1.MeasurementService/GetScorecard",
        "  Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(table), flush=True)


def load_indicators(database_url: str) -> str:
    """The sample population indicator files (illustrative figures, in the publishers' formats), so
    the example scorecards have a history (importing them again changes nothing)."""
    from ach_measurement.main import load_sample_indicators

    return asyncio.run(load_sample_indicators(database_url))


def load_directory(database_url: str, services: int = 300) -> str:
    """A generated HSDS directory (the same every time: re-importing it changes nothing). A few of
    its organizations are the demo CBOs (linked by an "ach-partner" identifier): their services
    receive referrals; the rest are plain 2-1-1 entries, given to residents as information."""
    from ach_directory.hsds_catalog import load_catalog
    from ach_directory.hsds_files import write_package
    from ach_directory.main import import_directory
    from ach_directory.sample_package import generate, link_partners

    rows = generate(services, seed=7)
    links = link_partners(rows, DEMO_CBOS)
    linked = sum(1 for s in rows["service"] if s["organization_id"] in links)
    with tempfile.TemporaryDirectory() as scratch:
        package = Path(scratch) / "directory"
        write_package(package, load_catalog().entities, rows)
        report = asyncio.run(import_directory(database_url, package, show_progress=False))
    return (
        f"directory: {services} generated HSDS services ({report.services_changed} new or changed), "
        f"searchable and on the HSDS API; {linked} of them run by demo partners"
        f" ({', '.join(links.values())}), the others plain 2-1-1 entries"
        " (information for residents, no referrals)"
    )


def main() -> int:
    os.environ.setdefault("ACH_CONNECT_TIMEOUT_S", "120")  # services wait for the broker to come up
    # A developer's partner endpoints on this machine are plain http (deployments require https).
    os.environ.setdefault("NOTIFY_WEBHOOK_ALLOWLIST", "127.0.0.0/8,::1,localhost")
    # Messages to residents: notifications asks the local identity service for addresses (an SMS
    # gateway or SMTP server of your own goes in SMS_GATEWAY_URL / SMTP_HOST).
    os.environ.setdefault(
        "NOTIFY_IDENTITY_ADDRESS",
        os.environ.get("IDENTITY_GRPC_ADDR", f"127.0.0.1:{DEFAULT_PORTS['identity'][0]}"),
    )
    pki = ensure_pki()
    os.environ["ACH_PKI_DIR"] = str(pki.directory)
    if "--certs-only" in sys.argv:
        return 0
    try:
        AuthSettings.from_env()  # fail here, once, rather than in every service
        for name in SERVICES:
            migrations.upgrade(
                ROOT / "services" / name / f"ach_{name}" / "migrations",
                ServiceSettings.from_env(name).database_url,
            )
        servers = kafka_bootstrap_servers()
        print(f"stack: {asyncio.run(bootstrap(BACKBONE, 'ACH backbone (demo)'))}", flush=True)
    except ConfigError as exc:
        print(f"stack: error: {exc}", file=sys.stderr)
        return 2
    print(f"stack: databases migrated ({len(SERVICES)} services)", flush=True)

    venv_bin = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    manager = Manager(Printer(sys.stdout))
    # exec: each process itself gets the SIGTERM and reports its own exit code, not a shell's.
    if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        if port_open("127.0.0.1", 9092):
            print("stack: using the Kafka broker already listening on 127.0.0.1:9092", flush=True)
        else:
            manager.add_process(
                "kafka", f"exec {ROOT / 'scripts/kafka/broker.sh'} run", env=env, cwd=str(ROOT)
            )
    else:
        print(f"stack: using Kafka at {servers}", flush=True)
    for name in SERVICES:
        manager.add_process(name, f"exec ach-{name} serve", env=env, cwd=str(ROOT))
    threading.Thread(target=announce, args=(pki,), daemon=True).start()
    manager.loop()
    return manager.returncode or 0


if __name__ == "__main__":
    raise SystemExit(main())
