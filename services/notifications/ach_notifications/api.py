"""gRPC API of the notifications service: partners' channels and the delivery log."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import datetime
from urllib.parse import urlsplit

import grpc
from ach.notifications.v1 import notifications_pb2, notifications_pb2_grpc
from ach_platform.clock import as_utc, to_timestamp, utc_now
from ach_platform.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from sqlalchemy import and_, or_
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_notifications.destinations import DestinationPolicy, registration_problem
from ach_notifications.sealing import SecretBox
from ach_notifications.store import DeliveryRecord, PartnerChannel

MAX_PAGE_SIZE = 500
MAX_CHANNELS = 10  # per partner
# One @, a dot in the domain, no spaces: linear (each class excludes what separates the parts).
EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+$")
KINDS = {
    notifications_pb2.CHANNEL_KIND_WEBHOOK: "webhook",
    notifications_pb2.CHANNEL_KIND_EMAIL: "email",
}
KIND_VALUES = {name: value for value, name in KINDS.items()}
PENDING = notifications_pb2.DELIVERY_STATUS_PENDING
FAILED = notifications_pb2.DELIVERY_STATUS_FAILED


def address_problem(kind: str, address: str) -> str:
    """What is wrong with a channel's address as written, or "" (pure; lengths first, so no pattern
    ever runs over a long input). Where a webhook may go is the destination policy's to say."""
    if kind == "email":
        if len(address) > 254:
            return "must be at most 254 characters"
        return "" if EMAIL.match(address) else "must be an e-mail address"
    if len(address) > 2000:
        return "must be at most 2000 characters"
    try:
        parts = urlsplit(address)
        host = parts.hostname
    except ValueError:
        return "must be an https:// URL"
    if parts.scheme not in {"https", "http"} or not host:
        return "must be an https:// URL"
    if parts.username or parts.password:
        return "must not carry credentials (the signature authenticates the sender)"
    return ""


def channel_to_proto(c: PartnerChannel, *, secret: str = "") -> notifications_pb2.Channel:
    return notifications_pb2.Channel(
        channel_id=c.id,
        partner_id=c.partner_id,
        kind=KIND_VALUES[c.kind],  # type: ignore[arg-type]
        address=c.address,
        secret=secret,
        active=c.active,
        created_at=to_timestamp(c.created_at),
    )


def delivery_to_proto(r: DeliveryRecord) -> notifications_pb2.Delivery:
    return notifications_pb2.Delivery(
        delivery_id=r.id,
        partner_id=r.partner_id,
        channel=r.channel,
        subject_type=r.subject_type,
        subject_id=r.subject_id,
        event_type=r.event_type,
        status=r.status,  # type: ignore[arg-type]
        attempts=r.attempts,
        created_at=to_timestamp(r.created_at),
        delivered_at=to_timestamp(r.delivered_at),
        source_event_id=r.source_event_id,
        channel_id=r.channel_id,
        last_error=r.last_error,
        next_attempt_at=to_timestamp(r.next_attempt_at) if r.status == PENDING else None,
    )


