"""The resident index and the consent registry: gRPC APIs, the events they publish, and the referral
replica that lets the index decide what a CBO may see.

Sharing is decided here, against this service's own consent table, inside the call that shares: a
revocation committed a moment ago refuses the very next share, whatever the other services' replicas
have heard yet. Who may call what is the access policy's business (ach_platform.access)."""

from __future__ import annotations

import uuid
from datetime import date

import grpc
from ach.common.v1 import common_pb2
from ach.referrals.v1 import referrals_pb2
from ach.residents.v1 import residents_pb2, residents_pb2_grpc
from ach_events.consumer import require_fields
from ach_events.envelope import Envelope
from ach_events.outbox import Outbox
from ach_events.topics import RESIDENT_EVENTS
from ach_platform.access import OwnerResolver
from ach_platform.audit import note_resource
from ach_platform.auth import principal
from ach_platform.clock import as_utc, from_timestamp, to_timestamp, utc_now
from ach_platform.codes import code_of, value_of
from ach_platform.consent import ACTIVE, REVOKED, ConsentTerms, consent_for_share, relied_on_by
from ach_platform.database import insert_once
from ach_platform.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    too_long,
)
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_identity import domain
from ach_identity.store import (
    ConsentRecord,
    PartnerRecord,
    ReferralReplica,
    ResidentLink,
    ResidentMerge,
    ResidentRecord,
    consents_of,
    links_of,
    live_resident,
    merged_ids_of,
    residents_with_key,
)

Sessions = async_sessionmaker[AsyncSession]


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


def publish_consent_changed(session: AsyncSession, outbox: Outbox, c: ConsentRecord) -> None:
    outbox.add(
        session, RESIDENT_EVENTS, residents_pb2.ConsentChanged(consent=consent_proto(c)), key=c.resident_id
    )


async def require_resident(
    session: AsyncSession, resident_id: str, field: str = "resident_id"
) -> ResidentRecord:
    if not resident_id:
        raise InvalidArgument.of(field, "is required")
    record = await live_resident(session, resident_id)
    if record is None:
        raise NotFound(f"resident {resident_id} not found")
    return record


async def resident_ids(session: AsyncSession, survivor: ResidentRecord) -> list[str]:
    """The survivor's id and every id merged into it: consents given under any of them count."""
    return [survivor.id, *await merged_ids_of(session, survivor.id)]


