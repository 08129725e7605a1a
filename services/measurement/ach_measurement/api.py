"""gRPC API of the measurement service."""

from __future__ import annotations

import grpc
from ach.measurement.v1 import measurement_pb2, measurement_pb2_grpc
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_measurement import domain
from ach_measurement.store import counters_for


class MeasurementApi(measurement_pb2_grpc.MeasurementServiceServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def GetReferralFunnel(
        self, request: measurement_pb2.GetReferralFunnelRequest, context: grpc.aio.ServicerContext
    ) -> measurement_pb2.ReferralFunnel:
        async with self._sessions() as session:
            counts = await counters_for(session, request.need_domain)
        return measurement_pb2.ReferralFunnel(
            need_domain=request.need_domain, **{m: counts.get(m, 0) for m in domain.FUNNEL}
        )
