"""gRPC API of the screening service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence

import grpc
from ach.screening.v1 import screening_pb2, screening_pb2_grpc
from ach_events.resident_replica import consents_for, person_of, terms_of
from ach_platform.access import PartnerRoster
from ach_platform.audit import note_resource
from ach_platform.auth import principal
from ach_platform.clock import to_timestamp, utc_now
from ach_platform.errors import FieldViolation, InvalidArgument, NotFound
from opentelemetry import metrics, trace
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_screening import domain
from ach_screening.domain.fhir import located, read_questionnaire_response
from ach_screening.domain.history import ACTIVE, ScreeningOutcome, need_history
from ach_screening.domain.sharing import shared_domains
from ach_screening.domain.submission import NOT_REGISTERED, Submission
from ach_screening.intake import Accepted, GroupCommit, ScreeningIntake
from ach_screening.mappers import demographics_of, finding_proto, submission_of
from ach_screening.store import ScreeningRecord, answers_of, findings_of, partners_by_resident, screenings_of

# Read-your-writes: a submission right after RegisterResident may reach this service before the
# ResidentLinked event does; the call waits for it (bounded, and for a bounded number of calls at
# once, so unknown ids cannot hold the service) instead of refusing what the caller just did.
LINK_WAIT_S = 5.0
LINK_POLL_S = 0.05
LINK_WAITERS = 64
waited = metrics.get_meter("ach_screening.api").create_counter(
    "ach_screening_link_waits",
    unit="{call}",
    description="Submissions that waited for the resident index's link to arrive (read-your-writes)",
)


def _summary(accepted: Accepted) -> screening_pb2.SubmitScreeningResponse:
    record = accepted.record
    return screening_pb2.SubmitScreeningResponse(
        screening_id=record.id,
        positive_domains=record.positive_domains,
        urgent=record.urgent,
        duplicate=accepted.duplicate,
    )


def screening_proto(record: ScreeningRecord) -> screening_pb2.Screening:
    """A screening without its answers."""
    screening = screening_pb2.Screening(
        screening_id=record.id,
        resident_id=record.resident_id,
        instrument_id=record.instrument_id,
        instrument_version=record.instrument_version,
        positive_domains=record.positive_domains,
        urgent=record.urgent,
        screened_at=to_timestamp(record.screened_at),
        site_id=record.site_id,
        language=record.language,
        findings=[finding_proto(f, with_evidence=False) for f in findings_of(record)],
        negative_domains=record.negative_domains,
        totals=record.totals,
        consent_id=record.consent_id,
        submitter_screening_id=record.submitter_screening_id,
    )
    screening.screened_by.partner_id = record.submitter_partner_id
    screening.screened_by.user_id = record.screener_user_id
    return screening


def shared_proto(record: ScreeningRecord, domains: frozenset[str]) -> screening_pb2.Screening:
    """Another partner's screening as the caller may see it: only the consented need domains, no
    totals, nothing of the rest."""
    screening = screening_proto(record)
    kept = [f for f in findings_of(record) if f.domain in domains]
    del screening.findings[:]
    screening.findings.extend(finding_proto(f, with_evidence=False) for f in kept)
    screening.positive_domains[:] = [d for d in record.positive_domains if d in domains]
    screening.negative_domains[:] = [d for d in record.negative_domains if d in domains]
    screening.totals.clear()
    screening.urgent = any(f.urgent for f in kept)
    screening.site_id = ""
    screening.consent_id = ""
    return screening


def _text(texts: Mapping[str, str], language: str) -> str:
    return (
        texts.get(language)
        or texts.get(language.split("-")[0])
        or texts.get("en")
        or next(iter(texts.values()), "")
    )


class ScreeningApi(screening_pb2_grpc.ScreeningServiceServicer):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        intake: ScreeningIntake,
        partners: Callable[[], PartnerRoster | None] = lambda: None,
    ) -> None:
        self._sessions = sessions
        self._intake = intake
        self._partners = partners
        self._link_waiters = asyncio.Semaphore(LINK_WAITERS)
        self._group_commit = GroupCommit(sessions, intake)

    async def _submit(
        self,
        submission: Submission,
        context: grpc.aio.ServicerContext,
        problems: Sequence[FieldViolation] = (),
    ) -> Accepted:
        try:
            accepted = await self._group_commit.submit(submission, problems)
        except InvalidArgument as refused:
            if refused.violations != [NOT_REGISTERED] or not await self._link_arrives(submission, context):
                raise
            accepted = await self._group_commit.submit(submission, problems)
        span = trace.get_current_span()
        span.set_attribute("ach.screening.id", accepted.record.id)
        span.set_attribute("ach.screening.positive_domain_count", len(accepted.scored.findings))
        note_resource("screening_id", accepted.record.id)
        return accepted

    async def _link_arrives(self, submission: Submission, context: grpc.aio.ServicerContext) -> bool:
        """Whether the link of the submitter to the resident arrives within the wait (and the call's
        own deadline); False at once when too many calls are already waiting."""
        if self._link_waiters.locked():
            return False
        remaining = context.time_remaining()
        deadline = time.monotonic() + min(LINK_WAIT_S, max(0.0, (remaining or LINK_WAIT_S) - 0.5))
        async with self._link_waiters:
            waited.add(1)
            while time.monotonic() < deadline:
                await asyncio.sleep(LINK_POLL_S)
                async with self._sessions() as session:
                    _, ids = await person_of(session, submission.resident_id)
                    links = await partners_by_resident(session, ids)
                if any(submission.submitter_partner_id in links.get(i, ()) for i in ids):
                    return True
        return False

    async def SubmitScreening(
        self, request: screening_pb2.SubmitScreeningRequest, context: grpc.aio.ServicerContext
    ) -> screening_pb2.SubmitScreeningResponse:
        return _summary(await self._submit(submission_of(request, request.screened_by.partner_id), context))

    async def ImportQuestionnaireResponse(
        self, request: screening_pb2.ImportQuestionnaireResponseRequest, context: grpc.aio.ServicerContext
    ) -> screening_pb2.SubmitScreeningResponse:
        imported, problems = read_questionnaire_response(
            request.questionnaire_response_json, self._intake.instruments
        )
        if imported is None:
            raise InvalidArgument(problems)
        submission = Submission(
            submitter_partner_id=request.screened_by.partner_id,
            submitter_screening_id=request.submitter_screening_id or imported.resource_id,
            resident_id=request.resident_id,
            instrument_id=imported.instrument.id,
            instrument_version=imported.instrument.version,
            answers=imported.answers,
            screened_at=imported.screened_at,
            site_id=request.site_id,
            language=imported.language,
            screener_user_id=request.screened_by.user_id,
            consent_id=request.consent_id,
            demographics=demographics_of(request.demographics),
        )
        try:
            return _summary(await self._submit(submission, context, problems))
        except InvalidArgument as exc:
            raise InvalidArgument(_unique(located(exc.violations, imported.paths))) from None

    async def GetScreening(
        self, request: screening_pb2.GetScreeningRequest, context: grpc.aio.ServicerContext
    ) -> screening_pb2.Screening:
        if not request.screening_id:
            raise InvalidArgument.of("screening_id", "is required")
        async with self._sessions() as session:
            record = await session.get(ScreeningRecord, request.screening_id)
            if record is None:
                raise NotFound(f"screening {request.screening_id} not found")
            answers = await answers_of(session, record.id)
        note_resource("resident_id", record.resident_id)
        screening = screening_proto(record)
        given = [
            domain.AnswerGiven(a.question_code, tuple(a.answer_codes), a.declined, a.value) for a in answers
        ]
        instrument = self._intake.instruments.get((record.instrument_id, record.instrument_version))
        if instrument is not None:  # the evidence, for those entitled to the answers
            del screening.findings[:]
            screening.findings.extend(
                finding_proto(f, True) for f in domain.score(instrument, given).findings
            )
        screening.answers.extend(
            screening_pb2.Answer(
                question_code=a.question_code, answer_codes=a.answer_codes, declined=a.declined, value=a.value
            )
            for a in given
        )
        return screening

    async def ListResidentScreenings(
        self, request: screening_pb2.ListResidentScreeningsRequest, context: grpc.aio.ServicerContext
    ) -> screening_pb2.ResidentScreenings:
        if not request.resident_id:
            raise InvalidArgument.of("resident_id", "is required")
        caller = principal().partner_id
        registry = self._partners()
        admins = registry.holding("ach-admin") if registry is not None else set()
        async with self._sessions() as session:
            survivor, ids = await person_of(session, request.resident_id)
            records = await screenings_of(session, ids)
            consents = [terms_of(c) for c in await consents_for(session, ids)] if records else []
        now = utc_now()
        visible: list[tuple[ScreeningRecord, frozenset[str] | None]] = []
        for r in records:
            assessed = [*r.positive_domains, *r.negative_domains]
            domains = shared_domains(
                r.submitter_partner_id, caller, caller in admins, assessed, consents, admins, now
            )
            if domains is None or domains:
                visible.append((r, domains))
        if not visible:
            raise NotFound(f"no screenings of resident {request.resident_id}")
        needs = need_history(
            ScreeningOutcome(
                r.id,
                r.screened_at,
                tuple((f.domain, f.urgent) for f in findings_of(r) if domains is None or f.domain in domains),
                tuple(d for d in r.negative_domains if domains is None or d in domains),
            )
            for r, domains in visible
        )
        return screening_pb2.ResidentScreenings(
            resident_id=survivor,
            screenings=[screening_proto(r) if d is None else shared_proto(r, d) for r, d in visible],
            needs=[
                screening_pb2.NeedStatus(
                    need_domain=n.domain,
                    state=screening_pb2.NEED_STATE_ACTIVE
                    if n.state == ACTIVE
                    else screening_pb2.NEED_STATE_RESOLVED,
                    urgent=n.urgent,
                    first_identified_at=to_timestamp(n.first_identified_at),
                    last_positive_at=to_timestamp(n.last_positive_at),
                    last_positive_screening_id=n.last_positive_screening_id,
                    resolved_at=to_timestamp(n.resolved_at),
                    resolved_by_screening_id=n.resolved_by_screening_id,
                )
                for n in needs
            ],
        )

    async def ListInstruments(
        self, request: screening_pb2.ListInstrumentsRequest, context: grpc.aio.ServicerContext
    ) -> screening_pb2.ListInstrumentsResponse:
        language = request.language or "en"
        return screening_pb2.ListInstrumentsResponse(
            instruments=[
                screening_pb2.InstrumentDefinition(
                    instrument_id=i.id,
                    version=i.version,
                    loinc=i.loinc,
                    title=_text(i.title, language),
                    language=language if language in i.languages else "en",
                    languages=i.languages,
                    questions=[
                        screening_pb2.InstrumentQuestion(
                            code=q.code,
                            text=_text(q.text, language),
                            type=q.type,
                            multi_select=q.multi_select,
                            required=q.required,
                            section=q.section,
                            options=[
                                screening_pb2.InstrumentQuestion.Option(
                                    code=o.code, text=_text(o.text, language)
                                )
                                for o in q.options
                            ],
                        )
                        for q in i.questions
                    ],
                )
                for i in sorted(self._intake.instruments.values(), key=lambda i: i.key)
            ]
        )


def _unique(violations: list[FieldViolation]) -> list[FieldViolation]:
    return list(dict.fromkeys(violations))
