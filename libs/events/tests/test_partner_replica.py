"""The partner registry replica believes the registry only."""

from __future__ import annotations

from ach.identity.v1 import identity_pb2
from ach_events.envelope import Envelope
from ach_events.partners import PartnerReplica


def record(
    source: str, partner_id: str, roles: list[int], version: int
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    event = identity_pb2.PartnerChanged(
        partner=identity_pb2.Partner(
            partner_id=partner_id,
            name="x",
            type=identity_pb2.PARTNER_TYPE_CBO,
            roles=roles,  # type: ignore[arg-type]
            status=identity_pb2.PARTNER_STATUS_ACTIVE,
            version=version,
        )
    )
    envelope = Envelope.wrap(event, source=source, key=partner_id)
    return envelope.key.encode(), envelope.payload, envelope.headers()


def test_only_the_registry_speaks_for_partners() -> None:
    replica = PartnerReplica("unused:9092")
    replica.apply(*record("/ach/identity", "cbo-1", [identity_pb2.PARTNER_ROLE_REFERRAL_TARGET], 1))
    # Someone else on the partners topic (a misconfigured ACL) promotes cbo-1: nothing changes.
    replica.apply(*record("/partners/cbo-1", "cbo-1", [identity_pb2.PARTNER_ROLE_ACH_ADMIN], 9))
    replica.apply(b"cbo-1", None, [])  # nor does a tombstone delete it
    found = replica.get("cbo-1")
    assert found is not None and found.roles == frozenset({"referral-target"}) and found.version == 1
