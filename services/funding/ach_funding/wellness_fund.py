"""The Wellness Fund's books over the ledger: the chart of accounts, contributions into streams,
and charging a cost to the streams that may pay it.

A cost charged to streams is written as the nonprofit rules have it: the restricted money is
released (fund stream → net assets without donor restrictions, its purpose met) and the expense is
owed to the partner (expense → the partner's payable), all in one balanced transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from ach_platform.errors import FailedPrecondition, NotFound
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_funding.domain.ledger import AccountKind, Entry, Phase, Resolution, Side, TransactionDraft
from ach_funding.domain.streams import Cost, CostType, FundStream, allocate, eligible, refusal, stream_account
from ach_funding.fund_catalog import FundCatalog
from ach_funding.ledger import Ledger, Written
from ach_funding.store import LedgerAccount, LedgerTransaction, entries_of, view

CASH = "cash"
NET_ASSETS = "net-assets"


def expense_account(cost_type: CostType) -> str:
    return f"expense:{cost_type.value}"


def payable_account(partner_id: str) -> str:
    return f"partner:{partner_id}:payable"


class WellnessFund:
    def __init__(self, ledger: Ledger, catalog: FundCatalog) -> None:
        self.ledger = ledger
        self.catalog = catalog
        self._opened = False

    @property
    def opened(self) -> bool:
        return self._opened

    async def open_books(self, session: AsyncSession, now: datetime) -> None:
        """The accounts every fund has, and one per stream (idempotent; once per process)."""
        if self._opened:
            return
        await self.ledger.open_account(session, CASH, AccountKind.CASH, now, name="Operating cash")
        # Net assets without donor restrictions may show a deficit: it is reported, not refused.
        await self.ledger.open_account(
            session,
            NET_ASSETS,
            AccountKind.NET_ASSETS,
            now,
            name="Without donor restrictions",
            overdraft_allowed=True,
        )
        for cost_type in CostType:
            await self.ledger.open_account(session, expense_account(cost_type), AccountKind.EXPENSE, now)
        for stream in self.catalog.streams:
            await self.ledger.open_account(
                session,
                stream.account_id,
                AccountKind.FUND_STREAM,
                now,
                name=stream.name_en,
                partner_id=stream.funder_partner_id,
            )
        self._opened = True

    def contribution(self, key: str, stream_id: str, cents: int, memo: str = "") -> TransactionDraft:
        stream = self.catalog.stream(stream_id)
        if stream is None:
            raise NotFound(f"no fund stream {stream_id}")
        return TransactionDraft(
            idempotency_key=key,
            kind="contribution",
            entries=(Entry(CASH, Side.DEBIT, cents), Entry(stream.account_id, Side.CREDIT, cents)),
            memo=memo,
            metadata={"stream_id": stream_id, "funder_partner_id": stream.funder_partner_id},
        )

    async def record_contribution(
        self, session: AsyncSession, key: str, stream_id: str, cents: int, now: datetime, memo: str = ""
    ) -> Written:
        draft = self.contribution(key, stream_id, cents, memo)
        await self.open_books(session, now)
        return await self.ledger.write(session, draft, now)

    async def post(self, session: AsyncSession, draft: TransactionDraft, now: datetime) -> Written:
        """A fund manager's own transaction. Money leaves a stream only where its restrictions are
        checked (an outcome payment, a disbursement) or as the exact reversal of an earlier
        transaction (``kind: reversal``, ``metadata.reverses``): never by a hand-written entry."""
        self.check_spending(draft)
        if draft.kind == "reversal":
            await self._check_reversal(session, draft)
        return await self.ledger.write(session, draft, now)

    @staticmethod
    def check_spending(draft: TransactionDraft) -> None:
        """A hand-written transaction moves no money out of the fund's control: it spends no
        stream (restrictions are checked only on the paths that know the cost), owes no partner and
        takes no cash (those need the approvals of a disbursement, or are an outcome payment)."""
        if draft.kind == "reversal":
            return
        for e in draft.entries:
            if e.side is Side.DEBIT and e.account_id.startswith("stream:"):
                why = "is spent only by an outcome payment or a disbursement (its restrictions checked)"
            elif (
                e.side is Side.CREDIT
                and e.account_id.startswith("partner:")
                and e.account_id.endswith(":payable")
            ):
                why = "is owed only by an outcome payment or an approved disbursement"
            elif e.side is Side.CREDIT and e.account_id == CASH:
                why = "is paid out only to settle what a partner is owed (PayPartner) or a shared cost"
            else:
                continue
            raise FailedPrecondition(
                f"entries: {e.account_id} {why}", violation_type="RESTRICTION", subject=e.account_id
            )

    async def resolve_by_hand(
        self,
        session: AsyncSession,
        key: str,
        pending_id: str,
        resolution: Resolution,
        now: datetime,
        asked: Sequence[Entry] = (),
    ) -> Written:
        """A fund manager resolves a reservation it made by hand; an outcome payment's or a
        disbursement's is resolved by its own workflow (need met, approvals), never directly."""
        pending = await session.get(LedgerTransaction, pending_id)
        if pending is not None:
            managed = json.loads(pending.metadata_json)
            if "referral_id" in managed or "disbursement_id" in managed:
                raise FailedPrecondition(
                    f"transaction {pending_id} is resolved by its outcome payment or disbursement",
                    violation_type="MANAGED",
                    subject="pending_transaction_id",
                )
        return await self.ledger.resolve(session, key, pending_id, resolution, now, asked)

    async def _check_reversal(self, session: AsyncSession, draft: TransactionDraft) -> None:
        original_id = draft.metadata.get("reverses", "")
        original = await session.get(LedgerTransaction, original_id) if original_id else None
        if original is None or original.phase != "posted":
            raise FailedPrecondition(
                "metadata.reverses: names no posted transaction", violation_type="REVERSAL"
            )
        mirrored = sorted(
            (e.account_id, "credit" if e.side == "debit" else "debit", e.cents, e.currency)
            for e in await entries_of(session, [original.id])
        )
        asked = sorted((e.account_id, e.side.value, e.cents, e.currency) for e in draft.entries)
        if mirrored != asked:
            raise FailedPrecondition(
                "entries: a reversal mirrors every entry of the transaction it reverses",
                violation_type="REVERSAL",
            )

    async def room(self, session: AsyncSession, streams: list[FundStream]) -> dict[str, int]:
        """What each stream may still spend (its balance less its reservations), as read now; the
        write locks every account it touches in one order and checks again."""
        rows = (
            await session.exec(
                select(LedgerAccount).where(col(LedgerAccount.id).in_([s.account_id for s in streams]))
            )
        ).all()
        found = {a.id: view(a).available for a in rows}
        return {s.stream_id: found[s.account_id] for s in streams if s.account_id in found}

    async def charge(
        self,
        session: AsyncSession,
        *,
        key: str,
        cost: Cost,
        partner_id: str,
        now: datetime,
        phase: Phase = Phase.POSTED,
        metadata: Mapping[str, str] | None = None,
    ) -> Written | None:
        """Charge the cost to the streams that may pay it (the one that expires first first) and
        owe it to the partner; None when they have not enough room between them."""
        await self.open_books(session, now)
        candidates = eligible(self.catalog.streams, cost)
        if not candidates:
            reasons = (
                "; ".join(filter(None, (refusal(s, cost) for s in self.catalog.streams))) or "no fund streams"
            )
            raise FailedPrecondition(
                f"no fund stream may pay this cost: {reasons}", violation_type="RESTRICTION"
            )
        charged = allocate(candidates, await self.room(session, candidates), cost)
        if charged is None:
            return None
        await self.ledger.open_account(
            session, payable_account(partner_id), AccountKind.PAYABLE, now, partner_id=partner_id
        )
        entries: list[Entry] = []
        for stream_id, cents in charged:
            entries += [
                Entry(stream_account(stream_id), Side.DEBIT, cents),
                Entry(NET_ASSETS, Side.CREDIT, cents),
            ]
        entries += [
            Entry(expense_account(cost.cost_type), Side.DEBIT, cost.cents),
            Entry(payable_account(partner_id), Side.CREDIT, cost.cents),
        ]
        draft = TransactionDraft(
            idempotency_key=key,
            kind=cost.cost_type.value,
            entries=tuple(entries),
            phase=phase,
            metadata={
                **(metadata or {}),
                "partner_id": partner_id,
                "need_domain": cost.need_domain,
                "streams": ",".join(f"{s}:{c}" for s, c in charged),
            },
        )
        try:
            return await self.ledger.write(session, draft, now)
        except FailedPrecondition as exc:
            # A stream spent meanwhile by another writer: no room now (the caller owes or waits).
            if exc.violation_type == "OVERDRAFT" and exc.subject.startswith("stream:"):
                return None
            raise


def stream_view(stream: FundStream, account: LedgerAccount | None) -> tuple[int, int]:
    if account is None:
        return 0, 0
    v = view(account)
    return v.balance, v.available
