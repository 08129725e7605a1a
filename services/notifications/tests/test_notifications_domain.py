"""Who is told about a referral event, without I/O."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from ach_notifications import domain
from ach_notifications.domain import (
    REPLAY_WINDOW_S,
    Breaker,
    BreakerPolicy,
    Notice,
    RetryPolicy,
    acknowledged,
    exhausted,
    notices_for_referral_created,
    notices_for_status_changed,
    retry_delay_s,
    signature,
    verify_signature,
    webhook_body,
)


def test_target_is_told_of_a_new_referral_ids_only() -> None:
    assert notices_for_referral_created("ref-1", "cbo-1") == [
        Notice("cbo-1", "referral", "ref-1", "referral.created")
    ]
    assert notices_for_referral_created("ref-1", "") == []


def test_source_hears_of_changes_it_did_not_make() -> None:
    assert notices_for_status_changed("ref-1", "clinic-1", "cbo-1", "cbo-1", "accepted") == [
        Notice("clinic-1", "referral", "ref-1", "referral.status-changed")
    ]
    assert notices_for_status_changed("ref-1", "clinic-1", "cbo-1", "clinic-1", "accepted") == []


def test_target_hears_when_a_draft_reaches_it_and_when_it_is_withdrawn() -> None:
    assert notices_for_status_changed("ref-1", "clinic-1", "cbo-1", "clinic-1", "requested") == [
        Notice("cbo-1", "referral", "ref-1", "referral.created")
    ]
    # The network withdraws it (consent revoked): both parties hear.
    assert notices_for_status_changed("ref-1", "clinic-1", "cbo-1", "", "cancelled") == [
        Notice("clinic-1", "referral", "ref-1", "referral.status-changed"),
        Notice("cbo-1", "referral", "ref-1", "referral.withdrawn"),
    ]
    # A target's own cancellation is news to the source only.
    assert notices_for_status_changed("ref-1", "clinic-1", "cbo-1", "cbo-1", "cancelled") == [
        Notice("clinic-1", "referral", "ref-1", "referral.status-changed")
    ]


# --- webhook signing, retry schedule, circuit breaker ---


def test_a_signature_verifies_with_the_documented_recipe_and_only_then() -> None:
    body = b'{"delivery_id":"d-1","subject_id":"ref-1"}'
    header = signature("s3cret", 1_700_000_000, body)
    # The recipe, by hand: HMAC-SHA256 over "<t>." + body, hex.
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify_signature("s3cret", header, body, now=1_700_000_010)
    assert not verify_signature("other", header, body, now=1_700_000_010)
    assert not verify_signature("s3cret", header, body + b" ", now=1_700_000_010)
    # Outside the replay window, either way.
    assert not verify_signature("s3cret", header, body, now=1_700_000_000 + REPLAY_WINDOW_S + 1)
    assert not verify_signature("s3cret", header, body, now=1_700_000_000 - REPLAY_WINDOW_S - 1)
    # A re-signed timestamp without the secret does not verify.
    forged = header.replace("t=1700000000", "t=1700000300")
    assert not verify_signature("s3cret", forged, body, now=1_700_000_300)
    for garbage in ("", "v1=abc", "t=x,v1=abc", "t=1700000000", "t=1,t=2,v1=" + expected):
        assert not verify_signature("s3cret", garbage, body, now=1_700_000_000)


def test_two_signatures_let_a_secret_rotate() -> None:
    body = b"{}"
    old, new = signature("old", 100, body), signature("new", 100, body)
    both = f"{old},v1={new.split('v1=')[1]}"
    assert verify_signature("old", both, body, now=100) and verify_signature("new", both, body, now=100)


@pytest.mark.parametrize(
    ("attempts", "draw", "delay"),
    [
        (1, 0.0, 0.5),
        (1, 0.999999, 1.0),
        (2, 0.0, 1.0),
        (4, 0.5, 6.0),
        (10, 0.0, 256.0),
        (11, 0.0, 300.0),
        (30, 1.0, 600.0),
    ],
)
def test_backoff_doubles_with_jitter_up_to_the_cap(attempts: int, draw: float, delay: float) -> None:
    assert retry_delay_s(RetryPolicy(max_attempts=40, base_s=1, cap_s=600), attempts, draw) == pytest.approx(
        delay, rel=1e-5
    )


def test_the_default_schedule_outlasts_an_hour_long_outage() -> None:
    policy = RetryPolicy()
    shortest = sum(retry_delay_s(policy, n, 0.0) for n in range(1, policy.max_attempts))
    assert shortest > 3600
    assert not exhausted(policy, policy.max_attempts - 1) and exhausted(policy, policy.max_attempts)


def test_the_breaker_opens_after_consecutive_failures_and_probes_after_its_cooldown() -> None:
    policy = BreakerPolicy(failures_to_open=3, cooldown_s=30)
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    b = Breaker()
    for _ in range(2):
        b = b.after_failure(policy, now)
        assert b.allows(now)
    b = b.after_failure(policy, now)
    assert not b.allows(now) and not b.allows(now + timedelta(seconds=29))
    assert b.allows(now + timedelta(seconds=30))  # half-open
    # The probe fails: open again for a cooldown; it succeeds: closed and counting from zero.
    later = now + timedelta(seconds=30)
    assert not b.after_failure(policy, later).allows(later + timedelta(seconds=1))
    assert b.after_success() == Breaker()
    assert Breaker(2).after_success().after_failure(policy, now).allows(now)


def test_only_2xx_acknowledges() -> None:
    assert [acknowledged(c) for c in (200, 202, 204, 299)] == [True] * 4
    assert [acknowledged(c) for c in (199, 301, 400, 404, 410, 429, 500, 503)] == [False] * 8


def test_a_webhook_body_carries_ids_and_what_happened_only() -> None:
    at = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    body = webhook_body("d-1", Notice("cbo-1", "referral", "ref-1", "referral.created"), at, "requested")
    assert body == {
        "delivery_id": "d-1",
        "partner_id": "cbo-1",
        "event_type": "referral.created",
        "subject_type": "referral",
        "subject_id": "ref-1",
        "occurred_at": "2026-11-23T12:00:00Z",
        "status": "requested",
    }


# --- Messages to residents ---

SMS_ES = domain.ContactPreference(do_not_contact=False, channel="sms", language="es")


@pytest.mark.parametrize(
    ("to_status", "need", "preference", "template"),
    [
        ("requested", "food-insecurity", SMS_ES, "referral-sent"),
        ("accepted", "housing-instability", SMS_ES, "referral-accepted"),
        ("in-progress", "food-insecurity", SMS_ES, ""),
        ("completed", "food-insecurity", SMS_ES, "help-question"),  # did you get the help you needed?
        ("completed", "food-insecurity", domain.ContactPreference(False, "email", "es"), "help-question"),
        ("completed", "food-insecurity", domain.ContactPreference(True, "sms", "es"), ""),  # do not contact
        ("completed", "intimate-partner-violence", SMS_ES, ""),  # silenced domain
        ("completed", "elder-abuse", SMS_ES, ""),
        ("rejected", "food-insecurity", SMS_ES, ""),
        ("requested", "food-insecurity", None, ""),  # nothing known of the resident's wish
        ("requested", "food-insecurity", domain.ContactPreference(True, "sms", "es"), ""),  # do not contact
        ("requested", "food-insecurity", domain.ContactPreference(False, "", "es"), ""),  # no channel chosen
        ("requested", "intimate-partner-violence", SMS_ES, ""),  # could reach the wrong person
        ("accepted", "elder-abuse", SMS_ES, ""),
    ],
)
def test_which_message_a_resident_gets(
    to_status: str, need: str, preference: domain.ContactPreference | None, template: str
) -> None:
    assert domain.resident_template(to_status, need, preference) == template


def test_silent_need_domains_are_configurable() -> None:
    assert (
        domain.resident_template("requested", "intimate-partner-violence", SMS_ES, frozenset())
        == "referral-sent"
    )
    assert (
        domain.resident_template("requested", "food-insecurity", SMS_ES, frozenset({"food-insecurity"})) == ""
    )


@pytest.mark.parametrize(
    ("asked", "written_in"),
    [("es", "es"), ("es-MX", "es"), ("zh-Hans", "zh"), ("VI", "vi"), ("tl", "tl"), ("hmn", "en"), ("", "en")],
)
def test_a_message_is_in_the_residents_language_else_english(asked: str, written_in: str) -> None:
    message = domain.resident_message("referral-sent", asked, "Pantry of Hope")
    assert message.language == written_in and message.text.startswith(
        ("Pantry of Hope", "Natanggap ng Pantry")
    )


def test_every_message_exists_in_every_language_names_the_organization_and_never_a_need() -> None:
    table = domain.resident_templates()
    templates = {t for t, _ in table}
    languages = {lang for _, lang in table}
    assert templates == {
        "referral-sent",
        "referral-accepted",
        "service-information",
        "help-question",
        "help-question-email",
        "help-thanks",
        "help-unclear",
        "help-yes",
        "help-no",
    }
    assert {"en", "es", "vi", "zh", "tl"} <= languages
    assert set(table) == {(t, lang) for t in templates for lang in languages}, "a translation is missing"
    needs = ("food", "housing", "transport", "utilit", "safety", "violence", "comida", "vivienda")
    for (template, language), (subject, text) in table.items():
        replies = template in ("help-thanks", "help-unclear", "help-yes", "help-no")  # no organization
        assert ("{organization}" in text or replies) and subject, (template, language)
        assert not any(word in text.lower() for word in needs), (template, language)


def test_a_service_information_message_gives_name_address_phone_and_hours_in_the_residents_language() -> None:
    service = {
        "name": "Community Fridge",
        "organization_name": "Eastside Mutual Aid",
        "address": "1 Main St, Stockton, CA 95202",
        "phone": "209-555-0199",
        "opening_hours": [
            {"rrule": "FREQ=WEEKLY;BYDAY=MO,WE,FR", "opens_at": "09:00:00", "closes_at": "17:00:00"},
            {"rrule": "", "opens_at": "", "closes_at": "", "closed": True},  # a holiday closure
        ],
    }
    es = domain.resident_message("service-information", "es-MX", "", service)
    assert es.language == "es" and es.text == (
        "Su equipo de salud encontró un servicio para usted: Community Fridge (Eastside Mutual Aid)."
        " Dirección: 1 Main St, Stockton, CA 95202. Teléfono: 209-555-0199."
        " Horario: lun, mié, vie 09:00-17:00."
        " ¿Preguntas? Llame a su clínica."
    )
    labels = domain.detail_labels()
    assert set(labels) == {lang for _, lang in domain.resident_templates()}, "labels for every language"
    assert all(len(row["days"].split("|")) == 7 for row in labels.values())
    # What the directory does not say is left out, not printed empty.
    bare = domain.resident_message("service-information", "en", "", {"name": "Food Line"})
    assert bare.text == "Your care team found a service for you: Food Line. Questions? Call your clinic."
    assert domain.resident_template("informational", "food-insecurity", SMS_ES) == "service-information"
    assert domain.resident_template("informational", "intimate-partner-violence", SMS_ES) == ""


# --- Community voice: the resident's reply ---


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("Sí", True),
        ("si, gracias", True),
        ("YES!", True),
        ("yes please", True),
        ("Có", True),
        ("是", True),
        ("oo po", True),
        ("No.", False),
        ("no", False),
        ("không", False),
        ("否", False),
        ("Hindi", False),
        ("maybe", None),
        ("my address is 12 Main St", None),
        ("", None),
        ("   ", None),
    ],
)
def test_a_reply_is_an_answer_only_when_it_says_yes_or_no(reply: str, answer: bool | None) -> None:
    assert domain.answer_of(reply) is answer


def test_a_number_matches_in_any_writing_and_only_under_the_same_key() -> None:
    key = b"k" * 32
    assert domain.address_digest(key, "209-555-0100") == domain.address_digest(key, "+1 (209) 555 0100")
    assert domain.address_digest(key, "209-555-0100") != domain.address_digest(key, "209-555-0101")
    assert domain.address_digest(key, "209-555-0100") != domain.address_digest(b"j" * 32, "209-555-0100")
    assert "2095550100" not in domain.address_digest(key, "209-555-0100")


def test_only_the_gateways_signature_is_accepted() -> None:
    url, form = (
        "https://ach.example.org/sms/replies",
        {"From": "+12095550100", "Body": "Si", "MessageSid": "SM1"},
    )
    # Twilio's published example: the URL, then each field's name and value sorted by name.
    signed = domain.gateway_signature("token", url, form)
    assert domain.signed_by_gateway("token", url, form, signed)
    assert not domain.signed_by_gateway("other-token", url, form, signed)
    assert not domain.signed_by_gateway("token", url, {**form, "Body": "No"}, signed)
    assert not domain.signed_by_gateway("token", url + "?x=1", form, signed)
    assert not domain.signed_by_gateway("", url, form, domain.gateway_signature("", url, form))
    assert not domain.signed_by_gateway("token", url, form, "")
