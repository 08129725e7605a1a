"""One path across every service, as real processes on a real broker, on SQLite and on PostgreSQL:
a clinic submits a screening over gRPC -> screening events -> referrals places a referral with a CBO
from its directory replica -> notifications records deliveries -> the CBO accepts and completes it ->
measurement's funnel counts every step -> funding posts the CBO's payment. One trace id spans them."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from ach.audit.v1 import audit_pb2, audit_pb2_grpc
from ach.common.v1 import common_pb2
from ach.funding.v1 import funding_pb2, funding_pb2_grpc
from ach.measurement.v1 import measurement_pb2, measurement_pb2_grpc
from ach.notifications.v1 import notifications_pb2, notifications_pb2_grpc
from ach.referrals.v1 import referrals_pb2, referrals_pb2_grpc
from ach.screening.v1 import screening_pb2, screening_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import ALL_SERVICES, SERVICES
from tests.harness import Stack, eventually
from tests.prometheus import alert_expressions, dashboard_expressions, operands, running_prometheus
from tests.webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.slow

FOOD_POSITIVE = [
    ("71802-3", "LA31993-1"),
    ("96778-6", "LA9-3"),
    ("88122-7", "LA6729-3"),
    ("88123-5", "LA28398-8"),
    ("93030-5", "LA32-8"),
    ("96779-4", "LA32-8"),
    ("95618-5", "LA6270-8"),
    ("95617-7", "LA6270-8"),
    ("95616-9", "LA6270-8"),
    ("95615-1", "LA6270-8"),
]


def screening_request(
    resident: str, partner: str = "clinic-1", language: str = "es"
) -> screening_pb2.SubmitScreeningRequest:
    now = Timestamp()
    now.GetCurrentTime()
    request = screening_pb2.SubmitScreeningRequest(
        submitter_screening_id=str(uuid.uuid4()),
        resident_id=resident,
        instrument_id="ahc-hrsn-core",
        instrument_version="1",
        screened_at=now,
        site_id="site-1",
        language=language,
        answers=[screening_pb2.Answer(question_code=q, answer_codes=[a]) for q, a in FOOD_POSITIVE],
    )
    request.screened_by.partner_id = partner
    return request


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def metric(text: str, name: str, labels: str = "") -> float:
    """Sum of a metric's samples whose labels contain ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            sample_labels = line[len(name) :].split(" ")[0]
            if all(part in sample_labels for part in labels.split(",") if part):
                total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_screening_to_funded_outcome_across_all_services(
    make_stack: Callable[[str], Stack], backend: str, receiver: Receiver
) -> None:
    stack = make_stack(backend)
    stack.start("identity")
    # Residents' answers come back by the answer pages (community voice).
    notifications_http = stack.add("notifications").env["HTTP_PORT"]
    stack.services["notifications"].env["NOTIFY_ANSWER_URL"] = (
        f"http://127.0.0.1:{notifications_http}/answers"
    )
    stack.start(*SERVICES)

    # Every service answers health checks and lists its API through reflection.
    with stack.channel("referrals") as channel:
        listing = next(
            iter(
                reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
                )
            )
        )
        names = {s.name for s in listing.list_services_response.service}
        assert {"ach.referrals.v1.ReferralService", "grpc.health.v1.Health"} <= names

    stack.add_pantry()
    # The CBO hears of its referrals by a signed webhook.
    with stack.channel("notifications", "cbo-pantry") as channel:
        webhook = notifications_pb2_grpc.NotificationServiceStub(channel).RegisterChannel(
            notifications_pb2.RegisterChannelRequest(
                partner_id="cbo-pantry",
                kind=notifications_pb2.CHANNEL_KIND_WEBHOOK,
                address=receiver.url("/cbo-pantry"),
            ),
            timeout=5,
        )
    receiver.secrets["/cbo-pantry"] = webhook.secret
    resident = stack.consenting_resident("clinic-1", need_domains=("food-insecurity",))
    stack.wait_consents_replicated(1)

    with stack.channel("funding", "funder-1") as channel:  # the fund has money to pay outcomes with
        funding_pb2_grpc.FundingServiceStub(channel).RecordContribution(
            funding_pb2.RecordContributionRequest(
                idempotency_key="walking-skeleton-1",
                stream_id="health-plan-reinvestment-2026",
                amount=common_pb2.Money(cents=100_000, currency="USD"),
            ),
            timeout=10,
        )

    with stack.channel("screening", "clinic-1") as channel:
        result = screening_pb2_grpc.ScreeningServiceStub(channel).SubmitScreening(
            screening_request(resident), timeout=10
        )
    assert list(result.positive_domains) == ["food-insecurity"]

    with stack.channel("notifications", "cbo-pantry") as channel:
        notifications = notifications_pb2_grpc.NotificationServiceStub(channel)
        delivered = eventually(
            lambda: (
                notifications.ListDeliveries(
                    notifications_pb2.ListDeliveriesRequest(partner_id="cbo-pantry"), timeout=5
                ).deliveries
            ),
            what="the CBO's notification",
        )
    assert delivered[0].subject_type == "referral" and delivered[0].event_type == "referral.created"
    referral_id = delivered[0].subject_id

    with stack.channel("referrals", "cbo-pantry") as channel:
        referrals = referrals_pb2_grpc.ReferralServiceStub(channel)
        referral = referrals.GetReferral(referrals_pb2.GetReferralRequest(referral_id=referral_id), timeout=5)
        assert referral.status == referrals_pb2.REFERRAL_STATUS_REQUESTED
        assert (referral.target_partner_id, referral.source_partner_id) == ("cbo-pantry", "clinic-1")
        cbo = referrals_pb2.UpdateReferralStatusRequest(referral_id=referral_id)
        cbo.actor.partner_id = "cbo-pantry"
        cbo.status = referrals_pb2.REFERRAL_STATUS_ACCEPTED
        referrals.UpdateReferralStatus(cbo, timeout=5)
        cbo.status = referrals_pb2.REFERRAL_STATUS_COMPLETED
        cbo.outcome = referrals_pb2.REFERRAL_OUTCOME_NEED_MET
        done = referrals.UpdateReferralStatus(cbo, timeout=5)
        assert done.status == referrals_pb2.REFERRAL_STATUS_COMPLETED

    with stack.channel("funding") as channel:
        funding = funding_pb2_grpc.FundingServiceStub(channel)
        payable = funding_pb2.GetAccountBalanceRequest(account_id="partner:cbo-pantry:payable")
        # Promised (reserved) on acceptance, posted on need met.
        balance = eventually(
            lambda: b if (b := funding.GetAccountBalance(payable, timeout=5)).credits_posted.cents else None,
            what="the CBO's payment",
        )
        verified = funding.VerifyJournal(funding_pb2.VerifyJournalRequest(), timeout=10)
    assert balance.credits_posted.cents == 5000 and balance.debits_posted.cents == 0
    assert balance.credits_pending.cents == 0
    assert verified.intact and verified.transactions >= 3  # contribution, reservation, its post

    expected = dict(
        screenings_completed=1,
        needs_identified=1,
        referrals_created=1,
        referrals_accepted=1,
        referrals_completed=1,
        referrals_need_met=1,
        notifications_delivered=3,
    )
    with stack.channel("measurement") as channel:
        measurement = measurement_pb2_grpc.MeasurementServiceStub(channel)

        def funnel_complete() -> bool:
            f = measurement.GetReferralFunnel(measurement_pb2.GetReferralFunnelRequest(), timeout=5)
            return all(getattr(f, k) == v for k, v in expected.items())

        eventually(funnel_complete, what=f"the funnel {expected}")
        food = measurement.GetReferralFunnel(
            measurement_pb2.GetReferralFunnelRequest(need_domain="food-insecurity"), timeout=5
        )
        assert (food.needs_identified, food.referrals_need_met, food.screenings_completed) == (1, 1, 0)

    # One trace: the clinic's gRPC call, through the outbox and Kafka, into the referral,
    # notification and measurement services.
    spans = stack.spans()
    submit = [s for s in spans if s["name"].endswith("ScreeningService/SubmitScreening")]
    assert len(submit) == 1, [s["name"] for s in spans]
    trace_id = submit[0]["context"]["trace_id"]
    services_in_trace = {
        s["resource"]["attributes"]["service.name"] for s in spans if s["context"]["trace_id"] == trace_id
    }
    assert {"ach-screening", "ach-referrals", "ach-notifications", "ach-measurement"} <= services_in_trace

    # Prometheus metrics an ops team can alert on, scraped from the services' metrics ports.
    screening_metrics = scrape(stack.services["screening"].metrics_port)
    assert metric(screening_metrics, "ach_outbox_published_total") >= 2
    submit_ok = 'rpc_grpc_status_code="OK",rpc_method="/ach.screening.v1.ScreeningService/SubmitScreening"'
    assert metric(screening_metrics, "ach_grpc_server_requests_total", submit_ok) == 1
    referral_metrics = scrape(stack.services["referrals"].metrics_port)
    assert metric(referral_metrics, "ach_events_consumed_total", 'result="processed"') >= 2
    assert "ach_outbox_backlog" in referral_metrics and "ach_event_lag_seconds_bucket" in referral_metrics

    # The audit trail: each access to resident-level data, allowed or refused, with who, why and how it ended.
    with stack.channel("referrals", "cbo-2") as channel:
        with pytest.raises(grpc.RpcError) as refused:
            referrals_pb2_grpc.ReferralServiceStub(channel).GetReferral(
                referrals_pb2.GetReferralRequest(referral_id=referral_id), timeout=5
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    with stack.channel("identity") as channel:
        audit = audit_pb2_grpc.AuditLogStub(channel)

        def trail() -> list[tuple[str, str, str, str]]:
            records = audit.QueryAccess(audit_pb2.QueryAccessRequest(), timeout=5).records
            return [
                (r.method.rsplit("/", 1)[1], r.partner_id, r.outcome, r.purpose_of_use)
                for r in records
                if r.method.startswith("/ach.screening") or r.method.startswith("/ach.referrals")
            ]

        expected_trail = [
            ("SubmitScreening", "clinic-1", "OK", "TREAT"),
            ("GetReferral", "cbo-pantry", "OK", "COC"),
            ("UpdateReferralStatus", "cbo-pantry", "OK", "COC"),
            ("UpdateReferralStatus", "cbo-pantry", "OK", "COC"),
            ("GetReferral", "cbo-2", "PERMISSION_DENIED", "COC"),
        ]
        eventually(lambda: trail() == expected_trail, what=f"the audit trail {expected_trail}")
        by_resident = audit.QueryAccess(audit_pb2.QueryAccessRequest(resident_id=resident), timeout=5).records
        # By resident: the ids a handler learned count too (the CBO read the referral, not the resident).
        assert [(r.method.rsplit("/", 1)[1], r.partner_id) for r in by_resident] == [
            ("RegisterResident", "clinic-1"),
            ("RecordConsent", "clinic-1"),
            ("SubmitScreening", "clinic-1"),
            ("GetReferral", "cbo-pantry"),
        ]
        assert all(r.trace_id for r in by_resident)

    # PHI: the screening's answers appear in no span and no log line of any service.
    exported = stack.trace_file.read_text() + "".join(s.log_path.read_text() for s in stack.services.values())
    leaked = [code for _, code in FOOD_POSITIVE if code in exported]
    assert leaked == [], f"screening answers reached spans or logs: {leaked}"

    if backend == "sqlite":  # once is enough: the expressions do not depend on the database
        every_dashboard_and_alert_expression_returns_data(stack)

    # Graceful stop: every process drains and exits 0 on SIGTERM.
    assert stack.stop_all() == dict.fromkeys(ALL_SERVICES, 0)


def every_dashboard_and_alert_expression_returns_data(stack: Stack) -> None:
    """The chart's dashboards and alerts, evaluated by a real Prometheus scraping this stack after
    the loop above (and a public page view): every expression parses, every dashboard query and
    every measure an alert compares returns data, and the rules load and evaluate without error."""
    measurement_http = stack.services["measurement"].env["HTTP_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{measurement_http}/en/", timeout=10) as page:
        assert page.status == 200
    answers = stack.services["notifications"].env["NOTIFY_ANSWER_URL"]
    with pytest.raises(urllib.error.HTTPError) as unknown:  # a stale answer link: counted as unmatched
        urllib.request.urlopen(f"{answers}/no-such-question", timeout=10)
    assert unknown.value.code == 404
    jobs = {name: service.metrics_port for name, service in stack.services.items()}
    with running_prometheus(stack.workdir / "prometheus", jobs) as prometheus:
        eventually(
            lambda: all(prometheus.samples(job) >= 3 for job in jobs) or None, 60, "three scrapes of each"
        )
        assert prometheus.targets_up() == dict.fromkeys(jobs, "up")
        failures = []
        for e in dashboard_expressions() + alert_expressions():
            answer = prometheus.query(e.expr)
            if answer["status"] != "success":
                failures.append(f"{e.where}: {answer.get('error')}")
            elif e.where.startswith("dashboard") and not answer["data"]["result"]:
                failures.append(f"{e.where}: no data for {e.expr}")
        for e in alert_expressions():
            for measure in operands(e.expr):
                if not prometheus.query(measure)["data"]["result"]:
                    failures.append(f"{e.where}: no data for {measure}")
        assert not failures, "\n".join(failures)

        def evaluated() -> list[dict[str, Any]] | None:
            groups = prometheus.get("/api/v1/rules")["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return (
                rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None
            )

        rules = eventually(evaluated, 30, "every rule evaluated")
        assert len(rules) == len(alert_expressions())
        assert [r["name"] for r in rules if r["health"] != "ok"] == []
        # Nothing is wrong with this stack: no alert fires (AchServiceDown etc. would).
        firing = [r["name"] for r in rules if r["state"] == "firing"]
        assert firing == [], firing
