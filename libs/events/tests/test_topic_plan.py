"""Provisioning the topic table on a real broker, through the command the chart's hook Job runs
(``ach-identity topics plan|apply``): creates what is missing, sets drifted configs, and leaves
alone (never deletes) what it must not touch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ach_events.topics import ALL_TOPICS, namespaced
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

BIN = Path(sys.executable).parent


def topics_command(*args: str, bootstrap: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ACH_CONNECT_TIMEOUT_S": "3"}
    return subprocess.run(
        [str(BIN / "ach-identity"), "topics", *args], capture_output=True, text=True, env=env, timeout=120
    )


def lines(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """topic -> action, from the command's report."""
    out: dict[str, str] = {}
    for line in done.stdout.splitlines():
        for action in ("create", "set config", "left alone"):
            if line.startswith(action):
                out[line[len(action) :].split()[0]] = action
    return out


def test_plan_apply_and_drift(kafka_bootstrap: str, kafka_namespace: str) -> None:
    names = [t.physical_name for t in ALL_TOPICS]
    assert all(n.startswith(kafka_namespace) for n in names)

    plan = topics_command("plan", bootstrap=kafka_bootstrap)
    assert plan.returncode == 0, plan.stderr
    assert lines(plan) == {n: "create" for n in names}
    dry = topics_command("apply", "--dry-run", bootstrap=kafka_bootstrap)
    assert lines(dry) == lines(plan)

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert not set(names) & set(admin.list_topics()), "plan and --dry-run change nothing"

        applied = topics_command("apply", bootstrap=kafka_bootstrap)
        assert applied.returncode == 0, applied.stderr
        assert f"topics: {len(names)} changed" in applied.stderr
        existing = set(admin.list_topics())
        assert set(names) <= existing
        described = {d["name"]: len(d["partitions"]) for d in admin.describe_topics(names)}
        assert described == {t.physical_name: t.partitions for t in ALL_TOPICS}

        again = topics_command("plan", bootstrap=kafka_bootstrap)
        assert lines(again) == {}, again.stdout
        assert "0 would change" in again.stderr

        # Drift: someone shortened a topic's retention by hand; an unknown topic of ours exists;
        # one topic has more partitions than the table says.
        screening = ALL_TOPICS[0]
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, screening.physical_name, configs={"retention.ms": "60000"}
                )
            ]
        )
        stray = namespaced("ach.retired.events.v0")
        admin.create_topics([NewTopic(stray, 1, 1)])
        grown = ALL_TOPICS[1]
        from kafka.admin import NewPartitions

        admin.create_partitions({grown.physical_name: NewPartitions(grown.partitions + 1)})

        drift = topics_command("plan", bootstrap=kafka_bootstrap)
        assert lines(drift) == {
            screening.physical_name: "set config",
            stray: "left alone",
            grown.physical_name: "left alone",
        }, drift.stdout
        assert "retention.ms 60000 -> 31536000000" in drift.stdout
        assert "partitions are never removed" in drift.stdout

        fixed = topics_command("apply", bootstrap=kafka_bootstrap)
        assert fixed.returncode == 0, fixed.stderr
        configs = admin.describe_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, screening.physical_name, configs={"retention.ms": None}
                )
            ],
            config_filter="all",
        )
        assert str(configs["topic"][screening.physical_name]["retention.ms"]["value"]) == "31536000000"
        # Nothing deleted, nothing shrunk.
        assert stray in set(admin.list_topics())
        after = {d["name"]: len(d["partitions"]) for d in admin.describe_topics([grown.physical_name])}
        assert after[grown.physical_name] == grown.partitions + 1
        # Other configs of the repaired topic survived (an incremental change, not a replacement).
        cleanup = admin.describe_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, screening.physical_name, configs={"max.message.bytes": None}
                )
            ],
            config_filter="all",
        )
        value = cleanup["topic"][screening.physical_name]["max.message.bytes"]["value"]
        assert str(value) == str(screening.max_message_bytes)
    finally:
        admin.close()


def test_unreachable_broker_is_one_clear_line() -> None:
    done = topics_command("plan", bootstrap="127.0.0.1:1")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "ach-identity: error:" in done.stderr
