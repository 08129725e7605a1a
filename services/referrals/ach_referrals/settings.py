"""The referral service's settings: how refused referrals are re-routed, and the timers that
remind, expire and escalate a referral nobody acts on (REFERRAL_*)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from ach_platform.settings import Settings, checked
from pydantic_settings import NoDecode, SettingsConfigDict

from ach_referrals import domain

_TIMERS = domain.TimerPolicy()


def _reminders(text: str) -> tuple[timedelta, ...]:
    if text.lower() == "none":
        return ()
    return tuple(sorted(domain.parse_duration(r) for r in text.split(",") if r.strip()))


class ReferralSettings(Settings):
    model_config = SettingsConfigDict(env_prefix="REFERRAL_")

    # ``automatic`` or ``source``, then per need domain: ``automatic,intimate-partner-violence=source``.
    reroute_policy: Annotated[
        tuple[domain.ReroutePolicy, dict[str, domain.ReroutePolicy]],
        NoDecode,
        checked(domain.parse_reroute_policies),
    ] = (domain.ReroutePolicy.AUTOMATIC, {})
    # e.g. ``24h,48h,1w``; ``none``: no reminders.
    reminders: Annotated[tuple[timedelta, ...], NoDecode, checked(_reminders)] = _TIMERS.reminders
    accept_within: Annotated[timedelta, checked(domain.parse_duration)] = _TIMERS.accept_within
    escalate_after: Annotated[timedelta, checked(domain.parse_duration)] = _TIMERS.escalate_after

    @property
    def timers(self) -> domain.TimerPolicy:
        return domain.TimerPolicy(
            reminders=self.reminders, accept_within=self.accept_within, escalate_after=self.escalate_after
        )
