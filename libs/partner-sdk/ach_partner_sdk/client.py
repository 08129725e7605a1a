"""A partner system's client, on kafka-python: publish on the partner's inbound topic (idempotent
producer, acks=all) and read the network's answers on its outbound topic."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ach.partners.v1 import partners_pb2
from ach.referrals.v1 import referrals_pb2
from ach.screening.v1 import screening_pb2
from google.protobuf.message import Message

from ach_partner_sdk.envelope import PartnerEvent, inbound_topic, outbound_topic

REPLY_TYPES: dict[str, type[Message]] = {
    "ach.partners.v1.ScreeningAccepted": partners_pb2.ScreeningAccepted,
    "ach.partners.v1.ScreeningRejected": partners_pb2.ScreeningRejected,
    "ach.partners.v1.ServiceUpdateRejected": partners_pb2.ServiceUpdateRejected,
    "ach.partners.v1.ReferralUpdateRejected": partners_pb2.ReferralUpdateRejected,
}


@dataclass(frozen=True)
class Reply:
    """One event on the outbound topic; ``message`` is None for a type this SDK does not know yet."""

    id: str
    type: str
    key: str
    message: Message | None


class PartnerClient:
    def __init__(
        self,
        partner_id: str,
        bootstrap_servers: str,
        *,
        password: str | None = None,
        cafile: str | None = None,
        security_protocol: str | None = None,
        sasl_mechanism: str = "SCRAM-SHA-512",
        namespace: str = "",
    ) -> None:
        """``password`` is the partner's SCRAM secret (from ``ach-identity kafka provision``); with it the
        connection is SASL_SSL unless ``security_protocol`` says otherwise."""
        self.partner_id = partner_id
        self._namespace = namespace
        protocol = security_protocol or ("SASL_SSL" if password else "PLAINTEXT")
        self._connection: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers.split(","),
            "security_protocol": protocol,
        }
        if protocol.startswith("SASL"):
            self._connection |= {
                "sasl_mechanism": sasl_mechanism,
                "sasl_plain_username": partner_id,
                "sasl_plain_password": password,
            }
        if protocol.endswith("SSL") and cafile:
            self._connection["ssl_cafile"] = cafile
        self._producer: Any = None
        self._consumer: Any = None

    def __enter__(self) -> PartnerClient:
        return self

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        self.close()

    def publish(self, event: PartnerEvent, timeout_s: float = 30) -> str:
        """Publish one event and wait for the broker's acknowledgement; returns the event id."""
        if self._producer is None:
            from kafka.producer import KafkaProducer

            self._producer = KafkaProducer(
                acks="all",
                enable_idempotence=True,
                client_id=f"ach-partner-{self.partner_id}",
                **self._connection,
            )
        future = self._producer.send(
            inbound_topic(self.partner_id, self._namespace),
            value=event.value(),
            key=event.key.encode(),
            headers=event.headers(),
        )
        future.get(timeout=timeout_s)
        return event.id

    def submit_screening(
        self, submission: screening_pb2.SubmitScreeningRequest, timeout_s: float = 30
    ) -> str:
        """A screening in your own name, keyed by your screening id (resubmitting it changes nothing)."""
        submitted = partners_pb2.ScreeningSubmitted()
        submitted.submission.CopyFrom(submission)
        submitted.submission.screened_by.partner_id = self.partner_id
        if not submission.submitter_screening_id:
            raise ValueError("submitter_screening_id is required: it makes a resubmission harmless")
        return self.publish(
            PartnerEvent(self.partner_id, submitted, key=submission.submitter_screening_id), timeout_s
        )

    def report_referral_status(
        self, update: referrals_pb2.UpdateReferralStatusRequest, timeout_s: float = 30
    ) -> str:
        reported = partners_pb2.ReferralStatusReported()
        reported.update.CopyFrom(update)
        reported.update.actor.partner_id = self.partner_id
        return self.publish(PartnerEvent(self.partner_id, reported, key=update.referral_id), timeout_s)

    def report_service_update(self, update: partners_pb2.ServiceUpdateReported, timeout_s: float = 30) -> str:
        """Capacity, status or the HSDS record of a service of yours, keyed by the service id (so
        reports about one service stay in order). Stamped now unless reported_at is set."""
        report = partners_pb2.ServiceUpdateReported()
        report.CopyFrom(update)
        report.partner_id = self.partner_id
        if not report.HasField("reported_at"):
            report.reported_at.GetCurrentTime()
        if not report.service_id:
            raise ValueError("service_id is required")
        return self.publish(PartnerEvent(self.partner_id, report, key=report.service_id), timeout_s)

    def replies(self, timeout_s: float = 10, group: str = "replies") -> Iterator[Reply]:
        """The network's answers on your outbound topic, in your own consumer group (committed as read),
        until ``timeout_s`` passes without one."""
        if self._consumer is None:
            from kafka.consumer import KafkaConsumer

            self._consumer = KafkaConsumer(
                outbound_topic(self.partner_id, self._namespace),
                group_id=_group(self.partner_id, group, self._namespace),
                auto_offset_reset="earliest",
                enable_auto_commit=True,
                consumer_timeout_ms=int(timeout_s * 1000),
                **self._connection,
            )
        for record in self._consumer:
            headers = {k: (v or b"").decode(errors="replace") for k, v in record.headers or ()}
            kind = headers.get("ce_type", "")
            message_class = REPLY_TYPES.get(kind)
            message = None
            if message_class is not None:
                message = message_class()
                message.ParseFromString(record.value)
            yield Reply(headers.get("ce_id", ""), kind, (record.key or b"").decode(errors="replace"), message)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def _group(partner_id: str, name: str, namespace: str) -> str:
    """Partners may use consumer groups under their own prefix only (the ACLs say so)."""
    group = f"ach.partners.{partner_id}.{name}"
    return f"{namespace}.{group}" if namespace else group
