"""The measurement projection: one fact row per event, as the event told it (inserted once, so a
replayed event changes nothing). Units, figures and the funnel's counts are derived from the facts
(``domain.facts``), so events may arrive late and in any order, and a rebuild rebuilds them all."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ach_platform.clock import as_utc as _utc
from ach_platform.database import insert_many_once, insert_once
from sqlalchemy import JSON, BigInteger, Column, Table, func
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_measurement.domain import funnel
from ach_measurement.domain.budget import Money
from ach_measurement.domain.facts import (
    Change,
    ChangeFacts,
    Demographics,
    Facts,
    FeedbackFacts,
    NeedFacts,
    ReferralFacts,
    Reroute,
    RerouteFacts,
    ScreeningFacts,
)

ID = 200  # the longest id any service accepts


class ScreeningDemographicsFact(SQLModel, table=True):
    """One screening's demographics, as screening published them; reported only in aggregate."""

    __tablename__ = "screening_demographics_fact"

    screening_id: str = Field(primary_key=True, max_length=36)
    resident_id: str = Field(max_length=100)
    site_id: str = Field(max_length=100)
    screened_at: datetime
    race_codes: list[str] = Field(sa_column=Column(JSON, nullable=False))
    ethnicity_code: str = Field(max_length=10)
    preferred_language: str = Field(max_length=35)
    age_band: str = Field(max_length=10)
    zip: str = Field(max_length=5)
    neighbourhood: str = Field(max_length=100)


class ScreeningFact(SQLModel, table=True):
    __tablename__ = "screening_fact"

    screening_id: str = Field(primary_key=True, max_length=36)
    resident_id: str = Field(max_length=ID)
    partner_id: str = Field(max_length=ID)
    site_id: str = Field(max_length=ID)
    screened_at: datetime
    positive_domains: list[str] = Field(sa_column=Column(JSON, nullable=False))
    negative_domains: list[str] = Field(sa_column=Column(JSON, nullable=False))
    consented: bool


class NeedFact(SQLModel, table=True):
    __tablename__ = "need_fact"

    need_id: str = Field(primary_key=True, max_length=36)
    screening_id: str = Field(max_length=36)
    resident_id: str = Field(max_length=ID)
    need_domain: str = Field(max_length=100)
    partner_id: str = Field(max_length=ID)
    identified_at: datetime
    consented: bool


class ReferralFact(SQLModel, table=True):
    __tablename__ = "referral_fact"

    referral_id: str = Field(primary_key=True, max_length=36)
    resident_id: str = Field(max_length=ID)
    need_id: str = Field(max_length=36)
    screening_id: str = Field(max_length=36)
    need_domain: str = Field(max_length=100)
    source_partner_id: str = Field(max_length=ID)
    target_partner_id: str = Field(max_length=ID)
    created_at: datetime
    informational: bool


class ReferralChangeFact(SQLModel, table=True):
    __tablename__ = "referral_change_fact"

    referral_id: str = Field(primary_key=True, max_length=36)
    sequence: int = Field(primary_key=True)
    to_status: str = Field(max_length=30)
    outcome: str = Field(max_length=30)
    reason_code: str = Field(max_length=40)
    changed_at: datetime
    target_partner_id: str = Field(max_length=ID)


class ReferralRerouteFact(SQLModel, table=True):
    __tablename__ = "referral_reroute_fact"

    referral_id: str = Field(primary_key=True, max_length=36)
    sequence: int = Field(primary_key=True)
    reason_code: str = Field(max_length=40)
    rerouted_at: datetime
    from_partner_id: str = Field(max_length=ID)
    to_partner_id: str = Field(max_length=ID)


class DeliveryFact(SQLModel, table=True):
    """A notification delivered to a partner or a resident (the funnel counts them)."""

    __tablename__ = "delivery_fact"

    delivery_id: str = Field(primary_key=True, max_length=ID)
    channel: str = Field(max_length=20)
    delivered_at: datetime


class MoneyFact(SQLModel, table=True):
    """A posted transaction of the Wellness Fund as the public budget counts it: cash in (and from
    where), cash out, and what was spent (by purpose and need domain; an outcome payment says it
    paid for one referral, so small numbers of them can be protected)."""

    __tablename__ = "money_fact"

    transaction_id: str = Field(primary_key=True, max_length=ID)
    posted_at: datetime = Field(index=True)
    kind: str = Field(max_length=50)
    source: str = Field(default="", max_length=ID)
    cash_in: int = Field(default=0, sa_type=BigInteger)
    cash_out: int = Field(default=0, sa_type=BigInteger)
    spent: int = Field(default=0, sa_type=BigInteger)
    purpose: str = Field(default="", max_length=50)
    need_domain: str = Field(default="", max_length=ID)
    referrals: int = 0  # outcome payments: the referral it paid for (1), else 0


