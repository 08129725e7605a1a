"""gRPC API of the screening service."""

from __future__ import annotations

import uuid

import grpc
from ach.screening.v1 import screening_pb2, screening_pb2_grpc
from ach_events.outbox import Outbox
from ach_platform.clock import as_utc, from_timestamp, to_timestamp, utc_now
from ach_platform.errors import InvalidArgument, NotFound, Validator
from opentelemetry import trace
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_screening import domain
from ach_screening.events import publish_screening_completed
from ach_screening.store import ScreeningAnswer, ScreeningRecord, find_by_submitter


def _summary(record: ScreeningRecord) -> screening_pb2.SubmitScreeningResponse:
    return screening_pb2.SubmitScreeningResponse(
        screening_id=record.id, positive_domains=record.positive_domains, urgent=record.urgent
    )


class ScreeningApi(screening_pb2_grpc.ScreeningServiceServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: Outbox) -> None:
        self._sessions = sessions
        self._outbox = outbox

    async def SubmitScreening(
        self, request: screening_pb2.SubmitScreeningRequest, context: grpc.aio.ServicerContext
    ) -> screening_pb2.SubmitScreeningResponse:
        check = Validator()
        check.require(bool(request.submitter_screening_id), "submitter_screening_id", "is required")
        check.require(bool(request.resident_id), "resident_id", "is required")
        check.require(bool(request.screened_by.partner_id), "screened_by.partner_id", "is required")
        check.require(request.HasField("screened_at"), "screened_at", "is required")
        instrument = domain.INSTRUMENTS.get((request.instrument_id, request.instrument_version))
        check.require(
            instrument is not None,
            "instrument_id",
            f"unknown instrument {request.instrument_id!r} version {request.instrument_version!r}",
        )
        answers = [
            domain.AnswerGiven(a.question_code, tuple(a.answer_codes), a.declined) for a in request.answers
        ]
        now = utc_now()
        screened_at = from_timestamp(request.screened_at) if request.HasField("screened_at") else None
        check.violations.extend(domain.validate(instrument, answers, screened_at, now))
        check.raise_if_any()
        assert instrument is not None and screened_at is not None
        scored = domain.score(instrument, answers)
        trace.get_current_span().set_attribute(
            "ach.screening.positive_domain_count", len(scored.positive_domains)
        )

        partner = request.screened_by.partner_id
        try:
            async with self._sessions() as session, session.begin():
                existing = await find_by_submitter(session, partner, request.submitter_screening_id)
                if existing is not None:
                    return _summary(existing)  # idempotent resubmission
                record = ScreeningRecord(
                    id=str(uuid.uuid4()),
                    submitter_partner_id=partner,
                    submitter_screening_id=request.submitter_screening_id,
                    resident_id=request.resident_id,
                    instrument_id=instrument.id,
                    instrument_version=instrument.version,
                    positive_domains=list(scored.positive_domains),
                    urgent=scored.urgent,
                    screened_at=as_utc(screened_at),
                    site_id=request.site_id,
                    language=request.language or "en",
                    created_at=now,
                )
                session.add(record)
                await session.flush()
                for a in answers:
                    session.add(
                        ScreeningAnswer(
                            screening_id=record.id,
                            question_code=a.question_code,
                            answer_codes=list(a.answer_codes),
                            declined=a.declined,
                        )
                    )
                publish_screening_completed(session, self._outbox, record, partner)
        except IntegrityError:
            # A concurrent submission of the same screening committed first: answer with it.
            async with self._sessions() as session:
                existing = await find_by_submitter(session, partner, request.submitter_screening_id)
            if existing is None:
                raise
            return _summary(existing)
        trace.get_current_span().set_attribute("ach.screening.id", record.id)
        return _summary(record)

    async def GetScreening(
        self, request: screening_pb2.GetScreeningRequest, context: grpc.aio.ServicerContext
    ) -> screening_pb2.Screening:
        if not request.screening_id:
            raise InvalidArgument.of("screening_id", "is required")
        async with self._sessions() as session:
            record = await session.get(ScreeningRecord, request.screening_id)
        if record is None:
            raise NotFound(f"screening {request.screening_id} not found")
        return screening_pb2.Screening(
            screening_id=record.id,
            resident_id=record.resident_id,
            instrument_id=record.instrument_id,
            instrument_version=record.instrument_version,
            positive_domains=record.positive_domains,
            urgent=record.urgent,
            screened_at=to_timestamp(record.screened_at),
            site_id=record.site_id,
            language=record.language,
        )
