"""gRPC API of the referral service."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta

import grpc
from ach.common.v1 import common_pb2
from ach.referrals.v1 import referrals_pb2, referrals_pb2_grpc
from ach_platform import zip_codes
from ach_platform.audit import note_resource
from ach_platform.auth import principal
from ach_platform.clock import as_utc, from_timestamp, to_timestamp, utc_now
from ach_platform.consent import consent_for_share
from ach_platform.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from ach_platform.vocabulary import NEED_DOMAINS
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_referrals import domain, fhir
from ach_referrals.mappers import (
    outcome_to_proto,
    requested_change,
    status_from_proto,
    status_to_proto,
)
from ach_referrals.placement import ReferralAsk, place
from ach_referrals.status_changes import move
from ach_referrals.store import ReferralRecord, history_of, referrals_of_party
from ach_referrals.workflow import ReferralWorkflow


def to_proto(r: ReferralRecord) -> referrals_pb2.Referral:
    return referrals_pb2.Referral(
        referral_id=r.id,
        resident_id=r.resident_id,
        need_domain=r.need_domain,
        source_partner_id=r.source_partner_id,
        target_partner_id=r.target_partner_id,
        target_service_id=r.target_service_id,
        status=status_to_proto(domain.Status(r.status)),
        outcome=outcome_to_proto(r.outcome),
        screening_id=r.screening_id,
        need_id=r.need_id,
        created_at=to_timestamp(r.created_at),
        updated_at=to_timestamp(r.updated_at),
        draft_reason=r.draft_reason,
        informational=r.informational,
        internal=domain.is_internal(r.source_partner_id, r.target_partner_id),
    )


CLOCK_SKEW = timedelta(minutes=5)  # a source's clock a little behind ours


class ReferralApi(referrals_pb2_grpc.ReferralServiceServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession], workflow: ReferralWorkflow) -> None:
        self._sessions = sessions
        self._workflow = workflow

    async def CreateReferral(
        self, request: referrals_pb2.CreateReferralRequest, context: grpc.aio.ServicerContext
    ) -> referrals_pb2.Referral:
        problems: list[FieldViolation] = []
        if not request.resident_id:
            problems.append(FieldViolation("resident_id", "is required"))
        if request.need_domain not in NEED_DOMAINS:
            problems.append(
                FieldViolation(
                    "need_domain",
                    f"{request.need_domain!r} is not a Gravity SDOH category code"
                    if request.need_domain
                    else "is required",
                )
            )
        if request.resident_zip and not zip_codes.known(request.resident_zip):
            problems.append(FieldViolation("resident_zip", f"{request.resident_zip!r} is not a US ZIP code"))
        if request.HasField("resident_age") and not 0 <= request.resident_age <= 130:
            problems.append(FieldViolation("resident_age", "must be between 0 and 130"))
        available_at = (
            from_timestamp(request.resident_available_at)
            if request.HasField("resident_available_at")
            else None
        )
        if available_at is not None and available_at < utc_now() - CLOCK_SKEW:
            problems.append(FieldViolation("resident_available_at", "must not be in the past"))
        if problems:
            raise InvalidArgument(problems)
        ask = ReferralAsk(
            source_partner_id=principal().partner_id,
            source_user_id=principal().user_id,
            resident_id=request.resident_id,
            need_domain=request.need_domain,
            language=request.language or "en",
            screening_id=request.screening_id,
            target_service_id=request.target_service_id,
            informational=request.informational,
            zip_code=request.resident_zip,
            age=request.resident_age if request.HasField("resident_age") else None,
            available_at=available_at,
        )
        async with self._sessions() as session, session.begin():
            referral = await place(session, self._workflow, ask, utc_now())
        note_resource("resident_id", referral.resident_id)
        return to_proto(referral)

    async def GetReferral(
        self, request: referrals_pb2.GetReferralRequest, context: grpc.aio.ServicerContext
    ) -> referrals_pb2.Referral:
        if not request.referral_id:
            raise InvalidArgument.of("referral_id", "is required")
        async with self._sessions() as session:
            referral = await session.get(ReferralRecord, request.referral_id)
        if referral is None:
            raise NotFound(f"referral {request.referral_id} not found")
        note_resource("resident_id", referral.resident_id)
        return to_proto(referral)

    async def ListReferrals(
        self, request: referrals_pb2.ListReferralsRequest, context: grpc.aio.ServicerContext
    ) -> referrals_pb2.ListReferralsResponse:
        problems: list[FieldViolation] = []
        if not request.partner_id:
            problems.append(FieldViolation("partner_id", "is required"))
        if not 0 <= request.page_size <= 1000:
            problems.append(FieldViolation("page_size", "must be between 0 and 1000"))
        status: domain.Status | None = None
        try:
            status = status_from_proto(request.status)
        except ValueError:
            problems.append(FieldViolation("status", f"{request.status} is not a referral status"))
        if problems:
            raise InvalidArgument(problems)
        async with self._sessions() as session:
            rows = await referrals_of_party(
                session,
                request.partner_id,
                screening_id=request.screening_id,
                status=status.value if status else "",
                limit=request.page_size or 100,
            )
        return referrals_pb2.ListReferralsResponse(referrals=[to_proto(r) for r in rows])

    async def UpdateReferralStatus(
        self, request: referrals_pb2.UpdateReferralStatusRequest, context: grpc.aio.ServicerContext
    ) -> referrals_pb2.Referral:
        problems: list[FieldViolation] = []
        if not request.referral_id:
            problems.append(FieldViolation("referral_id", "is required"))
        to, outcome, wrong = requested_change(request.status, request.outcome)
        problems += wrong
        problems += domain.check_reason(request.reason_code, request.reason)
        if problems:
            raise InvalidArgument(problems)
        assert to is not None
        return await self._move(
            request.referral_id,
            to,
            request.reason,
            outcome,
            request.actor.user_id,
            reason_code=request.reason_code,
        )

    async def _move(
        self,
        referral_id: str,
        to: domain.Status,
        reason: str,
        outcome: domain.Outcome | None,
        user_id: str,
        fields: Mapping[str, str] | None = None,
        reason_code: str = "",
    ) -> referrals_pb2.Referral:
        """A party moves a referral on (gRPC or a FHIR Task): the state machine's rules, the change
        and its events in one transaction, re-routing after a rejection."""
        async with self._sessions() as session, session.begin():
            referral = await move(
                session,
                self._workflow,
                referral_id,
                to,
                utc_now(),
                # The authenticated caller, whatever the request claims.
                actor_partner_id=principal().partner_id,
                actor_user_id=principal().user_id or user_id,
                reason=reason,
                outcome=outcome,
                reason_code=reason_code,
                fields=fields,
            )
        return to_proto(referral)

    async def ExportReferralFhir(
        self, request: referrals_pb2.ExportReferralFhirRequest, context: grpc.aio.ServicerContext
    ) -> referrals_pb2.FhirDocument:
        if not request.referral_id:
            raise InvalidArgument.of("referral_id", "is required")
        async with self._sessions() as session:
            referral = await session.get(ReferralRecord, request.referral_id)
            if referral is None:
                raise NotFound(f"referral {request.referral_id} not found")
            changes = await history_of(session, referral.id)
            consent = (
                consent_for_share(
                    await self._workflow.consents(session, referral.resident_id, referral.source_partner_id),
                    referral.need_domain,
                    referral.target_partner_id,
                    utc_now(),
                )
                if referral.target_partner_id
                else None
            )
        note_resource("resident_id", referral.resident_id)
        view = fhir.ReferralView(
            referral_id=referral.id,
            resident_id=referral.resident_id,
            need_domain=referral.need_domain,
            source_partner_id=referral.source_partner_id,
            target_partner_id=referral.target_partner_id,
            target_service_id=referral.target_service_id,
            status=domain.Status(referral.status),
            outcome=referral.outcome,
            reason=changes[-1].reason if changes else referral.draft_reason,
            created_at=as_utc(referral.created_at),
            updated_at=as_utc(referral.updated_at),
            consent_id=consent.consent_id if consent else "",
        )
        return referrals_pb2.FhirDocument(json=json.dumps(fhir.referral_bundle(view), indent=2))

    async def UpdateReferralFromFhirTask(
        self, request: referrals_pb2.UpdateReferralFromFhirTaskRequest, context: grpc.aio.ServicerContext
    ) -> referrals_pb2.Referral:
        update, problems = fhir.task_update(request.task_json)
        if update is None:
            raise InvalidArgument([FieldViolation(f, d) for f, d in problems])
        assert update.status is not None
        return await self._move(
            update.referral_id, update.status, update.reason, update.outcome, "", fhir.TASK_FIELDS
        )

    async def GetReferralHistory(
        self, request: referrals_pb2.GetReferralHistoryRequest, context: grpc.aio.ServicerContext
    ) -> referrals_pb2.GetReferralHistoryResponse:
        if not request.referral_id:
            raise InvalidArgument.of("referral_id", "is required")
        async with self._sessions() as session:
            referral = await session.get(ReferralRecord, request.referral_id)
            if referral is None:
                raise NotFound(f"referral {request.referral_id} not found")
            changes = await history_of(session, referral.id)
        note_resource("resident_id", referral.resident_id)
        return referrals_pb2.GetReferralHistoryResponse(
            changes=[
                referrals_pb2.ReferralChange(
                    sequence=c.sequence,
                    from_status=status_to_proto(domain.Status(c.from_status)),
                    to_status=status_to_proto(domain.Status(c.to_status)),
                    changed_by=common_pb2.Actor(partner_id=c.actor_partner_id, user_id=c.actor_user_id),
                    reason=c.reason,
                    reason_code=c.reason_code,
                    outcome=outcome_to_proto(c.outcome),
                    changed_at=to_timestamp(c.changed_at),
                    target_partner_id=c.target_partner_id,
                    target_service_id=c.target_service_id,
                )
                for c in changes
            ]
        )

    async def ProposeTargets(
        self, request: referrals_pb2.ProposeTargetsRequest, context: grpc.aio.ServicerContext
    ) -> referrals_pb2.ProposeTargetsResponse:
        if not request.referral_id:
            raise InvalidArgument.of("referral_id", "is required")
        async with self._sessions() as session:
            referral = await session.get(ReferralRecord, request.referral_id)
            if referral is None:
                raise NotFound(f"referral {request.referral_id} not found")
            now = utc_now()
            candidates = await self._workflow.candidates(session)  # the replica read once for both
            found = await self._workflow.proposals(session, referral, now, candidates)
            others = self._workflow.information_only(referral, now, candidates)
        return referrals_pb2.ProposeTargetsResponse(
            targets=[
                referrals_pb2.ProposedTarget(
                    service_id=m.service.service_id,
                    organization_id=m.service.organization_id,
                    reasons=[
                        *m.reasons,
                        *([] if m.service.takes_referrals else ["information only: no network partner"]),
                    ],
                    distance_km=round(m.distance_km, 3) if m.distance_km is not None else 0.0,
                    partner_id=m.service.partner_id,
                    information_only=not m.service.takes_referrals,
                    name=m.service.name,
                )
                for m in [*found, *others]
            ]
        )

    async def RerouteReferral(
        self, request: referrals_pb2.RerouteReferralRequest, context: grpc.aio.ServicerContext
    ) -> referrals_pb2.Referral:
        if not request.referral_id:
            raise InvalidArgument.of("referral_id", "is required")
        async with self._sessions() as session, session.begin():
            referral = await session.get(ReferralRecord, request.referral_id)
            if referral is None:
                raise NotFound(f"referral {request.referral_id} not found")
            actor = principal().partner_id
            if actor != referral.source_partner_id:
                raise PermissionDenied("only the referral's source may re-route it")
            errors = domain.check_transition(
                domain.Status(referral.status), domain.Status.REQUESTED, domain.Role.SOURCE, "", None
            )
            if errors:
                raise FailedPrecondition(
                    f"only a rejected referral is re-routed; this one is {referral.status}",
                    violation_type="TRANSITION",
                    subject=referral.id,
                )
            found = await self._workflow.proposals(session, referral, utc_now())
            chosen = (
                [m for m in found if m.service.service_id == request.target_service_id]
                if request.target_service_id
                else found[:1]
            )
            if not chosen:
                if request.target_service_id:
                    raise InvalidArgument.of(
                        "target_service_id",
                        f"{request.target_service_id} is not among the proposed targets (ProposeTargets):"
                        " it does not serve this need, turned the referral down, or the resident's"
                        " consent does not cover it",
                    )
                raise FailedPrecondition(
                    "no other suitable target for this referral",
                    violation_type="NO_TARGET",
                    subject=referral.id,
                )
            self._workflow.reroute(
                session,
                referral,
                chosen[0],
                utc_now(),
                request.reason or "re-routed by the source",
                actor_partner_id=actor,
                actor_user_id=principal().user_id,
            )
        return to_proto(referral)
