"""The Wellness Fund through its gRPC API, as partners with valid certificates would use it (and
try to misuse it), on PostgreSQL: refused writes name the field and rule and post nothing, a CBO
reaches only its own account and payments, a grant is never approved by its requester, and every
transaction is published without its memo."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

import grpc
import pytest
from ach.common.v1 import common_pb2
from ach.funding.v1 import funding_pb2, funding_pb2_grpc
from ach_events.envelope import Envelope
from ach_events.topics import FUNDING_EVENTS
from aiokafka import AIOKafkaConsumer
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.harness import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
STREAM = "health-plan-reinvestment-2026"  # the shipped example's


def usd(cents: int, currency: str = "USD") -> common_pb2.Money:
    return common_pb2.Money(cents=cents, currency=currency)


def entry(
    account: str, side: funding_pb2.Side.ValueType, cents: int, currency: str = "USD"
) -> funding_pb2.Entry:
    return funding_pb2.Entry(account_id=account, side=side, amount=usd(cents, currency))


def refusal(call: Callable[[], object]) -> tuple[grpc.StatusCode, list[str], str]:
    """(code, fields named, message) of a refused call."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    fields: list[str] = []
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is not None:
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                fields += [v.field for v in bad.field_violations]
    return error.code(), fields, error.details() or ""  # type: ignore[attr-defined]


