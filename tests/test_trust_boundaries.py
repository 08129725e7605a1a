"""Trust hardening (issue 16), played as an outside partner with nothing but a valid client
certificate, against the running services. Each test fails when its protection is removed.

Covered here: knowing a resident's name and birth date gives a partner nothing (1) and a clinic can
register and screen at once (8); no partner routes referrals to itself or pays itself (3);
webhooks reach only public addresses (4); long values are refused at once (5, with the fuzz test in
test_fuzz.py); audit cannot be flooded and a change commits with its audit record, and the gRPC door
has a size (6, 2); one partner's overlong screening field fails only its own call (7); directory
packages name no file outside themselves (11); one certificate is revoked without suspending its
partner and no other issuer is trusted (10). Points 2, 9, 10 and 12 are also played in
libs/events/tests/test_backbone.py, tests/test_kafka_security.py, tests/test_referral_loop.py and the
notifications worker's tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from ach.directory.v1 import directory_pb2, directory_pb2_grpc
from ach.identity.v1 import identity_pb2, identity_pb2_grpc
from ach.notifications.v1 import notifications_pb2, notifications_pb2_grpc
from ach.referrals.v1 import referrals_pb2, referrals_pb2_grpc
from ach.residents.v1 import residents_pb2, residents_pb2_grpc
from ach.screening.v1 import screening_pb2, screening_pb2_grpc
from ach_platform.grpc_client import partner_channel
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.harness import ROOT, Stack, eventually
from tests.test_walking_skeleton import metric, scrape, screening_request
from tests.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.slow

# Where a partner would like the process that holds the coordinator's credentials to knock.
INTERNAL = [
    "http://127.0.0.1:{metrics}/metrics",
    "https://127.0.0.1:{metrics}/metrics",
    "https://localhost:{metrics}/",
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.1/admin",
    "https://192.168.1.1/",
    "https://[::1]:{metrics}/",
    "https://[::ffff:127.0.0.1]:{metrics}/",
    "https://0.0.0.0:{metrics}/",
    "https://100.64.0.1/",  # carrier-grade NAT: not public either
]


def field_violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return [(v.field, v.description) for v in bad.field_violations]


def test_webhooks_reach_only_public_addresses_at_registration_and_on_every_attempt(
    make_stack: Callable[[str], Stack],
) -> None:
    stack = make_stack("sqlite")
    notifications = stack.add("notifications")
    # The operator allows one loopback address that nothing listens on: everything else internal is out.
    notifications.env["NOTIFY_WEBHOOK_ALLOWLIST"] = "127.0.0.2"
    with webhook_receiver() as receiver:
        stack.start("directory", "referrals", "notifications")
        metrics = stack.services["referrals"].metrics_port
        with stack.channel("notifications", "cbo-pantry") as channel:
            api = notifications_pb2_grpc.NotificationServiceStub(channel)
            for template in INTERNAL:
                address = template.format(metrics=metrics)
                with pytest.raises(grpc.RpcError) as refused:
                    api.RegisterChannel(
                        notifications_pb2.RegisterChannelRequest(
                            partner_id="cbo-pantry",
                            kind=notifications_pb2.CHANNEL_KIND_WEBHOOK,
                            address=address,
                        ),
                        timeout=10,
                    )
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, address
                assert field_violations(refused.value) in (
                    [("address", "must reach a public address")],
                    [("address", "must be an https:// URL")],
                ), address
            # What the operator allows registers; its secret is kept sealed, never as given.
            allowed = api.RegisterChannel(
                notifications_pb2.RegisterChannelRequest(
                    partner_id="cbo-pantry",
                    kind=notifications_pb2.CHANNEL_KIND_WEBHOOK,
                    address="http://127.0.0.2:9/",
                ),
                timeout=10,
            )
            stored = stack.query(
                "notifications", f"SELECT secret FROM partner_channel WHERE id = '{allowed.channel_id}'"
            )
            assert (
                allowed.secret and stored[0][0].startswith("fernet:") and allowed.secret not in stored[0][0]
            )
            api.RemoveChannel(
                notifications_pb2.RemoveChannelRequest(channel_id=allowed.channel_id), timeout=10
            )
            # A 30,000-character address is refused at once, by its length (no pattern runs over it).
            for kind, address in (
                (notifications_pb2.CHANNEL_KIND_EMAIL, "a" * 30_000 + "@example.org"),
                (notifications_pb2.CHANNEL_KIND_EMAIL, "@" + "a." * 15_000),
                (notifications_pb2.CHANNEL_KIND_WEBHOOK, "https://example.org/" + "a" * 30_000),
            ):
                started = time.monotonic()
                with pytest.raises(grpc.RpcError) as long:
                    api.RegisterChannel(
                        notifications_pb2.RegisterChannelRequest(
                            partner_id="cbo-pantry", kind=kind, address=address
                        ),
                        timeout=10,
                    )
                assert long.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "at most" in field_violations(long.value)[0][1]
                assert time.monotonic() - started < 2

        # The public HSDS API bounds what it reads before it reads it, and echoes no long value.
        hsds = f"http://127.0.0.1:{stack.services['directory'].env['HTTP_PORT']}/services"
        for query, parameter in (
            ({"search": "food " * 5000}, "search"),
            ({"postcode": "95202", "proximity": "9" * 5000}, "proximity"),
            ({"per_page": "9" * 5000}, "per_page"),
        ):
            started = time.monotonic()
            status, body = http_get(f"{hsds}?{urllib.parse.urlencode(query)}")
            assert status == 400 and json.loads(body)["parameter"] == parameter, body[:200]
            assert len(body) < 300 and time.monotonic() - started < 2

        # A name that resolved to a public address when it was registered resolves to an internal one
        # now (DNS rebinding), and an address literal slipped in before these checks existed: the
        # attempt is refused before any connection; the partner reads only the class of the problem.
        receiver_url = receiver.url("/cbo-pantry")
        for address in (receiver_url.replace("127.0.0.1", "localhost"), receiver_url):
            insert_channel(stack, "cbo-pantry", address)
        stack.add_pantry()
        resident = stack.consenting_resident("clinic-1")
        stack.wait_consents_replicated(1)
        with stack.channel("referrals", "clinic-1") as channel:
            placed = referrals_pb2_grpc.ReferralServiceStub(channel).CreateReferral(
                referrals_pb2.CreateReferralRequest(resident_id=resident, need_domain="food-insecurity"),
                timeout=10,
            )
        assert placed.target_partner_id == "cbo-pantry"

        def refused_deliveries() -> list[notifications_pb2.Delivery] | None:
            with stack.channel("notifications", "cbo-pantry") as channel:
                log = notifications_pb2_grpc.NotificationServiceStub(channel).ListDeliveries(
                    notifications_pb2.ListDeliveriesRequest(
                        partner_id="cbo-pantry", subject_id=placed.referral_id
                    ),
                    timeout=10,
                )
            tried = [d for d in log.deliveries if d.attempts >= 1]
            return tried if len(tried) == 2 else None

        deliveries = eventually(refused_deliveries, what="both deliveries tried")
        for d in deliveries:
            assert d.last_error == "destination not allowed: webhooks go to public addresses only", d
            assert str(metrics) not in d.last_error and "127.0.0.1" not in d.last_error
        assert receiver.received == [] and receiver.attempts == {}, "nothing reached the internal endpoint"


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def insert_channel(stack: Stack, partner: str, address: str) -> None:
    stack.execute(
        "notifications",
        "INSERT INTO partner_channel (id, partner_id, kind, address, secret, active, created_at)"
        " VALUES (?, ?, 'webhook', ?, 'secret', 1, ?)",
        (str(uuid.uuid4()), partner, address, datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")),
    )


def test_a_directory_package_names_no_file_outside_itself(tmp_path: Path) -> None:
    package = tmp_path / "package"
    package.mkdir()
    secret = tmp_path / "secret.csv"
    secret.write_text("id,name\nroot-password,hunter2\n")
    (package / "datapackage.json").write_text(
        '{"name": "x", "resources": [{"name": "organization", "path": "../secret.csv"},'
        ' {"name": "service", "path": "/etc/passwd"}]}'
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    env["DIRECTORY_DATABASE_URL"] = f"sqlite:///{tmp_path / 'directory.db'}"
    subprocess.run(
        [sys.executable, "-m", "ach_directory.main", "migrate"],
        env=env,
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    done = subprocess.run(
        [sys.executable, "-m", "ach_directory.main", "import", str(package), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "outside the package" in done.stderr
    assert "hunter2" not in done.stdout + done.stderr and "root" not in done.stdout + done.stderr


def test_one_partners_overlong_field_fails_only_its_own_screening(make_stack: Callable[[str], Stack]) -> None:
    """Concurrent submissions share a transaction (group commit); on PostgreSQL a value longer than
    its column would fail the whole batch, other partners' screenings included."""
    stack = make_stack("postgresql")
    stack.start("screening")
    residents = {p: stack.resident(p) for p in ("clinic-1", "clinic-2")}
    requests = []
    for i in range(40):
        partner = ("clinic-1", "clinic-2")[i % 2]
        requests.append(screening_request(residents[partner], partner))
    hostile = screening_request(residents["clinic-2"], "clinic-2")
    hostile.site_id = "s" * 150
    hostile.screened_by.user_id = "u" * 150
    requests.insert(20, hostile)
    channels = {p: stack.channel("screening", p) for p in residents}
    try:
        stubs = {p: screening_pb2_grpc.ScreeningServiceStub(c) for p, c in channels.items()}
        calls = [stubs[r.screened_by.partner_id].SubmitScreening.future(r, timeout=30) for r in requests]
        outcomes = []
        for call in calls:
            try:
                outcomes.append(call.result().screening_id != "")
            except grpc.RpcError as error:
                outcomes.append(error)
    finally:
        for c in channels.values():
            c.close()
    refused = outcomes.pop(20)
    assert isinstance(refused, grpc.RpcError) and refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(refused) == [
        ("site_id", "is longer than 100 characters"),
        ("screened_by.user_id", "is longer than 100 characters"),
    ]
    assert outcomes == [True] * 40, [o for o in outcomes if o is not True][:3]


