"""gRPC server bootstrap shared by every service.

Every server: health checking (grpc.health.v1) and reflection, OpenTelemetry server spans,
deadlines honoured, domain errors mapped to status codes with rich details, and a graceful stop
that drains in-flight calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from google.rpc import code_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from opentelemetry import metrics
from opentelemetry.instrumentation.grpc import aio_server_interceptor

from ach_platform.access import POLICY, AuthorizationInterceptor, OwnerResolver, PartnerLookup, Rule
from ach_platform.audit import AuditInterceptor, AuditSink
from ach_platform.auth import Authenticator, AuthInterceptor, AuthSettings
from ach_platform.errors import (
    DomainError,
    FieldViolation,
    InvalidArgument,
)
from ach_platform.settings import ConfigError
from ach_platform.status import status_for

log = logging.getLogger(__name__)
EXCLUSIVE_PORTS = [("grpc.so_reuseport", 0)]
# The largest request any API takes (a FHIR QuestionnaireResponse is a few KiB): gRPC's 4 MiB default
# would let every caller make the service parse and hold four times that, per call.
MAX_REQUEST_BYTES = 1024 * 1024
meter = metrics.get_meter("ach_platform.grpc")
requests_counter = meter.create_counter(
    "ach_grpc_server_requests", unit="{request}", description="gRPC calls handled, by method and status code"
)
request_duration = meter.create_histogram(
    "ach_grpc_server_duration", unit="s", description="gRPC call duration, by method"
)


def fields_with_nul(message: Any, prefix: str = "", found: list[str] | None = None) -> list[str]:
    """The paths of string fields holding a NUL character: text no database column takes (PostgreSQL
    refuses it), refused at the door with the field named instead of failing deep inside a call."""
    found = [] if found is None else found
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.type == field.TYPE_STRING:
            values = value if field.is_repeated else [value]
            if any("\x00" in v for v in values):
                found.append(path)
        elif field.type == field.TYPE_MESSAGE:
            entry = field.message_type
            if entry is not None and entry.GetOptions().map_entry:
                if any("\x00" in str(k) or "\x00" in str(v) for k, v in value.items()):
                    found.append(path)
            elif field.is_repeated:
                for i, item in enumerate(value):
                    fields_with_nul(item, f"{path}[{i}].", found)
            else:
                fields_with_nul(value, f"{path}.", found)
        if len(found) >= 10:
            break
    return found


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no types
    """Runs unary handlers under the caller's deadline and maps domain errors to status codes.

    The first of the platform's interceptors: what it and those inside it (audit, authentication,
    authorization) make of a method's handler depends on the method alone, never on the call, so
    it is made once per method and kept; each call then runs the wrappers without rebuilding them."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if (kept := self._handlers.get(method)) is not None:
            return kept
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # an unknown method is not kept: callers cannot grow the table
        wrapped = self._wrap(handler, method)
        self._handlers[method] = wrapped
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code = "OK"
            try:
                remaining = context.time_remaining()
                if remaining is not None and remaining <= 0:
                    code = "DEADLINE_EXCEEDED"
                    await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline already expired")
                try:
                    if nul := fields_with_nul(request):
                        raise InvalidArgument([FieldViolation(f, "contains a NUL character") for f in nul])
                    async with asyncio.timeout(remaining):
                        return await inner(request, context)
                except DomainError as error:
                    status = status_for(error)
                    code = code_pb2.Code.Name(status.code)
                    await context.abort_with_status(rpc_status.to_status(status))
                except TimeoutError:
                    code = "DEADLINE_EXCEEDED"
                    await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
                except asyncio.CancelledError:
                    code = "CANCELLED"
                    raise
                except grpc.aio.AbortError:
                    raise
                except Exception:
                    # The client gets a bare INTERNAL; the details (no PHI: ids only) go to the log.
                    code = "INTERNAL"
                    log.exception("unhandled error in %s", method)
                    await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            finally:
                requests_counter.add(1, {"rpc_method": method, "rpc_grpc_status_code": code})
                request_duration.record(time.perf_counter() - started, {"rpc_method": method})

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


