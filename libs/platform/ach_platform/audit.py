"""The audit of access to resident-level data. An interceptor, outside authentication and
authorization, records every call to a method the policy marks as resident-level (allowed or
refused, authenticated or not) before the call returns; when the record cannot be written, a call
that would have returned data fails instead. Records carry ids only, never resident data."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import grpc
from opentelemetry import trace

from ach_platform.access import POLICY, Rule, field_value
from ach_platform.auth import current_principal
from ach_platform.errors import DomainError, InvalidArgument

log = logging.getLogger(__name__)

# HL7 v3 PurposeOfUse codes a caller may give in the x-ach-purpose-of-use header.
PURPOSES_OF_USE = frozenset({"TREAT", "COC", "CAREMGT", "HPAYMT", "HOPERAT", "PUBHLTH", "HRESCH", "PATRQT"})


@dataclass(frozen=True)
class AuditEntry:
    service: str
    method: str
    partner_id: str
    user_id: str
    credential: str
    purpose_of_use: str
    resources: dict[str, str]
    outcome: str
    trace_id: str
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    record_id: str = field(default_factory=lambda: str(uuid.uuid4()))


# Ids a handler learns while it serves a call (e.g. the resident a referral is about), so the audit
# record names the resident even when the request named only the referral.
_noted: ContextVar[dict[str, str] | None] = ContextVar("audit_noted", default=None)


def note_resource(name: str, value: str) -> None:
    """Add an id (never resident data) to the audit record of the current call."""
    noted = _noted.get()
    if noted is not None and value:
        noted[name] = value


class AuditSink(Protocol):
    async def record(self, entry: AuditEntry) -> None: ...


class AuditWriteFailed(DomainError):
    """The audit record could not be written, so the call must not return data."""


class AuditInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no types
    def __init__(self, service: str, sink: AuditSink, policy: Mapping[str, Rule] = POLICY) -> None:
        self._service = service
        self._sink = sink
        self._policy = policy

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        rule = self._policy.get(method)
        if handler is None or handler.unary_unary is None or rule is None or not rule.audited:
            return handler
        inner = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            metadata = dict(context.invocation_metadata() or ())
            purpose = str(metadata.get("x-ach-purpose-of-use", "") or rule.purpose).upper()
            outcome = "OK"
            noted: dict[str, str] = {}
            token = _noted.set(noted)
            try:
                if purpose not in PURPOSES_OF_USE:
                    raise InvalidArgument.of("x-ach-purpose-of-use", f"{purpose!r} is not a purpose of use")
                return await inner(request, context)
            except DomainError as error:
                outcome = _outcome(error)
                raise
            except grpc.aio.AbortError:
                outcome = context.code().name if context.code() else "ABORTED"
                raise
            except BaseException:
                outcome = "INTERNAL"
                raise
            finally:
                _noted.reset(token)
                await self._record(method, rule, request, purpose, outcome, noted)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def _record(
        self, method: str, rule: Rule, request: Any, purpose: str, outcome: str, noted: dict[str, str]
    ) -> None:
        caller = current_principal.get()
        span = trace.get_current_span().get_span_context()
        entry = AuditEntry(
            service=self._service,
            method=method,
            partner_id=caller.partner_id if caller else "",
            user_id=caller.user_id if caller else "",
            credential=caller.credential if caller else "",
            purpose_of_use=purpose,
            resources={path: v for path in rule.audit_ids if (v := field_value(request, path))} | noted,
            outcome=outcome,
            trace_id=format(span.trace_id, "032x") if span.is_valid else "",
        )
        try:
            await self._sink.record(entry)
        except Exception:
            log.exception("audit record could not be written", extra={"method": method, "outcome": outcome})
            if outcome == "OK":
                raise AuditWriteFailed("the access could not be audited") from None


def _outcome(error: DomainError) -> str:
    from google.rpc import code_pb2

    from ach_platform.grpc_server import status_for  # the one mapping of errors to codes

    return str(code_pb2.Code.Name(status_for(error).code))