def ipv_and_food_positive(resident: str) -> screening_pb2.SubmitScreeningRequest:
    """The clinic's screening: food insecurity and intimate-partner violence."""
    request = screening_request(resident)
    for answer in request.answers:
        if answer.question_code in {"95618-5", "95617-7", "95616-9", "95615-1"}:
            answer.answer_codes[:] = ["LA16644-9"]  # "fairly often", four times: 16 points
    return request


def test_knowing_a_residents_name_and_birth_date_gives_a_partner_nothing(
    make_stack: Callable[[str], Stack],
) -> None:
    stack = make_stack("sqlite")
    stack.start("screening", "referrals", "directory")
    stack.add_pantry()
    ana = residents_pb2.Demographics(
        given_name="Ana",
        family_name="Demo-Reyes",
        birth_date="1979-05-14",
        phone="209-555-0142",
        postal_code="95202",
        preferred_language="es",
    )
    with stack.channel("identity", "clinic-1") as channel:
        index = residents_pb2_grpc.ResidentIndexStub(channel)
        registry = residents_pb2_grpc.ConsentRegistryStub(channel)
        resident = index.RegisterResident(
            residents_pb2.RegisterResidentRequest(partner_resident_id="MRN-ana", demographics=ana), timeout=5
        ).resident_id
        clinic_consent = registry.RecordConsent(
            residents_pb2.RecordConsentRequest(
                resident_id=resident,
                scope=residents_pb2.ConsentScope(
                    need_domains=["food-insecurity"], partner_ids=["cbo-pantry"]
                ),
                method=residents_pb2.CONSENT_METHOD_WRITTEN,
            ),
            timeout=5,
        ).consent_id
        registry.SetContactPreference(
            residents_pb2.SetContactPreferenceRequest(
                resident_id=resident, channel=residents_pb2.CONTACT_CHANNEL_SMS
            ),
            timeout=5,
        )
    stack.wait_resident_known(resident, "clinic-1", consent=True)
    stack.wait_consents_replicated(1)
    with stack.channel("screening", "clinic-1") as channel:
        screened = screening_pb2_grpc.ScreeningServiceStub(channel).SubmitScreening(
            ipv_and_food_positive(resident), timeout=10
        )
    assert set(screened.positive_domains) >= {"food-insecurity", "intimate-partner-violence"}

    # The outsider knows her name and birth date, and gives an address of its own.
    outsider_identity = stack.channel("identity", "cbo-outreach")
    index = residents_pb2_grpc.ResidentIndexStub(outsider_identity)
    registry = residents_pb2_grpc.ConsentRegistryStub(outsider_identity)
    matched = eventually(
        lambda: index.RegisterResident(
            residents_pb2.RegisterResidentRequest(
                partner_resident_id="door-17",
                demographics=residents_pb2.Demographics(
                    given_name="ana",
                    family_name="demo-reyes",
                    birth_date="1979-05-14",
                    email="outreach@example.org",
                ),
            ),
            timeout=5,
        ),
        what="the outsider in the registry",
    )
    # Same person, same network id (unduplicated counts)...
    assert (matched.resident_id, matched.match) == (resident, residents_pb2.MATCH_KIND_DEMOGRAPHICS)
    # ... but it sees only what it supplied: not her phone, ZIP code or language.
    seen = index.GetResident(residents_pb2.GetResidentRequest(resident_id=resident), timeout=5).demographics
    assert (seen.phone, seen.postal_code, seen.preferred_language, seen.email) == (
        "",
        "",
        "",
        "outreach@example.org",
    )
    # Not her needs (once the screening service knows the outsider has her on its books too).
    stack.wait_resident_known(resident, "cbo-outreach")
    with stack.channel("screening", "cbo-outreach") as channel:
        with pytest.raises(grpc.RpcError) as hidden:
            screening_pb2_grpc.ScreeningServiceStub(channel).ListResidentScreenings(
                screening_pb2.ListResidentScreeningsRequest(resident_id=resident), timeout=5
            )
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    # Not what she agreed with the clinic; it cannot revoke it either.
    own = registry.RecordConsent(
        residents_pb2.RecordConsentRequest(resident_id=resident, method=residents_pb2.CONSENT_METHOD_VERBAL),
        timeout=5,
    )
    listed = registry.ListConsents(residents_pb2.ListConsentsRequest(resident_id=resident), timeout=5)
    assert [c.consent_id for c in listed.consents] == [own.consent_id]
    with pytest.raises(grpc.RpcError) as refused:
        registry.RevokeConsent(residents_pb2.RevokeConsentRequest(consent_id=clinic_consent), timeout=5)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    # It cannot redirect the network's messages to its own address; it may only turn them off.
    with pytest.raises(grpc.RpcError) as redirected:
        registry.SetContactPreference(
            residents_pb2.SetContactPreferenceRequest(
                resident_id=resident, channel=residents_pb2.CONTACT_CHANNEL_EMAIL
            ),
            timeout=5,
        )
    assert redirected.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]

    # Its own consent (every need, every CBO) unlocks nothing the clinic supplied: the pantry, under
    # the clinic's consent, is told the clinic's phone; for what the outsider recorded, nothing more.
    with stack.channel("referrals", "cbo-pantry") as channel:
        referral = eventually(
            lambda: (
                referrals_pb2_grpc.ReferralServiceStub(channel)
                .ListReferrals(referrals_pb2.ListReferralsRequest(partner_id="cbo-pantry"), timeout=5)
                .referrals
            ),
            what="the clinic's referral at the pantry",
        )[0]
    with stack.channel("identity", "cbo-pantry") as channel:
        pantry = residents_pb2_grpc.ResidentIndexStub(channel)
        shared = eventually(
            lambda: pantry.GetResidentForReferral(
                residents_pb2.GetResidentForReferralRequest(referral_id=referral.referral_id), timeout=5
            ),
            what="the share with the pantry",
        )
    assert (shared.given_name, shared.phone, shared.consent_id) == ("Ana", "209-555-0142", clinic_consent)

    # The clinic still sees all it recorded, the IPV finding included; the ACH admin sees the index.
    with stack.channel("screening", "clinic-1") as channel:
        mine = screening_pb2_grpc.ScreeningServiceStub(channel).ListResidentScreenings(
            screening_pb2.ListResidentScreeningsRequest(resident_id=resident), timeout=5
        )
    assert "intimate-partner-violence" in mine.screenings[0].positive_domains
    with stack.channel("identity") as channel:
        admin = residents_pb2_grpc.ResidentIndexStub(channel).GetResident(
            residents_pb2.GetResidentRequest(resident_id=resident), timeout=5
        )
    assert (admin.demographics.phone, admin.demographics.email) == ("209-555-0142", "")
    outsider_identity.close()

    # Point 8, on the same stack: a clinic registers and screens at once, and every screening is taken.
    register_and_screen_at_once(stack, times=10)


