"""gRPC API of the funding service: translate, delegate to the ledger and the fund."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

import grpc
from ach.common.v1 import common_pb2
from ach.funding.v1 import funding_pb2, funding_pb2_grpc
from ach_platform.auth import principal
from ach_platform.clock import from_timestamp, to_timestamp, utc_now
from ach_platform.errors import InvalidArgument, NotFound, too_long
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_funding import ledger, mappers, reports, store
from ach_funding.community_bank import CommunityBank
from ach_funding.disbursements import Disbursements
from ach_funding.domain.ledger import MAX_ID, MAX_MEMO, Resolution, Side, Totals
from ach_funding.journal_writer import JournalWriter
from ach_funding.ledger import Ledger, Written, retrying_conflicts
from ach_funding.outcome_payments import OutcomePayments
from ach_funding.partner_billing import PartnerBilling, statement
from ach_funding.store import DisbursementApproval, DisbursementRequest, LedgerAccount, view
from ach_funding.wellness_fund import WellnessFund

MAX_PAGE_SIZE = 500
T = TypeVar("T")


def bounded(*checks: tuple[str, str, int]) -> None:
    if problems := too_long(checks):
        raise InvalidArgument(problems)


def cents_of(money: common_pb2.Money, field: str = "amount") -> int:
    if money.currency and money.currency != "USD":
        raise InvalidArgument.of(f"{field}.currency", "is not a currency of the ledger")
    if money.cents <= 0:
        raise InvalidArgument.of(f"{field}.cents", "must be a positive whole number of cents")
    return money.cents


def page_size(value: int) -> int:
    if value < 0 or value > MAX_PAGE_SIZE:
        raise InvalidArgument.of("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
    return value or 100


class FundingApi(funding_pb2_grpc.FundingServiceServicer):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        fund: WellnessFund,
        payments: OutcomePayments,
        disbursements: Disbursements,
        billing: PartnerBilling,
        bank: CommunityBank,
        writer: JournalWriter,
    ) -> None:
        self._sessions = sessions
        self._fund = fund
        self._ledger: Ledger = fund.ledger
        self._payments = payments
        self._disbursements = disbursements
        self._billing = billing
        self._bank = bank
        self._writer = writer

    async def _write(
        self, work: Callable[[AsyncSession], Awaitable[Written]]
    ) -> funding_pb2.LedgerTransaction:
        return self._written(await retrying_conflicts(self._sessions, work))

    @staticmethod
    def _written(done: Written) -> funding_pb2.LedgerTransaction:
        return mappers.transaction(done.transaction, done.entries, replayed=done.replayed)

    async def _books_open(self) -> None:
        if self._fund.opened:
            return
        async with self._sessions() as session, session.begin():
            await self._fund.open_books(session, utc_now())

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
                v = replace(v, totals=Totals(debits_posted=debits, credits_posted=credits))
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
        if draft.kind == "reversal":  # checked against what it reverses, in its own transaction
            return await self._write(lambda session: self._fund.post(session, draft, now))
        self._fund.check_spending(draft)
        await self._books_open()
        return self._written(await self._writer.write(draft, now))

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
            lambda session: self._fund.resolve_by_hand(
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
        draft = self._fund.contribution(
            request.idempotency_key, request.stream_id, request.amount.cents, request.memo
        )
        await self._books_open()
        done = self._written(await self._writer.write(draft))
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

    async def RequestDisbursement(
        self, request: funding_pb2.RequestDisbursementRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.Disbursement:
        r = request
        bounded(
            ("idempotency_key", r.idempotency_key, MAX_ID),
            ("payee_partner_id", r.payee_partner_id, 100),
            ("cost_type", r.cost_type, 20),
            ("need_domain", r.need_domain, 100),
            ("geography", r.geography, 20),
            ("purpose", r.purpose, MAX_MEMO),
        )
        for name in ("idempotency_key", "payee_partner_id"):
            if not getattr(r, name):
                raise InvalidArgument.of(name, "is required")
        cents = cents_of(r.amount)
        requester, now = principal().partner_id, utc_now()

        async def work(session: AsyncSession) -> funding_pb2.Disbursement:
            row = await self._disbursements.request(
                session,
                key=r.idempotency_key,
                requester=requester,
                payee=r.payee_partner_id,
                cost_type=r.cost_type,
                cents=cents,
                now=now,
                need_domain=r.need_domain,
                geography=r.geography,
                purpose=r.purpose,
            )
            return await self._disbursement(session, row)

        return await retrying_conflicts(self._sessions, work)

    async def DecideDisbursement(
        self, request: funding_pb2.DecideDisbursementRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.Disbursement:
        bounded(("request_id", request.request_id, 36))
        if not request.request_id:
            raise InvalidArgument.of("request_id", "is required")
        decider, now = principal().partner_id, utc_now()

        async def work(session: AsyncSession) -> funding_pb2.Disbursement:
            row = await self._disbursements.decide(session, request.request_id, decider, request.approve, now)
            await session.flush()
            return await self._disbursement(session, row)

        return await retrying_conflicts(self._sessions, work)

    async def ListDisbursements(
        self, request: funding_pb2.ListDisbursementsRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.ListDisbursementsResponse:
        size = page_size(request.page_size)
        bounded(("status", request.status, 20), ("cost_type", request.cost_type, 20))
        query = select(DisbursementRequest).order_by(col(DisbursementRequest.created_at).desc()).limit(size)
        if request.status:
            query = query.where(DisbursementRequest.status == request.status)
        if request.cost_type:
            query = query.where(DisbursementRequest.cost_type == request.cost_type)
        async with self._sessions() as session:
            rows = (await session.exec(query)).all()
            return funding_pb2.ListDisbursementsResponse(
                disbursements=[await self._disbursement(session, row) for row in rows]
            )

    async def _disbursement(
        self, session: AsyncSession, row: DisbursementRequest
    ) -> funding_pb2.Disbursement:
        approvals = (
            await session.exec(select(DisbursementApproval).where(DisbursementApproval.request_id == row.id))
        ).all()
        return funding_pb2.Disbursement(
            request_id=row.id,
            requested_by=row.requested_by,
            payee_partner_id=row.payee_partner_id,
            cost_type=row.cost_type,
            amount=mappers.money(row.cents),
            need_domain=row.need_domain,
            purpose=row.purpose,
            status=row.status,
            approvals_needed=row.approvals_needed,
            approved_by=sorted(a.approver_partner_id for a in approvals),
            pending_transaction_id=row.pending_transaction_id,
            posted_transaction_id=row.posted_transaction_id or "",
        )

    async def InvoicePartner(
        self, request: funding_pb2.InvoicePartnerRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.LedgerTransaction:
        r = request
        bounded(
            ("idempotency_key", r.idempotency_key, MAX_ID),
            ("partner_id", r.partner_id, 100),
            ("kind", r.kind, 20),
            ("stream_id", r.stream_id, 100),
            ("period", r.period, 20),
        )
        if not r.partner_id:
            raise InvalidArgument.of("partner_id", "is required")
        cents, now = cents_of(r.amount), utc_now()
        return await self._write(
            lambda session: self._billing.invoice(
                session,
                key=r.idempotency_key,
                partner_id=r.partner_id,
                kind=r.kind,
                cents=cents,
                now=now,
                stream_id=r.stream_id,
                period=r.period,
            )
        )

    async def RecordPartnerPayment(
        self, request: funding_pb2.PartnerPaymentRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.LedgerTransaction:
        key, partner, cents = self._payment(request)
        now = utc_now()
        done = await self._write(
            lambda session: self._billing.received(session, key=key, partner_id=partner, cents=cents, now=now)
        )
        await self._payments.pay_waiting(self._sessions)
        return done

    async def PayPartner(
        self, request: funding_pb2.PartnerPaymentRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.LedgerTransaction:
        key, partner, cents = self._payment(request)
        now = utc_now()
        return await self._write(
            lambda session: self._billing.pay_out(session, key=key, partner_id=partner, cents=cents, now=now)
        )

    @staticmethod
    def _payment(request: funding_pb2.PartnerPaymentRequest) -> tuple[str, str, int]:
        bounded(("idempotency_key", request.idempotency_key, MAX_ID), ("partner_id", request.partner_id, 100))
        if not request.partner_id:
            raise InvalidArgument.of("partner_id", "is required")
        return request.idempotency_key, request.partner_id, cents_of(request.amount)

    async def GetPartnerStatement(
        self, request: funding_pb2.GetPartnerStatementRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.PartnerStatement:
        bounded(("partner_id", request.partner_id, 100))
        if not request.partner_id:
            raise InvalidArgument.of("partner_id", "is required")
        now = utc_now()
        start = from_timestamp(request.start) or now.replace(
            month=1, day=1, hour=0, minute=0, second=0, microsecond=0
        )
        end = from_timestamp(request.end) or now
        if end <= start:
            raise InvalidArgument.of("end", "must be after start")
        async with self._sessions() as session:
            found = await statement(session, request.partner_id, start, end)
        return funding_pb2.PartnerStatement(
            partner_id=found.partner_id,
            balances=[
                funding_pb2.StatementBalance(account_id=a, opening=mappers.money(o), closing=mappers.money(c))
                for a, o, c in found.balances
            ],
            lines=[
                funding_pb2.StatementLine(
                    account_id=line.account_id,
                    transaction_id=line.entry.transaction_id,
                    kind=line.kind,
                    side=mappers.PROTO_SIDES[Side(line.entry.side)],
                    amount=mappers.money(line.entry.cents),
                    at=to_timestamp(line.entry.created_at),
                )
                for line in found.lines
            ],
        )

    async def RecordSharedCost(
        self, request: funding_pb2.RecordSharedCostRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.LedgerTransaction:
        r = request
        bounded(
            ("idempotency_key", r.idempotency_key, MAX_ID),
            ("period", r.period, 20),
            ("memo", r.memo, MAX_MEMO),
        )
        cents, now = cents_of(r.amount), utc_now()
        return await self._write(
            lambda session: self._bank.record_cost(
                session, key=r.idempotency_key, cents=cents, now=now, period=r.period, memo=r.memo
            )
        )

    async def InvoiceSharedCosts(
        self, request: funding_pb2.InvoiceSharedCostsRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.LedgerTransaction:
        bounded(("period", request.period, 20))
        if not request.period:
            raise InvalidArgument.of("period", "is required (e.g. 2026-Q3)")
        now = utc_now()
        return await self._write(
            lambda session: self._bank.invoice_period(session, period=request.period, now=now)
        )

    async def GetFundReport(
        self, request: funding_pb2.GetFundReportRequest, context: grpc.aio.ServicerContext
    ) -> funding_pb2.FundReport:
        today = utc_now().date()
        year = request.year or today.year
        if not 2000 <= year <= 2100:
            raise InvalidArgument.of("year", "must be between 2000 and 2100")
        async with self._sessions() as session:
            report = await reports.fund_report(session, self._fund.catalog, year, today)
        return mappers.fund_report(report)
