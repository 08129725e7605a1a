"""Kafka over TLS with SASL/SCRAM, per-partner topic ACLs, and the partner gateway, against the real
broker's SASL_SSL listener (scripts/kafka/broker.sh opens it on 9094 with ACLs enforced).

A partner's system authenticates as its own principal, may write its own inbound topic and no one
else's; an event on its topic that claims another partner goes to the dead-letter topic with the
reason, and the gateway goes on to admit the next, well-identified one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from ach.common.v1 import common_pb2
from ach.partners.v1 import partners_pb2
from ach.screening.v1 import screening_pb2
from ach_events.envelope import Envelope
from ach_events.kafka_security import KafkaSecurity, broker_security
from ach_events.partner_topics import grant_services, inbound_topic, provision_partner, set_scram_credential
from ach_events.service_grants import OUTBOUND_WRITERS, service_grants
from ach_events.topics import PARTNER_INTAKE, REFERRAL_EVENTS, dead_letter_topic, ensure_topics
from ach_platform.settings import ConfigError
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from google.protobuf.message import Message
from kafka.errors import TopicAuthorizationFailedError as KafkaPythonAuthorization

from tests.harness import Stack

pytestmark = pytest.mark.slow


def as_partner(partner: str, password: str, cafile: str) -> KafkaSecurity:
    return KafkaSecurity.from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": partner,
            "KAFKA_SASL_PASSWORD": password,
            "KAFKA_SSL_CAFILE": cafile,
        }
    )


def screening_from(partner: str, claimed: str) -> partners_pb2.ScreeningSubmitted:
    return partners_pb2.ScreeningSubmitted(
        submission=screening_pb2.SubmitScreeningRequest(
            submitter_screening_id=str(uuid.uuid4()),
            resident_id="r-1",
            instrument_id="ahc-hrsn-core",
            screened_by=common_pb2.Actor(partner_id=claimed),
        )
    )


async def send(bootstrap: str, security: KafkaSecurity, topic: str, message: Message, source: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, **security.aiokafka())
    await producer.start()
    try:
        envelope = Envelope.wrap(message, source=source, key="r-1")
        await producer.send_and_wait(topic, envelope.payload, key=b"r-1", headers=envelope.headers())
    finally:
        await producer.stop()


async def read(bootstrap: str, topic: str, n: int, timeout_s: float = 60) -> list[dict[str, bytes]]:
    reader = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await reader.start()
    found: list[dict[str, bytes]] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(found) < n:
                for records in (await reader.getmany(timeout_ms=500)).values():
                    found.extend(dict(r.headers) for r in records)
    finally:
        await reader.stop()
    return found


def test_security_settings_fail_fast_with_one_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs KAFKA_SASL_USERNAME"):
        KafkaSecurity.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    with pytest.raises(ConfigError, match="is not one of"):
        KafkaSecurity.from_env({"KAFKA_SECURITY_PROTOCOL": "KERBEROS"})
    with pytest.raises(ConfigError, match="KAFKA_SASL_PASSWORD_FILE"):
        KafkaSecurity.from_env(
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_USERNAME": "svc",
                "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "missing"),
            }
        )
    secret = tmp_path / "password"
    secret.write_text("correct horse battery staple\n")
    security = KafkaSecurity.from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_USERNAME": "svc",
            "KAFKA_SASL_PASSWORD_FILE": str(secret),
        }
    )
    assert security.password == "correct horse battery staple"
    assert "staple" not in security.describe() and "svc" in security.describe()


def test_partners_write_only_their_own_inbound_topic_over_sasl_ssl(
    kafka_bootstrap: str, kafka_namespace: str, sasl_bootstrap: tuple[str, str]
) -> None:
    bootstrap, cafile = sasl_bootstrap
    passwords = {p: uuid.uuid4().hex for p in ("clinic-1", "cbo-1")}
    for partner, password in passwords.items():
        done = provision_partner(kafka_bootstrap, partner, password)
        assert done.credential and done.acls == 5 + 2 + 2 * len(
            OUTBOUND_WRITERS
        )  # the partner's, the services'
    clinic = as_partner("clinic-1", passwords["clinic-1"], cafile)
    own, others = inbound_topic("clinic-1").physical_name, inbound_topic("cbo-1").physical_name

    asyncio.run(send(bootstrap, clinic, own, screening_from("clinic-1", "clinic-1"), "/partners/clinic-1"))
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(send(bootstrap, clinic, others, screening_from("clinic-1", "cbo-1"), "/partners/cbo-1"))
    # Nor may a partner write the platform's own topics.
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(
            send(bootstrap, clinic, PARTNER_INTAKE.physical_name, screening_from("clinic-1", "clinic-1"), "x")
        )
    # A wrong password does not get in at all.
    with pytest.raises(KafkaError):
        asyncio.run(
            send(
                bootstrap,
                as_partner("clinic-1", "wrong", cafile),
                own,
                partners_pb2.ScreeningSubmitted(),
                "x",
            )
        )
    assert len(asyncio.run(read(kafka_bootstrap, own, 1))) == 1


def test_a_service_writes_only_its_own_topics_and_no_partner_takes_a_services_name(
    kafka_bootstrap: str, kafka_namespace: str, sasl_bootstrap: tuple[str, str]
) -> None:
    bootstrap, cafile = sasl_bootstrap
    provision_partner(kafka_bootstrap, "clinic-1", uuid.uuid4().hex)
    grant_services(kafka_bootstrap, ["referrals", "screening"])
    password = uuid.uuid4().hex
    set_scram_credential(kafka_bootstrap, "ach-referrals", password)
    referrals = as_partner("ach-referrals", password, cafile)
    own = REFERRAL_EVENTS.physical_name
    ensure_topics(kafka_bootstrap, (REFERRAL_EVENTS, PARTNER_INTAKE))
    asyncio.run(send(bootstrap, referrals, own, screening_from("x", "x"), "/ach/referrals"))
    # Its grants name topics literally: none covers the intake topic or a partner's inbound topic.
    for topic in (PARTNER_INTAKE.physical_name, inbound_topic("clinic-1").physical_name):
        with pytest.raises(TopicAuthorizationFailedError):
            asyncio.run(
                send(
                    bootstrap, referrals, topic, screening_from("clinic-1", "clinic-1"), "/partners/clinic-1"
                )
            )
    # A partner may not be given a service's name (its credential would replace the service's).
    with pytest.raises(ValueError, match="platform service"):
        provision_partner(kafka_bootstrap, "ach-referrals", uuid.uuid4().hex)
    grants = {g.name for g in service_grants("referrals")}
    assert all(not g.endswith(".") for g in grants)  # nothing that reads as a prefix


def test_gateway_dead_letters_events_claiming_another_partner_and_admits_the_next(
    make_stack: Callable[[str], Stack], kafka_bootstrap: str, sasl_bootstrap: tuple[str, str]
) -> None:
    bootstrap, cafile = sasl_bootstrap
    password = uuid.uuid4().hex
    provision_partner(kafka_bootstrap, "clinic-1", password)  # before the gateway starts: it finds the topic
    stack = make_stack("sqlite")
    stack.start("identity")
    clinic = as_partner("clinic-1", password, cafile)
    topic = inbound_topic("clinic-1").physical_name

    asyncio.run(send(bootstrap, clinic, topic, screening_from("clinic-1", "clinic-2"), "/partners/clinic-1"))
    asyncio.run(send(bootstrap, clinic, topic, screening_from("clinic-1", "clinic-1"), "/partners/cbo-1"))
    asyncio.run(send(bootstrap, clinic, topic, screening_from("clinic-1", "clinic-1"), "/partners/clinic-1"))

    letters = asyncio.run(read(kafka_bootstrap, dead_letter_topic("identity").physical_name, 2))
    reasons = sorted(letter["ach_dlq_reason"].decode() for letter in letters)
    assert reasons == [
        "partner identity mismatch: clinic-1's topic carries an event claiming partner 'clinic-2'",
        "partner identity mismatch: clinic-1's topic carries an event with source '/partners/cbo-1', "
        "not '/partners/clinic-1'",
    ]
    admitted = asyncio.run(read(kafka_bootstrap, PARTNER_INTAKE.physical_name, 1))
    assert [a["ce_source"] for a in admitted] == [b"/partners/clinic-1"]
    assert admitted[0]["ce_type"] == b"ach.partners.v1.ScreeningSubmitted"

    # Size at the door: the broker takes at most 256 KiB from a partner, so whatever it takes fits,
    # with the gateway's headers, on the intake topic (and the gateway's outbox never holds a row
    # Kafka refuses); a padded submission under the limit goes through, and the next one after it.
    padded = screening_from("clinic-1", "clinic-1")
    padded.submission.site_id = "x" * 240_000
    asyncio.run(send(bootstrap, clinic, topic, padded, "/partners/clinic-1"))
    oversized = screening_from("clinic-1", "clinic-1")
    oversized.submission.site_id = "x" * 300_000
    with pytest.raises(KafkaError):
        asyncio.run(send(bootstrap, clinic, topic, oversized, "/partners/clinic-1"))
    asyncio.run(send(bootstrap, clinic, topic, screening_from("clinic-1", "clinic-1"), "/partners/clinic-1"))
    assert len(asyncio.run(read(kafka_bootstrap, PARTNER_INTAKE.physical_name, 3))) == 3
    assert stack.stop_all() == {"identity": 0}


def test_a_partner_provisioned_while_the_gateway_runs_is_heard_within_the_discovery_interval(
    make_stack: Callable[[str], Stack],
    kafka_bootstrap: str,
    sasl_bootstrap: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bootstrap, cafile = sasl_bootstrap
    monkeypatch.setenv("ACH_TOPIC_DISCOVERY_S", "2")
    stack = make_stack("sqlite")
    stack.start("identity")  # the gateway subscribes before clinic-2 has a topic
    password = uuid.uuid4().hex
    provision_partner(kafka_bootstrap, "clinic-2", password)
    clinic = as_partner("clinic-2", password, cafile)
    topic = inbound_topic("clinic-2").physical_name
    asyncio.run(send(bootstrap, clinic, topic, screening_from("clinic-2", "clinic-2"), "/partners/clinic-2"))
    admitted = asyncio.run(read(kafka_bootstrap, PARTNER_INTAKE.physical_name, 1, timeout_s=45))
    assert [a["ce_source"] for a in admitted] == [b"/partners/clinic-2"]
    assert stack.stop_all() == {"identity": 0}


def test_only_the_topics_jobs_principal_creates_topics(
    kafka_bootstrap: str,
    kafka_namespace: str,
    sasl_bootstrap: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In a deployed cluster the services never create topics (KAFKA_CREATE_TOPICS=false): the topics
    Job does, as ach-topics, whose grants name the table's topics literally; a service's principal
    is refused, and a service waits for its topics instead of creating them."""
    from ach_events import topic_plan
    from ach_events.topics import ALL_TOPICS, BrokerUnavailable

    bootstrap, cafile = sasl_bootstrap
    grant_services(kafka_bootstrap, ["referrals"])
    for principal in ("ach-topics", "ach-referrals"):
        set_scram_credential(kafka_bootstrap, principal, f"{principal}-{kafka_namespace}")

    def as_principal(principal: str) -> None:
        broker_security.cache_clear()  # read once per process: read again as this principal
        monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
        monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
        monkeypatch.setenv("KAFKA_SASL_USERNAME", principal)
        monkeypatch.setenv("KAFKA_SASL_PASSWORD", f"{principal}-{kafka_namespace}")
        monkeypatch.setenv("KAFKA_SSL_CAFILE", cafile)

    try:
        as_principal("ach-referrals")
        monkeypatch.setenv("KAFKA_CREATE_TOPICS", "false")
        with pytest.raises(BrokerUnavailable, match="topics missing"):
            ensure_topics(bootstrap, (REFERRAL_EVENTS,), timeout_s=3)
        with pytest.raises(KafkaPythonAuthorization):
            topic_plan.apply(bootstrap, (REFERRAL_EVENTS,), timeout_s=5)

        as_principal("ach-topics")
        done = topic_plan.apply(bootstrap, timeout_s=10)
        created = {c.topic for c in done.changes if c.action == "create"}
        assert created == {t.physical_name for t in ALL_TOPICS}
        assert topic_plan.plan(bootstrap, timeout_s=10).pending == ()

        as_principal("ach-referrals")
        ensure_topics(bootstrap, (REFERRAL_EVENTS,), timeout_s=10)  # there now: the service starts
    finally:
        broker_security.cache_clear()  # the next test reads its own settings
