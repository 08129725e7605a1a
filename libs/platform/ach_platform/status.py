"""The one mapping of domain errors to gRPC statuses (google.rpc.Status with rich details): the
server sends them so, the audit records their code."""

from __future__ import annotations

from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from ach_platform.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
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
    if isinstance(error, Unauthenticated):
        return status_pb2.Status(code=code_pb2.UNAUTHENTICATED, message=error.message)
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
