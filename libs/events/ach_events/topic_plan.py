"""Provisioning the topic table on a cluster: what would change (``plan``), then doing it (``apply``).

Run by the chart's post-install/post-upgrade Job (``ach-<service> topics apply``) and by
``achctl topics plan|apply``, as a principal allowed to create topics; the services themselves
only check at start-up that their topics exist (KAFKA_CREATE_TOPICS=false in a deployed cluster).

Never deletes a topic, never lowers a partition count, and never adds partitions on its own:
more partitions move keys to other partitions and break the per-key order consumers rely on (a
resident's screenings, a referral's status changes). Those differences are reported, left alone.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from ach_events.partner_topics import partner_of_inbound
from ach_events.settings import BackboneSettings
from ach_events.topics import ALL_TOPICS, Topic, _connect_admin, namespaced

log = logging.getLogger(__name__)

Action = Literal["create", "set config", "left alone", "unchanged"]


@dataclass(frozen=True)
class TopicChange:
    topic: str
    action: Action
    detail: str = ""
    # What apply does: the topic to create, or the configs to set.
    create: Topic | None = None
    configs: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        return f"{self.action:<11} {self.topic}" + (f"  ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class TopicPlan:
    changes: tuple[TopicChange, ...]

    @property
    def pending(self) -> tuple[TopicChange, ...]:
        return tuple(c for c in self.changes if c.action in ("create", "set config"))

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for change in self.changes:
            counts[change.action] = counts.get(change.action, 0) + 1
        return ", ".join(f"{n} {action}" for action, n in sorted(counts.items()))


def plan(bootstrap_servers: str, topics: tuple[Topic, ...] = ALL_TOPICS, timeout_s: float = 20) -> TopicPlan:
    """Compare the topic table with the cluster. Raises BrokerUnavailable when it cannot be reached."""
    admin = _connect_admin(bootstrap_servers, timeout_s, time.monotonic() + timeout_s)
    try:
        return _plan(admin, topics)
    finally:
        admin.close()


def apply(bootstrap_servers: str, topics: tuple[Topic, ...] = ALL_TOPICS, timeout_s: float = 20) -> TopicPlan:
    """Plan, then create the missing topics and set the configs that differ. Returns the plan done."""
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    replication = BackboneSettings.load().kafka_replication_factor
    admin = _connect_admin(bootstrap_servers, timeout_s, time.monotonic() + timeout_s)
    try:
        done = _plan(admin, topics)
        create = [c.create for c in done.changes if c.create is not None]
        if create:
            new = [
                NewTopic(t.physical_name, t.partitions, replication, topic_configs=t.configs())
                for t in create
            ]
            # Created meanwhile (by a service of an older release): nothing more to do.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
        alter = [c for c in done.changes if c.action == "set config"]
        if alter:
            admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, c.topic, configs=c.configs) for c in alter]
            )
        for change in done.pending:
            log.info("topic provisioned", extra={"topic": change.topic, "action": change.action})
        return done
    finally:
        admin.close()


def _plan(admin: Any, topics: tuple[Topic, ...]) -> TopicPlan:
    from kafka.admin import ConfigResource, ConfigResourceType

    replication = BackboneSettings.load().kafka_replication_factor
    existing = set(admin.list_topics())
    wanted = {t.physical_name: t for t in topics}
    present = [name for name in wanted if name in existing]
    partitions: dict[str, int] = {}
    if present:
        for described in admin.describe_topics(present):
            partitions[described["name"]] = len(described["partitions"])
    configs: dict[str, dict[str, Any]] = {}
    if present:
        described_configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in present]
        )
        configs = described_configs.get("topic", {})
    changes: list[TopicChange] = []
    for name, topic in wanted.items():
        if name not in existing:
            detail = f"{topic.partitions} partitions, replication {replication}, {topic.retention}"
            changes.append(TopicChange(name, "create", detail, create=topic))
            continue
        have = {key: str(entry.get("value")) for key, entry in configs.get(name, {}).items()}
        differ = {key: value for key, value in topic.configs().items() if have.get(key) != value}
        if differ:
            shown = ", ".join(f"{k} {have.get(k, 'default')} -> {v}" for k, v in sorted(differ.items()))
            changes.append(TopicChange(name, "set config", shown, configs=differ))
        count = partitions.get(name, topic.partitions)
        if count != topic.partitions:
            why = (
                "more partitions would move keys and break their order"
                if count < topic.partitions
                else "partitions are never removed"
            )
            detail = f"{count} partitions, the table says {topic.partitions}: {why}"
            changes.append(TopicChange(name, "left alone", detail))
        elif not differ:
            changes.append(TopicChange(name, "unchanged"))
    ours = namespaced("ach.")
    for name in sorted(existing - set(wanted)):
        if name.startswith(ours) and partner_of_inbound(name) is None and ".partners." not in name:
            changes.append(TopicChange(name, "left alone", "not in the topic table (never deleted)"))
    return TopicPlan(tuple(changes))
