"""Only network partners receive referrals. A generated 2-1-1 directory (and the official HSDS
examples) is imported beside partners' services: a few organizations are partners by their
"ach-partner" identifier, one by the ACH admin's link, one is linked to a registered partner that
may not receive referrals, the rest are plain directory entries. Screenings positive for every need
domain the shipped instruments know: every direct referral goes to a partner that authenticates
with its own certificate, sees it, hears of it on its webhook and accepts it; no referral names a
non-partner; a need only non-partners serve becomes an informational referral whose details reach
the resident by text in Spanish (never for the silenced domains), which the source sees in the
referral's history and measurement counts apart. Referrals placed before the upgrade with a
non-partner target are mended by `ach-referrals mend-targets`."""

from __future__ import annotations

import csv
import functools
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from ach.common.v1 import common_pb2
from ach.directory.v1 import directory_pb2, directory_pb2_grpc
from ach.measurement.v1 import measurement_pb2, measurement_pb2_grpc
from ach.referrals.v1 import referrals_pb2, referrals_pb2_grpc
from ach.residents.v1 import residents_pb2
from ach.screening.v1 import screening_pb2, screening_pb2_grpc
from ach_directory.hsds_catalog import load_catalog
from ach_directory.hsds_files import write_package
from ach_directory.sample_package import generate, link_partners
from google.protobuf.timestamp_pb2 import Timestamp

from tests.harness import ROOT, Stack, eventually
from tests.sms_gateway import Sms, sms_gateway
from tests.test_directory_search import EXAMPLES, import_package, mended_examples
from tests.test_referral_loop import register_webhook, set_contact_preference
from tests.webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.slow

SERVICES = ("directory", "screening", "referrals", "notifications", "measurement")
PARTNERS = ("cbo-1", "cbo-2")  # generated organizations linked by an ach-partner identifier
ADMIN_LINKED = "cbo-pantry"  # a generated organization the ACH admin links
NO_TARGET_ROLE = "funder-1"  # registered, but may not receive referrals: its services are information
SILENT = {"intimate-partner-violence", "elder-abuse"}

# One AHC HRSN screening and one PRAPARE screening, positive on every domain each can find.
AHC_POSITIVE = [
    ("71802-3", ["LA31994-9"]),  # worried about losing housing
    ("96778-6", ["LA31996-4", "LA28580-1"]),  # pests, mold
    ("88122-7", ["LA28397-0"]),
    ("88123-5", ["LA28397-0"]),
    ("93030-5", ["LA33-6"]),
    ("96779-4", ["LA32002-0"]),
    ("95618-5", ["LA6482-9"]),
    ("95617-7", ["LA6482-9"]),
    ("95616-9", ["LA6482-9"]),
    ("95615-1", ["LA6482-9"]),
]
PRAPARE_POSITIVE: list[tuple[str, list[str], str]] = [
    ("56051-6", ["LA32-8"], ""),
    ("32624-9", ["LA4457-3"], ""),
    ("93035-4", ["LA32-8"], ""),
    ("93034-7", ["LA33-6"], ""),  # veteran
    ("54899-0", ["LA43-5"], ""),
    ("63512-8", [], "3"),
    ("71802-3", ["LA30190-5"], ""),  # no housing
    ("93033-9", ["LA33-6"], ""),  # worried about losing it
    ("82589-3", ["LA30191-3"], ""),  # less than high school
    ("67875-5", ["LA17956-6"], ""),  # unemployed
    ("76437-3", ["LA30194-7"], ""),  # uninsured
    ("63586-2", [], "32000"),
    ("93031-3", ["LA30125-1", "LA30124-4", "LA30126-9", "LA30128-5"], ""),
    ("93030-5", ["LA30133-5"], ""),
    ("93029-7", ["LA30130-1"], ""),
    ("93038-8", ["LA13902-4"], ""),
    ("93028-9", ["LA33-6"], ""),  # incarcerated
]


def now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def submit(stack: Stack, resident: str, instrument: str, answers: list[screening_pb2.Answer]) -> list[str]:
    request = screening_pb2.SubmitScreeningRequest(
        submitter_screening_id=str(uuid.uuid4()),
        resident_id=resident,
        instrument_id=instrument,
        instrument_version="1",
        screened_at=now(),
        site_id="site-1",
        language="es",
        answers=answers,
        screened_by=common_pb2.Actor(partner_id="clinic-1"),
    )
    with stack.channel("screening", "clinic-1") as channel:
        done = screening_pb2_grpc.ScreeningServiceStub(channel).SubmitScreening(request, timeout=10)
    return list(done.positive_domains)


