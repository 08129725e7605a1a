"""The Kafka ACLs of the platform's own services, derived from the topic table: each service may
write the topics it produces (and its dead-letter topic), read those it consumes with its consumer
groups, and read the partner registry. Every grant names a topic literally: no prefix a service holds
covers the intake topic or a partner's inbound topic, which only the identity service reads (and
only the gateway writes on to intake). What a service needs of one partner's topics (the gateway
reads its inbound topic; the services that answer partners write its outbound topic) is granted when
that partner is provisioned (``partner_topics.provision_partner``)."""

from __future__ import annotations

from dataclasses import dataclass

from ach_platform.settings import DEFAULT_PORTS, TOPIC_PROVISIONER, service_principal

from ach_events.topics import ALL_TOPICS, DOMAIN_TOPICS, IDENTITY_PARTNERS, dead_letter_topic, namespaced

# Who writes the topics the table names for several producers.
PRODUCERS_OF = {"every service": tuple(DEFAULT_PORTS), "identity (partner gateway)": ("identity",)}
GATEWAY_GROUP = "identity.partner-gateway"  # the partner gateway's consumer group
# The services that write partners' outbound topics (answers to submissions, notices of refusal).
OUTBOUND_WRITERS = ("screening", "notifications", "directory", "referrals")


@dataclass(frozen=True)
class Grant:
    principal: str
    operation: str  # READ | WRITE | DESCRIBE (| CREATE, DESCRIBE_CONFIGS, ALTER_CONFIGS: the topics Job)
    resource: str  # TOPIC | GROUP
    name: str  # always literal


def service_grants(service: str) -> list[Grant]:
    """Every ACL the service's principal needs, literal names only."""
    principal = f"User:{service_principal(service)}"
    grants: list[Grant] = []

    def topic(operation: str, name: str) -> None:
        grants.append(Grant(principal, operation, "TOPIC", name))
        grants.append(Grant(principal, "DESCRIBE", "TOPIC", name))

    for t in DOMAIN_TOPICS:
        if service in PRODUCERS_OF.get(t.producer, (t.producer,)):
            topic("WRITE", t.physical_name)
        if service in t.consumers or t is IDENTITY_PARTNERS:
            topic("READ", t.physical_name)
    if any(service in t.consumers for t in DOMAIN_TOPICS if t is not IDENTITY_PARTNERS):
        topic("WRITE", dead_letter_topic(service).physical_name)
        grants.append(Grant(principal, "READ", "GROUP", namespaced(service)))
    if service == "identity":
        grants.append(Grant(principal, "READ", "GROUP", namespaced(GATEWAY_GROUP)))
    return list(dict.fromkeys(grants))


def topic_provisioner_grants() -> list[Grant]:
    """The topics Job's principal: create the table's topics and read and set their configs, each
    named literally; it reads and writes no event. (The services only describe their topics.)"""
    principal = f"User:{TOPIC_PROVISIONER}"
    return [
        Grant(principal, operation, "TOPIC", t.physical_name)
        for t in ALL_TOPICS
        for operation in ("CREATE", "DESCRIBE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS")
    ]


def partner_topic_grants(partner_inbound: str, partner_outbound: str) -> list[Grant]:
    """What the services need of one partner's topics: the gateway reads its inbound topic, the
    services that answer partners write its outbound topic."""
    grants = [
        Grant(f"User:{service_principal('identity')}", op, "TOPIC", partner_inbound)
        for op in ("READ", "DESCRIBE")
    ]
    for service in OUTBOUND_WRITERS:
        grants += [
            Grant(f"User:{service_principal(service)}", op, "TOPIC", partner_outbound)
            for op in ("WRITE", "DESCRIBE")
        ]
    return grants


def kafka_acls(grants: list[Grant]) -> list[object]:
    """kafka-python ACL objects for the grants."""
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    return [
        ACL(
            g.principal,
            "*",
            ACLOperation[g.operation],
            ACLPermissionType.ALLOW,
            ResourcePattern(ResourceType[g.resource], g.name, ACLResourcePatternType.LITERAL),
        )
        for g in grants
    ]
