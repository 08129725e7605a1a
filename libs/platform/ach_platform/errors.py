"""Errors a service raises on purpose, and the gRPC status each one becomes.

Handlers raise these; the server interceptor (``grpc_server``) turns them into status codes with
rich details (``google.rpc.Status``), so no handler builds a status by hand.
"""

from __future__ import annotations

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