async def published(bootstrap: str, n: int) -> list[funding_pb2.TransactionPosted]:
    reader = AIOKafkaConsumer(
        FUNDING_EVENTS.physical_name, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await reader.start()
    found: list[funding_pb2.TransactionPosted] = []
    try:
        async with asyncio.timeout(60):
            while len(found) < n:
                for records in (await reader.getmany(timeout_ms=500)).values():
                    for r in records:
                        envelope = Envelope.from_record(r.key, r.value, r.headers)
                        found.append(funding_pb2.TransactionPosted.FromString(envelope.payload))
    finally:
        await reader.stop()
    return found


def test_the_fund_through_its_api_as_partners_would_try_it(
    make_stack: Callable[[str], Stack], kafka_bootstrap: str
) -> None:
    stack = make_stack("postgresql")
    stack.start("funding")
    with stack.channel("funding", "funder-1") as channel:
        fund = funding_pb2_grpc.FundingServiceStub(channel)
        gift = funding_pb2.RecordContributionRequest(
            idempotency_key="gift-1", stream_id=STREAM, amount=usd(500_000), memo="Ana's clinic visit"
        )
        first = fund.RecordContribution(gift, timeout=10)
        again = fund.RecordContribution(gift, timeout=10)
        assert again.replayed and again.transaction_id == first.transaction_id
        gift.amount.cents = 500_001
        code, _, message = refusal(lambda: fund.RecordContribution(gift, timeout=10))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "idempotency_key" in message

        def post(*entries: funding_pb2.Entry, key: str = "t-1") -> object:
            return fund.PostTransaction(
                funding_pb2.PostTransactionRequest(idempotency_key=key, kind="adjustment", entries=entries),
                timeout=10,
            )

        D, C = funding_pb2.SIDE_DEBIT, funding_pb2.SIDE_CREDIT
        for entries, field in (
            ((entry("cash", D, 100), entry("net-assets", C, 99)), "entries"),
            ((entry("cash", D, -100), entry("net-assets", C, -100)), "entries[0].amount"),
            (
                (entry("cash", D, 100, "EUR"), entry("net-assets", C, 100, "EUR")),
                "entries[0].amount.currency",
            ),
            (
                (entry("cash", D, 100), entry("net-assets", funding_pb2.SIDE_UNSPECIFIED, 100)),
                "entries[1].side",
            ),
            ((entry("x" * 201, D, 100), entry("net-assets", C, 100)), "entries[0].account_id"),
        ):
            code, fields, _ = refusal(functools.partial(post, *entries))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and field in fields, (field, fields)
        code, _, message = refusal(lambda: post(entry(f"stream:{STREAM}", D, 100), entry("cash", C, 100)))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "restrictions" in message
        # Owing a CBO or paying out cash by hand would skip a disbursement's approvals.
        code, _, message = refusal(
            lambda: post(entry("expense:grant", D, 100), entry("partner:cbo-1:payable", C, 100))
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "approved disbursement" in message
        code, _, message = refusal(lambda: post(entry("expense:grant", D, 100), entry("cash", C, 100)))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "PayPartner" in message
        code, _, message = refusal(
            lambda: post(entry("cash", D, 600_000), entry("expense:grant", C, 600_000))
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "overdraft" in message

        grant = fund.RequestDisbursement(
            funding_pb2.RequestDisbursementRequest(
                idempotency_key="grant-1",
                payee_partner_id="cbo-1",
                cost_type="grant",
                amount=usd(100_000),
                purpose="winter coats",
            ),
            timeout=10,
        )
        assert grant.status == "requested" and grant.approvals_needed == 2
        decide = funding_pb2.DecideDisbursementRequest(request_id=grant.request_id, approve=True)
        # Its reservation is posted by its approvals, not by hand.
        by_hand = funding_pb2.ResolvePendingRequest(
            idempotency_key="by-hand-1", pending_transaction_id=grant.pending_transaction_id
        )
        code, _, message = refusal(lambda: fund.ResolvePending(by_hand, timeout=10))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "disbursement" in message
        code, _, message = refusal(lambda: fund.DecideDisbursement(decide, timeout=10))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "requester" in message
    with stack.channel("funding") as channel:  # another fund manager
        backbone = funding_pb2_grpc.FundingServiceStub(channel)
        once = backbone.DecideDisbursement(decide, timeout=10)
        assert once.status == "requested" and list(once.approved_by) == ["ach-backbone"]
        streams = {
            s.stream_id: s
            for s in backbone.ListFundStreams(funding_pb2.ListFundStreamsRequest(), timeout=10).streams
        }
        assert streams[STREAM].balance.cents == 500_000 and streams[STREAM].available.cents == 400_000
        assert backbone.VerifyJournal(funding_pb2.VerifyJournalRequest(), timeout=10).intact

    with stack.channel("funding", "cbo-1") as channel:  # a CBO with a valid certificate
        cbo = funding_pb2_grpc.FundingServiceStub(channel)
        own = cbo.GetAccountBalance(
            funding_pb2.GetAccountBalanceRequest(account_id="partner:cbo-1:payable"), timeout=10
        )
        assert own.credits_pending.cents == 100_000 and own.credits_posted.cents == 0
        for call in (
            lambda: cbo.GetAccountBalance(
                funding_pb2.GetAccountBalanceRequest(account_id="cash"), timeout=10
            ),
            lambda: cbo.ListOutcomePayments(
                funding_pb2.ListOutcomePaymentsRequest(partner_id="cbo-2"), timeout=10
            ),
            lambda: cbo.ListOutcomePayments(funding_pb2.ListOutcomePaymentsRequest(), timeout=10),
            lambda: cbo.TraceStream(funding_pb2.TraceStreamRequest(stream_id=STREAM), timeout=10),
            lambda: cbo.RecordContribution(gift, timeout=10),
            lambda: cbo.DecideDisbursement(decide, timeout=10),
        ):
            assert refusal(call)[0] == grpc.StatusCode.PERMISSION_DENIED

    events = asyncio.run(published(kafka_bootstrap, 2))  # the contribution, the grant's reservation
    kinds = [(e.transaction.kind, e.transaction.phase) for e in events]
    assert kinds[:2] == [("contribution", "posted"), ("grant", "pending")]
    assert all(e.transaction.memo == "" for e in events)
    assert all(b"Ana" not in e.SerializeToString() for e in events)
