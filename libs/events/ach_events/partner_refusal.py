"""Refusing a partner's report (a service update, a referral status): the event is dead-lettered
with the reasons, and the partner is told why on its outbound topic, in the dead letter's
transaction (a redelivered event is not answered twice)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from ach.partners.v1 import partners_pb2
from ach_platform.errors import FieldViolation
from google.protobuf.message import Message
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_events.consumer import PoisonEvent
from ach_events.outbox import Outbox
from ach_events.partner_topics import outbound_topic


def partner_violations(problems: Sequence[FieldViolation]) -> list[partners_pb2.FieldViolation]:
    return [partners_pb2.FieldViolation(field=v.field, description=v.description) for v in problems]


def refuse_report(
    outbox: Outbox, partner: str, answer: Message, key: str, what: str, problems: Sequence[FieldViolation]
) -> NoReturn:
    """``answer`` (e.g. ServiceUpdateRejected, carrying partner_violations(problems)) goes to the
    partner; ``what`` names the report in the dead letter's reason."""

    async def reject(session: AsyncSession) -> None:
        outbox.add(session, outbound_topic(partner), answer, key=key or "unknown")

    reasons = "; ".join(f"{v.field}: {v.description}" for v in problems)
    raise PoisonEvent(f"invalid {what}: {reasons}", rejection=reject)
