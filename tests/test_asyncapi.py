"""The events document for partners (docs/asyncapi.yaml, ``make asyncapi``) is valid AsyncAPI 3.0
and documents every event type of every topic with the fields its proto has. (That the committed
file is what the code gives is ``make asyncapi-check``, run by ``make test``.)

The schema is the official AsyncAPI 3.0.0 JSON Schema, from the npm package @asyncapi/specs 6.11.1
(schemas/3.0.0-without-$id.json, Apache-2.0), kept in tests/data."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
from ach_events.asyncapi import document
from ach_events.partner_topics import inbound_topic, outbound_topic
from ach_events.topics import DOMAIN_TOPICS
from google.protobuf import descriptor_pool

SCHEMA = Path(__file__).parent / "data" / "asyncapi-3.0.0.schema.json"


def problems(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    return [f"{list(e.path)}: {e.message[:200]}" for e in validator.iter_errors(doc)]


def test_the_document_is_valid_asyncapi_3() -> None:
    doc = document()
    assert problems(doc) == []
    # The validation is not vacuous: AsyncAPI 2's verbs and a channel without its address type fail.
    broken = copy.deepcopy(doc)
    broken["operations"]["partner.send"]["action"] = "publish"
    broken["channels"]["partners-partnerId-inbound-v1"]["address"] = 7
    assert len(problems(broken)) >= 2


def test_every_event_of_every_topic_is_documented_with_its_fields() -> None:
    doc = document()
    messages, schemas = doc["components"]["messages"], doc["components"]["schemas"]
    by_address = {c["address"]: c for c in doc["channels"].values()}
    pool = descriptor_pool.Default()
    topics = [*DOMAIN_TOPICS, inbound_topic("{partnerId}"), outbound_topic("{partnerId}")]
    for topic in topics:
        channel = by_address[topic.name]
        assert (
            channel["bindings"]["kafka"]["topicConfiguration"]["max.message.bytes"] == topic.max_message_bytes
        )
        for event_type in topic.event_types:
            ref = channel["messages"][event_type.rsplit(".", 1)[-1]]["$ref"]
            message = messages[ref.rsplit("/", 1)[-1]]
            assert message["name"] == event_type
            payload = schemas[message["payload"]["$ref"].rsplit("/", 1)[-1]]
            fields = {f.json_name for f in pool.FindMessageTypeByName(event_type).fields}
            assert set(payload["properties"]) == fields, event_type
    need = schemas["ach.screening.v1.NeedIdentified"]["properties"]
    assert need["urgent"] == {"type": "boolean"} and need["identifiedAt"]["format"] == "date-time"
