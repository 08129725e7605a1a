"""The service host's wiring: servicers named from their protos, handlers keyed by message class and
checked against the topic table when the service starts."""

from __future__ import annotations

import pytest
from ach.partners.v1 import partners_pb2
from ach.referrals.v1 import referrals_pb2
from ach.residents.v1 import residents_pb2_grpc
from ach.screening.v1 import screening_pb2, screening_pb2_grpc
from ach_events.envelope import Envelope
from ach_events.outbox import Outbox
from ach_events.partner_topics import inbound_pattern, inbound_topic
from ach_events.runtime import Runtime, by_event_type, grpc_service_name
from ach_events.topics import REFERRAL_EVENTS, RESIDENT_EVENTS, SCREENING_EVENTS
from ach_platform.settings import ConfigError
from google.protobuf.message import Message
from sqlmodel.ext.asyncio.session import AsyncSession


async def handle(session: AsyncSession, envelope: Envelope, message: Message) -> None:
    return None


def test_a_servicer_is_named_from_its_proto() -> None:
    assert grpc_service_name(screening_pb2_grpc.add_ScreeningServiceServicer_to_server) == (
        "ach.screening.v1.ScreeningService"
    )
    assert grpc_service_name(residents_pb2_grpc.add_ConsentRegistryServicer_to_server) == (
        "ach.residents.v1.ConsentRegistry"
    )


def test_handlers_are_keyed_by_the_messages_full_name() -> None:
    keyed = by_event_type({screening_pb2.NeedIdentified: handle}, [SCREENING_EVENTS, RESIDENT_EVENTS])
    assert keyed == {"ach.screening.v1.NeedIdentified": handle}


def test_a_type_no_topic_of_the_subscription_carries_stops_the_wiring_naming_it() -> None:
    # The referral events are not on the screening topic: this handler would never run.
    with pytest.raises(ConfigError) as raised:
        by_event_type(
            {screening_pb2.NeedIdentified: handle, referrals_pb2.ReferralCreated: handle}, [SCREENING_EVENTS]
        )
    assert "ach.referrals.v1.ReferralCreated" in str(raised.value)
    assert "ach.screening.v1.NeedIdentified" not in str(raised.value)
    with pytest.raises(ConfigError, match=r"ach\.screening\.v1\.NeedIdentifed"):  # misspelt
        by_event_type({"ach.screening.v1.NeedIdentifed": handle}, [SCREENING_EVENTS])
    assert by_event_type({referrals_pb2.ReferralCreated: handle}, [REFERRAL_EVENTS])


def test_a_pattern_subscriptions_types_are_checked_against_the_topics_it_matches() -> None:
    runtime = Runtime(None, None, None, Outbox("/ach/test"))  # type: ignore[arg-type]
    partner_topic = inbound_topic("any-partner")
    runtime.consume_pattern(
        inbound_pattern(), partner_topic, "gateway", {partners_pb2.ScreeningSubmitted: handle}, admit_all
    )
    with pytest.raises(ConfigError, match=r"ach\.referrals\.v1\.ReferralCreated"):
        # Partners do not publish referral events: the handler would never run.
        runtime.consume_pattern(
            inbound_pattern(), partner_topic, "gateway", {referrals_pb2.ReferralCreated: handle}, admit_all
        )


def admit_all(topic: str, envelope: Envelope) -> str | None:
    return None
