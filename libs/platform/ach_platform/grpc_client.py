"""Channels to ACH services as a partner: TLS with the partner's client certificate (mTLS) or with
a bearer token. Used by the CLI, the local stack's demo loader and the tests."""

from __future__ import annotations

from pathlib import Path

import grpc


def credentials(
    ca: Path, *, cert: Path | None = None, key: Path | None = None, token: str | None = None
) -> grpc.ChannelCredentials:
    tls = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )
    if token:
        return grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(token))
    return tls


def partner_channel(
    address: str, ca: Path, *, cert: Path | None = None, key: Path | None = None, token: str | None = None
) -> grpc.Channel:
    return grpc.secure_channel(address, credentials(ca, cert=cert, key=key, token=token))


def partner_aio_channel(
    address: str, ca: Path, *, cert: Path | None = None, key: Path | None = None, token: str | None = None
) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(address, credentials(ca, cert=cert, key=key, token=token))
