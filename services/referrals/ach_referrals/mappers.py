"""Between the protos and the domain: statuses, outcomes, what matching knows of the resident, and
what the resident is told of a service."""

from __future__ import annotations

from datetime import datetime

from ach.directory.v1 import directory_pb2
from ach.referrals.v1 import referrals_pb2
from ach_platform import zip_codes
from ach_platform.clock import as_utc
from ach_platform.codes import code_of, value_of
from ach_platform.errors import FieldViolation

from ach_referrals import domain
from ach_referrals.store import (
    DirectoryServiceReplica,
)


def status_to_proto(status: domain.Status) -> referrals_pb2.ReferralStatus.ValueType:
    value: referrals_pb2.ReferralStatus.ValueType = value_of(referrals_pb2.ReferralStatus, status.value)
    return value


def status_from_proto(value: int) -> domain.Status | None:
    code = code_of(referrals_pb2.ReferralStatus, value)
    return domain.Status(code) if code else None


def outcome_to_proto(outcome: str) -> referrals_pb2.ReferralOutcome.ValueType:
    value: referrals_pb2.ReferralOutcome.ValueType = value_of(referrals_pb2.ReferralOutcome, outcome)
    return value


def outcome_from_proto(value: int) -> domain.Outcome | None:
    code = code_of(referrals_pb2.ReferralOutcome, value)
    return domain.Outcome(code) if code else None


def service_information(
    replica: DirectoryServiceReplica | None, service_id: str
) -> referrals_pb2.ServiceInformation:
    """What the resident is told of a service: the directory's public details, nothing of theirs."""
    if replica is None:
        return referrals_pb2.ServiceInformation(service_id=service_id)
    return referrals_pb2.ServiceInformation(
        service_id=service_id,
        name=replica.name,
        organization_name=replica.organization_name,
        address=replica.address,
        phone=replica.phone,
        opening_hours=[
            directory_pb2.OpeningHours(**{f: h[f] for f in HOURS_FIELDS if f in h})
            for h in replica.opening_hours
        ],
    )


def resident_facts(
    zip_code: str, age: int | None, available_at: datetime | None = None, now: datetime | None = None
) -> domain.ResidentFacts:
    """What matching knows of the resident; a time they can go that has passed (a re-route days
    later) no longer narrows anything."""
    when = as_utc(available_at) if available_at is not None else None
    if when is not None and now is not None and when < now:
        when = None
    return domain.ResidentFacts(zip_codes.centroid(zip_code) if zip_code else None, zip_code, age, when)


HOURS_FIELDS = (
    "location_id",
    "rrule",
    "opens_at",
    "closes_at",
    "valid_from",
    "valid_to",
    "time_zone",
    "closed",
)


def requested_change(
    status: int, outcome: int, prefix: str = ""
) -> tuple[domain.Status | None, domain.Outcome | None, list[FieldViolation]]:
    """The status and outcome a party asks for (a call's or a report's fields, under ``prefix``),
    with the problems of each named by field."""
    problems: list[FieldViolation] = []
    to: domain.Status | None = None
    result: domain.Outcome | None = None
    try:
        to = status_from_proto(status)
        if to is None:
            problems.append(FieldViolation(f"{prefix}status", "is required"))
    except ValueError:
        problems.append(FieldViolation(f"{prefix}status", f"{status} is not a referral status"))
    try:
        result = outcome_from_proto(outcome)
    except ValueError:
        problems.append(FieldViolation(f"{prefix}outcome", f"{outcome} is not a referral outcome"))
    return to, result, problems