class ResidentIndexApi(residents_pb2_grpc.ResidentIndexServicer):
    def __init__(self, sessions: Sessions, outbox: Outbox) -> None:
        self._sessions = sessions
        self._outbox = outbox

    async def RegisterResident(
        self, request: residents_pb2.RegisterResidentRequest, context: grpc.aio.ServicerContext
    ) -> residents_pb2.RegisterResidentResponse:
        caller = principal().partner_id
        demographics = demographics_of(request.demographics)
        problems = domain.validate_demographics(demographics, date.today())
        if not request.partner_resident_id.strip():
            problems.insert(0, FieldViolation("partner_resident_id", "is required"))
        else:
            problems[:0] = too_long((("partner_resident_id", request.partner_resident_id, 100),))
        if problems:
            raise InvalidArgument(problems)
        key = domain.match_key(demographics)
        async with self._sessions() as session, session.begin():
            link = await session.get(ResidentLink, (caller, request.partner_resident_id))
            if link is not None:
                known = await live_resident(session, link.resident_id)
                if known is not None:
                    note_resource("resident_id", known.id)
                    return residents_pb2.RegisterResidentResponse(
                        resident_id=known.id, match=residents_pb2.MATCH_KIND_PARTNER_ID
                    )
            now = utc_now()
            match = residents_pb2.MATCH_KIND_DEMOGRAPHICS
            resident = next(
                (
                    r
                    for r in await residents_with_key(session, key.name_dob)
                    if key.matches(domain.MatchKey(r.name_dob_key, r.phone_key))
                ),
                None,
            )
            supplied = domain.supplied(demographics)
            if resident is None:
                match = residents_pb2.MATCH_KIND_NEW
                resident = ResidentRecord(
                    id=str(uuid.uuid4()),
                    given_name=supplied["given_name"],
                    family_name=supplied["family_name"],
                    birth_date=supplied["birth_date"],
                    phone=supplied["phone"],
                    preferred_language=supplied["preferred_language"],
                    postal_code=supplied["postal_code"],
                    email=supplied["email"],
                    name_dob_key=key.name_dob,
                    phone_key=key.phone,
                    preference_partner_id=caller,  # how to reach them is the first partner's to say
                    created_at=now,
                    updated_at=now,
                )
                session.add(resident)
            # A match gives the same network id and changes nothing another partner supplied: what
            # this partner knows (a phone, an e-mail address) stays on its own link, for it alone.
            link = link or ResidentLink(
                partner_id=caller,
                partner_resident_id=request.partner_resident_id,
                resident_id=resident.id,
                created_at=now,
            )
            link.resident_id = resident.id
            for name, value in supplied.items():
                setattr(link, name, value)
            session.add(link)
            linked = residents_pb2.ResidentLinked(
                resident_id=resident.id, partner_id=caller, linked_at=to_timestamp(now)
            )
            self._outbox.add(session, RESIDENT_EVENTS, linked, key=resident.id, subject=resident.id)
        note_resource("resident_id", resident.id)
        return residents_pb2.RegisterResidentResponse(resident_id=resident.id, match=match)

    async def GetResident(
        self, request: residents_pb2.GetResidentRequest, context: grpc.aio.ServicerContext
    ) -> residents_pb2.Resident:
        caller = principal().partner_id
        async with self._sessions() as session:
            resident = await require_resident(session, request.resident_id)
            ids = await resident_ids(session, resident)
            links = await links_of(session, ids)
            admin = await _is_admin(session, caller)
        own = [k for k in links if admin or k.partner_id == caller]
        # Each partner sees what it supplied itself; the ACH admin sees the index's record.
        seen: ResidentRecord | ResidentLink | None = resident if admin else next(iter(own), None)
        if seen is None:  # the policy let no one else in; never answer from another's record
            raise PermissionDenied("the resident is not on the caller's books")
        linked_ids = {k.resident_id for k in own}
        return residents_pb2.Resident(
            resident_id=resident.id,
            demographics=demographics_proto(seen),
            links=[
                residents_pb2.PartnerLink(partner_id=k.partner_id, partner_resident_id=k.partner_resident_id)
                for k in own
            ],
            merged_ids=[i for i in ids[1:] if admin or i in linked_ids],
            do_not_contact=resident.do_not_contact,
        )

    async def GetResidentForReferral(
        self, request: residents_pb2.GetResidentForReferralRequest, context: grpc.aio.ServicerContext
    ) -> residents_pb2.SharedResident:
        if not request.referral_id:
            raise InvalidArgument.of("referral_id", "is required")
        caller = principal().partner_id
        async with self._sessions() as session:
            referral = await session.get(ReferralReplica, request.referral_id)
            if referral is None:
                raise NotFound(f"referral {request.referral_id} not found")
            if referral.target_partner_id != caller:  # the policy checked this too; never share astray
                raise PermissionDenied("the referral is not addressed to the caller")
            if referral.status in {"cancelled", "entered-in-error", "rejected"}:
                raise FailedPrecondition(
                    f"referral {referral.referral_id} is {referral.status}",
                    violation_type="REFERRAL_CLOSED",
                    subject=referral.referral_id,
                )
            note_resource("resident_id", referral.resident_id)
            resident = await require_resident(session, referral.resident_id)
            ids = await resident_ids(session, resident)
            consents = [terms_of(c) for c in await consents_of(session, ids)]
            source = referral.source_partner_id
            # What is shared is the source's own record of the resident, under a consent the source
            # (or the ACH admin) took; a referral replicated before sources were kept shares the
            # index's record, as it did.
            shared: ResidentRecord | ResidentLink | None = resident
            if source:
                consents = relied_on_by(consents, {source} | await _admin_ids(session))
                shared = await supplied_by(session, ids, source)
        consent = consent_for_share(consents, referral.need_domain, caller, utc_now())
        if consent is None or shared is None:
            raise PermissionDenied(
                "the resident has no active consent to share with this organization for this need"
            )
        return residents_pb2.SharedResident(
            resident_id=resident.id,
            referral_id=referral.referral_id,
            given_name=shared.given_name,
            family_name=shared.family_name,
            preferred_language=shared.preferred_language,
            phone="" if resident.do_not_contact else shared.phone,
            do_not_contact=resident.do_not_contact,
            consent_id=consent.consent_id,
        )

    async def GetResidentContact(
        self, request: residents_pb2.GetResidentContactRequest, context: grpc.aio.ServicerContext
    ) -> residents_pb2.ResidentContact:
        problems = [
            FieldViolation(f, "is required")
            for f in ("resident_id", "referral_id")
            if not getattr(request, f)
        ]
        if problems:
            raise InvalidArgument(problems)
        async with self._sessions() as session:
            resident = await require_resident(session, request.resident_id)
            referral = await session.get(ReferralReplica, request.referral_id)
            # Only about the resident's own referral (and once this service has heard of it): the
            # address is never handed out for anything else.
            ids = await resident_ids(session, resident)
            if referral is None or referral.resident_id not in ids:
                raise NotFound(f"referral {request.referral_id} of resident {request.resident_id} not found")
            addresses = await addresses_for_messages(session, resident, ids, referral.source_partner_id)
        contact = domain.contact_for_message(
            preference_of(resident),
            addresses.phone if addresses else "",
            addresses.email if addresses else "",
        )
        return residents_pb2.ResidentContact(
            resident_id=resident.id,
            do_not_contact=resident.do_not_contact,
            channel=CHANNELS[contact.channel],
            address=contact.address,
            language=domain.message_language(resident.contact_language, resident.preferred_language),
        )

    async def MergeResidents(
        self, request: residents_pb2.MergeResidentsRequest, context: grpc.aio.ServicerContext
    ) -> residents_pb2.Resident:
        who = principal()
        problems = [
            FieldViolation(name, "is required")
            for name, value in (("survivor_id", request.survivor_id), ("merged_id", request.merged_id))
            if not value
        ] + too_long(
            (
                ("survivor_id", request.survivor_id, 36),
                ("merged_id", request.merged_id, 36),
                ("reason", request.reason, 500),
            )
        )
        if problems:
            raise InvalidArgument(problems)
        async with self._sessions() as session, session.begin():
            survivor = await session.get(ResidentRecord, request.survivor_id)
            merged = await session.get(ResidentRecord, request.merged_id)
            for name, record, rid in (
                ("survivor", survivor, request.survivor_id),
                ("merged", merged, request.merged_id),
            ):
                if record is None:
                    raise NotFound(f"{name} resident {rid} not found")
            assert survivor is not None and merged is not None
            problems = domain.check_merge(survivor.id, merged.id, survivor.merged_into, merged.merged_into)
            if problems:
                raise FailedPrecondition(
                    "; ".join(f"{p.field}: {p.description}" for p in problems),
                    violation_type="MERGE",
                    subject=request.merged_id,
                )
            now = utc_now()
            merged.merged_into, merged.updated_at = survivor.id, now
            # Do-not-contact is the resident's wish: whichever record carried it, it holds.
            if merged.do_not_contact and not survivor.do_not_contact:
                survivor.do_not_contact = True
                survivor.preference_version += 1
                self._outbox.add(
                    session,
                    RESIDENT_EVENTS,
                    residents_pb2.ContactPreferenceChanged(preference=preference_proto(survivor)),
                    key=survivor.id,
                )
            survivor.updated_at = now
            session.add_all([merged, survivor])
            session.add(
                ResidentMerge(
                    id=str(uuid.uuid4()),
                    survivor_id=survivor.id,
                    merged_id=merged.id,
                    merged_by_partner_id=who.partner_id,
                    merged_by_user_id=who.user_id,
                    reason=request.reason,
                    merged_at=now,
                )
            )
            self._outbox.add(
                session,
                RESIDENT_EVENTS,
                residents_pb2.ResidentsMerged(
                    survivor_id=survivor.id,
                    merged_id=merged.id,
                    merged_by=common_pb2.Actor(partner_id=who.partner_id, user_id=who.user_id),
                    merged_at=to_timestamp(now),
                ),
                key=survivor.id,
            )
            ids = await resident_ids(session, survivor)
        return residents_pb2.Resident(
            resident_id=survivor.id,
            demographics=demographics_proto(survivor),
            merged_ids=ids[1:],
            do_not_contact=survivor.do_not_contact,
        )


