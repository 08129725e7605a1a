"""gRPC API of the funding service: translate, delegate to the ledger and the fund."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from ach.funding.v1 import funding_pb2, funding_pb2_grpc
from ach_platform.clock import from_timestamp, utc_now
from ach_platform.errors import InvalidArgument, NotFound, too_long
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_funding import ledger, mappers, reports, store
from ach_funding.domain.ledger import MAX_ID, MAX_MEMO, Resolution
from ach_funding.ledger import Ledger, Written, retrying_conflicts, view
from ach_funding.outcome_payments import OutcomePayments
from ach_funding.store import LedgerAccount
from ach_funding.wellness_fund import WellnessFund

MAX_PAGE_SIZE = 500
T = TypeVar("T")


def page_size(value: int) -> int:
    if value < 0 or value > MAX_PAGE_SIZE:
        raise InvalidArgument.of("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
    return value or 100


class FundingApi(funding_pb2_grpc.FundingServiceServicer):
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], fund: WellnessFund, payments: OutcomePayments
    ) -> None:
        self._sessions = sessions
        self._fund = fund
        self._ledger: Ledger = fund.ledger
        self._payments = payments

    async def _write(
        self, work: Callable[[AsyncSession], Awaitable[Written]]
    ) -> funding_pb2.LedgerTransaction:
        done = await retrying_conflicts(self._sessions, work)
        return mappers.transaction(done.transaction, done.entries, replayed=done.replayed)

    async def GetAccountBalance(
        self, request: funding_pb2.GetAccountBalanceRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.AccountBalance:
        if violations := too_long([("account_id", request.account_id, MAX_ID)]):
            raise InvalidArgument(violations)
        if not request.account_id:
            raise InvalidArgument.of("account_id", "is required")
        async with self._sessions() as session:
            account = await session.get(LedgerAccount, request.account_id)
            if account is None:
                raise NotFound(f"account {request.account_id} not found")
            as_of = from_timestamp(request.as_of) if request.HasField("as_of") else None
            v = view(account)
            if as_of is not None:
                debits, credits = await store.posted_totals_as_of(session, account.id, as_of)
                v = view(
                    LedgerAccount(
                        **{
                            **account.model_dump(),
                            "debits_posted": debits,
                            "credits_posted": credits,
                            "debits_pending": 0,
                            "credits_pending": 0,
                        }
                    )
                )
        t, c = v.totals, account.currency
        return funding_pb2.AccountBalance(
            account_id=account.id,
            kind=account.kind,
            debits_posted=mappers.money(t.debits_posted, c),
            credits_posted=mappers.money(t.credits_posted, c),
            debits_pending=mappers.money(t.debits_pending, c),
            credits_pending=mappers.money(t.credits_pending, c),
            balance=mappers.money(v.balance, c),
            available=mappers.money(v.available, c),
        )

    async def ListTransactions(
        self, request: funding_pb2.ListTransactionsRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.ListTransactionsResponse:
        size = page_size(request.page_size)
        if violations := too_long([("account_id", request.account_id, MAX_ID)]):
            raise InvalidArgument(violations)
        async with self._sessions() as session:
            rows = await store.transactions_of(session, request.account_id, size)
            entries = await store.entries_of(session, [r.id for r in rows])
        by: dict[str, list[store.LedgerEntry]] = {}
        for e in entries:
            by.setdefault(e.transaction_id, []).append(e)
        return funding_pb2.ListTransactionsResponse(
            transactions=[mappers.transaction(r, by.get(r.id, [])) for r in rows]
        )

    async def PostTransaction(
        self, request: funding_pb2.PostTransactionRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.LedgerTransaction:
        draft = mappers.draft(request)
        now = utc_now()
        return await self._write(lambda session: self._ledger.write(session, draft, now))

    async def ResolvePending(
        self, request: funding_pb2.ResolvePendingRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.LedgerTransaction:
        problems = too_long(
            [
                ("idempotency_key", request.idempotency_key, MAX_ID),
                ("pending_transaction_id", request.pending_transaction_id, 36),
            ]
        )
        if problems:
            raise InvalidArgument(problems)
        for name in ("idempotency_key", "pending_transaction_id"):
            if not getattr(request, name):
                raise InvalidArgument.of(name, "is required")
        if request.void and request.entries:
            raise InvalidArgument.of("entries", "a void posts nothing: leave entries empty")
        asked = mappers.entries(request.entries)
        resolution = Resolution.VOID if request.void else Resolution.POST
        now = utc_now()
        return await self._write(
            lambda session: self._ledger.resolve(
                session, request.idempotency_key, request.pending_transaction_id, resolution, now, asked
            )
        )

    async def RecordContribution(
        self, request: funding_pb2.RecordContributionRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.LedgerTransaction:
        problems = too_long(
            [
                ("idempotency_key", request.idempotency_key, MAX_ID),
                ("stream_id", request.stream_id, 100),
                ("memo", request.memo, MAX_MEMO),
            ]
        )
        if problems:
            raise InvalidArgument(problems)
        if request.amount.currency and request.amount.currency != "USD":
            raise InvalidArgument.of("amount.currency", "is not a currency of the ledger")
        now = utc_now()
        done = await self._write(
            lambda session: self._fund.record_contribution(
                session, request.idempotency_key, request.stream_id, request.amount.cents, now, request.memo
            )
        )
        await self._payments.pay_waiting(self._sessions)  # money arrived: what was owed is paid
        return done

    async def ListFundStreams(
        self, request: funding_pb2.ListFundStreamsRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.ListFundStreamsResponse:
        async with self._sessions() as session:
            out = []
            for s in self._fund.catalog.streams:
                account = await session.get(LedgerAccount, s.account_id)
                v = view(account) if account else None
                out.append(mappers.stream(s, v.balance if v else 0, v.available if v else 0))
        return funding_pb2.ListFundStreamsResponse(streams=out)

    async def ListOutcomePayments(
        self, request: funding_pb2.ListOutcomePaymentsRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.ListOutcomePaymentsResponse:
        size = page_size(request.page_size)
        if problems := too_long([("partner_id", request.partner_id, 100), ("status", request.status, 20)]):
            raise InvalidArgument(problems)
        async with self._sessions() as session:
            rows = await store.payments_of(session, request.partner_id, request.status, size)
        return funding_pb2.ListOutcomePaymentsResponse(payments=[mappers.payment(p) for p in rows])

    async def TraceStream(
        self, request: funding_pb2.TraceStreamRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.TraceStreamResponse:
        if problems := too_long([("stream_id", request.stream_id, 100)]):
            raise InvalidArgument(problems)
        stream = self._fund.catalog.stream(request.stream_id)
        if stream is None:
            raise NotFound(f"no fund stream {request.stream_id}")
        async with self._sessions() as session:
            trace = await reports.trace_stream(session, stream)
        return funding_pb2.TraceStreamResponse(
            contributed=mappers.money(trace.contributed),
            spent=mappers.money(trace.spent),
            traces=[
                funding_pb2.CentTrace(
                    contribution_transaction_id=t.contribution_id,
                    payment_transaction_id=t.payment_id,
                    amount=mappers.money(t.cents),
                    referral_id=t.referral_id,
                    need_domain=t.need_domain,
                    paid_partner_id=t.partner_id,
                    outcome=t.outcome,
                )
                for t in trace.traces
            ],
        )

    async def VerifyJournal(
        self, request: funding_pb2.VerifyJournalRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.VerifyJournalResponse:
        async with self._sessions() as session:
            result = await ledger.verify(session)
        return funding_pb2.VerifyJournalResponse(
            intact=result.intact,
            transactions=result.transactions,
            problem=result.problem,
            sequence=result.sequence,
        )
