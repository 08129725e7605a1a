"""The directory's settings."""

from __future__ import annotations

from functools import cache
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ach_platform.settings import Settings, checked
from pydantic import Field


def _time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("is not an IANA time zone name (e.g. America/Los_Angeles)") from None
    return name


class DirectorySettings(Settings):
    # The network's time zone: for the opening hours of places whose own zone is unknown.
    time_zone: Annotated[str, checked(_time_zone), Field(validation_alias="ACH_TIME_ZONE")] = (
        "America/Los_Angeles"
    )


@cache
def network_time_zone() -> str:
    """ACH_TIME_ZONE, read once (checked when the service starts)."""
    return DirectorySettings.load().time_zone
