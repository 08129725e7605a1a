"""A bad DATABASE_URL, an unreachable broker, an unmigrated database or a bad setting: the service
fails fast with one clear message and a non-zero exit, never a stack trace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ach_platform import migrations

from tests.harness import ROOT, free_port


def run_service(env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    return subprocess.run(
        [sys.executable, "-m", "ach_screening.main", "serve"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
    )


def migrated_sqlite(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'screening.db'}"
    migrations.upgrade(ROOT / "services/screening/ach_screening/migrations", url)
    return url


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "mysql://db/screening"}, "DATABASE_URL scheme 'mysql' is not supported"),
        (
            {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
            "cannot use database postgresql+psycopg://nobody@127.0.0.1:1/none",
        ),
        ({"GRPC_PORT": "http"}, "GRPC_PORT='http' is not a port number"),
        ({"GRPC_PORT": "7051", "TOKEN_PORT": "7051"}, "TOKEN_PORT and GRPC_PORT are both 7051"),
        (
            {"KAFKA_BOOTSTRAP_SERVERS": "localhost"},
            "KAFKA_BOOTSTRAP_SERVERS entry 'localhost' is not host:port",
        ),
    ],
)
def test_bad_settings_fail_fast(env: dict[str, str], message: str, tmp_path: Path) -> None:
    result = run_service({"ACH_DATA_DIR": str(tmp_path), "ACH_CONNECT_TIMEOUT_S": "3", **env})
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unmigrated_database_is_named(tmp_path: Path) -> None:
    result = run_service({"DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}", "ACH_CONNECT_TIMEOUT_S": "3"})
    assert result.returncode == 2
    assert "has no table 'outbox_event': run the migrations first (make migrate)" in result.stderr


def test_unreachable_broker_fails_fast(tmp_path: Path) -> None:
    result = run_service(
        {
            "DATABASE_URL": migrated_sqlite(tmp_path),
            "ACH_CONNECT_TIMEOUT_S": "3",
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        }
    )
    assert result.returncode == 2
    assert "Kafka broker unreachable at 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_certificates_are_named(tmp_path: Path) -> None:
    result = run_service({"DATABASE_URL": migrated_sqlite(tmp_path), "ACH_PKI_DIR": str(tmp_path / "no-pki")})
    assert result.returncode == 2
    assert (
        f"ACH_TLS_CERT: no file at {tmp_path / 'no-pki' / 'server.pem'} (for the local stack: make certs)"
        in result.stderr
    )