async def _is_admin(session: AsyncSession, partner_id: str) -> bool:
    partner = await session.get(PartnerRecord, partner_id)
    return partner is not None and "ach-admin" in partner.roles


async def _admin_ids(session: AsyncSession) -> set[str]:
    rows = await session.exec(select(PartnerRecord))
    return {p.id for p in rows.all() if "ach-admin" in p.roles}


async def supplied_by(session: AsyncSession, ids: list[str], partner_id: str) -> ResidentLink | None:
    """What a partner supplied about the person (its first link among the person's ids)."""
    own = sorted(
        (k for k in await links_of(session, ids) if k.partner_id == partner_id), key=lambda k: k.created_at
    )
    return own[0] if own else None


async def addresses_for_messages(
    session: AsyncSession, resident: ResidentRecord, ids: list[str], source_partner_id: str
) -> ResidentRecord | ResidentLink | None:
    """Where the network's messages about a referral go: the addresses the referral's source
    supplied, so a partner matched to the resident later never redirects them to an address of its
    own (the index's record for a referral replicated before sources were kept)."""
    if source_partner_id:
        return await supplied_by(session, ids, source_partner_id)
    return resident


async def _cbo_ids(session: AsyncSession) -> set[str]:
    rows = await session.exec(select(PartnerRecord.id).where(col(PartnerRecord.type) == "cbo"))
    return set(rows.all())


