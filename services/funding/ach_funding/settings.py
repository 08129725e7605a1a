"""The funding service's settings."""

from __future__ import annotations

from pathlib import Path

from ach_platform.settings import Settings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class FundingSettings(Settings):
    model_config = SettingsConfigDict(env_prefix="FUNDING_")

    # Whether referrals a partner sent to itself earn outcome payments is each stream's own rule
    # (pays_internal_referrals in the funds file); this turns it on for every stream (off).
    pay_internal_referrals: bool = False
    # The fund streams and outcome rates; unset: the shipped example (funds.yaml).
    funds_file: Path | None = None
    # How often pending transactions past their deadline expire and owed payments are retried.
    sweep_seconds: float = Field(default=30.0, gt=0, le=3600)
