"""Partner registry rules, without I/O."""

from __future__ import annotations

from ach_identity.domain import PartnerDraft, validate


def test_valid_partners() -> None:
    assert validate(PartnerDraft("cbo-south-stockton-food", "Food Bank", "cbo", ("referral-target",))) == []
    assert validate(PartnerDraft("ach-backbone", "RSSC", "backbone", ("ach-admin", "fund-manager"))) == []


def test_every_problem_is_named() -> None:
    problems = validate(
        PartnerDraft("Bad Id!", " ", "cbo", ("ach-admin", "nonsense", "referral-target", "referral-target"))
    )
    assert [(p.field, p.description) for p in problems] == [
        ("partner_id", "3-64 lowercase letters, digits and dashes"),
        ("name", "is required"),
        ("roles[0]", "a cbo cannot hold the role ach-admin"),
        ("roles[1]", "is not a role"),
        ("roles", "lists a role twice"),
    ]


def test_type_is_required() -> None:
    assert [p.field for p in validate(PartnerDraft("clinic-9", "Clinic", "", ()))] == ["type"]


def test_no_partner_takes_a_platform_services_name() -> None:
    problems = validate(
        PartnerDraft("ach-referrals", "Not the referral service", "cbo", ("referral-target",))
    )
    assert [(p.field, p.description) for p in problems] == [
        ("partner_id", "is the name of a platform service: choose another")
    ]
    assert validate(PartnerDraft("ach-backbone", "The backbone", "backbone", ("ach-admin",))) == []