def register_and_screen_at_once(stack: Stack, times: int) -> None:
    """RegisterResident, then SubmitScreening without waiting: read-your-writes holds for the caller
    that just wrote, whatever the screening service has heard from the resident index yet."""
    with stack.channel("identity", "clinic-2") as identity, stack.channel("screening", "clinic-2") as channel:
        index = residents_pb2_grpc.ResidentIndexStub(identity)
        screening = screening_pb2_grpc.ScreeningServiceStub(channel)
        for i in range(times):
            resident = index.RegisterResident(
                residents_pb2.RegisterResidentRequest(
                    partner_resident_id=f"walk-in-{uuid.uuid4().hex[:8]}",
                    demographics=residents_pb2.Demographics(
                        given_name=f"Walk{i}", family_name="In", birth_date="1990-03-04"
                    ),
                ),
                timeout=5,
            ).resident_id
            taken = screening.SubmitScreening(screening_request(resident, partner="clinic-2"), timeout=10)
            assert taken.screening_id


def test_no_partner_routes_the_networks_referrals_to_itself_or_pays_itself(
    make_stack: Callable[[str], Stack],
) -> None:
    stack = make_stack("sqlite")
    stack.start("referrals", "directory", "funding")
    outsider = "cbo-outreach"
    directory = stack.channel("directory", outsider)
    referrals = referrals_pb2_grpc.ReferralServiceStub(stack.channel("referrals", outsider))

    # It gives itself a service for housing: the claim waits for the ACH's review, routing nothing.
    service = directory_pb2.Service(
        service_id="svc-outreach-housing",
        organization_id=outsider,
        name="Outreach housing help",
        need_domains=["housing-instability"],
        languages=["en"],
        capacity_available=5,
        capacity_maximum=5,
    )
    kept = eventually(
        lambda: directory_pb2_grpc.DirectoryServiceStub(directory).UpsertService(
            directory_pb2.UpsertServiceRequest(service=service), timeout=5
        ),
        what="the outsider known to the directory",
    )
    assert (list(kept.need_domains), list(kept.claimed_need_domains)) == ([], ["housing-instability"])

    resident = stack.resident(outsider, consent=True)  # its own resident, its own consent
    eventually(
        lambda: (
            stack.count_rows(
                "referrals", f"SELECT count(*) FROM resident_link_replica WHERE resident_id = '{resident}'"
            )
            == 1
            and stack.count_rows(
                "referrals", f"SELECT count(*) FROM consent_replica WHERE resident_id = '{resident}'"
            )
            == 1
        ),
        what="the resident and consent in the referral service",
    )
    create = referrals_pb2.CreateReferralRequest(resident_id=resident, need_domain="housing-instability")
    with pytest.raises(grpc.RpcError) as unrouted:
        referrals.CreateReferral(create, timeout=5)
    assert unrouted.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]

    # A resident it only knows the id of is not its to refer.
    clinics_resident = stack.resident("clinic-1", consent=True)
    with pytest.raises(grpc.RpcError) as not_its_own:
        referrals.CreateReferral(
            referrals_pb2.CreateReferralRequest(resident_id=clinics_resident, need_domain="food-insecurity"),
            timeout=5,
        )
    assert not_its_own.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert "not on cbo-outreach's books" in not_its_own.value.details()  # type: ignore[attr-defined]

    # The ACH admin sees the claim and approves it: now it routes, but a referral to itself is
    # internal, and completing it with the need met pays nothing from the Wellness Fund.
    with stack.channel("directory") as channel:
        admin = directory_pb2_grpc.DirectoryServiceStub(channel)
        claims = admin.ListNeedDomainClaims(directory_pb2.ListNeedDomainClaimsRequest(), timeout=5)
        assert [(s.service_id, list(s.claimed_need_domains)) for s in claims.services] == [
            ("svc-outreach-housing", ["housing-instability"])
        ]
        approved = admin.ReviewNeedDomains(
            directory_pb2.ReviewNeedDomainsRequest(
                service_id="svc-outreach-housing", approve=["housing-instability"]
            ),
            timeout=5,
        )
        assert list(approved.need_domains) == ["housing-instability"]
    referral = eventually(
        lambda: referrals.CreateReferral(create, timeout=5), what="the approved service in matching"
    )
    assert referral.target_partner_id == outsider and referral.internal
    for status in (referrals_pb2.REFERRAL_STATUS_ACCEPTED, referrals_pb2.REFERRAL_STATUS_COMPLETED):
        referrals.UpdateReferralStatus(
            referrals_pb2.UpdateReferralStatusRequest(
                referral_id=referral.referral_id,
                status=status,
                outcome=referrals_pb2.REFERRAL_OUTCOME_NEED_MET
                if status == referrals_pb2.REFERRAL_STATUS_COMPLETED
                else referrals_pb2.REFERRAL_OUTCOME_UNSPECIFIED,
            ),
            timeout=5,
        )
    funding = stack.services["funding"].metrics_port
    eventually(
        lambda: metric(scrape(funding), "ach_funding_internal_referrals_unpaid_total") >= 1,
        what="the funding service's judgement of the internal referral",
    )
    assert (
        stack.count_rows("funding", "SELECT count(*) FROM ledger_entry WHERE account_id LIKE 'partner:%'")
        == 0
    )
    assert (
        stack.count_rows("funding", "SELECT count(*) FROM outcome_payment WHERE status = 'not-payable'") == 1
    )
    directory.close()


