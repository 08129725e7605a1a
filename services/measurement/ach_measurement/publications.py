"""The workflow of measurement: what may be published, kept up to date from the projection's facts.

The figures for the network, and for each partner its own (what it screened, referrals it is party
to), are computed from all facts at once (one suppression decision over every measure, so nothing
hidden in one table shows in another) and kept until the facts change; a new computation is made at
most every MEASUREMENT_REFRESH_S, in a worker thread, while callers keep the last one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from ach_platform.clock import utc_now
from opentelemetry import metrics
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_measurement.domain.definitions import Measure
from ach_measurement.domain.facts import Facts, Units, assemble
from ach_measurement.domain.indicators import IndicatorValue
from ach_measurement.domain.publication import Publication, publish, publish_indicator
from ach_measurement.store import IndicatorValueRow, facts_version, load_facts, stored_indicator_values

log = logging.getLogger(__name__)

NETWORK = ""  # the scope of the network's own figures
# Partners' own figures are kept for the most recently asked (a viewer may name any partner).
KEPT_PARTNERS = 32

meter = metrics.get_meter("ach_measurement")
compute_duration = meter.create_histogram(
    "ach_measurement_publication_duration",
    unit="s",
    description="Time to recompute the published figures from the facts, by scope (network or partner)",
)


def scoped(units: Units, partner_id: str) -> Units:
    """What a partner is party to: the screenings and needs it recorded, the referrals it sent or
    received, the rejections and re-routes of referrals it received."""
    return Units(
        screenings=tuple(s for s in units.screenings if s.partner_id == partner_id),
        needs=tuple(n for n in units.needs if n.partner_id == partner_id),
        referrals=tuple(
            r for r in units.referrals if partner_id in (r.source_partner_id, r.target_partner_id)
        ),
        rejections=tuple(e for e in units.rejections if e.partner_id == partner_id),
        reroutes=tuple(e for e in units.reroutes if e.partner_id == partner_id),
    )


@dataclass
class _Kept:
    publication: Publication
    facts: tuple[object, ...]
    made: float  # monotonic


class Publications:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        measures: Sequence[Measure],
        zone: ZoneInfo,
        refresh_s: float,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._sessions = sessions
        self.measures = tuple(measures)
        self.by_id = {m.id: m for m in self.measures}
        self.zone = zone
        self._refresh_s = refresh_s
        self._now = now
        self._kept: dict[str, _Kept] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def current(self, partner_id: str = NETWORK) -> Publication:
        kept = self._kept.get(partner_id)
        if kept is not None and time.monotonic() - kept.made < self._refresh_s:
            return kept.publication
        lock = self._locks.setdefault(partner_id, asyncio.Lock())
        async with lock:
            kept = self._kept.get(partner_id)
            if kept is not None and time.monotonic() - kept.made < self._refresh_s:
                return kept.publication
            async with self._sessions() as session:
                version = await facts_version(session)
                if (
                    kept is not None
                    and kept.facts == version
                    and kept.publication.as_of.date() == self._now().date()
                ):
                    kept.made = time.monotonic()
                    return kept.publication
                facts = await load_facts(session)
                values = [indicator_value(r) for r in await stored_indicator_values(session)]
            started = time.monotonic()
            publication = await asyncio.to_thread(self._compute, facts, values, partner_id)
            scope = "network" if partner_id == NETWORK else "partner"
            compute_duration.record(time.monotonic() - started, {"scope": scope})
            self._kept[partner_id] = _Kept(publication, version, time.monotonic())
            partners = [p for p in self._kept if p != NETWORK]
            for oldest in sorted(partners, key=lambda p: self._kept[p].made)[
                : max(0, len(partners) - KEPT_PARTNERS)
            ]:
                del self._kept[oldest]
                self._locks.pop(oldest, None)
            return publication

    def _compute(self, facts: Facts, values: list[IndicatorValue], partner_id: str) -> Publication:
        units = assemble(facts)
        if partner_id != NETWORK:
            units = scoped(units, partner_id)
        now = self._now()
        published = publish(self.measures, units, self.zone, now)
        indicators = {
            (m.id, geography): publish_indicator(m, values, geography, self.zone, now)
            for m in self.measures
            if m.imported
            for geography in sorted({v.geography for v in values if v.indicator == m.id})
        }
        return replace(published, indicators=indicators)

    async def warm(self) -> None:
        """The network's figures once at start, so the first caller does not wait for them (nor for
        the statistics library's import, seconds on a busy machine)."""
        try:
            await self.current(NETWORK)
        except Exception as exc:  # the first caller computes them instead
            log.warning("measurement: figures not computed at start: %s", type(exc).__name__)

    def forget(self) -> None:
        """Drop what is kept (after a rebuild of the facts)."""
        self._kept.clear()


def indicator_value(r: IndicatorValueRow) -> IndicatorValue:
    return IndicatorValue(
        r.indicator,
        r.geography,
        r.period,
        r.group,
        r.value,
        r.numerator,
        r.denominator,
        r.ci_low,
        r.ci_high,
        r.source,
        r.definition_version,
    )
