"""Partner-facing topics and their ACLs: each partner system publishes on its own inbound topic and
reads its own outbound topic, as its own Kafka principal (User:<partner-id>, SASL/SCRAM). Kafka's
authorizer keeps one partner from writing another's inbound topic; the partner gateway then checks
that what an event claims about its sender names the topic's partner.

    ach.partners.<partner-id>.inbound.v1    the partner writes (WRITE, DESCRIBE); the gateway reads
    ach.partners.<partner-id>.outbound.v1   the platform writes; the partner reads (READ, DESCRIBE)
    consumer groups "ach.partners.<partner-id>.*"   the partner's own (READ, prefixed)
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from ach_platform.settings import RESERVED_PRINCIPALS

from ach_events.service_grants import kafka_acls, partner_topic_grants
from ach_events.topics import Topic, _connect_admin, ensure_topics, namespaced

PARTNER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$")


PARTNER_RECORD_MAX_BYTES = 256 * 1024


def inbound_topic(partner_id: str) -> Topic:
    return Topic(
        name=f"ach.partners.{partner_id}.inbound.v1",
        key="aggregate id",
        producer=partner_id,
        consumers=("identity",),
        max_message_bytes=PARTNER_RECORD_MAX_BYTES,
        event_types=(
            "ach.partners.v1.ScreeningSubmitted",
            "ach.partners.v1.ReferralStatusReported",
            "ach.partners.v1.ServiceUpdateReported",
        ),
    )


def outbound_topic(partner_id: str) -> Topic:
    return Topic(
        name=f"ach.partners.{partner_id}.outbound.v1",
        key="subject id",
        producer="notifications, screening",
        consumers=(partner_id,),
        event_types=(
            "ach.partners.v1.ScreeningAccepted",
            "ach.partners.v1.ScreeningRejected",
            "ach.partners.v1.ServiceUpdateRejected",
            "ach.partners.v1.ReferralUpdateRejected",
        ),
    )


def inbound_pattern() -> str:
    """The regular expression the gateway subscribes with: every partner's inbound topic."""
    return "^" + re.escape(namespaced("ach.partners.")) + r"[a-z0-9-]+\.inbound\.v1$"


def partner_of_inbound(physical_topic: str) -> str | None:
    match = re.fullmatch(
        re.escape(namespaced("ach.partners.")) + r"([a-z0-9-]+)\.inbound\.v1", physical_topic
    )
    return match.group(1) if match else None


@dataclass(frozen=True)
class Provisioned:
    partner_id: str
    topics: tuple[str, ...]
    acls: int
    credential: bool


def provision_partner(
    bootstrap_servers: str, partner_id: str, password: str | None = None, timeout_s: float = 20
) -> Provisioned:
    """Create the partner's topics, its SCRAM credential (when a password is given) and its ACLs.
    Idempotent: provisioning twice changes nothing (a new password replaces the old one)."""
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    if not PARTNER_ID.match(partner_id):
        raise ValueError(f"{partner_id!r} is not a partner id")
    if partner_id in RESERVED_PRINCIPALS:
        raise ValueError(f"{partner_id!r} is a platform service's principal, never a partner's")
    inbound, outbound = inbound_topic(partner_id), outbound_topic(partner_id)
    ensure_topics(bootstrap_servers, (inbound, outbound), timeout_s=timeout_s)
    principal = f"User:{partner_id}"

    def allow(operation: ACLOperation, kind: ResourceType, name: str, prefixed: bool = False) -> ACL:
        pattern = ACLResourcePatternType.PREFIXED if prefixed else ACLResourcePatternType.LITERAL
        return ACL(principal, "*", operation, ACLPermissionType.ALLOW, ResourcePattern(kind, name, pattern))

    acls = [
        allow(ACLOperation.WRITE, ResourceType.TOPIC, inbound.physical_name),
        allow(ACLOperation.DESCRIBE, ResourceType.TOPIC, inbound.physical_name),
        allow(ACLOperation.READ, ResourceType.TOPIC, outbound.physical_name),
        allow(ACLOperation.DESCRIBE, ResourceType.TOPIC, outbound.physical_name),
        allow(
            ACLOperation.READ, ResourceType.GROUP, namespaced(f"ach.partners.{partner_id}."), prefixed=True
        ),
        *kafka_acls(partner_topic_grants(inbound.physical_name, outbound.physical_name)),  # type: ignore[list-item]
    ]
    admin = _connect_admin(bootstrap_servers, timeout_s, time.monotonic() + timeout_s)
    try:
        if password:
            _upsert_scram(admin, partner_id, password)
        result = admin.create_acls(acls)
        failed = result.get("failed", [])
        if failed:
            raise RuntimeError(f"ACLs for {partner_id} not created: {failed[0].__name__}")
    finally:
        admin.close()
    return Provisioned(partner_id, (inbound.physical_name, outbound.physical_name), len(acls), bool(password))


def grant_services(bootstrap_servers: str, services: list[str], timeout_s: float = 20) -> int:
    """Create the services' own ACLs (``service_grants``) and the topics Job's; returns how many.
    Idempotent."""
    from ach_events.service_grants import service_grants, topic_provisioner_grants

    acls = kafka_acls([g for s in services for g in service_grants(s)] + topic_provisioner_grants())
    admin = _connect_admin(bootstrap_servers, timeout_s, time.monotonic() + timeout_s)
    try:
        failed = admin.create_acls(acls).get("failed", [])
        if failed:
            raise RuntimeError(f"service ACLs not created: {failed[0].__name__}")
    finally:
        admin.close()
    return len(acls)


def set_scram_credential(bootstrap_servers: str, user: str, password: str, timeout_s: float = 20) -> None:
    """Set (or replace) a principal's SCRAM-SHA-512 credential, e.g. a service's."""
    admin = _connect_admin(bootstrap_servers, timeout_s, time.monotonic() + timeout_s)
    try:
        _upsert_scram(admin, user, password)
    finally:
        admin.close()


def _upsert_scram(admin: Any, user: str, password: str) -> None:
    from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

    errors = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(user, ScramMechanism.SCRAM_SHA_512, password)]
    )
    if errors.get(user):
        raise RuntimeError(f"SCRAM credential for {user}: {errors[user]}")
