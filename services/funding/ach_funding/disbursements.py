"""Disbursements, in the domain's words: a fund manager asks for a grant, a reimbursement or a rapid
release to a partner; the money is reserved on the streams that may pay it at once (so approving
can never overdraw), other fund managers approve it (the policy's number; a rapid release, one),
and on the last approval it is posted — owed to the payee; a rejection releases it."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from ach_platform.errors import FailedPrecondition, NotFound
from opentelemetry import metrics
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_funding.domain import disbursements as rules
from ach_funding.domain.disbursements import ApprovalPolicy, RequestStatus
from ach_funding.domain.ledger import Phase, Resolution, canonical
from ach_funding.domain.streams import Cost
from ach_funding.store import DisbursementApproval, DisbursementRequest
from ach_funding.wellness_fund import WellnessFund

decisions = metrics.get_meter("ach_funding.disbursements").create_counter(
    "ach_funding_disbursements",
    unit="{request}",
    description="Disbursement requests by cost type and what became of them",
)


class Disbursements:
    def __init__(self, fund: WellnessFund, policy: ApprovalPolicy) -> None:
        self._fund = fund
        self.policy = policy

    async def request(
        self,
        session: AsyncSession,
        *,
        key: str,
        requester: str,
        payee: str,
        cost_type: str,
        cents: int,
        now: datetime,
        need_domain: str = "",
        geography: str = "",
        purpose: str = "",
    ) -> DisbursementRequest:
        kind = rules.check_request(self.policy, cost_type, cents)
        digest = hashlib.sha256(
            canonical([requester, payee, cost_type, cents, need_domain, geography, purpose])
        ).hexdigest()
        found = (
            await session.exec(select(DisbursementRequest).where(DisbursementRequest.idempotency_key == key))
        ).first()
        if found is not None:
            if found.body_digest != digest:
                raise FailedPrecondition(
                    "idempotency_key: used before with another body",
                    violation_type="IDEMPOTENCY",
                    subject="idempotency_key",
                )
            return found
        request_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"ach:disbursement:{key}"))
        cost = Cost(kind, cents, now.date(), need_domain, geography)
        reserved = await self._fund.charge(
            session,
            key=f"disbursement:{request_id}:reserve",
            cost=cost,
            partner_id=payee,
            now=now,
            phase=Phase.PENDING,
            metadata={"disbursement_id": request_id, "cost_type": kind.value},
        )
        if reserved is None:
            raise FailedPrecondition(
                "amount: the streams that may pay this have not enough room",
                violation_type="FUNDS",
                subject="amount",
            )
        row = DisbursementRequest(
            id=request_id,
            idempotency_key=key,
            body_digest=digest,
            requested_by=requester,
            payee_partner_id=payee,
            cost_type=kind.value,
            need_domain=need_domain,
            geography=geography,
            cents=cents,
            purpose=purpose,
            status=RequestStatus.REQUESTED.value,
            approvals_needed=self.policy.approvals_needed(kind),
            pending_transaction_id=reserved.transaction.id,
            created_at=now,
        )
        session.add(row)
        decisions.add(1, {"cost_type": kind.value, "status": "requested"})
        return row

    async def decide(
        self, session: AsyncSession, request_id: str, decider: str, approve: bool, now: datetime
    ) -> DisbursementRequest:
        query = select(DisbursementRequest).where(DisbursementRequest.id == request_id).with_for_update()
        row = (await session.exec(query)).first()
        if row is None:
            raise NotFound(f"no disbursement request {request_id}")
        approvals = (
            await session.exec(
                select(DisbursementApproval).where(DisbursementApproval.request_id == request_id)
            )
        ).all()
        approved_by = {a.approver_partner_id for a in approvals}
        rules.check_decision(RequestStatus(row.status), row.requested_by, decider, approved_by, approve)
        if not approve:
            await self._fund.ledger.resolve(
                session, f"disbursement:{row.id}:void", row.pending_transaction_id, Resolution.VOID, now
            )
            row.status, row.decided_at = RequestStatus.REJECTED.value, now
        else:
            session.add(DisbursementApproval(request_id=row.id, approver_partner_id=decider, approved_at=now))
            if len(approved_by) + 1 >= row.approvals_needed:
                posted = await self._fund.ledger.resolve(
                    session, f"disbursement:{row.id}:post", row.pending_transaction_id, Resolution.POST, now
                )
                row.status, row.decided_at = RequestStatus.APPROVED.value, now
                row.posted_transaction_id = posted.transaction.id
        if row.status != RequestStatus.REQUESTED.value:
            decisions.add(1, {"cost_type": row.cost_type, "status": row.status})
        session.add(row)
        return row
