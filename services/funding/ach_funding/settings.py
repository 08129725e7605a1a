"""The funding service's settings."""

from __future__ import annotations

from ach_platform.settings import Settings
from pydantic_settings import SettingsConfigDict


class FundingSettings(Settings):
    model_config = SettingsConfigDict(env_prefix="FUNDING_")

    # Whether referrals a partner sent to itself earn outcome payments (the fund's policy; off).
    pay_internal_referrals: bool = False