class ConsentRegistryApi(residents_pb2_grpc.ConsentRegistryServicer):
    def __init__(self, sessions: Sessions, outbox: Outbox) -> None:
        self._sessions = sessions
        self._outbox = outbox

    async def RecordConsent(
        self, request: residents_pb2.RecordConsentRequest, context: grpc.aio.ServicerContext
    ) -> residents_pb2.Consent:
        who = principal()
        now = utc_now()
        method = ""
        problems = too_long(
            (
                ("resident_id", request.resident_id, 36),
                ("recorded_by_user_id", request.recorded_by_user_id, 200),
            )
        )
        if len(request.scope.need_domains) > 50 or len(request.scope.partner_ids) > 200:
            problems.append(FieldViolation("scope", "names at most 50 need domains and 200 partners"))
        try:
            method = code_of(residents_pb2.ConsentMethod, request.method)
        except ValueError:
            problems.append(FieldViolation("method", f"{request.method} is not a consent method"))
        async with self._sessions() as session, session.begin():
            draft = domain.ConsentDraft(
                resident_id=request.resident_id,
                need_domains=tuple(request.scope.need_domains),
                partner_ids=tuple(request.scope.partner_ids),
                given_at=from_timestamp(request.given_at) or now,
                expires_at=from_timestamp(request.expires_at),
                method=method,
            )
            problems += domain.validate_consent(draft, now, await _cbo_ids(session))
            if problems:
                raise InvalidArgument(problems)
            resident = await require_resident(session, request.resident_id)
            consent = ConsentRecord(
                id=str(uuid.uuid4()),
                resident_id=resident.id,
                need_domains=sorted(set(draft.need_domains)),
                partner_ids=sorted(set(draft.partner_ids)),
                status=ACTIVE,
                given_at=draft.given_at,
                expires_at=draft.expires_at,
                method=draft.method,
                recorded_by_partner_id=who.partner_id,
                recorded_by_user_id=who.user_id or request.recorded_by_user_id,
            )
            session.add(consent)
            publish_consent_changed(session, self._outbox, consent)
        return consent_proto(consent)

    async def RevokeConsent(
        self, request: residents_pb2.RevokeConsentRequest, context: grpc.aio.ServicerContext
    ) -> residents_pb2.Consent:
        problems = too_long((("consent_id", request.consent_id, 36), ("reason", request.reason, 500)))
        if not request.consent_id:
            problems.insert(0, FieldViolation("consent_id", "is required"))
        if problems:
            raise InvalidArgument(problems)
        async with self._sessions() as session, session.begin():
            consent = await session.get(ConsentRecord, request.consent_id)
            if consent is None:
                raise NotFound(f"consent {request.consent_id} not found")
            note_resource("resident_id", consent.resident_id)
            caller = principal().partner_id
            if consent.recorded_by_partner_id != caller and not await _is_admin(session, caller):
                raise PermissionDenied("only the partner that recorded a consent, or the ACH, revokes it")
            if consent.status == REVOKED:  # revoking twice is no error, and no second event
                return consent_proto(consent)
            consent.status = REVOKED
            consent.revoked_at = utc_now()
            consent.revocation_reason = request.reason
            consent.version += 1
            session.add(consent)
            publish_consent_changed(session, self._outbox, consent)
        return consent_proto(consent)

    async def ListConsents(
        self, request: residents_pb2.ListConsentsRequest, context: grpc.aio.ServicerContext
    ) -> residents_pb2.ListConsentsResponse:
        caller = principal().partner_id
        async with self._sessions() as session:
            resident = await require_resident(session, request.resident_id)
            consents = await consents_of(session, await resident_ids(session, resident))
            admin = await _is_admin(session, caller)
        # A partner sees the consents it took and those that let it be shared with; what the resident
        # agreed with others (for which needs, with whom) is theirs.
        return residents_pb2.ListConsentsResponse(
            consents=[
                consent_proto(c)
                for c in consents
                if admin
                or c.recorded_by_partner_id == caller
                or (not c.partner_ids or caller in c.partner_ids)
            ],
            contact_preference=preference_proto(resident),
        )

    async def SetContactPreference(
        self, request: residents_pb2.SetContactPreferenceRequest, context: grpc.aio.ServicerContext
    ) -> residents_pb2.ContactPreference:
        if request.channel not in CHANNEL_NAMES:
            raise InvalidArgument.of("channel", "is not a contact channel")
        wanted = domain.ContactPreference(
            request.do_not_contact, CHANNEL_NAMES[request.channel], request.language.strip()
        )
        caller = principal().partner_id
        async with self._sessions() as session, session.begin():
            resident = await require_resident(session, request.resident_id)
            admin = await _is_admin(session, caller)
            current = preference_of(resident)
            if not domain.may_change_preference(
                current, wanted, resident.preference_partner_id, caller, admin
            ):
                raise PermissionDenied(
                    "another partner set this resident's contact preference: only it, or the ACH,"
                    " changes it (any partner may turn do_not_contact on)"
                )
            owner = resident.preference_partner_id
            if not admin and owner in ("", caller):
                owner = caller
            # The channel needs an address on the caller's own record (the index's, for the ACH).
            on_file = (
                resident
                if admin
                else await supplied_by(session, await resident_ids(session, resident), caller)
            )
            problems = domain.check_contact_preference(
                wanted, on_file.phone if on_file else "", on_file.email if on_file else ""
            )
            if problems:
                raise InvalidArgument(problems)
            if current != wanted:
                resident.preference_partner_id = owner
                resident.do_not_contact = wanted.do_not_contact
                resident.contact_channel = wanted.channel
                resident.contact_language = wanted.language
                resident.preference_version += 1
                resident.updated_at = utc_now()
                session.add(resident)
                self._outbox.add(
                    session,
                    RESIDENT_EVENTS,
                    residents_pb2.ContactPreferenceChanged(preference=preference_proto(resident)),
                    key=resident.id,
                )
        return preference_proto(resident)


