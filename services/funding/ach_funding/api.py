"""gRPC API of the funding service (read side of the ledger for now)."""

from __future__ import annotations

import grpc
from ach.common.v1 import common_pb2
from ach.funding.v1 import funding_pb2, funding_pb2_grpc
from ach_platform.errors import InvalidArgument, NotFound
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_funding import domain
from ach_funding.events import to_proto
from ach_funding.store import Account, totals, transfers_of

MAX_PAGE_SIZE = 500


class FundingApi(funding_pb2_grpc.FundingServiceServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def GetAccountBalance(
        self, request: funding_pb2.GetAccountBalanceRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.AccountBalance:
        if not request.account_id:
            raise InvalidArgument.of("account_id", "is required")
        async with self._sessions() as session:
            if await session.get(Account, request.account_id) is None:
                raise NotFound(f"account {request.account_id} not found")
            debits, credits = await totals(session, request.account_id)
        return funding_pb2.AccountBalance(
            account_id=request.account_id,
            debits_posted=common_pb2.Money(cents=debits, currency=domain.LEDGER_CURRENCY),
            credits_posted=common_pb2.Money(cents=credits, currency=domain.LEDGER_CURRENCY),
        )

    async def ListTransfers(
        self, request: funding_pb2.ListTransfersRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.ListTransfersResponse:
        if request.page_size < 0 or request.page_size > MAX_PAGE_SIZE:
            raise InvalidArgument.of("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
        async with self._sessions() as session:
            rows = await transfers_of(session, request.account_id, request.page_size or 100)
        return funding_pb2.ListTransfersResponse(transfers=[to_proto(r) for r in rows])
