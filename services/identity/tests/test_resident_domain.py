"""Resident matching, merge checks and consent rules, without I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from ach_identity import domain
from ach_identity.domain import (
    ConsentDraft,
    Demographics,
    check_merge,
    match_key,
    normalize_name,
    normalize_phone,
    validate_consent,
    validate_demographics,
)
from ach_platform.consent import ConsentTerms, consent_for_share

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_names_normalize_across_case_accents_punctuation_and_spacing() -> None:
    assert normalize_name("  José   O'Neil ") == normalize_name("jose oneil") == "jose oneil"
    assert normalize_name("NGUYỄN") == "nguyen"
    assert normalize_name("Mary-Ann") == "maryann"


def test_phones_normalize_to_their_digits_without_the_nanp_prefix() -> None:
    assert normalize_phone("+1 (209) 555-0142") == normalize_phone("209.555.0142") == "2095550142"
    assert normalize_phone("") == ""


def test_same_name_and_birth_date_match_unless_both_phones_differ() -> None:
    a = match_key(Demographics("Maria", "Lopez", "1980-02-01", "209-555-0100"))
    same = match_key(Demographics("MARIA", "López", "1980-02-01", "+1 209 555 0100"))
    no_phone = match_key(Demographics("maria", "lopez", "1980-02-01"))
    other_phone = match_key(Demographics("Maria", "Lopez", "1980-02-01", "209-555-0199"))
    other_birth = match_key(Demographics("Maria", "Lopez", "1980-02-02", "209-555-0100"))
    assert a.matches(same) and a.matches(no_phone) and no_phone.matches(other_phone)
    assert not a.matches(other_phone)  # two people who share a name and a birthday
    assert not a.matches(other_birth)


def test_demographics_name_every_bad_field() -> None:
    problems = validate_demographics(Demographics(" ", "", "03/07/1984", "12"), date(2026, 11, 23))
    assert [p.field for p in problems] == [
        "demographics.given_name",
        "demographics.family_name",
        "demographics.birth_date",
        "demographics.phone",
    ]
    assert validate_demographics(Demographics("A", "B", "2030-01-01"), date(2026, 11, 23))[0].description == (
        "must be a past date after 1900"
    )
    assert (
        validate_demographics(Demographics("A", "B", "1984-03-07", "209 555 0100"), date(2026, 11, 23)) == []
    )


def test_a_merge_joins_two_live_records() -> None:
    assert check_merge("r1", "r2", None, None) == []
    assert [p.field for p in check_merge("r1", "r1", None, None)] == ["merged_id"]
    assert [p.field for p in check_merge("r1", "r2", "r3", "r4")] == ["survivor_id", "merged_id"]


def test_consent_drafts_name_every_bad_field() -> None:
    draft = ConsentDraft(
        resident_id="",
        need_domains=("food-insecurity", "Food!"),
        partner_ids=("cbo-1", "cbo-unknown"),
        given_at=NOW + timedelta(hours=1),
        expires_at=NOW - timedelta(days=1),
        method="",
    )
    assert [p.field for p in validate_consent(draft, NOW, {"cbo-1"})] == [
        "resident_id",
        "scope.need_domains[1]",
        "scope.partner_ids[1]",
        "given_at",
        "expires_at",
        "expires_at",
        "method",
    ]


def terms(
    consent_id: str,
    domains: tuple[str, ...] = (),
    partners: tuple[str, ...] = (),
    status: str = "active",
    given: datetime = NOW - timedelta(days=1),
    expires: datetime | None = None,
) -> ConsentTerms:
    return ConsentTerms(consent_id, "r1", frozenset(domains), frozenset(partners), status, given, expires)


def test_a_consent_covers_its_scope_while_in_force() -> None:
    food_at_pantry = terms("c1", ("food-insecurity",), ("cbo-pantry",))
    assert food_at_pantry.covers("food-insecurity", "cbo-pantry", NOW)
    assert not food_at_pantry.covers("housing-instability", "cbo-pantry", NOW)
    assert not food_at_pantry.covers("food-insecurity", "cbo-2", NOW)
    assert terms("c2").covers("housing-instability", "cbo-2", NOW)  # empty scope: everything
    assert not terms("c3", status="revoked").covers("food-insecurity", "cbo-pantry", NOW)
    assert not terms("c4", expires=NOW).covers("food-insecurity", "cbo-pantry", NOW)
    assert not terms("c5", given=NOW + timedelta(seconds=1)).covers("food-insecurity", "cbo-pantry", NOW)


def test_a_share_rests_on_the_latest_covering_consent() -> None:
    older = terms("old", given=NOW - timedelta(days=30))
    newer = terms("new", ("food-insecurity",), given=NOW - timedelta(days=2))
    revoked = terms("revoked", status="revoked", given=NOW - timedelta(days=1))
    found = consent_for_share([older, newer, revoked], "food-insecurity", "cbo-1", NOW)
    assert found is not None and found.consent_id == "new"
    assert consent_for_share([revoked], "food-insecurity", "cbo-1", NOW) is None


# --- Contact preference: how the network may message the resident ---


@pytest.mark.parametrize(
    ("wanted", "phone", "email", "problems"),
    [
        (domain.ContactPreference(False, "sms", ""), "209-555-0100", "", []),
        (domain.ContactPreference(False, "email", "vi"), "", "a@example.org", []),
        (domain.ContactPreference(True, "", ""), "", "", []),
        (domain.ContactPreference(False, "sms", ""), "", "a@example.org", ["channel"]),
        (domain.ContactPreference(False, "email", ""), "209-555-0100", "", ["channel"]),
        (domain.ContactPreference(False, "fax", ""), "209-555-0100", "", ["channel"]),
        (domain.ContactPreference(False, "sms", "Spanish!"), "209-555-0100", "", ["language"]),
    ],
)
def test_a_channel_needs_its_address_on_file(
    wanted: domain.ContactPreference, phone: str, email: str, problems: list[str]
) -> None:
    assert [p.field for p in domain.check_contact_preference(wanted, phone, email)] == problems


@pytest.mark.parametrize(
    ("preference", "contact"),
    [
        (domain.ContactPreference(False, "sms", ""), domain.Contact("sms", "209-555-0100")),
        (domain.ContactPreference(False, "email", ""), domain.Contact("email", "a@example.org")),
        (domain.ContactPreference(True, "sms", ""), domain.Contact("", "")),  # do not contact
        (domain.ContactPreference(False, "", ""), domain.Contact("", "")),  # nothing chosen
    ],
)
def test_only_the_chosen_channels_address_and_none_under_do_not_contact(
    preference: domain.ContactPreference, contact: domain.Contact
) -> None:
    assert domain.contact_for_message(preference, "209-555-0100", "a@example.org") == contact


def test_the_message_language_is_the_chosen_one_else_the_preferred_else_english() -> None:
    assert domain.message_language("vi", "es") == "vi"
    assert domain.message_language("", "es") == "es"
    assert domain.message_language("", "") == "en"


def test_registration_checks_the_email_and_language_shapes() -> None:
    d = domain.Demographics(
        "Ana", "Lopez", "1980-01-01", email="not-an-address", preferred_language="Spanish"
    )
    assert [p.field for p in domain.validate_demographics(d, date(2026, 11, 23))] == [
        "demographics.email",
        "demographics.preferred_language",
    ]


def test_only_the_partner_that_set_a_contact_preference_changes_it_but_anyone_may_silence() -> None:
    current = domain.ContactPreference(False, "sms", "es")
    to_email = domain.ContactPreference(False, "email", "es")
    silenced = domain.ContactPreference(True, "sms", "es")
    assert domain.may_change_preference(current, to_email, "clinic-1", "clinic-1", admin=False)
    assert not domain.may_change_preference(current, to_email, "clinic-1", "cbo-outreach", admin=False)
    assert domain.may_change_preference(current, silenced, "clinic-1", "cbo-outreach", admin=False)
    assert not domain.may_change_preference(silenced, current, "clinic-1", "cbo-outreach", admin=False)
    assert domain.may_change_preference(current, to_email, "clinic-1", "ach-backbone", admin=True)
    assert domain.may_change_preference(current, to_email, "", "cbo-outreach", admin=False)
