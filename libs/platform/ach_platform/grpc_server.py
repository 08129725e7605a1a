"""gRPC server bootstrap shared by every service.

Every server: health checking (grpc.health.v1) and reflection, OpenTelemetry server spans,
deadlines honoured, domain errors mapped to status codes with rich details, and a graceful stop
that drains in-flight calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from opentelemetry import metrics
from opentelemetry.instrumentation.grpc import aio_server_interceptor

from ach_platform.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied

log = logging.getLogger(__name__)
meter = metrics.get_meter("ach_platform.grpc")
requests_counter = meter.create_counter(
    "ach_grpc_server_requests", unit="{request}", description="gRPC calls handled, by method and status code"
)
request_duration = meter.create_histogram(
    "ach_grpc_server_duration", unit="s", description="gRPC call duration, by method"
)


def status_for(error: DomainError) -> status_pb2.Status:
    """The google.rpc.Status a domain error is sent as."""
    detail = any_pb2.Any()
    if isinstance(error, InvalidArgument):
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in error.violations
                ]
            )
        )
        return status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=error.message, details=[detail])
    if isinstance(error, NotFound):
        return status_pb2.Status(code=code_pb2.NOT_FOUND, message=error.message)
    if isinstance(error, PermissionDenied):
        return status_pb2.Status(code=code_pb2.PERMISSION_DENIED, message=error.message)
    if isinstance(error, FailedPrecondition):
        detail.Pack(
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=error.violation_type, subject=error.subject, description=error.message
                    )
                ]
            )
        )
        return status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=error.message, details=[detail])
    return status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no types
    """Runs unary handlers under the caller's deadline and maps domain errors to status codes."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = handler_call_details.method

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code = "OK"
            try:
                remaining = context.time_remaining()
                if remaining is not None and remaining <= 0:
                    code = "DEADLINE_EXCEEDED"
                    await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline already expired")
                try:
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
    """A service's gRPC server: its APIs plus health and reflection."""

    def __init__(self, port: int, registrars: Sequence[Registrar], service_names: Sequence[str]) -> None:
        self.port = port
        tracing = aio_server_interceptor()  # type: ignore[no-untyped-call]
        self._server = grpc.aio.server(interceptors=[tracing, ErrorMappingInterceptor()])
        for register in registrars:
            register(self._server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._service_names = list(service_names)
        reflection.enable_server_reflection(
            [*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server
        )
        self.bound_port = self._server.add_insecure_port(f"0.0.0.0:{port}")
        if self.bound_port == 0:
            raise OSError(f"cannot listen on gRPC port {port}")

    async def start(self) -> None:
        await self._server.start()
        for name in ["", *self._service_names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace_s: float) -> None:
        """Report NOT_SERVING so load balancers move away, then drain in-flight calls."""
        for name in ["", *self._service_names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.stop(grace_s)
