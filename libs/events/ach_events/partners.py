"""Every service's in-memory replica of the partner registry, read from the compacted partners
topic from its beginning (no consumer group: each replica reads everything). The access policy
asks it who a caller is; a partner suspended in the registry is refused as soon as the change
arrives here."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ach.identity.v1 import identity_pb2
from ach_platform.access import PartnerView
from ach_platform.codes import code_of
from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry import metrics

from ach_events.envelope import Envelope, EnvelopeError
from ach_events.kafka_security import broker_security
from ach_events.topics import IDENTITY_PARTNERS, BrokerUnavailable

log = logging.getLogger(__name__)
meter = metrics.get_meter("ach_events.partners")
skipped_counter = meter.create_counter(
    "ach_partner_replica_skipped", unit="{record}", description="Unreadable records on the partners topic"
)


def view_of(partner: identity_pb2.Partner) -> PartnerView:
    return PartnerView(
        partner_id=partner.partner_id,
        type=code_of(identity_pb2.PartnerType, partner.type),
        roles=frozenset(code_of(identity_pb2.PartnerRole, r) for r in partner.roles),
        active=partner.status == identity_pb2.PARTNER_STATUS_ACTIVE,
        version=partner.version,
        name=partner.name,
        revoked_certificates=frozenset(partner.revoked_certificates),
    )


REGISTRY_SOURCE = "/ach/identity"


class PartnerReplica:
    def __init__(self, bootstrap_servers: str) -> None:
        self._bootstrap = bootstrap_servers
        self._partners: dict[str, PartnerView] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.caught_up = asyncio.Event()

    def get(self, partner_id: str) -> PartnerView | None:
        return self._partners.get(partner_id)

    def holding(self, role: str) -> set[str]:
        return {p.partner_id for p in self._partners.values() if p.active and role in p.roles}

    def apply(self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None) -> None:
        if value is None:
            # The registry never deletes (a partner is suspended): a tombstone says nothing of who
            # wrote it, so it changes nothing.
            skipped_counter.add(1)
            return
        try:
            envelope = Envelope.from_record(key, value, headers or [])
            event = envelope.message()
        except EnvelopeError as exc:
            skipped_counter.add(1)
            log.warning("unreadable record on the partners topic skipped", extra={"reason": str(exc)})
            return
        if envelope.source != REGISTRY_SOURCE:
            # Only the registry speaks for partners; the broker's ACLs say so too, this says it again.
            skipped_counter.add(1)
            log.warning("a record on the partners topic not from the registry skipped")
            return
        if not isinstance(event, identity_pb2.PartnerChanged):
            return
        view = view_of(event.partner)
        current = self._partners.get(view.partner_id)
        if current is None or view.version >= current.version:
            self._partners[view.partner_id] = view

    async def start(self, timeout_s: float) -> None:
        """Read the topic up to its current end before returning, then follow it in the background."""
        topic = IDENTITY_PARTNERS.physical_name
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **broker_security().aiokafka(),
        )
        try:
            async with asyncio.timeout(timeout_s):
                await self._consumer.start()
                # Without a group, a subscription is assigned every partition, read from the earliest
                # offset (nothing is ever committed).
                self._consumer.subscribe([topic])
                while not self._consumer.assignment():
                    await self._poll()
                ends = await self._consumer.end_offsets(list(self._consumer.assignment()))
                while await self._behind(ends):
                    await self._poll()
        except TimeoutError:
            await self.stop()
            raise BrokerUnavailable(
                f"could not read the partner registry topic {topic} within {timeout_s:g} s"
            ) from None
        self.caught_up.set()
        self._task = asyncio.create_task(self._follow(), name="partner-replica")

    async def _behind(self, ends: dict[TopicPartition, int]) -> bool:
        assert self._consumer is not None
        for tp, end in ends.items():
            if await self._consumer.position(tp) < end:
                return True
        return False

    async def _poll(self) -> None:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=500)
        for records in batches.values():
            for record in records:
                self.apply(record.key, record.value, list(record.headers or ()))

    async def _follow(self) -> None:
        while True:
            try:
                await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("partner replica could not read; retrying")
                await asyncio.sleep(1)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()
