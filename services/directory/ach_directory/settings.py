"""The directory's settings."""

from __future__ import annotations

from functools import cache
from typing import Annotated

from ach_platform.settings import NETWORK_TIME_ZONE, Settings, checked, time_zone_name
from pydantic import Field


class DirectorySettings(Settings):
    # The network's time zone: for the opening hours of places whose own zone is unknown.
    time_zone: Annotated[str, checked(time_zone_name), Field(validation_alias="ACH_TIME_ZONE")] = (
        NETWORK_TIME_ZONE
    )


@cache
def network_time_zone() -> str:
    """ACH_TIME_ZONE, read once (checked when the service starts)."""
    return DirectorySettings.load().time_zone
