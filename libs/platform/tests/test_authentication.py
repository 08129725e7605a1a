"""Authentication over real TLS: mutual TLS on the gRPC port, bearer tokens (JWT) on the token port.
A call without valid credentials is UNAUTHENTICATED (or cannot even connect) and reaches no handler."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from ach_platform.access import ANY, PartnerView, Rule
from ach_platform.auth import AuthSettings, principal
from ach_platform.dev_pki import DevPki, _key, _write_key, create
from ach_platform.grpc_client import partner_aio_channel
from ach_platform.grpc_server import GrpcServer
from google.protobuf import empty_pb2, wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

handled: list[str] = []


async def who_am_i(_request: empty_pb2.Empty, _context: grpc.aio.ServicerContext) -> wrappers_pb2.StringValue:
    caller = principal()
    handled.append(caller.partner_id)
    return wrappers_pb2.StringValue(value=f"{caller.partner_id}/{caller.credential}/{caller.user_id}")


def register(server: grpc.aio.Server) -> None:
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Who",
                {
                    "AmI": grpc.unary_unary_rpc_method_handler(
                        who_am_i,
                        request_deserializer=empty_pb2.Empty.FromString,
                        response_serializer=wrappers_pb2.StringValue.SerializeToString,
                    ),
                },
            ),
        )
    )


class Running:
    def __init__(self, pki: DevPki, server: GrpcServer) -> None:
        self.pki = pki
        self.server = server

    @property
    def mtls(self) -> str:
        return f"127.0.0.1:{self.server.bound_port}"

    @property
    def token(self) -> str:
        return f"127.0.0.1:{self.server.bound_token_port}"

    async def call(self, address: str, **credentials: object) -> str:
        async with partner_aio_channel(address, self.pki.ca_cert, **credentials) as channel:  # type: ignore[arg-type]
            method = channel.unary_unary(
                "/test.Who/AmI",
                request_serializer=empty_pb2.Empty.SerializeToString,
                response_deserializer=wrappers_pb2.StringValue.FromString,
            )
            reply = await method(empty_pb2.Empty(), timeout=5)
            return str(reply.value)

    async def refused(self, address: str, **credentials: object) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await self.call(address, **credentials)
        return caught.value


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    pki = create(tmp_path / "pki", ["clinic-1"])
    settings = AuthSettings(
        server_cert=pki.server_cert,
        server_key=pki.server_key,
        client_ca=pki.partners_ca_cert,
        jwks=pki.jwks,
        issuer="https://ach.local/issuer",
        audience="ach-platform",
    )
    # Authentication is under test here; the access policy lets any registered partner call.
    partners = {p: PartnerView(p, "cbo", frozenset({"referral-target"}), True) for p in ("clinic-1", "cbo-7")}
    server = GrpcServer(
        0,
        [register],
        [],
        auth=settings,
        partners=partners,
        policy={"/test.Who/AmI": Rule(roles=frozenset({ANY}))},
        token_port=0,
        health_port=0,
    )
    await server.start()
    handled.clear()
    yield Running(pki, server)
    await server.stop(0)


async def test_mutual_tls_names_the_partner(running: Running) -> None:
    pki = running.pki
    assert (
        await running.call(running.mtls, cert=pki.client_cert("clinic-1"), key=pki.client_key("clinic-1"))
        == "clinic-1/mtls/"
    )


async def test_no_client_certificate_cannot_connect_to_the_mtls_port(running: Running) -> None:
    error = await running.refused(running.mtls)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert handled == []


async def test_certificate_from_another_ca_is_refused(running: Running, tmp_path: Path) -> None:
    other = create(tmp_path / "other", ["clinic-1"])
    error = await running.refused(
        running.mtls, cert=other.client_cert("clinic-1"), key=other.client_key("clinic-1")
    )
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert handled == []


async def test_bearer_token_names_the_partner_and_user(running: Running) -> None:
    token = running.pki.mint_token("cbo-7", user_id="caseworker-12")
    assert await running.call(running.token, token=token) == "cbo-7/jwt/caseworker-12"


@pytest.mark.parametrize(
    ("mint", "reason"),
    [
        ({}, "a client certificate or a bearer token is required"),
        ({"expired": True}, "token expired"),
        ({"audience": "another-platform"}, "token is for another audience"),
        ({"issuer": "https://evil.example/issuer"}, "token from an unknown issuer"),
    ],
)
async def test_bad_tokens_are_unauthenticated(running: Running, mint: dict[str, object], reason: str) -> None:
    token = running.pki.mint_token("cbo-7", **mint) if mint else None  # type: ignore[arg-type]
    error = await running.refused(running.token, token=token)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == reason
    assert handled == []


async def test_forged_token_is_unauthenticated(running: Running, tmp_path: Path) -> None:
    # Same key id as the real one, different private key: the signature does not verify.
    forged_key = tmp_path / running.pki.jwt_key.name
    _write_key(_key(), forged_key)
    error = await running.refused(running.token, token=running.pki.mint_token("cbo-7", key_path=forged_key))
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, "token is not valid")
    unknown_kid = tmp_path / "someone-elses-key.pem"
    _write_key(_key(), unknown_kid)
    error = await running.refused(running.token, token=running.pki.mint_token("cbo-7", key_path=unknown_kid))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "token signed with an unknown key",
    )


async def test_signing_keys_rotate_without_restart(running: Running) -> None:
    import jwt

    new_key_path = running.pki.directory / "jwt-key-2027.pem"
    new_key = _key()
    _write_key(new_key, new_key_path)
    assert (
        await running.refused(running.token, token=running.pki.mint_token("cbo-7", key_path=new_key_path))
    ).code() == grpc.StatusCode.UNAUTHENTICATED
    jwks = json.loads(running.pki.jwks.read_text())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(new_key.public_key()))
    jwks["keys"].append({**jwk, "kid": new_key_path.stem, "alg": "ES256", "use": "sig"})
    running.pki.jwks.write_text(json.dumps(jwks))
    import os
    import time

    os.utime(running.pki.jwks, (time.time() + 5, time.time() + 5))  # a new mtime even within one second
    assert (
        await running.call(running.token, token=running.pki.mint_token("cbo-7", key_path=new_key_path))
        == "cbo-7/jwt/"
    )


async def test_health_is_open_on_the_plaintext_probe_port(running: Running) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.server.bound_health_port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