class ResidentFeedbackFact(SQLModel, table=True):
    """A resident's answer after their referral closed: did they get the help they needed? (The
    first answer counts.)"""

    __tablename__ = "resident_feedback_fact"

    referral_id: str = Field(primary_key=True, max_length=36)
    got_help: bool
    answered_at: datetime


class RebuildProgress(SQLModel, table=True):
    """Where a rebuild of the facts has read to, per partition (so a stopped rebuild goes on)."""

    __tablename__ = "rebuild_progress"

    topic: str = Field(primary_key=True, max_length=255)
    partition: int = Field(primary_key=True)
    next_offset: int = Field(sa_type=BigInteger)


class ProjectionGeneration(SQLModel, table=True):
    """How many times the facts were rebuilt: the published figures are recomputed after a switch."""

    __tablename__ = "projection_generation"

    id: int = Field(primary_key=True)
    generation: int = 0


FACT_TABLES: tuple[type[SQLModel], ...] = (
    ScreeningFact,
    ScreeningDemographicsFact,
    NeedFact,
    ReferralFact,
    ReferralChangeFact,
    ReferralRerouteFact,
    DeliveryFact,
    ResidentFeedbackFact,
    MoneyFact,
)


@dataclass
class RebuildBatch:
    """During a rebuild, facts are collected here (by fact table name) and written a batch at a
    time into the tables being built."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


REBUILDING: ContextVar[RebuildBatch | None] = ContextVar("measurement_rebuild_batch", default=None)


async def record(session: AsyncSession, model: type[SQLModel], **values: Any) -> None:
    """A fact, once: the same event again (a replay, a second delivery) changes nothing."""
    batch = REBUILDING.get()
    if batch is None:
        await insert_once(session, model, values)
    else:
        batch.rows.setdefault(str(model.__tablename__), []).append(values)


async def write_batch(session: AsyncSession, batch: RebuildBatch, tables: Mapping[str, Table]) -> None:
    for name, rows in batch.rows.items():
        await insert_many_once(session, tables[name], rows)


async def funnel_counts(session: AsyncSession, need_domain: str) -> dict[str, int]:
    """The funnel's stages counted from the facts, for one need domain or (empty) all together;
    screenings and deliveries belong to no need domain."""
    in_domain = need_domain != funnel.ALL_DOMAINS

    async def count(model: type[SQLModel], *where: Any) -> int:
        return int((await session.exec(select(func.count()).select_from(model).where(*where))).one())

    async def changes(*where: Any) -> int:
        query = select(func.count()).select_from(ReferralChangeFact).where(*where)
        if in_domain:
            query = query.join(
                ReferralFact,
                ReferralFact.referral_id == ReferralChangeFact.referral_id,  # type: ignore[arg-type]
            ).where(ReferralFact.need_domain == need_domain)
        return int((await session.exec(query)).one())

    domain = [ReferralFact.need_domain == need_domain] if in_domain else []
    needs = [NeedFact.need_domain == need_domain] if in_domain else []
    informational = col(ReferralFact.informational)
    return {
        funnel.SCREENINGS_COMPLETED: 0 if in_domain else await count(ScreeningFact),
        funnel.NEEDS_IDENTIFIED: await count(NeedFact, *needs),
        funnel.REFERRALS_CREATED: await count(ReferralFact, informational.is_(False), *domain),
        funnel.INFORMATIONAL_REFERRALS: await count(ReferralFact, informational.is_(True), *domain),
        funnel.REFERRALS_ACCEPTED: await changes(ReferralChangeFact.to_status == funnel.ACCEPTED),
        funnel.REFERRALS_COMPLETED: await changes(ReferralChangeFact.to_status == funnel.COMPLETED),
        funnel.REFERRALS_NEED_MET: await changes(
            ReferralChangeFact.to_status == funnel.COMPLETED, ReferralChangeFact.outcome == funnel.NEED_MET
        ),
        funnel.NOTIFICATIONS_DELIVERED: 0 if in_domain else await count(DeliveryFact),
    }


async def facts_version(session: AsyncSession) -> tuple[object, ...]:
    """Changes whenever the facts the figures read do: events' facts are only ever added; an
    indicator value may be revised by an import (its time then changes). Deliveries are counted by
    the funnel alone and money by the budget page: neither recomputes the figures."""
    counts: list[object] = []
    for model in FACT_TABLES:
        if model is DeliveryFact or model is MoneyFact:
            continue
        counts.append((await session.exec(select(func.count()).select_from(model))).one())
    imported = (
        await session.exec(
            select(func.count(), func.max(IndicatorValueRow.imported_at)).select_from(IndicatorValueRow)
        )
    ).one()
    generation = (await session.exec(select(func.max(ProjectionGeneration.generation)))).one()
    return (*counts, *imported, generation)


async def load_facts(session: AsyncSession) -> Facts:
    """Every fact, as plain values for the domain."""
    facts = Facts()
    for s in (await session.exec(select(ScreeningFact))).all():
        facts.screenings.append(
            ScreeningFacts(
                s.screening_id,
                s.resident_id,
                s.partner_id,
                s.site_id,
                _utc(s.screened_at),
                tuple(s.positive_domains),
                tuple(s.negative_domains),
                s.consented,
            )
        )
    for d in (await session.exec(select(ScreeningDemographicsFact))).all():
        facts.demographics[d.screening_id] = Demographics(
            tuple(d.race_codes), d.ethnicity_code, d.preferred_language, d.age_band, d.zip, d.neighbourhood
        )
    for n in (await session.exec(select(NeedFact))).all():
        facts.needs.append(
            NeedFacts(
                n.need_id,
                n.screening_id,
                n.resident_id,
                n.need_domain,
                n.partner_id,
                _utc(n.identified_at),
                n.consented,
            )
        )
    for r in (await session.exec(select(ReferralFact))).all():
        facts.referrals.append(
            ReferralFacts(
                r.referral_id,
                r.resident_id,
                r.need_id,
                r.screening_id,
                r.need_domain,
                r.source_partner_id,
                r.target_partner_id,
                _utc(r.created_at),
                r.informational,
            )
        )
    for c in (await session.exec(select(ReferralChangeFact))).all():
        facts.changes.append(
            ChangeFacts(
                c.referral_id,
                Change(c.sequence, c.to_status, c.outcome, c.reason_code, _utc(c.changed_at)),
                c.target_partner_id,
            )
        )
    for x in (await session.exec(select(ReferralRerouteFact))).all():
        facts.reroutes.append(
            RerouteFacts(
                x.referral_id,
                Reroute(x.sequence, x.reason_code, _utc(x.rerouted_at), x.to_partner_id),
                x.from_partner_id,
            )
        )
    for f in (await session.exec(select(ResidentFeedbackFact))).all():
        facts.feedback.append(FeedbackFacts(f.referral_id, f.got_help, _utc(f.answered_at)))
    return facts


class IndicatorValueRow(SQLModel, table=True):
    """A population indicator's value as its publisher released it, with the definition version it
    was imported under and where it came from."""

    __tablename__ = "indicator_value"

    indicator: str = Field(primary_key=True, max_length=80)
    geography: str = Field(primary_key=True, max_length=100)
    period: str = Field(primary_key=True, max_length=10)
    group: str = Field(primary_key=True, max_length=60)
    # A revised definition's values are kept beside the earlier version's (the figures use the newest).
    definition_version: int = Field(primary_key=True)
    value: float
    numerator: float | None = None
    denominator: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    source: str = Field(max_length=200)
    imported_from: str = Field(max_length=200)
    imported_at: datetime


async def stored_indicator_values(session: AsyncSession) -> list[IndicatorValueRow]:
    return list((await session.exec(select(IndicatorValueRow))).all())


class StoredMoney:
    """The fund's posted money for the public budget page: a version that changes when a money
    fact is added (they are only ever added), and the facts themselves."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def version(self) -> object:
        async with self._sessions() as session:
            query = select(func.count(), func.max(MoneyFact.posted_at)).select_from(MoneyFact)
            return tuple((await session.exec(query)).one())

    async def facts(self) -> list[Money]:
        async with self._sessions() as session:
            rows = await money_facts(session)
        return [
            Money(
                f.posted_at, f.source, f.cash_in, f.cash_out, f.spent, f.purpose, f.need_domain, f.referrals
            )
            for f in rows
        ]


async def money_facts(session: AsyncSession) -> list[MoneyFact]:
    return list((await session.exec(select(MoneyFact).order_by(col(MoneyFact.posted_at)))).all())