# --- owners, for the access policy ---------------------------------------------------------------


def owner_resolvers(sessions: Sessions) -> dict[str, OwnerResolver]:
    async def resident_owners(resident_id: str) -> set[str] | None:
        """The partners that have the resident on their own books (a link)."""
        async with sessions() as session:
            resident = await live_resident(session, resident_id)
            if resident is None:
                return None
            return {k.partner_id for k in await links_of(session, await resident_ids(session, resident))}

    async def consent_owners(consent_id: str) -> set[str] | None:
        async with sessions() as session:
            consent = await session.get(ConsentRecord, consent_id)
        return await resident_owners(consent.resident_id) if consent else None

    async def referral_target(referral_id: str) -> set[str] | None:
        async with sessions() as session:
            referral = await session.get(ReferralReplica, referral_id)
        return {referral.target_partner_id} if referral else None

    return {"resident": resident_owners, "consent": consent_owners, "referral-target": referral_target}


# --- the referral replica ------------------------------------------------------------------------


def _status(value: int) -> str:
    return code_of(referrals_pb2.ReferralStatus, value)


async def on_referral_created(
    session: AsyncSession, envelope: Envelope, event: referrals_pb2.ReferralCreated
) -> None:
    require_fields(event, "referral_id", "resident_id", "need_domain")
    await insert_once(
        session,
        ReferralReplica,
        {
            "referral_id": event.referral_id,
            "resident_id": event.resident_id,
            "need_domain": event.need_domain,
            "target_partner_id": event.target_partner_id,
            "status": _status(event.status),
            "sequence": 0,
            "source_partner_id": event.source_partner_id,
        },
    )


async def on_referral_status_changed(
    session: AsyncSession, envelope: Envelope, event: referrals_pb2.ReferralStatusChanged
) -> None:
    require_fields(event, "referral_id", "resident_id")
    replica = await session.get(ReferralReplica, event.referral_id)
    if replica is None:
        replica = ReferralReplica(
            referral_id=event.referral_id,
            resident_id=event.resident_id,
            need_domain=event.need_domain,
            target_partner_id=event.target_partner_id,
        )
    if event.sequence <= replica.sequence:
        return  # an older change than the one held
    replica.status = _status(event.to_status)
    replica.target_partner_id = event.target_partner_id or replica.target_partner_id
    replica.sequence = event.sequence
    session.add(replica)
