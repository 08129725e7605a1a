"""The closed loop with real partners' webhooks: a screening's need is referred to a CBO, which turns
it down; the network re-routes it to the next suitable CBO, which accepts and completes it. Each
partner hears of it through its signed webhook (checked by a receiver written from the README's
recipe), in order per referral, though the clinic's endpoint fails at first. Then the notifications
service is killed mid-delivery: every notification still arrives, and none that was acknowledged
is sent again. The resident, who chose text messages, gets one in Spanish when the referral is sent
to an organization (again after the re-route) and when it is accepted: naming the organization, never
the need; and none once they ask not to be contacted."""

from __future__ import annotations

import itertools
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from ach.directory.v1 import directory_pb2, directory_pb2_grpc
from ach.measurement.v1 import measurement_pb2, measurement_pb2_grpc
from ach.notifications.v1 import notifications_pb2, notifications_pb2_grpc
from ach.partners.v1 import partners_pb2
from ach.referrals.v1 import referrals_pb2, referrals_pb2_grpc
from ach.residents.v1 import residents_pb2, residents_pb2_grpc
from ach.screening.v1 import screening_pb2_grpc
from ach_events.partner_topics import provision_partner
from ach_partner_sdk import PartnerClient
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.harness import Stack, eventually, partner_name
from tests.sms_gateway import sms_gateway
from tests.test_walking_skeleton import screening_request
from tests.webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.slow

SERVICES = ("directory", "screening", "referrals", "notifications")


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seconds, not minutes, between attempts; plain http:// for the local receiver."""
    monkeypatch.setenv("NOTIFY_BACKOFF_BASE_S", "0.2")
    monkeypatch.setenv("NOTIFY_BACKOFF_CAP_S", "1")
    monkeypatch.setenv("NOTIFY_TIMEOUT_S", "1")
    monkeypatch.setenv("NOTIFY_BREAKER_COOLDOWN_S", "0.5")


def add_food_services(stack: Stack) -> None:
    with stack.channel("directory") as channel:
        directory = directory_pb2_grpc.DirectoryServiceStub(channel)
        for service_id, organization in (("svc-a-pantry", "cbo-pantry"), ("svc-b-kitchen", "cbo-2")):
            directory.UpsertService(
                directory_pb2.UpsertServiceRequest(
                    service=directory_pb2.Service(
                        service_id=service_id,
                        organization_id=organization,
                        name=service_id,
                        need_domains=["food-insecurity"],
                        languages=["en", "es"],
                        capacity_available=5,
                        capacity_maximum=5,
                    )
                ),
                timeout=10,
            )
    eventually(
        lambda: stack.count_rows("referrals", "SELECT count(*) FROM directory_service_replica") == 2,
        what="both services in the referral service's replica",
    )


def register_webhook(stack: Stack, receiver: Receiver, partner: str) -> str:
    with stack.channel("notifications", partner) as channel:
        created = notifications_pb2_grpc.NotificationServiceStub(channel).RegisterChannel(
            notifications_pb2.RegisterChannelRequest(
                partner_id=partner,
                kind=notifications_pb2.CHANNEL_KIND_WEBHOOK,
                address=receiver.url(f"/{partner}"),
            ),
            timeout=5,
        )
    assert created.secret and created.channel_id
    receiver.secrets[f"/{partner}"] = created.secret
    return str(created.channel_id)


def at_least(
    bodies: list[dict[str, Any]], n: int, distinct: str = "delivery_id"
) -> list[dict[str, Any]] | None:
    """The bodies once ``n`` distinct ones arrived (by ``distinct``), else None (keep waiting)."""
    return bodies if len({b[distinct] for b in bodies}) >= n else None


def update(
    stack: Stack,
    partner: str,
    referral_id: str,
    status: referrals_pb2.ReferralStatus.ValueType,
    reason: str = "",
    outcome: referrals_pb2.ReferralOutcome.ValueType = referrals_pb2.REFERRAL_OUTCOME_UNSPECIFIED,
    reason_code: str = "",
) -> None:
    with stack.channel("referrals", partner) as channel:
        referrals_pb2_grpc.ReferralServiceStub(channel).UpdateReferralStatus(
            referrals_pb2.UpdateReferralStatusRequest(
                referral_id=referral_id,
                status=status,
                reason=reason,
                outcome=outcome,
                reason_code=reason_code,
            ),
            timeout=5,
        )


