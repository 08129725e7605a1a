"""The network's events as an AsyncAPI 3.0 document, built from the topic table and the protos (the
one source of truth for both), so partners read what the code really does: which topic carries
which event, its key, its retention and size limit, the CloudEvents headers and each message's
fields (in protobuf's JSON mapping, for reading; on the wire the value is the binary protobuf).

``make asyncapi`` writes ``docs/asyncapi.yaml``; ``make asyncapi-check`` (part of ``make test``)
fails when the committed document is not what the code gives."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import ach
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from ach_events.partner_topics import PARTNER_RECORD_MAX_BYTES, inbound_topic, outbound_topic
from ach_events.topics import DOMAIN_TOPICS, Topic

KAFKA_BINDING = "0.5.0"
CLOUDEVENTS_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents 1.0 in Kafka binary mode: the attributes are record headers.",
    "required": ["ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time", "content-type"],
    "properties": {
        "ce_id": {"type": "string", "description": "the event's id (consumers deduplicate on it)"},
        "ce_source": {
            "type": "string",
            "description": "who emitted it: /ach/<service>, or /partners/<partner id> on a partner's topic",
        },
        "ce_type": {"type": "string", "description": "the protobuf message's full name"},
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string", "description": "the aggregate the event is about"},
        "ce_dataschema": {"type": "string", "description": "urn:ach:proto:<type>"},
        "content-type": {"type": "string", "const": "application/protobuf"},
        "traceparent": {"type": "string", "description": "W3C trace context"},
    },
}
_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    **{
        t: {"type": "integer", "format": "int32"}
        for t in (
            FieldDescriptor.TYPE_INT32,
            FieldDescriptor.TYPE_SINT32,
            FieldDescriptor.TYPE_SFIXED32,
            FieldDescriptor.TYPE_UINT32,
            FieldDescriptor.TYPE_FIXED32,
        )
    },
    # proto3's JSON mapping writes 64-bit integers as strings.
    **{
        t: {"type": "string", "format": "int64"}
        for t in (
            FieldDescriptor.TYPE_INT64,
            FieldDescriptor.TYPE_SINT64,
            FieldDescriptor.TYPE_SFIXED64,
            FieldDescriptor.TYPE_UINT64,
            FieldDescriptor.TYPE_FIXED64,
        )
    },
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "description": "seconds, as in 3.5s"},
}


def _load_protos() -> None:
    for module in pkgutil.walk_packages(ach.__path__, "ach."):
        if module.name.endswith("_pb2"):
            importlib.import_module(module.name)


def _channel_id(topic_name: str) -> str:
    return topic_name.removeprefix("ach.").replace(".", "-").replace("{", "").replace("}", "")


class _Schemas:
    """JSON Schemas of protobuf messages and enums, by full name, each built once."""

    def __init__(self) -> None:
        self.found: dict[str, dict[str, Any]] = {}

    def ref(self, name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def message(self, message: Descriptor) -> dict[str, str]:
        if message.full_name not in self.found:
            self.found[message.full_name] = {}  # a placeholder: messages may nest themselves
            self.found[message.full_name] = {
                "type": "object",
                "description": f"{message.full_name} ({message.file.name})",
                "properties": {f.json_name: self._field(f) for f in message.fields},
            }
        return self.ref(message.full_name)

    def enum(self, enum: EnumDescriptor) -> dict[str, str]:
        if enum.full_name not in self.found:
            self.found[enum.full_name] = {"type": "string", "enum": [v.name for v in enum.values]}
        return self.ref(enum.full_name)

    def _single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None:
            known = _WELL_KNOWN.get(field.message_type.full_name)
            return dict(known) if known else self.message(field.message_type)
        if field.enum_type is not None:
            return self.enum(field.enum_type)
        return dict(_SCALARS[field.type])

    def _field(self, field: FieldDescriptor) -> dict[str, Any]:
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            return {"type": "object", "additionalProperties": self._single(entry.fields[1])}
        if field.is_repeated:
            return {"type": "array", "items": self._single(field)}
        return self._single(field)


def _topic_configuration(topic: Topic) -> dict[str, Any]:
    configuration: dict[str, Any] = {
        "cleanup.policy": ["compact"] if topic.compacted else ["delete"],
        "max.message.bytes": topic.max_message_bytes,
    }
    if not topic.compacted:
        configuration["retention.ms"] = topic.retention_days * 24 * 3600 * 1000
    return configuration


def document() -> dict[str, Any]:
    _load_protos()
    pool = descriptor_pool.Default()
    schemas = _Schemas()
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def message_ref(event_type: str, key: str) -> dict[str, str]:
        name = event_type.replace(".", "_")
        if name not in messages:
            messages[name] = {
                "name": event_type,
                "title": event_type.rsplit(".", 1)[-1],
                "contentType": "application/protobuf",
                "headers": {"$ref": "#/components/schemas/CloudEventsHeaders"},
                "payload": schemas.message(pool.FindMessageTypeByName(event_type)),
                "bindings": {
                    "kafka": {"key": {"type": "string", "description": key}, "bindingVersion": KAFKA_BINDING}
                },
            }
        return {"$ref": f"#/components/messages/{name}"}

    def add_channel(topic: Topic, description: str, parameters: dict[str, Any] | None = None) -> str:
        channel_id = _channel_id(topic.name)
        channels[channel_id] = {
            "address": topic.name,
            "description": f"{description} Key: {topic.key}. Retention: {topic.retention}.",
            "messages": {t.rsplit(".", 1)[-1]: message_ref(t, topic.key) for t in topic.event_types},
            "bindings": {
                "kafka": {
                    "topic": topic.name,
                    "partitions": topic.partitions,
                    "topicConfiguration": _topic_configuration(topic),
                    "bindingVersion": KAFKA_BINDING,
                }
            },
        }
        if parameters:
            channels[channel_id]["parameters"] = parameters
        return channel_id

    def add_operation(operation_id: str, action: str, channel_id: str, summary: str) -> None:
        channel = channels[channel_id]
        operations[operation_id] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": summary,
            "messages": [
                {"$ref": f"#/channels/{channel_id}/messages/{name}"} for name in channel["messages"]
            ],
        }

    for topic in DOMAIN_TOPICS:
        channel_id = add_channel(
            topic, f"Published by {topic.producer}; read by {', '.join(topic.consumers) or 'no service yet'}."
        )
        add_operation(
            f"{channel_id}.send", "send", channel_id, f"{topic.producer} publishes (through its outbox)"
        )
        add_operation(
            f"{channel_id}.receive",
            "receive",
            channel_id,
            f"{', '.join(topic.consumers) or 'nobody yet'} consume(s), idempotently, each in its own group",
        )
    partner = {"partnerId": {"description": "the partner's id in the registry (its SASL user name)"}}
    inbound = inbound_topic("{partnerId}")
    inbound_id = add_channel(
        inbound,
        "A partner's own inbound topic: what its systems send the network (screenings, CBOs' referral "
        f"status reports and service updates), at most {PARTNER_RECORD_MAX_BYTES // 1024} KiB a record. "
        "Only that partner may write it; the gateway admits each record under the partner's identity "
        "(ce_source must be /partners/<partner id>).",
        partner,
    )
    add_operation("partner.send", "send", inbound_id, "a partner's system publishes on its inbound topic")
    outbound = outbound_topic("{partnerId}")
    outbound_id = add_channel(
        outbound,
        "A partner's own outbound topic: the network's answers to what it sent (accepted, or rejected "
        "with field-level reasons). Only that partner may read it.",
        partner,
    )
    add_operation("partner.receive", "receive", outbound_id, "a partner's system reads its outbound topic")
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "ACH community-clinical linkage network: events",
            "version": "1",
            "description": (
                "Every event of the network, from the topic table (libs/events/ach_events/topics.py) and "
                "the protos (protos/). Partners write their inbound topic and read their outbound "
                "topic with the partner SDK (libs/partner-sdk); the other topics are the services' "
                "own, shown so partners and auditors can see what flows where. Values are binary "
                "protobuf; the payload schemas give the fields in protobuf's JSON mapping."
            ),
        },
        "defaultContentType": "application/protobuf",
        "servers": {
            "partners": {
                "host": "kafka.example:9094",
                "protocol": "kafka-secure",
                "description": "The partners' listener: TLS, and SCRAM-SHA-512 with ACLs per partner.",
                "security": [{"$ref": "#/components/securitySchemes/partnerScram"}],
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": {"CloudEventsHeaders": CLOUDEVENTS_HEADERS, **dict(sorted(schemas.found.items()))},
            "securitySchemes": {
                "partnerScram": {
                    "type": "scramSha512",
                    "description": "The partner's SCRAM credential, issued by the ACH.",
                }
            },
        },
    }
