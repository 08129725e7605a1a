"""Who is calling: every gRPC call is authenticated, by mutual TLS (the partner id from the client
certificate's SAN URI urn:ach:partner:<id>) or by a signed bearer token (JWT: signature from a
rotatable JWKS, issuer, audience and expiry checked; partner id = ``sub``). A call without valid
credentials is UNAUTHENTICATED and reaches no handler. Health checks and reflection stay open.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
from cryptography import x509
from pydantic import Field

from ach_platform.dev_pki import DEFAULT_AUDIENCE, DEFAULT_ISSUER, PARTNER_URI_PREFIX
from ach_platform.errors import Unauthenticated
from ach_platform.settings import ConfigError, Settings, environment, pki_dir

log = logging.getLogger(__name__)

OPEN_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)


@dataclass(frozen=True)
class Principal:
    partner_id: str
    user_id: str
    credential: str  # "mtls" or "jwt"
    certificate_serial: str = ""  # the client certificate's, lowercase hex (mTLS only)


current_principal: ContextVar[Principal | None] = ContextVar("current_principal", default=None)


def principal() -> Principal:
    """The authenticated caller of the current call (set by the interceptor before any handler runs)."""
    found = current_principal.get()
    if found is None:
        raise Unauthenticated("no authenticated caller")
    return found


class AuthSettings(Settings):
    """The service's TLS identity and whom it trusts: by default the development certificates
    under ACH_PKI_DIR (make certs)."""

    server_cert: Path = Field(Path(), validation_alias="ACH_TLS_CERT")
    server_key: Path = Field(Path(), validation_alias="ACH_TLS_KEY")
    client_ca: Path = Field(Path(), validation_alias="ACH_TLS_CLIENT_CA")
    jwks: Path | None = Field(None, validation_alias="ACH_JWT_JWKS")
    issuer: str = Field(DEFAULT_ISSUER, validation_alias="ACH_JWT_ISSUER")
    audience: str = Field(DEFAULT_AUDIENCE, validation_alias="ACH_JWT_AUDIENCE")

    @classmethod
    def from_env(cls) -> AuthSettings:
        """The settings, each file checked to be there."""
        pki = pki_dir()
        settings = cls.load(
            None,
            **{
                field: Path(environment().get(cls.variable(field)) or pki / default)
                for field, default in (
                    ("server_cert", "server.pem"),
                    ("server_key", "server-key.pem"),
                    ("client_ca", "partners-ca.pem"),
                    ("jwks", "jwks.json"),
                )
            },
        )
        for variable, path in (
            ("ACH_TLS_CERT", settings.server_cert),
            ("ACH_TLS_KEY", settings.server_key),
            ("ACH_TLS_CLIENT_CA", settings.client_ca),
        ):
            if not path.is_file():
                raise ConfigError(f"{variable}: no file at {path} (for the local stack: make certs)")
        if settings.jwks is not None and not settings.jwks.is_file():
            raise ConfigError(f"ACH_JWT_JWKS: no file at {settings.jwks} (for the local stack: make certs)")
        return settings

    def mtls_credentials(self) -> grpc.ServerCredentials:
        """For the main port: TLS that requires a client certificate from the partners' CA."""
        return grpc.ssl_server_credentials(
            [(self.server_key.read_bytes(), self.server_cert.read_bytes())],
            root_certificates=self.client_ca.read_bytes(),
            require_client_auth=True,
        )

    def token_credentials(self) -> grpc.ServerCredentials:
        """For the token port: server-side TLS only; the caller must bring a bearer token.
        (gRPC cannot ask for an optional client certificate, hence a port of its own.)"""
        return grpc.ssl_server_credentials([(self.server_key.read_bytes(), self.server_cert.read_bytes())])


class TokenVerifier:
    """Verifies bearer tokens against a JWKS file, re-read when it changes (key rotation)."""

    def __init__(self, jwks: Path, issuer: str, audience: str) -> None:
        self._jwks_path = jwks
        self._issuer = issuer
        self._audience = audience
        self._mtime = -1.0
        self._keys: dict[str, Any] = {}

    def _load(self) -> None:
        mtime = self._jwks_path.stat().st_mtime
        if mtime != self._mtime:
            document = json.loads(self._jwks_path.read_text())
            self._keys = {k["kid"]: jwt.PyJWK(k) for k in document.get("keys", []) if "kid" in k}
            self._mtime = mtime

    def verify(self, token: str) -> Principal:
        try:
            self._load()
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._keys.get(kid or "")
            if key is None:
                raise Unauthenticated("token signed with an unknown key")
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["ES256", "RS256"],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("token from an unknown issuer") from None
        except jwt.PyJWTError:
            raise Unauthenticated("token is not valid") from None
        return Principal(
            partner_id=str(claims["sub"]), user_id=str(claims.get("ach_user", "")), credential="jwt"
        )


def partner_from_certificate(auth_context: dict[str, list[bytes]]) -> str | None:
    for san in auth_context.get("x509_subject_alternative_name", []):
        value = san.decode(errors="replace")
        if value.startswith(PARTNER_URI_PREFIX):
            return value.removeprefix(PARTNER_URI_PREFIX)
    return None


@functools.lru_cache(maxsize=4096)
def serial_of(pem: bytes) -> str:
    """A certificate's serial number, lowercase hex (parsed once per certificate)."""
    if not pem:
        return ""
    return format(x509.load_pem_x509_certificate(pem).serial_number, "x")


class Authenticator:
    def __init__(self, settings: AuthSettings) -> None:
        self._tokens = (
            TokenVerifier(settings.jwks, settings.issuer, settings.audience) if settings.jwks else None
        )

    def authenticate(self, context: grpc.aio.ServicerContext) -> Principal:
        metadata = {k: v for k, v in (context.invocation_metadata() or ())}
        header = metadata.get("authorization", "")
        user = str(metadata.get("x-ach-user", ""))
        auth_context = context.auth_context()
        partner = partner_from_certificate(auth_context)
        if partner:
            pem = next(iter(auth_context.get("x509_pem_cert", [])), b"")
            return Principal(
                partner_id=partner, user_id=user, credential="mtls", certificate_serial=serial_of(pem)
            )
        if isinstance(header, str) and header.lower().startswith("bearer "):
            if self._tokens is None:
                raise Unauthenticated("bearer tokens are not accepted here")
            return self._tokens.verify(header[7:].strip())
        raise Unauthenticated("a client certificate or a bearer token is required")


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no types
    """Authenticates every unary call (but health and reflection) before its handler runs."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or handler_call_details.method in OPEN_METHODS:
            return handler
        inner = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            # Each call runs in its own task, so the caller stays set for this call only; it is not
            # reset on the way out because the audit, further out, records who it was.
            current_principal.set(self._authenticator.authenticate(context))
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
