"""One pipeline for every way a screening comes in: the same checks, scoring, storage and events,
in the caller's transaction (a gRPC call's own, or a consumer's with its inbox record)."""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ach_events.outbox import Outbox
from ach_events.resident_replica import ConsentReplica, consents_for, people_of, terms_of
from ach_platform.clock import as_utc, utc_now
from ach_platform.consent import ACTIVE
from ach_platform.errors import FieldViolation, InvalidArgument
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_screening import domain
from ach_screening.domain.submission import (
    Facts,
    Submission,
    check,
    demographics_from_answers,
    kept_answers,
)
from ach_screening.publishers import publish_screening
from ach_screening.store import (
    ScreeningAnswer,
    ScreeningDemographics,
    ScreeningRecord,
    find_by_submitters,
    findings_of,
    partners_by_resident,
)

tracer = trace.get_tracer(__name__)
batch_size = metrics.get_meter(__name__).create_histogram(
    "ach_screening_intake_batch_size",
    unit="{screening}",
    description="Submissions written per transaction by the group commit",
)


@dataclass(frozen=True)
class Pending:
    """A submission waiting for its batch, with the problems its source had (e.g. a FHIR resource)
    and the submitter's trace context (the batch runs outside the caller's)."""

    submission: Submission
    problems: tuple[FieldViolation, ...] = ()
    trace_context: otel_context.Context | None = None


@dataclass(frozen=True)
class Accepted:
    record: ScreeningRecord
    scored: domain.Scored
    duplicate: bool


class ScreeningIntake:
    def __init__(self, outbox: Outbox, instruments: Mapping[tuple[str, str], domain.Instrument]) -> None:
        self._outbox = outbox
        self.instruments = instruments

    async def submit(
        self, session: AsyncSession, submission: Submission, problems: Sequence[FieldViolation] = ()
    ) -> Accepted:
        """Validate, score, store and emit, or raise InvalidArgument with every problem (and then
        nothing is stored or emitted), including ``problems`` the caller found in the submission's
        source (e.g. a FHIR resource). A resubmission of a screening id returns the first result."""
        (outcome,) = await self.submit_many(session, [Pending(submission, tuple(problems))])
        if isinstance(outcome, InvalidArgument):
            raise outcome
        return outcome

    async def submit_many(
        self, session: AsyncSession, batch: Sequence[Pending]
    ) -> list[Accepted | InvalidArgument]:
        """``submit`` for a batch in one transaction (group commit): the same checks and outcome per
        submission, with one query per kind of fact and one insert per table for all of them. A
        rejected submission stores and emits nothing; the others go on."""
        now = utc_now()
        existing = await find_by_submitters(
            session, {(p.submission.submitter_partner_id, p.submission.submitter_screening_id) for p in batch}
        )
        people = await people_of(
            session, {p.submission.resident_id for p in batch if p.submission.resident_id}
        )
        everyone = set().union(*(ids for _, ids in people.values()))
        links = await partners_by_resident(session, everyone)
        consents: dict[str, list[ConsentReplica]] = {}
        for consent in (await consents_for(session, everyone)) if everyone else []:
            consents.setdefault(consent.resident_id, []).append(consent)

        outcomes: list[Accepted | InvalidArgument] = []
        records: list[ScreeningRecord] = []
        answers: list[dict[str, object]] = []
        demographics_rows: list[dict[str, object]] = []
        for pending in batch:
            submission = pending.submission
            key = (submission.submitter_partner_id, submission.submitter_screening_id)
            if (first := existing.get(key)) is not None:
                outcomes.append(
                    Accepted(first, domain.Scored(findings_of(first), first.totals), duplicate=True)
                )
                continue
            resident_id, ids = people.get(submission.resident_id, ("", set()))
            facts, consent_id = _facts(
                submission,
                known=bool(ids),
                usable=any(submission.submitter_partner_id in links.get(i, ()) for i in ids),
                consents={c.consent_id: c for i in ids for c in consents.get(i, ())},
                now=now,
            )
            found = [*pending.problems, *check(submission, self.instruments, facts, now)]
            if found:
                outcomes.append(InvalidArgument(found))
                continue
            instrument = self.instruments[(submission.instrument_id, submission.instrument_version)]
            assert submission.screened_at is not None
            scored = domain.score(instrument, submission.answers)
            record = ScreeningRecord(
                id=str(uuid.uuid4()),
                submitter_partner_id=submission.submitter_partner_id,
                submitter_screening_id=submission.submitter_screening_id,
                resident_id=resident_id,
                instrument_id=instrument.id,
                instrument_version=instrument.version,
                positive_domains=list(scored.positive_domains),
                findings=[{"domain": f.domain, "urgent": f.urgent} for f in scored.findings],
                negative_domains=list(scored.negative_domains),
                totals=dict(scored.totals),
                urgent=scored.urgent,
                screened_at=as_utc(submission.screened_at),
                site_id=submission.site_id,
                language=submission.language,
                screener_user_id=submission.screener_user_id,
                consent_id=consent_id,
                created_at=now,
            )
            records.append(record)
            existing[key] = record  # the same screening twice in one batch: the second is a duplicate
            answers += [
                {
                    "screening_id": record.id,
                    "question_code": a.question_code,
                    "answer_codes": list(a.answer_codes),
                    "declined": a.declined,
                    "value": a.value,
                }
                for a in kept_answers(instrument, tuple(domain.normalized(instrument, submission.answers)))
            ]
            demographics = demographics_from_answers(instrument, submission.answers, submission.demographics)
            if not demographics.empty:
                demographics_rows.append(
                    {
                        "screening_id": record.id,
                        "race_codes": list(demographics.race_codes),
                        "ethnicity_code": demographics.ethnicity_code,
                        "preferred_language": demographics.preferred_language,
                        "age_band": demographics.age_band,
                        "zip": demographics.zip,
                        "neighbourhood": demographics.neighbourhood,
                    }
                )
            # The events carry the submitter's trace, not the batch's.
            token = otel_context.attach(pending.trace_context) if pending.trace_context else None
            try:
                publish_screening(session, self._outbox, record, scored, demographics)
            finally:
                if token is not None:
                    otel_context.detach(token)
            outcomes.append(Accepted(record, scored, duplicate=False))
        # One statement per table for the whole batch: the hot path of intake.
        for table, rows in (
            (ScreeningRecord, [r.model_dump() for r in records]),
            (ScreeningAnswer, answers),
            (ScreeningDemographics, demographics_rows),
        ):
            if rows:
                # The table, not the ORM entity: a plain executemany, without the ORM's bulk layer.
                await session.exec(insert(table.__table__), params=rows)  # type: ignore[call-overload, union-attr]
        return outcomes


