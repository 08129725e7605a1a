"""The resident index's gRPC API: register and match residents, read what a partner may see, merge.

Sharing is decided here, against this service's own consent table, inside the call that shares: a
revocation committed a moment ago refuses the very next share, whatever the other services' replicas
have heard yet. Who may call what is the access policy's business (ach_platform.access)."""

from __future__ import annotations

import uuid
from datetime import date

import grpc
from ach.common.v1 import common_pb2
from ach.residents.v1 import residents_pb2, residents_pb2_grpc
from ach_events.outbox import Outbox
from ach_events.topics import RESIDENT_EVENTS
from ach_platform.audit import note_resource
from ach_platform.auth import principal
from ach_platform.clock import to_timestamp, utc_now
from ach_platform.consent import consent_for_share, relied_on_by
from ach_platform.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    too_long,
)
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_identity import domain
from ach_identity.resident_mappers import (
    CHANNELS,
    demographics_of,
    demographics_proto,
    preference_of,
    preference_proto,
    terms_of,
)
from ach_identity.resident_queries import (
    addresses_for_messages,
    admin_ids,
    is_admin,
    require_resident,
    resident_ids,
    supplied_by,
)
from ach_identity.store import (
    ReferralReplica,
    ResidentLink,
    ResidentMerge,
    ResidentRecord,
    consents_of,
    links_of,
    live_resident,
    residents_with_key,
)

Sessions = async_sessionmaker[AsyncSession]


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
            admin = await is_admin(session, caller)
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
                consents = relied_on_by(consents, {source} | await admin_ids(session))
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
