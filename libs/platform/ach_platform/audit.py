"""The audit of access to resident-level data. An interceptor, outside authentication and
authorization, records every authenticated call to a method the policy marks as resident-level
(allowed or refused) before the call returns; when the record cannot be written, a call that would
have returned data fails instead. A call that changes state writes its record in the transaction of
the change (through the service's outbox), so no change commits unaudited. Calls refused before
authentication are counted and logged (rate-limited), never stored: nobody without a credential
writes into the six-year log. Records carry ids only, never resident data, each bounded."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import grpc
from google.rpc import code_pb2
from opentelemetry import metrics, trace

from ach_platform.access import POLICY, Rule, field_value
from ach_platform.auth import current_principal
from ach_platform.errors import DomainError, InvalidArgument
from ach_platform.status import status_for

log = logging.getLogger(__name__)
unauthenticated_calls = metrics.get_meter("ach_platform.audit").create_counter(
    "ach_grpc_unauthenticated_calls",
    unit="{call}",
    description="Calls to resident-level methods refused before authentication (counted, not audited)",
)
UNAUTHENTICATED_LOG_EVERY_S = 60.0
# Bounds of what a record keeps: ids are at most 100 characters, user ids 200, and a record names
# a handful of resources.
MAX_ID = 100
MAX_USER_ID = 200
MAX_RESOURCES = 10

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


@dataclass
class CallAudit:
    """The audit record of the call in progress, for the outbox to write into the transaction of
    the change the call makes (``committed`` once that transaction has)."""

    build: Callable[[str], AuditEntry]  # the entry, given the outcome
    committed: bool = False
    resources: dict[str, str] = field(default_factory=dict)  # what the committed record names


_in_call: ContextVar[CallAudit | None] = ContextVar("audit_in_call", default=None)


def call_audit() -> CallAudit | None:
    """The audit of the gRPC call this code runs in, if the call is audited."""
    return _in_call.get()


class AuditSink(Protocol):
    async def record(self, entry: AuditEntry) -> None: ...


class AuditWriteFailed(DomainError):
    """The audit record could not be written, so the call must not return data."""


class AuditInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no types
    def __init__(self, service: str, sink: AuditSink, policy: Mapping[str, Rule] = POLICY) -> None:
        self._service = service
        self._sink = sink
        self._policy = policy
        self._unlogged = 0
        self._logged_at = 0.0

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
            in_call = CallAudit(lambda result: self._entry(method, rule, request, purpose, result, noted))
            call_token = _in_call.set(in_call)
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
                _in_call.reset(call_token)
                # A record committed with the change needs no second one, unless the handler
                # learned of more (ids noted after its commit) or failed after it.
                covered = in_call.committed and outcome == "OK" and noted.items() <= in_call.resources.items()
                if not covered:
                    await self._record(method, rule, request, purpose, outcome, noted)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _entry(
        self, method: str, rule: Rule, request: Any, purpose: str, outcome: str, noted: dict[str, str]
    ) -> AuditEntry:
        caller = current_principal.get()
        span = trace.get_current_span().get_span_context()
        named = {path: v for path in rule.audit_ids if (v := field_value(request, path))} | noted
        return AuditEntry(
            service=self._service,
            method=method,
            partner_id=caller.partner_id[:MAX_ID] if caller else "",
            user_id=caller.user_id[:MAX_USER_ID] if caller else "",
            credential=caller.credential if caller else "",
            purpose_of_use=purpose[:20],
            resources={k[:MAX_ID]: v[:MAX_ID] for k, v in list(named.items())[:MAX_RESOURCES]},
            outcome=outcome,
            trace_id=format(span.trace_id, "032x") if span.is_valid else "",
        )

    def _count_unauthenticated(self, method: str) -> None:
        unauthenticated_calls.add(1, {"method": method})
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= UNAUTHENTICATED_LOG_EVERY_S:
            log.warning(
                "%d calls to resident-level methods refused before authentication (last: %s)",
                self._unlogged,
                method,
            )
            self._unlogged, self._logged_at = 0, now

    async def _record(
        self, method: str, rule: Rule, request: Any, purpose: str, outcome: str, noted: dict[str, str]
    ) -> None:
        if current_principal.get() is None:
            self._count_unauthenticated(method)
            return
        entry = self._entry(method, rule, request, purpose, outcome, noted)
        try:
            await self._sink.record(entry)
        except Exception:
            log.exception("audit record could not be written", extra={"method": method, "outcome": outcome})
            if outcome == "OK":
                raise AuditWriteFailed("the access could not be audited") from None


def _outcome(error: DomainError) -> str:
    return str(code_pb2.Code.Name(status_for(error).code))
