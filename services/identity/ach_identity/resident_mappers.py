"""Between the protos and the resident index's records: demographics, consents, contact preferences."""

from __future__ import annotations

from ach.common.v1 import common_pb2
from ach.referrals.v1 import referrals_pb2
from ach.residents.v1 import residents_pb2
from ach_platform.clock import as_utc, to_timestamp
from ach_platform.codes import code_of, value_of
from ach_platform.consent import ConsentTerms

from ach_identity import domain
from ach_identity.store import (
    ConsentRecord,
    ResidentLink,
    ResidentRecord,
)


def demographics_of(d: residents_pb2.Demographics) -> domain.Demographics:
    return domain.Demographics(
        d.given_name, d.family_name, d.birth_date, d.phone, d.preferred_language, d.postal_code, d.email
    )


def demographics_proto(r: ResidentRecord | ResidentLink) -> residents_pb2.Demographics:
    return residents_pb2.Demographics(
        given_name=r.given_name,
        family_name=r.family_name,
        birth_date=r.birth_date,
        phone=r.phone,
        preferred_language=r.preferred_language,
        postal_code=r.postal_code,
        email=r.email,
    )


def consent_proto(c: ConsentRecord) -> residents_pb2.Consent:
    return residents_pb2.Consent(
        consent_id=c.id,
        resident_id=c.resident_id,
        scope=residents_pb2.ConsentScope(need_domains=c.need_domains, partner_ids=c.partner_ids),
        status=value_of(residents_pb2.ConsentStatus, c.status),
        given_at=to_timestamp(c.given_at),
        expires_at=to_timestamp(c.expires_at),
        method=value_of(residents_pb2.ConsentMethod, c.method),
        recorded_by=common_pb2.Actor(partner_id=c.recorded_by_partner_id, user_id=c.recorded_by_user_id),
        revoked_at=to_timestamp(c.revoked_at),
        revocation_reason=c.revocation_reason,
        version=c.version,
    )


def terms_of(c: ConsentRecord) -> ConsentTerms:
    return ConsentTerms(
        consent_id=c.id,
        resident_id=c.resident_id,
        need_domains=frozenset(c.need_domains),
        partner_ids=frozenset(c.partner_ids),
        status=c.status,
        given_at=as_utc(c.given_at),
        expires_at=as_utc(c.expires_at) if c.expires_at else None,
        recorded_by=c.recorded_by_partner_id,
    )


CHANNELS = {
    "": residents_pb2.CONTACT_CHANNEL_UNSPECIFIED,
    "sms": residents_pb2.CONTACT_CHANNEL_SMS,
    "email": residents_pb2.CONTACT_CHANNEL_EMAIL,
}
CHANNEL_NAMES = {v: k for k, v in CHANNELS.items()}


def preference_of(r: ResidentRecord) -> domain.ContactPreference:
    return domain.ContactPreference(r.do_not_contact, r.contact_channel, r.contact_language)


def preference_proto(r: ResidentRecord) -> residents_pb2.ContactPreference:
    """No address: the channel and the language messages are written in."""
    return residents_pb2.ContactPreference(
        resident_id=r.id,
        do_not_contact=r.do_not_contact,
        version=r.preference_version,
        updated_at=to_timestamp(r.updated_at),
        channel=CHANNELS[r.contact_channel],
        language=domain.message_language(r.contact_language, r.preferred_language),
    )


def referral_status(value: int) -> str:
    return code_of(referrals_pb2.ReferralStatus, value)
