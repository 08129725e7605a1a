"""Funding partners' money in and out, in the domain's words: pledges to a stream, annual dues,
fee-for-service charges and shared-savings payments from payors are invoiced (owed to the fund);
what a partner pays settles its invoices; what the fund owes a CBO is paid out from cash. A
partner's statement shows both sides for a period."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from ach_platform.errors import InvalidArgument, NotFound
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_funding import store
from ach_funding.domain.ledger import AccountKind, Entry, Side, Totals, TransactionDraft
from ach_funding.ledger import Written
from ach_funding.store import LedgerAccount, LedgerEntry, view
from ach_funding.wellness_fund import CASH, WellnessFund, payable_account

MAX_LINES = 2000  # a statement's postings per account: a longer period is asked for in parts


class InvoiceKind(StrEnum):
    PLEDGE = "pledge"  # restricted: credited to the stream it is for
    DUES = "dues"
    FEE = "fee"  # fee for service
    SHARED_SAVINGS = "shared-savings"  # a payor's shared-savings contract payment


def receivable_account(partner_id: str) -> str:
    return f"partner:{partner_id}:receivable"


def revenue_account(kind: InvoiceKind) -> str:
    return f"revenue:{kind.value}"


class PartnerBilling:
    def __init__(self, fund: WellnessFund) -> None:
        self._fund = fund

    async def _receivable(self, session: AsyncSession, partner_id: str, now: datetime) -> str:
        account_id = receivable_account(partner_id)
        await self._fund.ledger.open_account(
            session, account_id, AccountKind.RECEIVABLE, now, partner_id=partner_id
        )
        return account_id

    async def invoice(
        self,
        session: AsyncSession,
        *,
        key: str,
        partner_id: str,
        kind: str,
        cents: int,
        now: datetime,
        stream_id: str = "",
        period: str = "",
    ) -> Written:
        if kind not in InvoiceKind._value2member_map_:
            raise InvalidArgument.of("kind", "must be pledge, dues, fee or shared-savings")
        invoice_kind = InvoiceKind(kind)
        if invoice_kind is InvoiceKind.PLEDGE and not stream_id:
            raise InvalidArgument.of("stream_id", "a pledge is to a fund stream")
        await self._fund.open_books(session, now)
        if stream_id:
            stream = self._fund.catalog.stream(stream_id)
            if stream is None:
                raise NotFound(f"no fund stream {stream_id}")
            credited = stream.account_id
        else:
            credited = revenue_account(invoice_kind)
            await self._fund.ledger.open_account(session, credited, AccountKind.REVENUE, now)
        debited = await self._receivable(session, partner_id, now)
        draft = TransactionDraft(
            key,
            f"invoice-{invoice_kind.value}",
            (Entry(debited, Side.DEBIT, cents), Entry(credited, Side.CREDIT, cents)),
            metadata={
                "partner_id": partner_id,
                "period": period,
                **({"stream_id": stream_id} if stream_id else {}),
            },
        )
        return await self._fund.ledger.write(session, draft, now)

    async def received(
        self, session: AsyncSession, *, key: str, partner_id: str, cents: int, now: datetime
    ) -> Written:
        """A partner's payment: it settles what it was invoiced, never more (no overdraft)."""
        await self._fund.open_books(session, now)
        credited = await self._receivable(session, partner_id, now)
        draft = TransactionDraft(
            key,
            "payment-received",
            (Entry(CASH, Side.DEBIT, cents), Entry(credited, Side.CREDIT, cents)),
            metadata={"partner_id": partner_id},
        )
        return await self._fund.ledger.write(session, draft, now)

    async def pay_out(
        self, session: AsyncSession, *, key: str, partner_id: str, cents: int, now: datetime
    ) -> Written:
        """Pay a CBO what the fund owes it, from cash: never more than it is owed, nor than cash."""
        await self._fund.open_books(session, now)
        await self._fund.ledger.open_account(
            session, payable_account(partner_id), AccountKind.PAYABLE, now, partner_id=partner_id
        )
        draft = TransactionDraft(
            key,
            "payment-made",
            (Entry(payable_account(partner_id), Side.DEBIT, cents), Entry(CASH, Side.CREDIT, cents)),
            metadata={"partner_id": partner_id},
        )
        return await self._fund.ledger.write(session, draft, now)


@dataclass(frozen=True)
class StatementLine:
    account_id: str
    entry: LedgerEntry
    kind: str


@dataclass(frozen=True)
class Statement:
    partner_id: str
    # (account id, opening balance, closing balance) on each of its accounts
    balances: list[tuple[str, int, int]]
    lines: list[StatementLine]


async def statement(session: AsyncSession, partner_id: str, start: datetime, end: datetime) -> Statement:
    """What the partner was invoiced and paid, and what it earned and was paid, in the period."""
    balances, lines = [], []
    for account_id in (receivable_account(partner_id), payable_account(partner_id)):
        account = await session.get(LedgerAccount, account_id)
        if account is None:
            continue
        opening = await _balance_at(session, account, start)
        closing = await _balance_at(session, account, end)
        balances.append((account_id, opening, closing))
        for entry, kind in await store.entries_between(session, account_id, start, end, MAX_LINES):
            lines.append(StatementLine(account_id, entry, kind))
    return Statement(partner_id, balances, lines)


async def _balance_at(session: AsyncSession, account: LedgerAccount, moment: datetime) -> int:
    debits, credits = await store.posted_totals_as_of(session, account.id, moment, inclusive=False)
    return replace(view(account), totals=Totals(debits_posted=debits, credits_posted=credits)).balance
