"""Errors a service raises on purpose, and the gRPC status each one becomes.

Handlers raise these; the server interceptor (``grpc_server``) turns them into status codes with
rich details (``google.rpc.Status``), so no handler builds a status by hand.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


def too_long(checks: Iterable[tuple[str, str, int]]) -> list[FieldViolation]:
    """For (field, value, limit) triples, a violation for every value longer than its limit: checked
    first, before anything else reads the value or a database column refuses it."""
    return [
        FieldViolation(field, f"is longer than {limit} characters")
        for field, value, limit in checks
        if len(value) > limit
    ]


class DomainError(Exception):
    """Base for errors that carry a client-facing message (never PHI)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class InvalidArgument(DomainError):
    """Bad input: every problem at once, one field violation each."""

    violations: list[FieldViolation] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(
            "; ".join(f"{v.field}: {v.description}" for v in self.violations) or "invalid request"
        )

    @classmethod
    def of(cls, field_name: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field_name, description)])


class NotFound(DomainError):
    """The thing asked for does not exist (or the caller may not know it exists)."""


class Unauthenticated(DomainError):
    """No valid credentials. The message says what was wrong with them, never what they unlock."""


class PermissionDenied(DomainError):
    """The caller is known but may not do this (e.g. a CBO updating a referral addressed to another)."""


class FailedPrecondition(DomainError):
    """The request is well formed but conflicts with the current state (e.g. an illegal transition)."""

    def __init__(self, message: str, *, violation_type: str = "STATE", subject: str = "") -> None:
        super().__init__(message)
        self.violation_type = violation_type
        self.subject = subject


class Validator:
    """Collects field violations so a request is rejected with all its problems, not the first only."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def require(self, condition: bool, field_name: str, description: str) -> bool:
        if not condition:
            self.violations.append(FieldViolation(field_name, description))
        return condition

    def raise_if_any(self) -> None:
        if self.violations:
            raise InvalidArgument(list(self.violations))


WITHHELD = "[withheld]"
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def described(exc: BaseException) -> str:
    """An exception's message as it may leave the process (a log, a span, a dead-letter reason).
    Ours are written never to carry PHI (``DomainError``, or a class saying ``phi_free = True``); a
    database error keeps its first line (hide_parameters keeps the statement's values out) with any
    quoted literal withheld, as PostgreSQL quotes the input it could not read; any other message may
    quote whatever value failed, so only its type is told."""
    if isinstance(exc, DomainError) or getattr(exc, "phi_free", False):
        return str(exc)
    original = getattr(exc, "orig", None)
    if original is not None:  # SQLAlchemy's DBAPIError wraps the driver's error
        lines = str(original).strip().splitlines()
        return _QUOTED.sub(lambda m: m.group(0)[0] + "…" + m.group(0)[0], lines[0][:300]) if lines else ""
    return WITHHELD


def withheld_traceback(exc: BaseException) -> str:
    """A traceback (frames: code, never data) with each exception of the chain ``described``."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(traceback.format_tb(current.__traceback__))
        parts.append(
            f"Traceback (most recent call last):\n{frames}{type(current).__qualname__}: {described(current)}"
        )
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\n\nwhile handling or caused by the above:\n\n".join(reversed(parts))
