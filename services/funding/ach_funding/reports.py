"""What funders ask for: where each cent of a stream came from and what it paid."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from ach_funding import store
from ach_funding.domain.streams import FundStream, Inflow, Outflow, lineage


@dataclass(frozen=True)
class CentTrace:
    contribution_id: str
    payment_id: str
    cents: int
    referral_id: str
    need_domain: str
    partner_id: str
    outcome: str


@dataclass(frozen=True)
class StreamTrace:
    traces: list[CentTrace]
    contributed: int
    spent: int


async def trace_stream(session: AsyncSession, stream: FundStream) -> StreamTrace:
    """Contributions to payments, first in first out, with the outcome each payment was for."""
    flows = await store.stream_flows(session, stream.account_id)
    inflows = [Inflow(t, c) for t, side, c, _ in flows if side == "credit"]
    outflows = [Outflow(t, c) for t, side, c, _ in flows if side == "debit"]
    about = {t: json.loads(m) for t, _, _, m in flows}
    traces = []
    for link in lineage(inflows, outflows):
        meta = about.get(link.payment_id, {})
        traces.append(
            CentTrace(
                link.contribution_id,
                link.payment_id,
                link.cents,
                meta.get("referral_id", ""),
                meta.get("need_domain", ""),
                meta.get("partner_id", ""),
                "need-met" if meta.get("referral_id") else "",
            )
        )
    return StreamTrace(traces, sum(i.cents for i in inflows), sum(o.cents for o in outflows))