Registrar = Callable[[grpc.aio.Server], None]


class GrpcServer:
    """A service's gRPC server: its APIs plus health and reflection.

    With ``auth`` (every deployed and local-stack service) the gRPC port speaks mutual TLS, the token
    port TLS with bearer tokens, and every call but health and reflection must authenticate;
    without it (in-process tests of the API only) the port is plaintext.
    ``health_port`` adds a plaintext port that serves only health checks, for kubelet probes
    (which cannot do TLS).
    """

    def __init__(
        self,
        port: int,
        registrars: Sequence[Registrar],
        service_names: Sequence[str],
        *,
        auth: AuthSettings | None = None,
        partners: PartnerLookup | None = None,
        resolvers: Mapping[str, OwnerResolver] | None = None,
        policy: Mapping[str, Rule] = POLICY,
        audit: AuditSink | None = None,
        service: str = "",
        token_port: int | None = None,
        health_port: int | None = None,
    ) -> None:
        self.port = port
        tracing = aio_server_interceptor()  # type: ignore[no-untyped-call]
        # Order matters: the first wraps the rest, so errors raised by authentication are mapped too.
        interceptors: list[Any] = [tracing, ErrorMappingInterceptor()]
        if audit is not None:
            # Outside authentication and authorization, so refusals are audited as well.
            interceptors.append(AuditInterceptor(service, audit, policy))
        if auth is not None:
            interceptors.append(AuthInterceptor(Authenticator(auth)))
            if partners is None:
                raise ValueError("an authenticated server needs the partner registry to authorize calls")
            interceptors.append(AuthorizationInterceptor(partners, resolvers or {}, policy))
        # No SO_REUSEPORT (gRPC's default): a port another listener holds must fail to bind, not
        # silently share that listener's connections.
        self._server = grpc.aio.server(
            interceptors=interceptors,
            options=[*EXCLUSIVE_PORTS, ("grpc.max_receive_message_length", MAX_REQUEST_BYTES)],
        )
        for register in registrars:
            register(self._server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._service_names = list(service_names)
        reflection.enable_server_reflection(
            [*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server
        )
        address = f"0.0.0.0:{port}"
        self.bound_token_port: int | None = None
        if auth is not None:
            self.bound_port = _bind(
                lambda: self._server.add_secure_port(address, auth.mtls_credentials()), port
            )
            if token_port is not None:
                self.bound_token_port = _bind(
                    lambda: self._server.add_secure_port(f"0.0.0.0:{token_port}", auth.token_credentials()),
                    token_port,
                    "token",
                )
        else:
            self.bound_port = _bind(lambda: self._server.add_insecure_port(address), port)
        self._probe_server: grpc.aio.Server | None = None
        if health_port is not None:
            self._probe_server = grpc.aio.server(options=EXCLUSIVE_PORTS)
            health_pb2_grpc.add_HealthServicer_to_server(self._health, self._probe_server)
            probe = self._probe_server
            self.bound_health_port = _bind(
                lambda: probe.add_insecure_port(f"0.0.0.0:{health_port}"), health_port, "health"
            )

    async def start(self) -> None:
        await self._server.start()
        if self._probe_server is not None:
            await self._probe_server.start()
        for name in ["", *self._service_names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace_s: float) -> None:
        """Report NOT_SERVING so load balancers move away, then drain in-flight calls."""
        for name in ["", *self._service_names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.stop(grace_s)
        if self._probe_server is not None:
            await self._probe_server.stop(0)


def _bind(add_port: Callable[[], int], port: int, what: str = "gRPC") -> int:
    """grpcio reports a port it cannot bind as 0 or a RuntimeError, depending on the version: either
    way the operator gets one clear message (and the service a fast, non-zero exit)."""
    try:
        bound = add_port()
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise ConfigError(f"cannot listen on {what} port {port}: is another process using it?")
    return bound
