"""Reminders, the acceptance limit and escalation, with timers in seconds: durable (every replica of
the referral service killed, one restarted: the overdue timers still fire) and fired once (two
replicas running on one database). Each partner hears through its signed webhook."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator

import pytest
from ach.referrals.v1 import referrals_pb2, referrals_pb2_grpc
from ach.screening.v1 import screening_pb2_grpc

from tests.harness import ServiceProcess, Stack, eventually, free_port
from tests.test_referral_loop import SERVICES, add_food_services, register_webhook, update
from tests.test_walking_skeleton import screening_request
from tests.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def timers_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFERRAL_REMINDERS", "3s,6s")
    monkeypatch.setenv("REFERRAL_ACCEPT_WITHIN", "9s")
    monkeypatch.setenv("REFERRAL_ESCALATE_AFTER", "12s")
    monkeypatch.setenv("NOTIFY_BACKOFF_BASE_S", "0.2")
    monkeypatch.setenv("NOTIFY_BACKOFF_CAP_S", "1")


@pytest.fixture
def replicas() -> Iterator[list[ServiceProcess]]:
    """Processes started besides the stack's own: killed when the test ends, passed or not."""
    made: list[ServiceProcess] = []
    yield made
    for p in made:
        if p.process is not None and p.process.poll() is None:
            p.process.kill()
            p.process.wait(10)


def replica(stack: Stack, name: str) -> ServiceProcess:
    """Another process of a service on the same database (its own ports)."""
    first = stack.services[name]
    ports = {
        k: str(free_port()) for k in ("GRPC_PORT", "HEALTH_PORT", "TOKEN_PORT", "METRICS_PORT", "HTTP_PORT")
    }
    env = {**first.env, **ports}
    return ServiceProcess(
        name, int(ports["GRPC_PORT"]), int(ports["METRICS_PORT"]), first.database_url, first.log_path, env
    )


def kill(process: ServiceProcess) -> None:
    assert process.process is not None
    process.process.send_signal(signal.SIGKILL)
    process.process.wait(10)


def test_reminders_then_rerouted_when_not_accepted_then_escalated_once_across_replicas(
    make_stack: Callable[[str], Stack], replicas: list[ServiceProcess]
) -> None:
    stack = make_stack("postgresql")
    stack.start(*SERVICES)
    second = replica(stack, "referrals")
    replicas += [second, stack.services["referrals"]]  # the stack's own is swapped out below
    second.start()
    second.wait_healthy()
    with webhook_receiver() as receiver:
        for partner in ("cbo-pantry", "cbo-2", "clinic-1", "ach-backbone"):
            register_webhook(stack, receiver, partner)
        add_food_services(stack)
        resident = stack.consenting_resident("clinic-1", need_domains=("food-insecurity",))
        stack.wait_consents_replicated(1)
        with stack.channel("screening", "clinic-1") as channel:
            screening_pb2_grpc.ScreeningServiceStub(channel).SubmitScreening(
                screening_request(resident), timeout=10
            )
        created = eventually(lambda: receiver.bodies("/cbo-pantry"), what="the pantry's referral")
        referral_id = created[0]["subject_id"]

        # Every replica dies before the first reminder is due; one comes back after it was due.
        kill(stack.services["referrals"])
        kill(second)
        time.sleep(2)
        second.start()
        second.wait_healthy()
        stack.services["referrals"], second = second, stack.services["referrals"]  # calls go to it

        # Two reminders, then the limit: rejected by the network and re-routed to cbo-2, which
        # accepts at once (its own limit would send it on again).
        eventually(lambda: receiver.bodies("/cbo-2"), 30, "the referral re-routed to cbo-2")
        update(stack, "cbo-2", referral_id, referrals_pb2.REFERRAL_STATUS_ACCEPTED)
        pantry = [(b["event_type"], b.get("status")) for b in receiver.bodies("/cbo-pantry")]
        assert pantry == [
            ("referral.created", None),
            ("referral.reminder", "requested"),
            ("referral.reminder", "requested"),
        ]
        second.start()  # two replicas again from here on
        second.wait_healthy()
        eventually(
            lambda: len(receiver.bodies("/ach-backbone")) >= 1, 40, "the escalation to the ACH coordinator"
        )
        time.sleep(3)  # anything fired twice would have arrived by now
        kitchen = [(b["event_type"], b.get("status")) for b in receiver.bodies("/cbo-2")]
        # (A reminder while it was still requested may come first, depending on this machine's pace.)
        assert kitchen[0] == ("referral.created", "requested")
        assert [k for k in kitchen if k[1] == "accepted"] == [("referral.reminder", "accepted")] * 2
        escalations = [b for b in receiver.bodies("/clinic-1") if b["event_type"] == "referral.escalated"]
        assert len(escalations) == 1 and escalations[0]["status"] == "accepted"
        assert [b["event_type"] for b in receiver.bodies("/ach-backbone")] == ["referral.escalated"]
        assert receiver.refused == []

    with stack.channel("referrals", "clinic-1") as channel:
        history = (
            referrals_pb2_grpc.ReferralServiceStub(channel)
            .GetReferralHistory(referrals_pb2.GetReferralHistoryRequest(referral_id=referral_id), timeout=5)
            .changes
        )
    assert [(c.to_status, c.changed_by.partner_id, c.target_partner_id) for c in history] == [
        (referrals_pb2.REFERRAL_STATUS_REJECTED, "", "cbo-pantry"),
        (referrals_pb2.REFERRAL_STATUS_REQUESTED, "", "cbo-2"),
        (referrals_pb2.REFERRAL_STATUS_ACCEPTED, "cbo-2", "cbo-2"),
    ]
    assert history[0].reason == "not accepted within 9 s (the network's time limit)"
    kill(second)