def set_contact_preference(
    stack: Stack, resident: str, channel: residents_pb2.ContactChannel.ValueType, do_not_contact: bool = False
) -> None:
    with stack.channel("identity", "clinic-1") as ch:
        residents_pb2_grpc.ConsentRegistryStub(ch).SetContactPreference(
            residents_pb2.SetContactPreferenceRequest(
                resident_id=resident, channel=channel, do_not_contact=do_not_contact
            ),
            timeout=5,
        )


def resident_contact(stack: Stack, resident: str, referral_id: str) -> residents_pb2.ResidentContact:
    with stack.channel("identity") as ch:  # as the ACH coordinator, like the notifications service
        found: residents_pb2.ResidentContact = residents_pb2_grpc.ResidentIndexStub(ch).GetResidentContact(
            residents_pb2.GetResidentContactRequest(resident_id=resident, referral_id=referral_id), timeout=5
        )
    return found


def test_reject_reroute_accept_complete_with_signed_webhooks(
    make_stack: Callable[[str], Stack], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack("sqlite")
    with sms_gateway() as sms, webhook_receiver() as receiver:
        for name, value in sms.env().items():
            monkeypatch.setenv(name, value)
        stack.start()  # the registry first: notifications asks identity where residents' texts go
        notifications = stack.add("notifications")
        reply_url = f"http://127.0.0.1:{notifications.env['HTTP_PORT']}/sms/replies"
        notifications.env["NOTIFY_SMS_REPLY_URL"] = reply_url
        stack.start(*SERVICES, "measurement")
        for partner in ("cbo-pantry", "cbo-2", "clinic-1"):
            register_webhook(stack, receiver, partner)
        receiver.fail_next["/clinic-1"] = 3  # the clinic's endpoint answers 500 three times first

        # Bad channel registrations: every problem named, by field.
        with stack.channel("notifications", "cbo-2") as channel, pytest.raises(grpc.RpcError) as refused:
            notifications_pb2_grpc.NotificationServiceStub(channel).RegisterChannel(
                notifications_pb2.RegisterChannelRequest(partner_id="cbo-2", address="ftp://x"), timeout=5
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        status = rpc_status.from_call(refused.value)
        assert status is not None
        bad = error_details_pb2.BadRequest()
        status.details[0].Unpack(bad)
        assert [v.field for v in bad.field_violations] == ["kind"]

        add_food_services(stack)
        resident = stack.consenting_resident("clinic-1", need_domains=("food-insecurity",))
        stack.wait_consents_replicated(1)
        # Text messages, please (in Spanish: the language registered with the resident's demographics).
        set_contact_preference(stack, resident, residents_pb2.CONTACT_CHANNEL_SMS)
        eventually(
            lambda: (
                stack.count_rows(
                    "notifications", "SELECT count(*) FROM resident_preference WHERE channel = 'sms'"
                )
                == 1
            ),
            what="the preference in the notifications service's replica",
        )
        with stack.channel("screening", "clinic-1") as channel:
            screening_pb2_grpc.ScreeningServiceStub(channel).SubmitScreening(
                screening_request(resident), timeout=10
            )

        # The best match (pantry) hears first, through its webhook.
        first = eventually(lambda: receiver.bodies("/cbo-pantry"), what="the pantry's webhook")
        assert first[0]["event_type"] == "referral.created"
        referral_id = first[0]["subject_id"]
        assert set(first[0]) == {
            "delivery_id",
            "partner_id",
            "event_type",
            "subject_type",
            "subject_id",
            "occurred_at",
        }, "ids only: nothing about the resident"

        # The pantry turns it down; the network re-routes it to the kitchen (cbo-2).
        update(
            stack,
            "cbo-pantry",
            referral_id,
            referrals_pb2.REFERRAL_STATUS_REJECTED,
            "no capacity this week",
            reason_code="no-capacity",
        )
        second = eventually(lambda: receiver.bodies("/cbo-2"), what="the kitchen's webhook")
        assert (second[0]["event_type"], second[0]["subject_id"]) == ("referral.created", referral_id)
        update(stack, "cbo-2", referral_id, referrals_pb2.REFERRAL_STATUS_ACCEPTED)
        update(
            stack,
            "cbo-2",
            referral_id,
            referrals_pb2.REFERRAL_STATUS_COMPLETED,
            outcome=referrals_pb2.REFERRAL_OUTCOME_NEED_MET,
        )

        # The clinic hears of every change, in order, though its endpoint failed at first.
        heard = eventually(
            lambda: at_least(receiver.bodies("/clinic-1"), 4), what="the clinic's four notices"
        )
        assert [b["status"] for b in heard] == ["rejected", "requested", "accepted", "completed"]
        assert receiver.refused == []
        time.sleep(1)  # nothing further arrives: each acknowledged notice once
        assert len(receiver.bodies("/clinic-1")) == 4 and len(receiver.bodies("/cbo-pantry")) == 1

        # The resident's texts: sent (pantry), sent again (kitchen), accepted, and once it closed the
        # one question; in Spanish, to the phone on file, each once, naming the organization and
        # never the need.
        texts = eventually(lambda: sms.messages() if len(sms.messages()) >= 4 else None, what="four texts")
        assert [m.to for m in texts] == ["209-555-0100"] * 4 and sms.unauthorized == 0
        assert partner_name("cbo-pantry") in texts[0].body and "recibió una remisión" in texts[0].body
        assert partner_name("cbo-2") in texts[1].body and "recibió una remisión" in texts[1].body
        assert partner_name("cbo-2") in texts[2].body and "aceptó su remisión" in texts[2].body
        assert partner_name("cbo-2") in texts[3].body and "¿Recibió la ayuda que necesitaba?" in texts[3].body
        assert not any(word in m.body.lower() for m in texts for word in ("food", "comida", "aliment"))
        assert len({m.idempotency_key for m in texts}) == 4
        assert resident_contact(stack, resident, referral_id).address == "209-555-0100"

        # Community voice: the resident answers by text; the answer travels to the measure.
        feedback_of = "SELECT got_help FROM resident_feedback_fact WHERE referral_id = '" + referral_id + "'"
        forged = sms.reply(reply_url, "+12095550100", "No", token="not-the-gateway")
        assert forged[0] == 403  # only the gateway's signature is taken
        stranger = sms.reply(reply_url, "+12095550111", "Sí")  # a number no question went to
        assert stranger[0] == 200 and "<Message>" not in stranger[1]
        unclear = sms.reply(reply_url, "+1 (209) 555-0100", "quizás")
        assert unclear[0] == 200 and "Responda SÍ o NO" in unclear[1]
        answer = sms.reply(reply_url, "+1 (209) 555-0100", "Sí, gracias", message_id="SM-answer")
        assert answer[0] == 200 and "Gracias por su respuesta" in answer[1]
        again = sms.reply(reply_url, "+1 (209) 555-0100", "Sí, gracias", message_id="SM-answer")  # retried
        assert again[0] == 200 and "Gracias" in again[1]
        later = sms.reply(reply_url, "+1 (209) 555-0100", "No")  # the question is answered: once
        assert later[0] == 200 and "<Message>" not in later[1]
        eventually(lambda: stack.query("measurement", feedback_of) or None, 30, "the answer as a fact")
        assert [bool(r[0]) for r in stack.query("measurement", feedback_of)] == [True]
        kept = stack.query("notifications", "SELECT * FROM help_question")
        # The phone's digits, not "209" alone: a digest or a UUID holds that by chance.
        assert len(kept) == 1 and not any(
            phone in str(v).replace("-", "") or "gracias" in str(v).lower()
            for v in kept[0]
            for phone in ("5550100", "2095550100")
        )
        feedback_events = stack.query(
            "notifications",
            "SELECT payload FROM outbox_event WHERE event_type LIKE '%ResidentFeedbackRecorded'",
        )
        assert len(feedback_events) == 1 and not any(
            phone in bytes(feedback_events[0][0]) for phone in (b"5550100", b"555-0100")
        )
        with stack.channel("measurement") as channel:
            figures = measurement_pb2_grpc.MeasurementServiceStub(channel).GetMeasureFigures(
                measurement_pb2.GetMeasureFiguresRequest(measure_id="residents-say-they-got-help"), timeout=30
            )
        # One answer: counted, never shown as the 1 of 1 it is.
        assert figures.periods and not any(
            p.total.HasField("numerator") and 0 < p.total.numerator < 11 for p in figures.periods
        )

        # "Do not contact": identity gives no address any more, whatever the channel chosen.
        set_contact_preference(stack, resident, residents_pb2.CONTACT_CHANNEL_SMS, do_not_contact=True)
        withheld = resident_contact(stack, resident, referral_id)
        assert (withheld.channel, withheld.address, withheld.do_not_contact) == (
            residents_pb2.CONTACT_CHANNEL_UNSPECIFIED,
            "",
            True,
        )
        assert len(sms.messages()) == 4

    with stack.channel("referrals", "clinic-1") as channel:
        referrals = referrals_pb2_grpc.ReferralServiceStub(channel)
        history = referrals.GetReferralHistory(
            referrals_pb2.GetReferralHistoryRequest(referral_id=referral_id), timeout=5
        ).changes
        final = referrals.GetReferral(referrals_pb2.GetReferralRequest(referral_id=referral_id), timeout=5)
    assert [(c.to_status, c.changed_by.partner_id, c.target_partner_id) for c in history] == [
        (referrals_pb2.REFERRAL_STATUS_REJECTED, "cbo-pantry", "cbo-pantry"),
        (referrals_pb2.REFERRAL_STATUS_REQUESTED, "", "cbo-2"),
        (referrals_pb2.REFERRAL_STATUS_ACCEPTED, "cbo-2", "cbo-2"),
        (referrals_pb2.REFERRAL_STATUS_COMPLETED, "cbo-2", "cbo-2"),
    ]
    # The pantry's words stay in the history, for the parties; events carry only its code.
    assert (history[0].reason, history[0].reason_code) == ("no capacity this week", "no-capacity")
    assert "no-capacity" in history[1].reason and history[1].reason_code == "no-capacity"
    published = stack.query("referrals", "SELECT event_type, payload FROM outbox_event")
    assert any(t == "ach.referrals.v1.ReferralStatusChanged" for t, _ in published)
    assert not any(b"no capacity this week" in bytes(p) for _, p in published)
    assert (final.status, final.target_partner_id) == (referrals_pb2.REFERRAL_STATUS_COMPLETED, "cbo-2")

    # The delivery log shows the clinic's failed attempts and their reason.
    with stack.channel("notifications", "clinic-1") as channel:
        deliveries = notifications_pb2_grpc.NotificationServiceStub(channel)
        log = deliveries.ListDeliveries(
            notifications_pb2.ListDeliveriesRequest(partner_id="clinic-1"), timeout=5
        ).deliveries
        # Page by page: the same deliveries, in the same order.
        first = deliveries.ListDeliveries(
            notifications_pb2.ListDeliveriesRequest(partner_id="clinic-1", page_size=3), timeout=5
        )
        rest = deliveries.ListDeliveries(
            notifications_pb2.ListDeliveriesRequest(
                partner_id="clinic-1", page_size=3, page_token=first.next_page_token
            ),
            timeout=5,
        )
        with pytest.raises(grpc.RpcError) as bad_token:
            deliveries.ListDeliveries(
                notifications_pb2.ListDeliveriesRequest(partner_id="clinic-1", page_token="x"), timeout=5
            )
    assert all(d.status == notifications_pb2.DELIVERY_STATUS_DELIVERED for d in log)
    assert sum(d.attempts for d in log) == 4 + 3
    assert [d.delivery_id for d in [*first.deliveries, *rest.deliveries]] == [d.delivery_id for d in log]
    assert first.next_page_token and not rest.next_page_token
    assert bad_token.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_killed_mid_delivery_every_notification_arrives_none_twice_after_acknowledgement(
    make_stack: Callable[[str], Stack],
) -> None:
    stack = make_stack("postgresql")
    stack.start(*SERVICES)
    with webhook_receiver() as receiver:
        register_webhook(stack, receiver, "cbo-pantry")
        add_food_services(stack)
        residents = [
            stack.consenting_resident("clinic-1", need_domains=("food-insecurity",)) for _ in range(12)
        ]
        stack.wait_consents_replicated(12)

        def screen(resident: str) -> None:
            with stack.channel("screening", "clinic-1") as channel:
                screening_pb2_grpc.ScreeningServiceStub(channel).SubmitScreening(
                    screening_request(resident), timeout=10
                )

        for resident in residents[:6]:
            screen(resident)
        eventually(lambda: len(receiver.bodies("/cbo-pantry")) == 6, what="the first six notices")
        receiver.hang.set()  # the next ones are held unanswered...
        for resident in residents[6:]:
            screen(resident)
        eventually(lambda: sum(receiver.attempts.values()) >= 7, what="deliveries in flight")
        notifications = stack.services["notifications"]
        assert notifications.process is not None
        notifications.process.send_signal(signal.SIGKILL)  # ...and the sender dies mid-delivery
        notifications.process.wait(10)
        acknowledged = {
            row[0]
            for row in stack.query(
                "notifications", "SELECT id FROM delivery WHERE channel_id != '' AND status = 2"
            )
        }
        assert len(acknowledged) == 6
        restarted_at = time.time()
        receiver.hang.clear()
        notifications.start()
        notifications.wait_healthy()

        got = eventually(
            lambda: at_least(receiver.bodies("/cbo-pantry"), 12, "subject_id"),
            60,
            "every notice, after the restart",
        )
        assert len({x["subject_id"] for x in got}) == 12  # one referral each: all arrived
        with receiver.lock:
            again = {r.delivery_id for r in receiver.received if r.at >= restarted_at}
        assert not (again & acknowledged), "an acknowledged delivery was sent again"
        assert receiver.refused == []
        eventually(
            lambda: (
                stack.count_rows(
                    "notifications", "SELECT count(*) FROM delivery WHERE channel_id != '' AND status != 2"
                )
                == 0
            ),
            what="the log shows all delivered",
        )


def test_a_cbo_system_reports_statuses_through_its_topic_in_order_and_only_its_own(
    make_stack: Callable[[str], Stack], kafka_bootstrap: str, sasl_bootstrap: tuple[str, str]
) -> None:
    bootstrap, cafile = sasl_bootstrap
    passwords = {p: uuid.uuid4().hex for p in ("cbo-pantry", "cbo-2")}
    for partner, password in passwords.items():
        provision_partner(kafka_bootstrap, partner, password)
    stack = make_stack("sqlite")
    stack.start(*SERVICES)
    add_food_services(stack)
    resident = stack.consenting_resident("clinic-1", need_domains=("food-insecurity",))
    stack.wait_consents_replicated(1)
    with stack.channel("screening", "clinic-1") as channel:
        screening_pb2_grpc.ScreeningServiceStub(channel).SubmitScreening(
            screening_request(resident), timeout=10
        )
    eventually(
        lambda: stack.count_rows("referrals", "SELECT count(*) FROM referral") == 1, what="the referral"
    )
    [(referral_id, target)] = stack.query("referrals", "SELECT id, target_partner_id FROM referral")
    assert target == "cbo-pantry"

    def report(client: PartnerClient, status: referrals_pb2.ReferralStatus.ValueType, **more: Any) -> None:
        client.report_referral_status(
            referrals_pb2.UpdateReferralStatusRequest(referral_id=referral_id, status=status, **more)
        )

    with (
        PartnerClient(
            "cbo-pantry",
            bootstrap,
            password=passwords["cbo-pantry"],
            cafile=cafile,
            namespace=stack.namespace,
        ) as pantry,
        PartnerClient(
            "cbo-2", bootstrap, password=passwords["cbo-2"], cafile=cafile, namespace=stack.namespace
        ) as other,
    ):
        report(pantry, referrals_pb2.REFERRAL_STATUS_ACCEPTED)
        report(pantry, referrals_pb2.REFERRAL_STATUS_IN_PROGRESS)
        report(pantry, referrals_pb2.REFERRAL_STATUS_IN_PROGRESS)  # its system sent it twice: no change
        report(pantry, referrals_pb2.REFERRAL_STATUS_COMPLETED)  # no outcome: refused
        report(
            pantry, referrals_pb2.REFERRAL_STATUS_COMPLETED, outcome=referrals_pb2.REFERRAL_OUTCOME_NEED_MET
        )
        report(other, referrals_pb2.REFERRAL_STATUS_CANCELLED, reason="not mine to cancel")
        eventually(
            lambda: (
                stack.count_rows("referrals", "SELECT count(*) FROM referral WHERE status = 'completed'") == 1
            ),
            60,
            "the pantry's reports applied",
        )
        pantry_replies = [r.message for r in itertools.islice(pantry.replies(timeout_s=60), 1)]
        other_replies = [r.message for r in itertools.islice(other.replies(timeout_s=60), 1)]

    assert [
        [(v.field, v.description) for v in m.violations]
        for m in pantry_replies
        if isinstance(m, partners_pb2.ReferralUpdateRejected)
    ] == [[("update.outcome", "an outcome is required on completion")]]
    assert [
        [(v.field, v.description) for v in m.violations]
        for m in other_replies
        if isinstance(m, partners_pb2.ReferralUpdateRejected)
    ] == [[("update.referral_id", "cbo-2 is not this referral's target")]]
    with stack.channel("referrals", "clinic-1") as channel:
        history = (
            referrals_pb2_grpc.ReferralServiceStub(channel)
            .GetReferralHistory(referrals_pb2.GetReferralHistoryRequest(referral_id=referral_id), timeout=5)
            .changes
        )
    assert [(c.to_status, c.changed_by.partner_id) for c in history] == [
        (referrals_pb2.REFERRAL_STATUS_ACCEPTED, "cbo-pantry"),
        (referrals_pb2.REFERRAL_STATUS_IN_PROGRESS, "cbo-pantry"),
        (referrals_pb2.REFERRAL_STATUS_COMPLETED, "cbo-pantry"),
    ]
    assert history[2].outcome == referrals_pb2.REFERRAL_OUTCOME_NEED_MET
