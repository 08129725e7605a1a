"""Residents and consent across the running services, over real TLS and a real broker.

A CBO gets a resident's identity only through the identity service, only for a referral addressed
to it, and only under an active consent that covers it. A revocation published while referrals are
in flight refuses the very next share, and the referral service withdraws what it no longer
covers. The resident index de-duplicates on normalized name + birth date (+ phone) and merges only
at the ACH admin's hand, keeping history."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from ach.audit.v1 import audit_pb2, audit_pb2_grpc
from ach.identity.v1 import identity_pb2, identity_pb2_grpc
from ach.notifications.v1 import notifications_pb2, notifications_pb2_grpc
from ach.referrals.v1 import referrals_pb2, referrals_pb2_grpc
from ach.residents.v1 import residents_pb2, residents_pb2_grpc
from ach.screening.v1 import screening_pb2_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.harness import Stack, eventually
from tests.test_walking_skeleton import screening_request

pytestmark = pytest.mark.slow


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[attr-defined, no-any-return]


def test_revocation_while_referrals_are_in_flight_stops_the_next_share(
    make_stack: Callable[[str], Stack],
) -> None:
    stack = make_stack("sqlite")
    stack.start("screening", "referrals", "directory", "notifications")
    stack.add_pantry()
    resident = stack.consenting_resident(
        "clinic-1", need_domains=("food-insecurity",), partners=("cbo-pantry",)
    )
    stack.wait_consents_replicated(1)

    with stack.channel("screening", "clinic-1") as channel:
        screening = screening_pb2_grpc.ScreeningServiceStub(channel)
        screening.SubmitScreening(screening_request(resident), timeout=10)

    pantry_referrals = stack.channel("referrals", "cbo-pantry")
    pantry_index = stack.channel("identity", "cbo-pantry")
    referrals = referrals_pb2_grpc.ReferralServiceStub(pantry_referrals)
    index = residents_pb2_grpc.ResidentIndexStub(pantry_index)
    first = eventually(
        lambda: (
            referrals.ListReferrals(
                referrals_pb2.ListReferralsRequest(partner_id="cbo-pantry"), timeout=5
            ).referrals
        ),
        what="the referral placed with the pantry",
    )[0]
    assert first.status == referrals_pb2.REFERRAL_STATUS_REQUESTED and first.resident_id == resident

    # Under consent the pantry learns whom to call, for this referral.
    shared = eventually(
        lambda: index.GetResidentForReferral(
            residents_pb2.GetResidentForReferralRequest(referral_id=first.referral_id), timeout=5
        ),
        what="the share with the pantry",
    )
    assert shared.resident_id == resident and shared.given_name.startswith("Test")
    assert shared.phone == "209-555-0100" and shared.consent_id

    # "Do not contact": the pantry still learns who was referred, but not how to reach them.
    with stack.channel("identity", "clinic-1") as channel:
        preferences = residents_pb2_grpc.ConsentRegistryStub(channel)
        preferences.SetContactPreference(
            residents_pb2.SetContactPreferenceRequest(resident_id=resident, do_not_contact=True), timeout=5
        )
        withheld = index.GetResidentForReferral(
            residents_pb2.GetResidentForReferralRequest(referral_id=first.referral_id), timeout=5
        )
        assert (withheld.do_not_contact, withheld.phone) == (True, "")
        preferences.SetContactPreference(
            residents_pb2.SetContactPreferenceRequest(resident_id=resident, do_not_contact=False), timeout=5
        )

    # Another CBO asking for the pantry's referral gets nothing.
    with stack.channel("identity", "cbo-2") as channel:
        other = residents_pb2_grpc.ResidentIndexStub(channel)
        assert (
            code_of(
                lambda: other.GetResidentForReferral(
                    residents_pb2.GetResidentForReferralRequest(referral_id=first.referral_id), timeout=5
                )
            )
            == grpc.StatusCode.PERMISSION_DENIED
        )

    # A second screening is in flight when the resident revokes.
    with stack.channel("screening", "clinic-1") as channel:
        second_screening = screening_pb2_grpc.ScreeningServiceStub(channel).SubmitScreening(
            screening_request(resident), timeout=10
        )
    with stack.channel("identity", "clinic-1") as channel:
        consents = residents_pb2_grpc.ConsentRegistryStub(channel)
        consent_id = (
            consents.ListConsents(residents_pb2.ListConsentsRequest(resident_id=resident), timeout=5)
            .consents[0]
            .consent_id
        )
        revoked = consents.RevokeConsent(
            residents_pb2.RevokeConsentRequest(consent_id=consent_id, reason="resident asked"), timeout=5
        )
        assert revoked.status == residents_pb2.CONSENT_STATUS_REVOKED

    # At once: the very next share is refused. Usually for want of consent; if the referral service
    # has already withdrawn the referral and identity has heard of it, because the referral is closed.
    assert code_of(
        lambda: index.GetResidentForReferral(
            residents_pb2.GetResidentForReferralRequest(referral_id=first.referral_id), timeout=5
        )
    ) in {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION}

    # The referral service withdraws the open referral, and the in-flight need never reaches the
    # pantry: it is either drafted for want of consent or withdrawn as soon as it was placed.
    with stack.channel("referrals", "clinic-1") as channel:
        clinic = referrals_pb2_grpc.ReferralServiceStub(channel)

        def settled() -> tuple[referrals_pb2.Referral, referrals_pb2.Referral] | None:
            listed = {
                r.screening_id: r
                for r in clinic.ListReferrals(
                    referrals_pb2.ListReferralsRequest(partner_id="clinic-1"), timeout=5
                ).referrals
            }
            mine = listed.get(first.screening_id), listed.get(second_screening.screening_id)
            if (
                mine[0] is None
                or mine[1] is None
                or mine[0].status != referrals_pb2.REFERRAL_STATUS_CANCELLED
            ):
                return None
            return mine[0], mine[1]

        withdrawn, second = eventually(settled, what="the referrals settled after the revocation")
    assert second.status in {referrals_pb2.REFERRAL_STATUS_DRAFT, referrals_pb2.REFERRAL_STATUS_CANCELLED}
    if second.status == referrals_pb2.REFERRAL_STATUS_DRAFT:
        assert second.draft_reason == "consent-required" and not second.target_partner_id
    assert code_of(
        lambda: index.GetResidentForReferral(
            residents_pb2.GetResidentForReferralRequest(referral_id=second.referral_id), timeout=5
        )
    ) in {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION}

    # The pantry is told its referral was withdrawn (ids only).
    with stack.channel("notifications", "cbo-pantry") as channel:
        notifications = notifications_pb2_grpc.NotificationServiceStub(channel)
        eventually(
            lambda: [
                d
                for d in notifications.ListDeliveries(
                    notifications_pb2.ListDeliveriesRequest(partner_id="cbo-pantry"), timeout=5
                ).deliveries
                if d.event_type == "referral.withdrawn" and d.subject_id == withdrawn.referral_id
            ],
            what="the pantry's withdrawal notice",
        )

    # Every attempt is in the audit trail, the refused ones too.
    with stack.channel("identity") as channel:
        audit = audit_pb2_grpc.AuditLogStub(channel)

        def shares() -> list[tuple[str, str]]:
            return [
                (r.partner_id, r.outcome)
                for r in audit.QueryAccess(audit_pb2.QueryAccessRequest(), timeout=5).records
                if r.method.endswith("/GetResidentForReferral")
                and r.resources.get("referral_id") == first.referral_id
            ]

        eventually(
            lambda: (
                shares()[-3:]
                == [("cbo-pantry", "OK"), ("cbo-2", "PERMISSION_DENIED"), ("cbo-pantry", "PERMISSION_DENIED")]
            ),
            what="the share attempts audited",
        )
    # Every share is found by the resident's id too, though the CBO asked by referral.
    with stack.channel("identity") as channel:
        by_resident = audit_pb2_grpc.AuditLogStub(channel).QueryAccess(
            audit_pb2.QueryAccessRequest(resident_id=resident), timeout=5
        )
        assert ("cbo-pantry", "OK") in [
            (r.partner_id, r.outcome)
            for r in by_resident.records
            if r.method.endswith("/GetResidentForReferral")
        ]

    pantry_referrals.close()
    pantry_index.close()
    assert set(stack.stop_all().values()) == {0}
    # The resident's name and phone reached no log line and no span of any service.
    exported = stack.trace_file.read_text() + "".join(s.log_path.read_text() for s in stack.services.values())
    assert shared.given_name not in exported and "555-0100" not in exported


def register(
    stub: residents_pb2_grpc.ResidentIndexStub, mrn: str, given: str, family: str, born: str, phone: str = ""
) -> residents_pb2.RegisterResidentResponse:
    response: residents_pb2.RegisterResidentResponse = stub.RegisterResident(
        residents_pb2.RegisterResidentRequest(
            partner_resident_id=mrn,
            demographics=residents_pb2.Demographics(
                given_name=given, family_name=family, birth_date=born, phone=phone
            ),
        ),
        timeout=5,
    )
    return response


def test_resident_index_deduplicates_and_merges_with_history(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack("postgresql")
    stack.start("identity")
    with stack.channel("identity") as channel:
        identity_pb2_grpc.PartnerRegistryStub(channel).RegisterPartner(
            identity_pb2.RegisterPartnerRequest(
                partner_id="chw-collective",
                name="Community health workers",
                type=identity_pb2.PARTNER_TYPE_CBO,
                roles=[identity_pb2.PARTNER_ROLE_SCREENER],
            ),
            timeout=5,
        )
    clinic_channel = stack.channel("identity", "clinic-1")
    chw_channel = stack.channel("identity", "chw-collective")
    clinic = residents_pb2_grpc.ResidentIndexStub(clinic_channel)
    chw = residents_pb2_grpc.ResidentIndexStub(chw_channel)

    maria = register(clinic, "MRN-1", "Maria", "Lopez", "1980-02-01", "209-555-0100")
    assert maria.match == residents_pb2.MATCH_KIND_NEW
    # The same person at the door of a CHW, spelled another way: one network id.
    again = eventually(
        lambda: register(chw, "C-77", "MARÍA", " lópez", "1980-02-01", "+1 (209) 555-0100"),
        what="the CHW collective known to the registry",
    )
    assert (again.resident_id, again.match) == (maria.resident_id, residents_pb2.MATCH_KIND_DEMOGRAPHICS)
    assert (
        register(clinic, "MRN-1", "Maria", "Lopez", "1980-02-01").match == residents_pb2.MATCH_KIND_PARTNER_ID
    )
    # Same name and birthday, another phone: another person.
    namesake = register(clinic, "MRN-2", "Maria", "Lopez", "1980-02-01", "209-555-0199")
    assert namesake.match == residents_pb2.MATCH_KIND_NEW and namesake.resident_id != maria.resident_id
    # Maria again under a new MRN with a new phone number: not matched automatically (it could be a
    # namesake), so a duplicate that only a person can recognise and merge.
    duplicate = register(clinic, "MRN-3", "Maria", "Lopez", "1980-02-01", "209-555-0123")
    assert duplicate.match == residents_pb2.MATCH_KIND_NEW

    # Bad input names every bad field.
    with pytest.raises(grpc.RpcError) as bad:
        clinic.RegisterResident(
            residents_pb2.RegisterResidentRequest(
                demographics=residents_pb2.Demographics(given_name="A", birth_date="07/03/1984")
            ),
            timeout=5,
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    status = rpc_status.from_call(bad.value)  # type: ignore[arg-type]
    assert status is not None
    violations = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(violations)
    assert [v.field for v in violations.field_violations] == [
        "partner_resident_id",
        "demographics.family_name",
        "demographics.birth_date",
    ]

    # Each partner sees its own link only.
    seen_by_chw = chw.GetResident(residents_pb2.GetResidentRequest(resident_id=maria.resident_id), timeout=5)
    assert [(k.partner_id, k.partner_resident_id) for k in seen_by_chw.links] == [("chw-collective", "C-77")]

    # A clinic may not merge; the refusal changes nothing and is audited.
    merge = residents_pb2.MergeResidentsRequest(
        survivor_id=maria.resident_id, merged_id=duplicate.resident_id, reason="same person, new phone"
    )
    assert code_of(lambda: clinic.MergeResidents(merge, timeout=5)) == grpc.StatusCode.PERMISSION_DENIED
    assert not clinic.GetResident(
        residents_pb2.GetResidentRequest(resident_id=duplicate.resident_id), timeout=5
    ).merged_ids

    with stack.channel("identity") as channel:
        admin = residents_pb2_grpc.ResidentIndexStub(channel)
        merged = admin.MergeResidents(merge, timeout=5)
        assert list(merged.merged_ids) == [duplicate.resident_id]
        assert code_of(lambda: admin.MergeResidents(merge, timeout=5)) == grpc.StatusCode.FAILED_PRECONDITION
        # The merged id keeps resolving to the survivor, with every partner link kept.
        found = admin.GetResident(
            residents_pb2.GetResidentRequest(resident_id=duplicate.resident_id), timeout=5
        )
        assert found.resident_id == maria.resident_id
        assert sorted(k.partner_resident_id for k in found.links) == ["C-77", "MRN-1", "MRN-3"]
        # The clinic's own id for the duplicate now finds the survivor.
        assert register(clinic, "MRN-3", "Maria", "Lopez", "1980-02-01").resident_id == maria.resident_id

        audit = audit_pb2_grpc.AuditLogStub(channel)

        def merge_attempts() -> list[tuple[str, str]]:
            return [
                (r.partner_id, r.outcome)
                for r in audit.QueryAccess(audit_pb2.QueryAccessRequest(), timeout=5).records
                if r.method.endswith("/MergeResidents")
            ]

        expected = [
            ("clinic-1", "PERMISSION_DENIED"),
            ("ach-backbone", "OK"),
            ("ach-backbone", "FAILED_PRECONDITION"),
        ]
        eventually(lambda: merge_attempts() == expected, what=f"the merge attempts audited: {expected}")
    # The merge history is kept.
    assert stack.count_rows("identity", "SELECT count(*) FROM resident_merge") == 1
    clinic_channel.close()
    chw_channel.close()
    assert stack.stop_all() == {"identity": 0}
