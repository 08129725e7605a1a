"""Runs ACH services as real processes for end-to-end tests: own ports, own databases, own Kafka
namespace, traces to a JSON-lines file."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psycopg
from ach.directory.v1 import directory_pb2, directory_pb2_grpc
from ach.identity.v1 import identity_pb2, identity_pb2_grpc
from ach.residents.v1 import residents_pb2, residents_pb2_grpc
from ach_platform import migrations
from ach_platform.codes import value_of
from ach_platform.dev_pki import DevPki, add_partner
from ach_platform.grpc_client import partner_channel
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

T = TypeVar("T")

# The partners every test stack registers (besides ach-backbone, bootstrapped with every role).
TEST_PARTNER_ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "clinic-1": ("clinic", ("screener", "referral-source")),
    "clinic-2": ("clinic", ("screener", "referral-source")),
    "cbo-pantry": ("cbo", ("referral-target",)),
    "cbo-1": ("cbo", ("referral-target",)),
    "cbo-2": ("cbo", ("referral-target",)),
    "funder-1": ("funder", ("fund-manager", "measurement-viewer")),
    # A CBO that screens at the door and both sends and receives referrals: the trust tests' outsider.
    "cbo-outreach": ("cbo", ("screener", "referral-source", "referral-target")),
}
ROOT = Path(__file__).resolve().parents[1]


def partner_name(partner_id: str) -> str:
    """The registered name of a test partner ("cbo-pantry" -> "Cbo Pantry")."""
    return partner_id.replace("-", " ").title()


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, and not one handed out before in this test run: by this process
    (the kernel may give a just-released port again) or, under pytest-xdist, by another worker or
    a process one started (claimed by a file only one of them can create)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out and _claimed_for_the_run(port):
            _handed_out.add(port)
            return port


def _claimed_for_the_run(port: int) -> bool:
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:
        return True
    claims = Path(tempfile.gettempdir()) / f"ach-test-ports-{run}"
    claims.mkdir(exist_ok=True)
    try:
        os.close(os.open(claims / str(port), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def eventually(check: Callable[[], T | None], timeout_s: float = 60, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (grpc.RpcError, AssertionError) as exc:
            last_error = exc
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout_s} s (last error: {last_error})")


@dataclass
class ServiceProcess:
    name: str
    grpc_port: int
    metrics_port: int
    database_url: str
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child writes to it until it exits)
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"ach_{self.name}.main", "serve"],
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    @property
    def health_address(self) -> str:
        return f"127.0.0.1:{self.env['HEALTH_PORT']}"

    def wait_healthy(self, timeout_s: float = 60) -> None:
        def serving() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            with grpc.insecure_channel(self.health_address) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        eventually(serving, timeout_s, f"{self.name} healthy")

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM, and the process must drain and exit by itself."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"{self.name} did not stop within {timeout_s} s after SIGTERM") from None
        return self.process.returncode

    def wait_exit(self, timeout_s: float = 30) -> int:
        assert self.process is not None
        return self.process.wait(timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


@dataclass
class Stack:
    workdir: Path
    kafka_bootstrap: str
    namespace: str
    database_urls: dict[str, str]
    pki: DevPki
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    # Spans to a JSON-lines file for the tests to read; off where it would distort (benchmarks).
    trace_to_file: bool = True

    @property
    def trace_file(self) -> Path:
        return self.workdir / "spans.jsonl"

    def add(self, name: str) -> ServiceProcess:
        url = self.database_urls[name]
        migrations.upgrade(ROOT / "services" / name / f"ach_{name}" / "migrations", url)
        env = {
            **{k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")},
            "DATABASE_URL": url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "ACH_KAFKA_NAMESPACE": self.namespace,
            "ACH_CONNECT_TIMEOUT_S": "30",
            "GRPC_PORT": str(free_port()),
            "HEALTH_PORT": str(free_port()),
            "TOKEN_PORT": str(free_port()),
            "METRICS_PORT": str(free_port()),
            "HTTP_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
            # Tests' webhook receivers and SMS gateway are plain http on loopback: named by the operator.
            "NOTIFY_WEBHOOK_ALLOWLIST": "127.0.0.1",
        }
        if name == "notifications" and "identity" in self.services:  # messages to residents
            env["NOTIFY_IDENTITY_ADDRESS"] = self.services["identity"].address
        if self.trace_to_file:
            env["ACH_TRACE_FILE"] = str(self.trace_file)
        service = ServiceProcess(
            name, int(env["GRPC_PORT"]), int(env["METRICS_PORT"]), url, self.workdir / f"{name}.log", env
        )
        self.services[name] = service
        return service

    def start(self, *names: str) -> None:
        """Start services; the partner registry first (with the test partners registered), since
        every service authorizes calls against it."""
        if "identity" not in self.services:
            self._start_registry()
        names = tuple(n for n in names if n != "identity")
        for name in names:
            (self.services.get(name) or self.add(name)).start()
        for name in names:
            self.services[name].wait_healthy()

    def _start_registry(self) -> None:
        identity = self.add("identity")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ach_identity.main",
                "bootstrap",
                "--admin",
                "ach-backbone",
                "--name",
                "Test backbone",
            ],
            env=identity.env,
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        identity.start()
        identity.wait_healthy()
        with self.channel("identity") as channel:
            registry = identity_pb2_grpc.PartnerRegistryStub(channel)
            for partner_id, (type_code, roles) in TEST_PARTNER_ROLES.items():
                registry.RegisterPartner(
                    identity_pb2.RegisterPartnerRequest(
                        partner_id=partner_id,
                        name=partner_name(partner_id),
                        type=value_of(identity_pb2.PartnerType, type_code),
                        roles=[value_of(identity_pb2.PartnerRole, r) for r in roles],
                    ),
                    timeout=10,
                )
        self.wait_registry_published()

    def count_rows(self, service: str, sql: str) -> int:
        """The first column of the first row of a count query on a service's own database."""
        rows = self.query(service, sql)
        return int(rows[0][0]) if rows else 0

    def query(self, service: str, sql: str) -> list[tuple[Any, ...]]:
        """The rows of a query on a service's own database."""
        url = make_url(self.database_urls[service])
        if url.get_backend_name() == "sqlite":
            with sqlite3.connect(url.database or "") as conn:
                return list(conn.execute(sql).fetchall())
        with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False)) as conn:
            return list(conn.execute(sql).fetchall())

    def execute(self, service: str, sql: str, params: tuple[Any, ...] = ()) -> None:
        """A statement on a service's own database, committed (to plant what an older version or an
        attacker left behind). Placeholders: ``?`` on SQLite, ``%s`` on PostgreSQL."""
        url = make_url(self.database_urls[service])
        if url.get_backend_name() == "sqlite":
            with sqlite3.connect(url.database or "") as conn:
                conn.execute(sql, params)
            return
        with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False)) as conn:
            conn.execute(sql, params)

    def wait_registry_published(self) -> None:
        """Until the registry's outbox is on Kafka: services started afterwards read it at start-up."""
        eventually(
            lambda: (
                self.count_rows("identity", "SELECT count(*) FROM outbox_event WHERE published_at IS NULL")
                == 0
            ),
            30,
            "the partner registry published",
        )

    def consenting_resident(
        self,
        partner: str = "clinic-1",
        need_domains: tuple[str, ...] = (),
        partners: tuple[str, ...] = (),
    ) -> str:
        """A resident registered by ``partner`` with an active consent to share (by default with
        every CBO for every need); returns the pseudonymous resident id."""
        return self.resident(partner, consent=True, need_domains=need_domains, partners=partners)

    def resident(
        self,
        partner: str = "clinic-1",
        consent: bool = False,
        need_domains: tuple[str, ...] = (),
        partners: tuple[str, ...] = (),
    ) -> str:
        """A resident registered by ``partner`` (and a consent, if asked); once the screening service
        runs, only after it knows the partner may screen the resident."""
        suffix = uuid.uuid4().hex[:8]
        with self.channel("identity", partner) as channel:
            registered = residents_pb2_grpc.ResidentIndexStub(channel).RegisterResident(
                residents_pb2.RegisterResidentRequest(
                    partner_resident_id=f"mrn-{suffix}",
                    demographics=residents_pb2.Demographics(
                        given_name=f"Test{suffix}",
                        family_name="Resident",
                        birth_date="1980-01-01",
                        phone="209-555-0100",
                        preferred_language="es",
                    ),
                ),
                timeout=10,
            )
            if consent:
                residents_pb2_grpc.ConsentRegistryStub(channel).RecordConsent(
                    residents_pb2.RecordConsentRequest(
                        resident_id=registered.resident_id,
                        scope=residents_pb2.ConsentScope(need_domains=need_domains, partner_ids=partners),
                        method=residents_pb2.CONSENT_METHOD_WRITTEN,
                    ),
                    timeout=10,
                )
        resident_id = str(registered.resident_id)
        self.wait_resident_known(resident_id, partner, consent)
        return resident_id

    def wait_resident_known(self, resident_id: str, partner: str, consent: bool = False) -> None:
        """Until the screening service (if it runs) knows ``partner`` may screen the resident."""
        screening = self.services.get("screening")
        if screening is None or screening.process is None or screening.process.poll() is not None:
            return
        links = (
            "SELECT count(*) FROM resident_link_replica "
            f"WHERE resident_id = '{resident_id}' AND partner_id = '{partner}'"
        )
        consents = f"SELECT count(*) FROM consent_replica WHERE resident_id = '{resident_id}'"
        eventually(
            lambda: (
                self.count_rows("screening", links) == 1
                and (not consent or self.count_rows("screening", consents) >= 1)
            ),
            30,
            "the resident known to the screening service",
        )

    def add_pantry(self) -> None:
        """The food pantry (cbo-pantry) in the directory, until the referral service's replica has it."""
        with self.channel("directory") as channel:
            directory_pb2_grpc.DirectoryServiceStub(channel).UpsertService(
                directory_pb2.UpsertServiceRequest(
                    service=directory_pb2.Service(
                        service_id="svc-pantry",
                        organization_id="cbo-pantry",
                        name="Food Pantry",
                        need_domains=["food-insecurity"],
                        languages=["en", "es"],
                        capacity_available=10,
                        capacity_maximum=10,
                    )
                ),
                timeout=10,
            )
        eventually(
            lambda: self.count_rows("referrals", "SELECT count(*) FROM directory_service_replica") == 1,
            what="the referral service's directory replica",
        )

    def wait_consents_replicated(self, n: int) -> None:
        """Until the referral service holds ``n`` consents: screenings submitted afterwards are routed
        under them (not drafted first and routed when the consent arrives)."""
        eventually(
            lambda: self.count_rows("referrals", "SELECT count(*) FROM consent_replica") >= n,
            30,
            f"{n} consents in the referral service",
        )

    def channel(self, name: str, partner: str = "ach-backbone") -> grpc.Channel:
        """A TLS channel to a service, authenticated with ``partner``'s client certificate."""
        if not self.pki.client_cert(partner).is_file():
            add_partner(self.pki, partner)
        return partner_channel(
            self.services[name].address,
            self.pki.ca_cert,
            cert=self.pki.client_cert(partner),
            key=self.pki.client_key(partner),
        )

    def spans(self) -> list[dict[str, Any]]:
        if not self.trace_file.exists():
            return []
        return [json.loads(line) for line in self.trace_file.read_text().splitlines() if line.strip()]

    def stop_all(self) -> dict[str, int]:
        return {name: s.stop() for name, s in self.services.items() if s.process is not None}
