"""Between the ledger's rows and its protos."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ach.common.v1 import common_pb2
from ach.funding.v1 import funding_pb2
from ach_platform.clock import from_timestamp, to_timestamp
from ach_platform.errors import FieldViolation, InvalidArgument

from ach_funding.domain.ledger import Entry, Phase, Side, TransactionDraft
from ach_funding.domain.streams import FundStream
from ach_funding.reports import FundReport
from ach_funding.store import EntryRow, OutcomePayment, TransactionRow

SIDES = {funding_pb2.SIDE_DEBIT: Side.DEBIT, funding_pb2.SIDE_CREDIT: Side.CREDIT}
PROTO_SIDES = {v: k for k, v in SIDES.items()}


def money(cents: int, currency: str = "USD") -> common_pb2.Money:
    return common_pb2.Money(cents=cents, currency=currency)


def transaction(
    t: TransactionRow, entries: Sequence[EntryRow], *, replayed: bool = False, for_event: bool = False
) -> funding_pb2.LedgerTransaction:
    """The event leaves the memo out (free text a fund manager typed: minimum necessary)."""
    return funding_pb2.LedgerTransaction(
        transaction_id=t.id,
        sequence=t.sequence,
        idempotency_key=t.idempotency_key,
        kind=t.kind,
        phase=t.phase,
        entries=[
            funding_pb2.Entry(
                account_id=e.account_id, side=PROTO_SIDES[Side(e.side)], amount=money(e.cents, e.currency)
            )
            for e in entries
        ],
        resolves_transaction_id=t.resolves_id or "",
        resolution=t.resolution or "",
        metadata=json.loads(t.metadata_json),
        memo="" if for_event else t.memo,
        created_at=to_timestamp(t.created_at),
        expires_at=to_timestamp(t.expires_at) if t.expires_at else None,
        hash=t.hash,
        replayed=replayed,
    )


def entries(items: Sequence[funding_pb2.Entry], field: str = "entries") -> tuple[Entry, ...]:
    """Entries as asked; sides and amounts are checked here, the rest by the ledger's rules."""
    problems = []
    out = []
    for i, e in enumerate(items[:64]):
        if e.side not in SIDES:
            problems.append(FieldViolation(f"{field}[{i}].side", "must be SIDE_DEBIT or SIDE_CREDIT"))
        out.append(Entry(e.account_id, SIDES.get(e.side, Side.DEBIT), e.amount.cents, e.amount.currency))
    if len(items) > 64:
        problems.append(FieldViolation(field, "a transaction has at most 64 entries"))
    if problems:
        raise InvalidArgument(problems)
    return tuple(out)


def draft(request: funding_pb2.PostTransactionRequest) -> TransactionDraft:
    return TransactionDraft(
        idempotency_key=request.idempotency_key,
        kind=request.kind,
        entries=entries(request.entries),
        phase=Phase.PENDING if request.pending else Phase.POSTED,
        memo=request.memo,
        metadata=dict(request.metadata),
        expires_at=from_timestamp(request.expires_at) if request.HasField("expires_at") else None,
    )


def stream(s: FundStream, balance: int, available: int) -> funding_pb2.FundStream:
    return funding_pb2.FundStream(
        stream_id=s.stream_id,
        name_en=s.name_en,
        name_es=s.name_es,
        funder_partner_id=s.funder_partner_id,
        starts=s.starts.isoformat(),
        ends=s.ends.isoformat(),
        cost_types=sorted(c.value for c in s.cost_types),
        need_domains=sorted(s.need_domains),
        geographies=sorted(s.geographies),
        share_percent=s.share_percent,
        pays_internal_referrals=s.pays_internal_referrals,
        reporting=s.reporting,
        balance=money(balance),
        available=money(available),
    )


def payment(p: OutcomePayment) -> funding_pb2.OutcomePayment:
    return funding_pb2.OutcomePayment(
        referral_id=p.referral_id,
        target_partner_id=p.target_partner_id,
        need_domain=p.need_domain,
        status=p.status,
        amount=money(p.cents),
        pending_transaction_id=p.pending_transaction_id or "",
        paid_transaction_id=p.paid_transaction_id or "",
        reason=p.reason,
    )


def fund_report(r: FundReport) -> funding_pb2.FundReport:
    return funding_pb2.FundReport(
        year=r.year,
        streams=[
            funding_pb2.StreamUse(
                stream_id=u.stream.stream_id,
                name_en=u.stream.name_en,
                ends=u.stream.ends.isoformat(),
                contributed=money(u.contributed),
                spent=money(u.spent),
                reserved=money(u.reserved),
                available=money(u.available),
            )
            for u in r.streams
        ],
        budget=[
            funding_pb2.BudgetLine(
                purpose=b.purpose,
                budget=money(b.budget),
                actual=money(b.actual),
                variance=money(b.variance),
                used_percent=b.used_percent or 0.0,
            )
            for b in r.budget
        ],
        runway=funding_pb2.Runway(
            secured=money(r.runway.secured),
            monthly_burn=money(r.runway.monthly_burn),
            months=r.runway.months or 0.0,
            runs_out=r.runway.runs_out.strftime("%Y-%m") if r.runway.runs_out else "",
        ),
        cost_per_outcome=[
            funding_pb2.DomainCost(
                need_domain=d.need_domain,
                outcomes=d.outcomes,
                spent=money(d.cents),
                per_outcome=money(d.per_outcome),
            )
            for d in r.cost_per_outcome
        ],
        partners=[
            funding_pb2.PartnerPayments(
                partner_id=p.partner_id,
                outcomes_paid=p.outcomes_paid,
                outcome_payments=money(p.outcome_cents),
                owed=money(p.owed),
                paid_out=money(p.paid_out),
            )
            for p in r.partners
        ],
        rapid_releases=money(r.rapid_releases),
    )
