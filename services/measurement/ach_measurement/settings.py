"""The measurement service's settings (MEASUREMENT_*, and the network's time zone)."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated
from zoneinfo import ZoneInfo

from ach_platform.settings import NETWORK_TIME_ZONE, Seconds, Settings, checked, time_zone_name
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class MeasurementSettings(Settings):
    model_config = SettingsConfigDict(env_prefix="MEASUREMENT_")

    # More measure definition files, beside the shipped ones.
    definitions_dir: str = ""
    # Periods are months, quarters and years of the network's own calendar.
    time_zone: Annotated[str, checked(time_zone_name), Field(validation_alias="ACH_TIME_ZONE")] = (
        NETWORK_TIME_ZONE
    )
    # Published figures are recomputed at most this often (when facts have changed).
    refresh_s: Seconds = 5.0
    # Where residents reach the public scorecard page (its embed code links there); by default the
    # service's own HTTP port on this machine.
    public_url: str = Field("", max_length=200, pattern=r"^(https?://[^\s\"'<>]+)?$")

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)