def all_services(stack: Stack) -> list[directory_pb2.Service]:
    """Every service, as the directory's search gives it (inactive ones too)."""
    found: list[directory_pb2.Service] = []
    token = ""
    with stack.channel("directory", "clinic-1") as channel:
        directory = directory_pb2_grpc.DirectoryServiceStub(channel)
        while True:
            page = directory.SearchServices(
                directory_pb2.SearchServicesRequest(page_size=100, page_token=token, include_inactive=True),
                timeout=10,
            )
            found += [r.service for r in page.results]
            token = page.next_page_token
            if not token:
                return found


def referrals_of_resident(stack: Stack, resident: str) -> list[referrals_pb2.Referral]:
    with stack.channel("referrals", "clinic-1") as channel:
        listed = referrals_pb2_grpc.ReferralServiceStub(channel).ListReferrals(
            referrals_pb2.ListReferralsRequest(partner_id="clinic-1", page_size=1000), timeout=10
        )
    return [r for r in listed.referrals if r.resident_id == resident]


def test_only_partners_receive_referrals_and_residents_get_every_other_services_details(
    make_stack: Callable[[str], Stack], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = make_stack("sqlite")
    with sms_gateway() as sms, webhook_receiver() as receiver:
        for name, value in sms.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("NOTIFY_BACKOFF_BASE_S", "0.2")
        monkeypatch.setenv("NOTIFY_BACKOFF_CAP_S", "1")
        stack.start(*SERVICES)
        for partner in (*PARTNERS, ADMIN_LINKED):
            register_webhook(stack, receiver, partner)

        # The directory: a generated 2-1-1 import with two partner organizations and one linked to a
        # partner without the referral-target role, and the official HSDS examples.
        rows = generate(90, seed=5)
        links = link_partners(rows, [*PARTNERS, NO_TARGET_ROLE])
        package = tmp_path / "generated"
        write_package(package, load_catalog().entities, rows)
        for source in (package, mended_examples(tmp_path)):
            done = import_package(stack, source)
            assert done.returncode == 0, done.stderr
        # The ACH admin links one more organization; nobody else may.
        linked_by_admin = str(rows["organization"][5]["id"])
        request = directory_pb2.LinkOrganizationRequest(
            organization_id=linked_by_admin, partner_id=ADMIN_LINKED
        )
        with stack.channel("directory", "cbo-1") as channel, pytest.raises(grpc.RpcError) as refused:
            directory_pb2_grpc.DirectoryServiceStub(channel).LinkOrganization(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with stack.channel("directory") as channel:
            directory = directory_pb2_grpc.DirectoryServiceStub(channel)
            answer = directory.LinkOrganization(request, timeout=10)
            assert answer.services_changed == sum(
                1 for s in rows["service"] if s["organization_id"] == linked_by_admin
            )
            with pytest.raises(grpc.RpcError) as unknown:
                directory.LinkOrganization(
                    directory_pb2.LinkOrganizationRequest(
                        organization_id=linked_by_admin, partner_id="cbo-nobody"
                    ),
                    timeout=10,
                )
            assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        links[linked_by_admin] = ADMIN_LINKED

        # What the directory says of each service: its partner exactly as linked, else none.
        services = all_services(stack)
        assert len(services) == 90 + len(list(csv.DictReader((EXAMPLES / "csv" / "services.csv").open())))
        for s in services:
            assert s.partner_id == links.get(s.organization_id, ""), s.service_id
        by_id = {s.service_id: s for s in services}
        eventually(
            lambda: (
                stack.count_rows(
                    "referrals",
                    f"SELECT count(*) FROM directory_service_replica WHERE partner_id = '{ADMIN_LINKED}'",
                )
                == answer.services_changed
                and stack.count_rows("referrals", "SELECT count(*) FROM directory_service_replica")
                == len(services)
            ),
            what="every service, with its partner, in the referral service's replica",
        )
        takers = {*PARTNERS, ADMIN_LINKED}
        active = [s for s in services if s.status == directory_pb2.SERVICE_STATUS_ACTIVE]
        partner_domains = {d for s in active if s.partner_id in takers for d in s.need_domains}
        other_domains = {d for s in active for d in s.need_domains} - partner_domains

        # A consenting resident who chose texts; screened positive on every domain.
        resident = stack.consenting_resident("clinic-1")
        stack.wait_consents_replicated(1)
        set_contact_preference(stack, resident, residents_pb2.CONTACT_CHANNEL_SMS)
        eventually(
            lambda: stack.count_rows("notifications", "SELECT count(*) FROM resident_preference") == 1,
            what="the preference in the notifications service",
        )
        positive = submit(
            stack,
            resident,
            "ahc-hrsn-core",
            [screening_pb2.Answer(question_code=q, answer_codes=a) for q, a in AHC_POSITIVE],
        )
        positive += submit(
            stack,
            resident,
            "prapare",
            [screening_pb2.Answer(question_code=q, answer_codes=a, value=v) for q, a, v in PRAPARE_POSITIVE],
        )
        assert len(set(positive)) == 16, positive  # every need domain the two instruments know

        def every_need_referred() -> list[referrals_pb2.Referral] | None:
            found = referrals_of_resident(stack, resident)
            return found if len(found) == len(positive) else None

        referrals = eventually(every_need_referred, what="a referral for every need")
        assert partner_domains & set(positive) and other_domains & set(positive), "both paths are exercised"

        hand_offs = [r for r in referrals if r.target_partner_id]
        informational = [r for r in referrals if r.informational]
        for r in referrals:
            if r.need_domain in partner_domains:
                assert (r.status, r.informational) == (referrals_pb2.REFERRAL_STATUS_REQUESTED, False), r
                assert (
                    r.target_partner_id in takers
                    and by_id[r.target_service_id].partner_id == r.target_partner_id
                )
            elif r.need_domain in other_domains:
                assert (r.status, r.informational, r.target_partner_id) == (
                    referrals_pb2.REFERRAL_STATUS_COMPLETED,
                    True,
                    "",
                ), r
                assert by_id[r.target_service_id].partner_id not in takers
            else:
                assert (r.status, r.draft_reason) == (
                    referrals_pb2.REFERRAL_STATUS_DRAFT,
                    "no-matching-service",
                )
        assert not any(r.target_partner_id and r.target_partner_id not in takers for r in referrals)

        # Every hand-off's target: its own certificate, sees it, is told on its webhook, accepts it.
        for r in hand_offs:
            eventually(
                functools.partial(told_on_webhook, receiver, r.target_partner_id, r.referral_id),
                what=f"the webhook of {r.target_partner_id}",
            )
            with stack.channel("referrals", r.target_partner_id) as channel:
                target = referrals_pb2_grpc.ReferralServiceStub(channel)
                assert target.GetReferral(
                    referrals_pb2.GetReferralRequest(referral_id=r.referral_id), timeout=10
                )
                accepted = target.UpdateReferralStatus(
                    referrals_pb2.UpdateReferralStatusRequest(
                        referral_id=r.referral_id, status=referrals_pb2.REFERRAL_STATUS_ACCEPTED
                    ),
                    timeout=10,
                )
            assert accepted.status == referrals_pb2.REFERRAL_STATUS_ACCEPTED

        # The source's choices: partners' services first, then the others, information only.
        with stack.channel("referrals", "clinic-1") as channel:
            proposed = [
                referrals_pb2_grpc.ReferralServiceStub(channel)
                .ProposeTargets(referrals_pb2.ProposeTargetsRequest(referral_id=r.referral_id), timeout=10)
                .targets
                for r in hand_offs
            ]
        for targets in proposed:
            kinds = [t.information_only for t in targets]
            assert kinds == sorted(kinds), "partners first"
            for t in targets:
                assert t.partner_id == ("" if t.information_only else by_id[t.service_id].partner_id)
                assert t.information_only == (by_id[t.service_id].partner_id not in takers)
        assert any(t.information_only for targets in proposed for t in targets)

        # Each informational referral: the source sees why in its history; the resident is texted the
        # service's name, address, phone and hours in Spanish (not for the silenced domains).
        with stack.channel("referrals", "clinic-1") as channel:
            clinic = referrals_pb2_grpc.ReferralServiceStub(channel)
            for r in informational:
                history = clinic.GetReferralHistory(
                    referrals_pb2.GetReferralHistoryRequest(referral_id=r.referral_id), timeout=10
                ).changes
                assert [(c.to_status, c.target_service_id) for c in history] == [
                    (referrals_pb2.REFERRAL_STATUS_COMPLETED, r.target_service_id)
                ]
                assert history[0].reason.startswith(f"no network partner serves {r.need_domain}")
        told = [r for r in informational if r.need_domain not in SILENT]

        def texted() -> list[Sms] | None:
            sent = sms.messages()
            return sent if sum("encontró un servicio" in m.body for m in sent) >= len(told) else None

        texts = eventually(texted, what="a text per informational referral")
        about_services = [m for m in texts if "encontró un servicio" in m.body]
        assert len(about_services) == len(told)
        complete = 0
        for r in told:
            s = by_id[r.target_service_id]
            body = next(m.body for m in about_services if names(m.body, s.name))
            address = next((p.address for p in s.locations if p.address and not p.virtual), "")
            assert (f"Dirección: {address}." in body) == bool(address), body
            assert (f"Teléfono: {s.phone}." in body) == bool(s.phone), body
            complete += bool(address and s.phone and "Horario: " in body)
        assert complete, "a text with the address, phone and opening hours"
        for r in informational:
            if r.need_domain in SILENT:
                assert not any(names(m.body, by_id[r.target_service_id].name) for m in about_services)

        # Measurement counts hand-offs and informational referrals apart.
        with stack.channel("measurement") as channel:
            funnel = eventually(
                lambda: (
                    f
                    if (
                        f := measurement_pb2_grpc.MeasurementServiceStub(channel).GetReferralFunnel(
                            measurement_pb2.GetReferralFunnelRequest(), timeout=10
                        )
                    ).informational_referrals
                    == len(informational)
                    and f.referrals_accepted == len(hand_offs)
                    else None
                ),
                what="the funnel",
            )
        # (drafts count as created, as before: "referral placed" in the funnel)
        assert funnel.referrals_created == len(referrals) - len(informational)

        # Before the upgrade a referral could wait for an HSDS organization id: mended once.
        food = next(s for s in active if s.partner_id not in takers and "food-insecurity" in s.need_domains)
        legacy = legacy_referral(stack, resident, food.organization_id, food.service_id)
        dry = subprocess.run(
            [sys.executable, "-m", "ach_referrals.main", "mend-targets", "--dry-run"],
            env=stack.services["referrals"].env,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert dry.returncode == 0 and "1 would be turned down" in dry.stdout, dry.stdout + dry.stderr
        assert stack.query("referrals", f"SELECT status FROM referral WHERE id = '{legacy}'") == [
            ("requested",)
        ]
        mend = subprocess.run(
            [sys.executable, "-m", "ach_referrals.main", "mend-targets"],
            env=stack.services["referrals"].env,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert mend.returncode == 0, mend.stderr
        assert "1 were with a target that is no partner" in mend.stdout, mend.stdout
        with stack.channel("referrals", "clinic-1") as channel:
            clinic = referrals_pb2_grpc.ReferralServiceStub(channel)
            history = clinic.GetReferralHistory(
                referrals_pb2.GetReferralHistoryRequest(referral_id=legacy), timeout=10
            ).changes
            mended = clinic.GetReferral(referrals_pb2.GetReferralRequest(referral_id=legacy), timeout=10)
        assert history[0].to_status == referrals_pb2.REFERRAL_STATUS_REJECTED
        assert (
            history[0].reason
            == f"{food.organization_id} is no network partner that receives referrals: nobody could accept it"
        )
        if "food-insecurity" in partner_domains:
            assert (
                mended.status == referrals_pb2.REFERRAL_STATUS_REQUESTED
                and mended.target_partner_id in takers
            )
            assert history[1].reason.startswith("re-routed after the target turned it down")
            eventually(
                lambda: any(
                    b["subject_id"] == legacy for b in receiver.bodies(f"/{mended.target_partner_id}")
                ),
                what="the mended referral's new target told",
            )
        else:
            assert mended.status == referrals_pb2.REFERRAL_STATUS_REJECTED
        again = subprocess.run(
            [sys.executable, "-m", "ach_referrals.main", "mend-targets"],
            env=stack.services["referrals"].env,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert "0 were with a target" in again.stdout, again.stdout  # once is enough
        assert not receiver.refused


def told_on_webhook(receiver: Receiver, partner: str, referral_id: str) -> bool:
    return any(b["subject_id"] == referral_id for b in receiver.bodies(f"/{partner}"))


def names(body: str, service_name: str) -> bool:
    """The text names this service (not merely one whose name begins the same)."""
    return any(f": {service_name}{end}" in body for end in (" (", ". "))


def legacy_referral(stack: Stack, resident: str, organization_id: str, service_id: str) -> str:
    """A referral as the service placed it before partner routing: target the HSDS organization id."""
    referral_id = str(uuid.uuid4())
    at = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    stack.execute(
        "referrals",
        "INSERT INTO referral (id, resident_id, need_domain, need_id, screening_id, language,"
        " source_partner_id, target_partner_id, target_service_id, status, outcome, draft_reason,"
        " sequence, created_at, updated_at, informational, match_zip, reminders_sent, escalated)"
        " VALUES (?, ?, 'food-insecurity', '', '', 'es', 'clinic-1', ?, ?, 'requested', '', '', 0, ?, ?,"
        " 0, '', 0, 0)",
        (referral_id, resident, organization_id, service_id, at, at),
    )
    return referral_id