class NotificationApi(notifications_pb2_grpc.NotificationServiceServicer):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        destinations: DestinationPolicy | None = None,
        box: SecretBox | None = None,
    ) -> None:
        self._sessions = sessions
        self._destinations = destinations or DestinationPolicy()
        self._box = box  # seals webhook secrets at rest (None: kept as given, in tests of the API only)

    async def ListDeliveries(
        self, request: notifications_pb2.ListDeliveriesRequest, context: grpc.aio.ServicerContext
    ) -> notifications_pb2.ListDeliveriesResponse:
        problems = []
        if request.page_size < 0 or request.page_size > MAX_PAGE_SIZE:
            problems.append(FieldViolation("page_size", f"must be between 0 and {MAX_PAGE_SIZE}"))
        if request.status not in notifications_pb2.DeliveryStatus.values():
            problems.append(FieldViolation("status", f"{request.status} is not a delivery status"))
        after = page_position(request.page_token)
        if request.page_token and after is None:
            problems.append(FieldViolation("page_token", "is not a token this service gave"))
        if problems:
            raise InvalidArgument(problems)
        query = select(DeliveryRecord).order_by(col(DeliveryRecord.created_at), col(DeliveryRecord.id))
        if after is not None:  # keyset: stable while new deliveries arrive
            at, last_id = after
            query = query.where(
                or_(
                    col(DeliveryRecord.created_at) > at,
                    and_(col(DeliveryRecord.created_at) == at, col(DeliveryRecord.id) > last_id),
                )
            )
        if request.partner_id:
            query = query.where(DeliveryRecord.partner_id == request.partner_id)
        if request.subject_id:
            query = query.where(DeliveryRecord.subject_id == request.subject_id)
        if request.status:
            query = query.where(DeliveryRecord.status == request.status)
        size = request.page_size or 100
        async with self._sessions() as session:
            rows = (await session.exec(query.limit(size + 1))).all()
        page, more = rows[:size], len(rows) > size
        return notifications_pb2.ListDeliveriesResponse(
            deliveries=[delivery_to_proto(r) for r in page],
            next_page_token=f"{as_utc(page[-1].created_at).isoformat()}|{page[-1].id}" if more else "",
        )

    async def RegisterChannel(
        self, request: notifications_pb2.RegisterChannelRequest, context: grpc.aio.ServicerContext
    ) -> notifications_pb2.Channel:
        problems = []
        if not request.partner_id:
            problems.append(FieldViolation("partner_id", "is required"))
        kind = KINDS.get(request.kind)
        if kind is None:
            problems.append(FieldViolation("kind", "must be CHANNEL_KIND_WEBHOOK or CHANNEL_KIND_EMAIL"))
        elif (problem := address_problem(kind, request.address)) or (
            kind == "webhook" and (problem := await registration_problem(self._destinations, request.address))
        ):
            problems.append(FieldViolation("address", problem))
        if problems:
            raise InvalidArgument(problems)
        assert kind is not None
        async with self._sessions() as session, session.begin():
            held = (
                await session.exec(
                    select(PartnerChannel).where(
                        PartnerChannel.partner_id == request.partner_id, col(PartnerChannel.active)
                    )
                )
            ).all()
            if any(c.kind == kind and c.address == request.address for c in held):
                raise FailedPrecondition(
                    "this channel is registered already", violation_type="DUPLICATE", subject=request.address
                )
            if len(held) >= MAX_CHANNELS:
                raise FailedPrecondition(
                    f"a partner has at most {MAX_CHANNELS} channels",
                    violation_type="LIMIT",
                    subject="channels",
                )
            secret = secrets.token_urlsafe(32) if kind == "webhook" else ""
            channel = PartnerChannel(
                id=str(uuid.uuid4()),
                partner_id=request.partner_id,
                kind=kind,
                address=request.address,
                secret=self._box.seal(secret) if self._box else secret,
                created_at=utc_now(),
            )
            session.add(channel)
        return channel_to_proto(channel, secret=secret)

    async def ListChannels(
        self, request: notifications_pb2.ListChannelsRequest, context: grpc.aio.ServicerContext
    ) -> notifications_pb2.ListChannelsResponse:
        if not request.partner_id:
            raise InvalidArgument.of("partner_id", "is required")
        async with self._sessions() as session:
            rows = (
                await session.exec(
                    select(PartnerChannel)
                    .where(PartnerChannel.partner_id == request.partner_id)
                    .order_by(col(PartnerChannel.created_at))
                )
            ).all()
        return notifications_pb2.ListChannelsResponse(channels=[channel_to_proto(c) for c in rows])

    async def RemoveChannel(
        self, request: notifications_pb2.RemoveChannelRequest, context: grpc.aio.ServicerContext
    ) -> notifications_pb2.Channel:
        if not request.channel_id:
            raise InvalidArgument.of("channel_id", "is required")
        async with self._sessions() as session, session.begin():
            channel = await session.get(PartnerChannel, request.channel_id)
            if channel is None:
                raise NotFound(f"channel {request.channel_id} not found")
            channel.active = False
            session.add(channel)
            pending = await session.exec(
                select(DeliveryRecord).where(
                    DeliveryRecord.channel_id == channel.id, DeliveryRecord.status == PENDING
                )
            )
            for row in pending.all():
                row.status, row.last_error = FAILED, "channel removed by the partner"
                session.add(row)
        return channel_to_proto(channel)

    async def RetryDelivery(
        self, request: notifications_pb2.RetryDeliveryRequest, context: grpc.aio.ServicerContext
    ) -> notifications_pb2.Delivery:
        if not request.delivery_id:
            raise InvalidArgument.of("delivery_id", "is required")
        async with self._sessions() as session, session.begin():
            row = await session.get(DeliveryRecord, request.delivery_id)
            if row is None:
                raise NotFound(f"delivery {request.delivery_id} not found")
            if row.status != FAILED:
                raise FailedPrecondition(
                    "only a failed delivery is sent again", violation_type="STATUS", subject=row.id
                )
            channel = await session.get(PartnerChannel, row.channel_id) if row.channel_id else None
            if channel is None or not channel.active:
                raise FailedPrecondition(
                    "the delivery's channel is removed", violation_type="CHANNEL", subject=row.channel_id
                )
            row.status, row.next_attempt_at, row.claimed_until = PENDING, utc_now(), None
            row.attempts = 0
            session.add(row)
        return delivery_to_proto(row)


def page_position(token: str) -> tuple[datetime, str] | None:
    """The last delivery of the previous page, from its token ("<created_at>|<id>")."""
    at, _, last_id = token.partition("|")
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        return None
    return (when, last_id) if last_id and when.tzinfo is not None else None
