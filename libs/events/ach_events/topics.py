"""The table of topics: one place that names every topic, its key, partitions, retention,
producer and consumers. The README's topic table is checked against it by a test.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ach_platform.settings import kafka_namespace

from ach_events.settings import BackboneSettings

log = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000


def namespaced(name: str) -> str:
    """The physical name of a topic or consumer group. ACH_KAFKA_NAMESPACE lets several environments
    (or test runs) share one cluster without seeing each other's events."""
    namespace = kafka_namespace()
    return f"{namespace}.{name}" if namespace else name


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    producer: str
    consumers: tuple[str, ...]
    partitions: int = 3
    compacted: bool = False
    retention_days: int = 365
    event_types: tuple[str, ...] = field(default_factory=tuple)
    # The broker refuses bigger records. Partners' inbound topics take a quarter of what the
    # network's topics take, so whatever a partner writes still fits, with the gateway's and a dead
    # letter's headers, on the topics it is passed on to.
    max_message_bytes: int = 1024 * 1024

    @property
    def physical_name(self) -> str:
        return namespaced(self.name)

    @property
    def retention(self) -> str:
        return "compacted" if self.compacted else f"{self.retention_days} days"

    def configs(self) -> dict[str, str]:
        size = {"max.message.bytes": str(self.max_message_bytes)}
        if self.compacted:
            return {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000", **size}
        return {"cleanup.policy": "delete", "retention.ms": str(self.retention_days * DAY_MS), **size}


SCREENING_EVENTS = Topic(
    name="ach.screening.events.v1",
    key="resident id",
    producer="screening",
    consumers=("referrals", "measurement"),
    event_types=("ach.screening.v1.ScreeningCompleted", "ach.screening.v1.NeedIdentified"),
)
# Apart from the screening events, so only measurement reads residents' demographics (ACLs by topic).
SCREENING_DEMOGRAPHICS = Topic(
    name="ach.screening.demographics.v1",
    key="resident id",
    producer="screening",
    consumers=("measurement",),
    event_types=("ach.screening.v1.ScreeningDemographicsRecorded",),
)
REFERRAL_EVENTS = Topic(
    name="ach.referrals.events.v1",
    key="referral id",
    producer="referrals",
    consumers=("notifications", "measurement", "funding", "identity"),
    event_types=(
        "ach.referrals.v1.ReferralCreated",
        "ach.referrals.v1.ReferralStatusChanged",
        "ach.referrals.v1.ReferralRerouted",
        "ach.referrals.v1.ReferralReminderSent",
        "ach.referrals.v1.ReferralEscalated",
    ),
)
DIRECTORY_SERVICES = Topic(
    name="ach.directory.services.v1",
    key="service id",
    producer="directory",
    consumers=("referrals",),
    compacted=True,
    event_types=("ach.directory.v1.ServiceChanged",),
)
NOTIFICATION_EVENTS = Topic(
    name="ach.notifications.events.v1",
    key="referral id (the notification's subject)",
    producer="notifications",
    consumers=("measurement",),
    event_types=(
        "ach.notifications.v1.NotificationDelivered",
        "ach.notifications.v1.ResidentFeedbackRecorded",
    ),
)
IDENTITY_PARTNERS = Topic(
    name="ach.identity.partners.v1",
    key="partner id",
    producer="identity",
    # Every service reads it from the beginning into memory (no consumer group): the access policy's
    # view of who each partner is.
    consumers=("every service (replica)",),
    compacted=True,
    event_types=("ach.identity.v1.PartnerChanged",),
)
RESIDENT_EVENTS = Topic(
    name="ach.residents.events.v1",
    key="resident id",
    producer="identity",
    consumers=("referrals", "screening", "notifications"),
    event_types=(
        "ach.residents.v1.ConsentChanged",
        "ach.residents.v1.ContactPreferenceChanged",
        "ach.residents.v1.ResidentsMerged",
        "ach.residents.v1.ResidentLinked",
    ),
)
PARTNER_INTAKE = Topic(
    name="ach.partners.intake.v1",
    key="the partner's key (aggregate id)",
    producer="identity (partner gateway)",
    consumers=("screening", "directory", "referrals"),
    event_types=(
        "ach.partners.v1.ScreeningSubmitted",
        "ach.partners.v1.ReferralStatusReported",
        "ach.partners.v1.ServiceUpdateReported",
    ),
)
AUDIT_EVENTS = Topic(
    name="ach.audit.events.v1",
    key="partner id of the caller",
    producer="every service",
    consumers=("identity",),
    retention_days=2190,  # six years, as HIPAA asks of audit documentation
    event_types=("ach.audit.v1.AccessRecorded",),
)
FUNDING_EVENTS = Topic(
    name="ach.funding.events.v1",
    key="transaction id",
    producer="funding",
    consumers=("measurement",),
    event_types=("ach.funding.v1.TransactionPosted",),
)


def dead_letter_topic(consumer: str) -> Topic:
    """Each consuming service has its own dead-letter topic; records keep the original key and
    headers. Dead letters can hold PHI (a refused submission): kept a short, configured time
    (ACH_DLQ_RETENTION_DAYS, 7 by default), long enough for ops to look."""
    return Topic(
        name=f"ach.dlq.{consumer}.v1",
        key="original key",
        producer=consumer,
        consumers=("ops",),
        retention_days=dead_letter_retention_days(),
    )


def dead_letter_retention_days() -> int:
    return BackboneSettings.load().dlq_retention_days


DOMAIN_TOPICS: tuple[Topic, ...] = (
    SCREENING_EVENTS,
    SCREENING_DEMOGRAPHICS,
    REFERRAL_EVENTS,
    DIRECTORY_SERVICES,
    NOTIFICATION_EVENTS,
    FUNDING_EVENTS,
    IDENTITY_PARTNERS,
    RESIDENT_EVENTS,
    PARTNER_INTAKE,
    AUDIT_EVENTS,
)
# Services that consume in a consumer group, each with its own dead-letter topic.
CONSUMING_SERVICES = sorted({c for t in DOMAIN_TOPICS for c in t.consumers if t is not IDENTITY_PARTNERS})
ALL_TOPICS: tuple[Topic, ...] = DOMAIN_TOPICS + tuple(dead_letter_topic(s) for s in CONSUMING_SERVICES)


def ensure_topics(
    bootstrap_servers: str, topics: tuple[Topic, ...] = ALL_TOPICS, timeout_s: float = 20
) -> None:
    """Create the topics that do not exist yet (idempotent). Raises BrokerUnavailable on failure."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    replication = BackboneSettings.load().kafka_replication_factor
    deadline = time.monotonic() + timeout_s
    # kafka-python logs every refused connection at ERROR while the broker starts; we say it once,
    # ourselves, if the deadline passes.
    client_log = logging.getLogger("kafka")
    previous_level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        admin = _connect_admin(bootstrap_servers, timeout_s, deadline)
    finally:
        client_log.setLevel(previous_level)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t.physical_name not in existing]
        if missing and not BackboneSettings.load().kafka_create_topics:
            _wait_for_topics(admin, missing, deadline)
        elif missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another service created it first
                admin.create_topics(
                    [
                        NewTopic(t.physical_name, t.partitions, replication, topic_configs=t.configs())
                        for t in missing
                    ]
                )
            log.info("created topics", extra={"topics": [t.physical_name for t in missing]})
        _wait_for_leaders(admin, [t.physical_name for t in topics], deadline)
    finally:
        admin.close()


NOT_YET = (3, 5)  # UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE


def _wait_for_topics(admin: Any, missing: list[Topic], deadline: float) -> None:
    """KAFKA_CREATE_TOPICS=false: someone else creates them (the chart's topics Job, which may be
    running right now); wait for them until the deadline, then say which are missing."""
    while True:
        existing = set(admin.list_topics())
        names = [t.physical_name for t in missing if t.physical_name not in existing]
        if not names:
            return
        if time.monotonic() >= deadline:
            raise BrokerUnavailable(
                f"topics missing: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''} "
                "(KAFKA_CREATE_TOPICS=false: the chart's topics Job, or achctl topics apply, creates them)"
            )
        time.sleep(1)


def _wait_for_leaders(admin: Any, names: list[str], deadline: float) -> None:
    """Until every partition has a leader: a topic just created (by us or a service starting beside
    us) is in the broker's metadata a moment later, and clients that read it first find nothing."""
    while True:
        described = admin.describe_topics(names)
        waiting = sorted(
            d["name"]
            for d in described
            # Not yet known, or no leader yet; any other error (not authorized) is not ours to wait for.
            if d["error_code"] in NOT_YET
            or (not d["error_code"] and any(p["leader_id"] < 0 for p in d["partitions"]))
        )
        if not waiting:
            return
        if time.monotonic() >= deadline:
            raise BrokerUnavailable(f"topics still without a leader: {', '.join(waiting[:3])}")
        time.sleep(0.1)


class BrokerUnavailable(Exception):
    pass


def _connect_admin(bootstrap_servers: str, timeout_s: float, deadline: float) -> Any:
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    from ach_events.kafka_security import broker_security

    while True:
        # The broker may still be starting (the local stack starts everything at once):
        # retry until the deadline.
        try:
            return KafkaAdminClient(
                bootstrap_servers=bootstrap_servers.split(","),
                client_id="ach-topic-admin",
                request_timeout_ms=int(max(timeout_s, 5) * 1000),
                bootstrap_timeout_ms=int(max(min(timeout_s, deadline - time.monotonic()), 1) * 1000),
                **broker_security().kafka_python(),
            )
        except (KafkaError, OSError, AssertionError, ValueError) as exc:  # the client's ways of "not yet"
            if time.monotonic() >= deadline:
                raise BrokerUnavailable(
                    f"Kafka broker unreachable at {bootstrap_servers} ({type(exc).__name__}); start it with "
                    "'make kafka' or set KAFKA_BOOTSTRAP_SERVERS"
                ) from None
            time.sleep(1)
