"""What a service keeps of the resident index's events: the residents' consents (scope and state, no
identity) and which resident ids were merged into which. The referral and screening services both
keep it, from ach.residents.events.v1, through their idempotent consumers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from ach.residents.v1 import residents_pb2
from ach_platform.clock import as_utc, from_timestamp, utc_now
from ach_platform.codes import code_of
from ach_platform.consent import ConsentTerms
from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_events.consumer import EventHandler, EventKey, require_fields
from ach_events.envelope import Envelope


class ConsentReplica(SQLModel, table=True):
    """A resident's consent as the identity service last published it: scope and state, no identity."""

    __tablename__ = "consent_replica"

    consent_id: str = Field(primary_key=True, max_length=36)
    resident_id: str = Field(index=True, max_length=100)
    need_domains: list[str] = Field(sa_column=Column(JSON, nullable=False))
    partner_ids: list[str] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=20)
    given_at: datetime
    expires_at: datetime | None = None
    version: int
    # The partner that took it: its consent authorizes its own disclosures (ach_platform.consent).
    recorded_by_partner_id: str = Field(default="", max_length=64)


class ResidentLinkReplica(SQLModel, table=True):
    """Which partners have which resident on their books (from ResidentLinked): who may submit a
    screening or place a referral for a resident id."""

    __tablename__ = "resident_link_replica"

    resident_id: str = Field(primary_key=True, max_length=100)
    partner_id: str = Field(primary_key=True, max_length=100)
    linked_at: datetime


async def keep_link(session: AsyncSession, event: residents_pb2.ResidentLinked) -> None:
    require_fields(event, "resident_id", "partner_id")
    if await session.get(ResidentLinkReplica, (event.resident_id, event.partner_id)) is None:
        linked_at = from_timestamp(event.linked_at) if event.HasField("linked_at") else utc_now()
        assert linked_at is not None
        session.add(
            ResidentLinkReplica(
                resident_id=event.resident_id, partner_id=event.partner_id, linked_at=linked_at
            )
        )
        await session.flush()


async def on_books_of(session: AsyncSession, partner_id: str, resident_id: str) -> bool:
    """Whether the partner has the person (under any of their ids) on its own books."""
    ids = await same_person_ids(session, resident_id)
    rows = await session.exec(
        select(ResidentLinkReplica.partner_id).where(
            col(ResidentLinkReplica.resident_id).in_(ids), ResidentLinkReplica.partner_id == partner_id
        )
    )
    return rows.first() is not None


class ResidentAlias(SQLModel, table=True):
    """A resident id merged into another: consents under either id count for both."""

    __tablename__ = "resident_alias"

    merged_id: str = Field(primary_key=True, max_length=100)
    survivor_id: str = Field(index=True, max_length=100)


async def person_of(session: AsyncSession, resident_id: str) -> tuple[str, set[str]]:
    """The id a resident is known by now (itself unless it was merged into another), and every id
    of the same person. One query when the resident was never merged."""
    return (await people_of(session, {resident_id}))[resident_id]


async def people_of(session: AsyncSession, resident_ids: set[str]) -> dict[str, tuple[str, set[str]]]:
    """``person_of`` for many resident ids at once (a batch of submissions): one query per merge
    step for all of them, instead of one per resident."""
    edges: dict[str, set[str]] = {}
    survivor_of_id: dict[str, str] = {}
    seen = set(resident_ids)
    frontier = set(resident_ids)
    while frontier:
        rows = await session.exec(
            select(ResidentAlias).where(
                col(ResidentAlias.merged_id).in_(frontier) | col(ResidentAlias.survivor_id).in_(frontier)
            )
        )
        aliases = list(rows.all())
        for a in aliases:
            survivor_of_id[a.merged_id] = a.survivor_id
            edges.setdefault(a.merged_id, set()).add(a.survivor_id)
            edges.setdefault(a.survivor_id, set()).add(a.merged_id)
        found = {a.merged_id for a in aliases} | {a.survivor_id for a in aliases}
        frontier = found - seen
        seen |= found
    people: dict[str, tuple[str, set[str]]] = {}
    for resident_id in resident_ids:
        ids, todo = {resident_id}, [resident_id]
        while todo:  # the person: every id connected to this one by merges
            for other in edges.get(todo.pop(), ()):
                if other not in ids:
                    ids.add(other)
                    todo.append(other)
        survivor, visited = resident_id, {resident_id}
        while survivor_of_id.get(survivor, survivor) not in visited:
            survivor = survivor_of_id[survivor]
            visited.add(survivor)
        people[resident_id] = (survivor, ids)
    return people


