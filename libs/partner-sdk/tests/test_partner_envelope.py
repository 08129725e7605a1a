"""The SDK writes the envelope the platform reads (it does not import the platform's own code)."""

from __future__ import annotations

from ach.common.v1 import common_pb2
from ach.partners.v1 import partners_pb2
from ach.screening.v1 import screening_pb2
from ach_events.envelope import Envelope
from ach_events.partner_topics import inbound_topic as platform_inbound
from ach_events.partner_topics import outbound_topic as platform_outbound
from ach_partner_sdk import PartnerEvent, inbound_topic, outbound_topic


def test_the_platform_reads_what_the_sdk_writes() -> None:
    submitted = partners_pb2.ScreeningSubmitted(
        submission=screening_pb2.SubmitScreeningRequest(
            submitter_screening_id="chw-42", screened_by=common_pb2.Actor(partner_id="chw-1")
        )
    )
    event = PartnerEvent("chw-1", submitted, key="chw-42")
    read = Envelope.from_record(event.key.encode(), event.value(), event.headers())
    assert (read.id, read.source, read.type, read.key, read.subject) == (
        event.id,
        "/partners/chw-1",
        "ach.partners.v1.ScreeningSubmitted",
        "chw-42",
        "chw-42",
    )
    assert read.message() == submitted
    assert read.dataschema == dict(event.headers())["ce_dataschema"].decode()


def test_topic_names_match_the_platform() -> None:
    assert inbound_topic("chw-1") == platform_inbound("chw-1").name
    assert outbound_topic("chw-1", "test-x") == "test-x." + platform_outbound("chw-1").name
