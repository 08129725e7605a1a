"""The consent registry's gRPC API: consents recorded, listed, revoked; contact preferences."""

from __future__ import annotations

import uuid

import grpc
from ach.residents.v1 import residents_pb2, residents_pb2_grpc
from ach_events.outbox import Outbox
from ach_events.topics import RESIDENT_EVENTS
from ach_platform.audit import note_resource
from ach_platform.auth import principal
from ach_platform.clock import from_timestamp, utc_now
from ach_platform.codes import code_of
from ach_platform.consent import ACTIVE, REVOKED
from ach_platform.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    too_long,
)
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_identity import domain
from ach_identity.publishers import publish_consent_changed
from ach_identity.resident_mappers import (
    CHANNEL_NAMES,
    consent_proto,
    preference_of,
    preference_proto,
)
from ach_identity.resident_queries import (
    cbo_ids,
    is_admin,
    require_resident,
    resident_ids,
    supplied_by,
)
from ach_identity.store import (
    ConsentRecord,
    consents_of,
)

Sessions = async_sessionmaker[AsyncSession]


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
            problems += domain.validate_consent(draft, now, await cbo_ids(session))
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
            if consent.recorded_by_partner_id != caller and not await is_admin(session, caller):
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
            admin = await is_admin(session, caller)
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
            admin = await is_admin(session, caller)
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