async def same_person_ids(session: AsyncSession, resident_id: str) -> set[str]:
    """The id, the survivor it was merged into and every id merged into that survivor."""
    return (await person_of(session, resident_id))[1]


async def consents_for(session: AsyncSession, resident_ids: set[str]) -> list[ConsentReplica]:
    rows = await session.exec(select(ConsentReplica).where(col(ConsentReplica.resident_id).in_(resident_ids)))
    return list(rows.all())


def terms_of(c: ConsentReplica) -> ConsentTerms:
    return ConsentTerms(
        consent_id=c.consent_id,
        resident_id=c.resident_id,
        need_domains=frozenset(c.need_domains),
        partner_ids=frozenset(c.partner_ids),
        status=c.status,
        given_at=as_utc(c.given_at),
        expires_at=as_utc(c.expires_at) if c.expires_at else None,
        recorded_by=c.recorded_by_partner_id,
    )


async def consent_terms(session: AsyncSession, resident_id: str) -> list[ConsentTerms]:
    """Every consent of the person, under any of their ids."""
    return [terms_of(c) for c in await consents_for(session, await same_person_ids(session, resident_id))]


async def keep_consent(session: AsyncSession, event: residents_pb2.ConsentChanged) -> bool:
    """Apply a ConsentChanged to the replica; False when it is not newer than what is kept."""
    require_fields(event, "consent")
    require_fields(event.consent, "consent_id", "resident_id", "status", "given_at")
    c = event.consent
    replica = await session.get(ConsentReplica, c.consent_id)
    if replica is not None and replica.version >= c.version:
        return False
    given_at = from_timestamp(c.given_at)
    assert given_at is not None
    replica = replica or ConsentReplica(
        consent_id=c.consent_id,
        resident_id=c.resident_id,
        need_domains=[],
        partner_ids=[],
        status="",
        given_at=given_at,
        version=0,
    )
    replica.need_domains = list(c.scope.need_domains)
    replica.partner_ids = list(c.scope.partner_ids)
    replica.status = code_of(residents_pb2.ConsentStatus, c.status)
    replica.given_at = given_at
    replica.expires_at = from_timestamp(c.expires_at)
    replica.version = c.version
    replica.recorded_by_partner_id = c.recorded_by.partner_id
    session.add(replica)
    await session.flush()
    return True


async def keep_merge(session: AsyncSession, event: residents_pb2.ResidentsMerged) -> bool:
    """Apply a ResidentsMerged; False when it was already known."""
    require_fields(event, "survivor_id", "merged_id")
    if await session.get(ResidentAlias, event.merged_id) is not None:
        return False
    session.add(ResidentAlias(merged_id=event.merged_id, survivor_id=event.survivor_id))
    await session.flush()
    return True


ResidentChanged = Callable[[AsyncSession, str], Awaitable[None]]


def replica_handlers(
    *, after_consent: ResidentChanged | None = None, after_merge: ResidentChanged | None = None
) -> dict[EventKey, EventHandler]:
    """The handlers that keep this replica from the resident events (links, consents, merges), for
    ``runtime.consume``; ``after_consent`` and ``after_merge`` run, in the same transaction, with
    the resident whose consents changed or the merge's survivor, when the change was new."""

    async def on_linked(
        session: AsyncSession, envelope: Envelope, event: residents_pb2.ResidentLinked
    ) -> None:
        await keep_link(session, event)

    async def on_consent(
        session: AsyncSession, envelope: Envelope, event: residents_pb2.ConsentChanged
    ) -> None:
        if await keep_consent(session, event) and after_consent is not None:
            await after_consent(session, event.consent.resident_id)

    async def on_merged(
        session: AsyncSession, envelope: Envelope, event: residents_pb2.ResidentsMerged
    ) -> None:
        if await keep_merge(session, event) and after_merge is not None:
            await after_merge(session, event.survivor_id)

    return {
        residents_pb2.ResidentLinked: on_linked,
        residents_pb2.ConsentChanged: on_consent,
        residents_pb2.ResidentsMerged: on_merged,
    }
