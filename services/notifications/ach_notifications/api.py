"""gRPC API of the notifications service: the delivery log."""

from __future__ import annotations

import grpc
from ach.notifications.v1 import notifications_pb2, notifications_pb2_grpc
from ach_platform.clock import to_timestamp
from ach_platform.errors import InvalidArgument
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_notifications.store import DeliveryRecord

MAX_PAGE_SIZE = 500


class NotificationApi(notifications_pb2_grpc.NotificationServiceServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def ListDeliveries(
        self, request: notifications_pb2.ListDeliveriesRequest, context: grpc.aio.ServicerContext
    ) -> notifications_pb2.ListDeliveriesResponse:
        if request.page_size < 0 or request.page_size > MAX_PAGE_SIZE:
            raise InvalidArgument.of("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
        query = select(DeliveryRecord).order_by(col(DeliveryRecord.created_at))
        if request.partner_id:
            query = query.where(DeliveryRecord.partner_id == request.partner_id)
        if request.subject_id:
            query = query.where(DeliveryRecord.subject_id == request.subject_id)
        async with self._sessions() as session:
            rows = (await session.exec(query.limit(request.page_size or 100))).all()
        return notifications_pb2.ListDeliveriesResponse(
            deliveries=[
                notifications_pb2.Delivery(
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
                )
                for r in rows
            ]
        )
