"""Protobuf enum values <-> the lowercase codes the domain uses (FHIR style: "in-progress").

By the protos' convention an enum ``ReferralStatus`` has values ``REFERRAL_STATUS_IN_PROGRESS``
and ``REFERRAL_STATUS_UNSPECIFIED`` (= 0, the code "").
"""

from __future__ import annotations

import re
from typing import Any


def _prefix(enum: Any) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.DESCRIPTOR.name).upper() + "_"


def code_of(enum: Any, value: int) -> str:
    """The code of an enum value; "" for UNSPECIFIED. Raises ValueError for an unknown value."""
    code = str(enum.Name(value)).removeprefix(_prefix(enum)).lower().replace("_", "-")
    return "" if code == "unspecified" else code


def value_of(enum: Any, code: str) -> Any:
    """The enum value of a code (typed as the enum's ValueType by the caller's context); UNSPECIFIED
    for "". Raises ValueError for an unknown code."""
    if not code:
        return 0
    return enum.Value(_prefix(enum) + code.upper().replace("-", "_"))
