"""The CloudEvents envelope: what goes on the wire and what is refused."""

from __future__ import annotations

import re

import pytest
from ach.screening.v1 import screening_pb2
from ach_events.envelope import CONTENT_TYPE, Envelope, EnvelopeError


def need() -> screening_pb2.NeedIdentified:
    return screening_pb2.NeedIdentified(
        need_id="n1", screening_id="s1", resident_id="r1", need_domain="food-insecurity"
    )


def test_binary_mode_headers_and_round_trip() -> None:
    envelope = Envelope.wrap(need(), source="/ach/screening", key="r1")
    headers = dict(envelope.headers())
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"ach.screening.v1.NeedIdentified"
    assert headers["ce_source"] == b"/ach/screening"
    assert headers["ce_subject"] == b"r1"
    assert headers["ce_dataschema"] == b"urn:ach:proto:ach.screening.v1.NeedIdentified"
    assert headers["content-type"] == CONTENT_TYPE.encode()
    assert headers["ce_time"].endswith(b"Z")
    back = Envelope.from_record(b"r1", envelope.payload, envelope.headers())
    assert back.id == envelope.id and back.key == "r1"
    assert back.message() == need()


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h: [x for x in h if x[0] != "ce_id"], "missing header(s) ce_id"),
        (lambda h: [x for x in h if x[0] != "ce_type"], "missing header(s) ce_type"),
        (
            lambda h: [(k, b"0.3" if k == "ce_specversion" else v) for k, v in h],
            "unsupported CloudEvents specversion",
        ),
        (
            lambda h: [(k, b"application/json" if k == "content-type" else v) for k, v in h],
            "unsupported content-type",
        ),
        (
            lambda h: [(k, b"ach.nope.v1.Nothing" if k == "ce_type" else v) for k, v in h],
            "unknown event type",
        ),
        (lambda h: [(k, b"\xff\xfe" if k == "ce_source" else v) for k, v in h], "is not UTF-8"),
        (lambda h: [(k, b"yesterday" if k == "ce_time" else v) for k, v in h], "is not an RFC 3339 time"),
    ],
)
def test_invalid_records_are_named(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    envelope = Envelope.wrap(need(), source="/ach/screening", key="r1")
    with pytest.raises(EnvelopeError, match=re.escape(reason)):
        Envelope.from_record(b"r1", envelope.payload, mutate(envelope.headers())).message()


def test_undecodable_payload_is_refused() -> None:
    envelope = Envelope.wrap(need(), source="/ach/screening", key="r1")
    with pytest.raises(EnvelopeError, match=r"payload is not a valid ach\.screening\.v1\.NeedIdentified"):
        Envelope.from_record(b"r1", b"\xff\xff\xff\xff", envelope.headers()).message()


def test_record_without_key_is_refused() -> None:
    envelope = Envelope.wrap(need(), source="/ach/screening", key="r1")
    with pytest.raises(EnvelopeError, match="no key"):
        Envelope.from_record(None, envelope.payload, envelope.headers())


def test_required_fields_make_an_event_poison_naming_them() -> None:
    from ach_events.consumer import PoisonEvent, require_fields

    with pytest.raises(
        PoisonEvent, match=r"ach\.screening\.v1\.NeedIdentified without resident_id, need_domain"
    ):
        require_fields(screening_pb2.NeedIdentified(need_id="n"), "need_id", "resident_id", "need_domain")
    require_fields(need(), "need_id", "resident_id", "need_domain")