class GroupCommit:
    """Concurrent gRPC submissions share one transaction: while a batch commits, the next gathers.
    Under load the database's per-statement and per-commit costs are paid once per batch instead
    of once per screening (measured by ``make bench``); alone, a submission waits for nothing.

    A batch that fails as a whole (e.g. a partner's copy of the same screening committed first) is
    retried one submission per transaction, so each caller gets its own outcome."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], intake: ScreeningIntake, max_batch: int = 64
    ) -> None:
        self._sessions = sessions
        self._intake = intake
        self._max_batch = max_batch
        self._waiting: list[tuple[Pending, asyncio.Future[Accepted | InvalidArgument]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, submission: Submission, problems: Sequence[FieldViolation] = ()) -> Accepted:
        future: asyncio.Future[Accepted | InvalidArgument] = asyncio.get_running_loop().create_future()
        self._waiting.append((Pending(submission, tuple(problems), otel_context.get_current()), future))
        if self._writer is None or self._writer.done():
            # Its own task: a caller that gives up (deadline, cancel) does not stop the others' batch.
            # In a context of its own, not the first caller's (its span, principal, audit notes).
            self._writer = asyncio.create_task(
                self._write_all(), name="screening-group-commit", context=contextvars.Context()
            )
        outcome = await asyncio.shield(future)
        if isinstance(outcome, InvalidArgument):
            raise outcome
        return outcome

    async def _write_all(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
            batch_size.record(len(batch))
            links = [trace.Link(trace.get_current_span(p.trace_context).get_span_context()) for p, _ in batch]
            with tracer.start_as_current_span("screening intake batch", links=links) as span:
                span.set_attribute("ach.screening.batch_size", len(batch))
                outcomes: list[Accepted | InvalidArgument | Exception]
                try:
                    outcomes = list(await self._write([p for p, _ in batch]))
                except IntegrityError:
                    outcomes = [await self._write_alone(p) for p, _ in batch]
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, Accepted | InvalidArgument):
                    future.set_result(outcome)
                else:
                    future.set_exception(outcome)

    async def _write(self, batch: Sequence[Pending]) -> list[Accepted | InvalidArgument]:
        async with self._sessions() as session, session.begin():
            return await self._intake.submit_many(session, batch)

    async def _write_alone(self, pending: Pending) -> Accepted | InvalidArgument | Exception:
        try:
            return (await self._write([pending]))[0]
        except IntegrityError:
            # The same screening, committed meanwhile by another path: the answer is that one.
            try:
                return (await self._write([pending]))[0]
            except Exception as exc:
                return exc
        except Exception as exc:
            return exc


def _facts(
    submission: Submission,
    known: bool,
    usable: bool,
    consents: Mapping[str, ConsentReplica],
    now: datetime,
) -> tuple[Facts, str]:
    """Whether the submitter may use the resident id, and the consent the screening references."""
    if not known:
        return Facts(resident_usable=False), ""
    if not submission.consent_id:
        in_force = [t for t in map(terms_of, consents.values()) if t.in_force(now)]
        latest = max(in_force, key=lambda c: c.given_at) if in_force else None
        return Facts(usable), latest.consent_id if latest else ""
    consent = consents.get(submission.consent_id)
    problem = None
    if consent is None:  # unknown, or another resident's: the caller learns neither which
        problem = "is not a consent of this resident"
    elif consent.status != ACTIVE:
        problem = f"is {consent.status}"
    elif consent.expires_at is not None and as_utc(consent.expires_at) <= now:
        problem = "has expired"
    return Facts(usable, problem), submission.consent_id