def test_audit_cannot_be_flooded_and_no_change_goes_unaudited(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack("postgresql")  # where a too-long id once broke the audit insert
    stack.start()
    identity = stack.services["identity"]
    audited = "SELECT count(*) FROM audit_record"
    index_method = "/ach.residents.v1.ResidentIndex/GetResident"

    # Nobody with only a made-up token writes into the six-year log: counted, not stored.
    token_port = identity.env["TOKEN_PORT"]
    with partner_channel(f"127.0.0.1:{token_port}", stack.pki.ca_cert, token="not-a-token") as channel:
        index = residents_pb2_grpc.ResidentIndexStub(channel)
        for _ in range(20):
            with pytest.raises(grpc.RpcError) as refused:
                index.GetResident(residents_pb2.GetResidentRequest(resident_id="x" * 50_000), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    eventually(
        lambda: (
            metric(scrape(identity.metrics_port), "ach_grpc_unauthenticated_calls_total", index_method) >= 20
        ),
        what="the refused calls counted",
    )

    # A partner's over-long id is audited, bounded, instead of breaking the insert (then dead-lettered).
    with stack.channel("identity", "clinic-1") as channel:
        index = residents_pb2_grpc.ResidentIndexStub(channel)
        with pytest.raises(grpc.RpcError):
            index.GetResident(residents_pb2.GetResidentRequest(resident_id="y" * 5_000), timeout=5)
        eventually(
            lambda: (
                stack.count_rows(
                    "identity",
                    f"SELECT count(*) FROM audit_record WHERE method = '{index_method}'"
                    " AND partner_id = 'clinic-1'",
                )
                == 1
            ),
            what="the partner's refused call in the audit log",
        )
        assert stack.count_rows("identity", audited + " WHERE partner_id = ''") == 0
        [(resident_id,)] = stack.query(
            "identity", f"SELECT resident_id FROM audit_record WHERE method = '{index_method}'"
        )
        assert resident_id == "y" * 100

        # A change commits with its audit record: both in the one transaction (the service's outbox).
        recorded = "SELECT count(*) FROM outbox_event WHERE event_type = 'ach.audit.v1.AccessRecorded'"
        before = stack.count_rows("identity", recorded)
        resident = index.RegisterResident(
            residents_pb2.RegisterResidentRequest(
                partner_resident_id="MRN-audit",
                demographics=residents_pb2.Demographics(
                    given_name="Audit", family_name="Trail", birth_date="1970-01-01"
                ),
            ),
            timeout=5,
        ).resident_id
        assert stack.count_rows("identity", recorded) == before + 1

        # Point 2 at the gRPC door, on the same stack: a long name is the caller's INVALID_ARGUMENT
        # (not a database error on PostgreSQL), and a request over 1 MiB is refused unread.
        with pytest.raises(grpc.RpcError) as long_name:
            index.RegisterResident(
                residents_pb2.RegisterResidentRequest(
                    partner_resident_id="MRN-long",
                    demographics=residents_pb2.Demographics(
                        given_name="A" * 300, family_name="Trail", birth_date="1970-01-01"
                    ),
                ),
                timeout=5,
            )
        assert field_violations(long_name.value) == [
            ("demographics.given_name", "is longer than 200 characters")
        ]
        with pytest.raises(grpc.RpcError) as huge:
            index.RegisterResident(
                residents_pb2.RegisterResidentRequest(partner_resident_id="M" * (2 * 1024 * 1024)), timeout=5
            )
        assert huge.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    eventually(
        lambda: (
            stack.count_rows(
                "identity",
                "SELECT count(*) FROM audit_record WHERE method LIKE '%/RegisterResident'"
                f" AND resident_id = '{resident}'",
            )
            == 1
        ),
        what="one audit record of the registration, naming the resident",
    )


def issue_certificate(stack: Stack, partner: str, issuer: str, directory: Path) -> tuple[Path, Path, int]:
    """Another client certificate naming ``partner``, from the PKI's ``issuer`` CA ("partners-ca" or
    "ca", the services' own): its certificate and key files and its serial number."""
    from ach_platform import dev_pki
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca = x509.load_pem_x509_certificate((stack.pki.directory / f"{issuer}.pem").read_bytes())
    ca_key = serialization.load_pem_private_key(
        (stack.pki.directory / f"{issuer}-key.pem").read_bytes(), None
    )
    key = dev_pki._key()
    uri = x509.UniformResourceIdentifier(dev_pki.PARTNER_URI_PREFIX + partner)
    cert = dev_pki._cert(partner, key, ca, ca_key, sans=[uri])  # type: ignore[arg-type]
    cert_path, key_path = directory / f"{issuer}-{partner}.pem", directory / f"{issuer}-{partner}-key.pem"
    dev_pki._write_cert(cert, cert_path)
    dev_pki._write_key(key, key_path)
    return cert_path, key_path, cert.serial_number


def test_one_certificate_is_revoked_without_suspending_its_partner_and_no_other_issuer_is_trusted(
    make_stack: Callable[[str], Stack], tmp_path: Path
) -> None:
    stack = make_stack("sqlite")
    stack.start("screening")
    screening = stack.services["screening"].address

    def answers(cert: Path, key: Path) -> grpc.StatusCode:
        with partner_channel(screening, stack.pki.ca_cert, cert=cert, key=key) as channel:
            try:
                screening_pb2_grpc.ScreeningServiceStub(channel).ListInstruments(
                    screening_pb2.ListInstrumentsRequest(), timeout=5
                )
                return grpc.StatusCode.OK
            except grpc.RpcError as exc:
                return exc.code()  # type: ignore[attr-defined, no-any-return]

    lost_cert, lost_key, serial = issue_certificate(stack, "clinic-1", "partners-ca", tmp_path)
    assert answers(lost_cert, lost_key) == grpc.StatusCode.OK
    # A certificate the services' own issuer signed is no partner's, whatever name it carries.
    forged_cert, forged_key, _ = issue_certificate(stack, "clinic-1", "ca", tmp_path)
    assert answers(forged_cert, forged_key) == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails

    with stack.channel("identity") as channel:
        revoked = identity_pb2_grpc.PartnerRegistryStub(channel).RevokeCertificate(
            identity_pb2.RevokeCertificateRequest(
                partner_id="clinic-1", serial_number=format(serial, "X"), reason="laptop lost"
            ),
            timeout=5,
        )
    assert revoked.status == identity_pb2.PARTNER_STATUS_ACTIVE
    assert list(revoked.revoked_certificates) == [format(serial, "x")]
    eventually(
        lambda: answers(lost_cert, lost_key) == grpc.StatusCode.UNAUTHENTICATED,
        what="the revocation heard by the screening service",
    )
    # The partner's other certificate still works: only the lost one is out.
    assert answers(stack.pki.client_cert("clinic-1"), stack.pki.client_key("clinic-1")) == grpc.StatusCode.OK
