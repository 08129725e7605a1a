"""achctl dlq list|show|replay on a real broker: a dead letter written by the consumer's own code is
listed with its reason, shown without its body (it can hold PHI), and replayed to its source topic
as the original event, with the replay in the audit log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ach.audit.v1 import audit_pb2
from ach_events import topic_plan
from ach_events.consumer import dead_letter_of
from ach_events.topics import AUDIT_EVENTS, REFERRAL_EVENTS, dead_letter_topic
from kafka.consumer import KafkaConsumer
from kafka.producer import KafkaProducer
from kafka.structs import TopicPartition

ACHCTL = Path(sys.executable).parent / "achctl"
SECRET = b"Ana Demo-Reyes 1979-05-14"  # stands for PHI in an event's body


def achctl(*args: str, bootstrap: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    return subprocess.run([str(ACHCTL), *args], capture_output=True, text=True, env=env, timeout=120)


def read_all(bootstrap: str, topic: str) -> list[object]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    ends = consumer.end_offsets(partitions)
    records: list[object] = []
    while any(consumer.position(tp) < ends[tp] for tp in partitions):
        for batch in consumer.poll(timeout_ms=1000).values():
            records.extend(batch)
    consumer.close()
    return records


def test_list_show_and_replay_a_dead_letter(kafka_bootstrap: str, kafka_namespace: str) -> None:
    topic_plan.apply(kafka_bootstrap)
    source = REFERRAL_EVENTS.physical_name
    headers = [("ce_id", b"event-7"), ("ce_type", b"ach.referrals.v1.ReferralAccepted"), ("ce_time", b"x")]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    producer.send(source, key=b"referral-7", value=SECRET, headers=headers, partition=1).get(10)
    (original,) = [r for r in read_all(kafka_bootstrap, source)]
    value, key, dl_headers = dead_letter_of(original, "handler failed: KeyError: 'need'", "measurement", 5)  # type: ignore[arg-type]
    letters = dead_letter_topic("measurement").physical_name
    sent = producer.send(letters, key=key, value=value, headers=dl_headers, partition=0).get(10)
    producer.close()
    letter_id = f"measurement:0:{sent.offset}"

    listed = achctl("dlq", "list", bootstrap=kafka_bootstrap)
    assert listed.returncode == 0, listed.stderr
    assert letter_id in listed.stdout and "handler failed: KeyError" in listed.stdout
    assert source in listed.stdout and "ReferralAccepted" in listed.stdout
    assert "1 dead letter(s)" in listed.stdout
    only = achctl("dlq", "list", "--consumer", "referrals", bootstrap=kafka_bootstrap)
    assert "0 dead letter(s)" in only.stdout

    shown = achctl("dlq", "show", letter_id, bootstrap=kafka_bootstrap)
    assert shown.returncode == 0, shown.stderr
    assert "event-7" in shown.stdout and f"{len(SECRET)} bytes" in shown.stdout
    assert "Demo-Reyes" not in shown.stdout + listed.stdout, "a dead letter's body is never printed"

    replayed = achctl("dlq", "replay", letter_id, "--operator", "ops-jane", bootstrap=kafka_bootstrap)
    assert replayed.returncode == 0, replayed.stderr
    assert f"to {source}" in replayed.stdout
    again = [r for r in read_all(kafka_bootstrap, source) if r is not original]
    assert len(again) == 2
    back = again[-1]
    assert back.value == SECRET and back.key == b"referral-7"  # type: ignore[attr-defined]
    back_headers = dict(back.headers)  # type: ignore[attr-defined]
    assert back_headers["ce_id"] == b"event-7", "the same event: the consumer's inbox dedups it"
    assert back_headers["ach_replayed_from"] == letter_id.encode()
    assert not [k for k in back_headers if k.startswith("ach_dlq_")]

    audit = read_all(kafka_bootstrap, AUDIT_EVENTS.physical_name)
    entries = [audit_pb2.AccessRecorded.FromString(r.value) for r in audit]  # type: ignore[attr-defined]
    (entry,) = [e for e in entries if e.method == "achctl dlq replay"]
    assert entry.user_id == "ops-jane" and entry.resources["dead_letter_id"] == letter_id
    assert entry.resources["event_id"] == "event-7"


def test_unknown_dead_letters_and_unreachable_broker_are_one_line(
    kafka_bootstrap: str, kafka_namespace: str
) -> None:
    topic_plan.apply(kafka_bootstrap)
    for args, says in (
        (("dlq", "show", "measurement:0:999"), "no dead letter measurement:0:999"),
        (("dlq", "replay", "measurement:0:999"), "no dead letter measurement:0:999"),
        (("dlq", "show", "garbage"), "is not <consumer>:<partition>:<offset>"),
        (("dlq", "show", "nobody:0:1"), "no consumer 'nobody'"),
        (("dlq", "list", "--consumer", "nobody"), "no consumer 'nobody'"),
    ):
        done = achctl(*args, bootstrap=kafka_bootstrap)
        assert done.returncode == 1, (args, done.stderr)
        assert done.stderr == f"achctl: error: {done.stderr.removeprefix('achctl: error: ')}"
        assert says in done.stderr and done.stderr.count("\n") == 1, done.stderr
    done = achctl("dlq", "list", bootstrap="127.0.0.1:1")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("achctl: error: Kafka broker unreachable at 127.0.0.1:1"), done.stderr
