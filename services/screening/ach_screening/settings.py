"""The screening service's settings."""

from __future__ import annotations

from ach_platform.settings import Settings
from pydantic import Field


class ScreeningSettings(Settings):
    # More instrument files, besides the shipped ones (a county's own questions, a new version).
    instruments_dir: str = Field("", validation_alias="SCREENING_INSTRUMENTS_DIR")
