"""The community bank, in the domain's words: the network's shared infrastructure costs are
recorded into a cost pool as they are paid, and each period the pool is invoiced to the funding
partners by their agreed shares (to the cent), once per period."""

from __future__ import annotations

from datetime import datetime

from ach_platform.errors import FailedPrecondition
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_funding import store
from ach_funding.domain.community_bank import split
from ach_funding.domain.ledger import AccountKind, Entry, Side, TransactionDraft
from ach_funding.ledger import Written
from ach_funding.partner_billing import receivable_account
from ach_funding.store import LedgerAccount, view
from ach_funding.wellness_fund import CASH, WellnessFund

COST_POOL = "cost-pool:infrastructure"


class CommunityBank:
    def __init__(self, fund: WellnessFund) -> None:
        self._fund = fund

    async def _pool(self, session: AsyncSession, now: datetime) -> None:
        await self._fund.open_books(session, now)
        await self._fund.ledger.open_account(
            session, COST_POOL, AccountKind.COST_POOL, now, name="Shared infrastructure"
        )

    async def record_cost(
        self, session: AsyncSession, *, key: str, cents: int, now: datetime, period: str, memo: str = ""
    ) -> Written:
        await self._pool(session, now)
        draft = TransactionDraft(
            key,
            "shared-cost",
            (Entry(COST_POOL, Side.DEBIT, cents), Entry(CASH, Side.CREDIT, cents)),
            memo=memo,
            metadata={"period": period},
        )
        return await self._fund.ledger.write(session, draft, now)

    async def invoice_period(self, session: AsyncSession, *, period: str, now: datetime) -> Written:
        """Invoice what is in the pool to the partners by share; the same period once (asked again,
        the first invoice is the answer: costs recorded since wait for the next period)."""
        shares = self._fund.catalog.shares
        if not shares:
            raise FailedPrecondition(
                "no community bank shares are agreed (funds file)", violation_type="SHARES"
            )
        key = f"community-bank:{period}"
        if (done := await store.by_key(session, key)) is not None:
            return Written(done, await store.entries_of(session, [done.id]), replayed=True)
        await self._pool(session, now)
        pool = await session.get(LedgerAccount, COST_POOL)
        assert pool is not None
        cents = view(pool).available
        if cents <= 0:
            raise FailedPrecondition(
                f"the cost pool holds nothing to invoice for {period}", violation_type="EMPTY"
            )
        entries = [Entry(COST_POOL, Side.CREDIT, cents)]
        for partner_id, part in split(cents, shares):
            if part > 0:
                account = receivable_account(partner_id)
                await self._fund.ledger.open_account(
                    session, account, AccountKind.RECEIVABLE, now, partner_id=partner_id
                )
                entries.append(Entry(account, Side.DEBIT, part))
        draft = TransactionDraft(key, "shared-cost-invoice", tuple(entries), metadata={"period": period})
        return await self._fund.ledger.write(session, draft, now)
