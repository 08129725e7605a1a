"""Between the protos and the domain: submissions in, findings and demographics out."""

from __future__ import annotations

from ach.screening.v1 import screening_pb2
from ach_platform.clock import from_timestamp

from ach_screening import domain
from ach_screening.domain.submission import Demographics, Submission


def finding_proto(finding: domain.Finding, with_evidence: bool) -> screening_pb2.NeedFinding:
    return screening_pb2.NeedFinding(
        need_domain=finding.domain,
        urgent=finding.urgent,
        evidence=[screening_pb2.Answer(question_code=q, answer_codes=codes) for q, codes in finding.evidence]
        if with_evidence
        else [],
    )


def demographics_proto(d: Demographics) -> screening_pb2.Demographics:
    return screening_pb2.Demographics(
        race_codes=d.race_codes,
        ethnicity_code=d.ethnicity_code,
        preferred_language=d.preferred_language,
        age_band=d.age_band,
        zip=d.zip,
        neighbourhood=d.neighbourhood,
    )


def demographics_of(d: screening_pb2.Demographics) -> Demographics:
    return Demographics(
        tuple(d.race_codes), d.ethnicity_code, d.preferred_language, d.age_band, d.zip, d.neighbourhood
    )


def submission_of(request: screening_pb2.SubmitScreeningRequest, submitter: str) -> Submission:
    """The domain's view of a submission, from the gRPC request or a partner's event."""
    return Submission(
        submitter_partner_id=submitter,
        submitter_screening_id=request.submitter_screening_id,
        resident_id=request.resident_id,
        instrument_id=request.instrument_id,
        instrument_version=request.instrument_version,
        answers=tuple(
            domain.AnswerGiven(a.question_code, tuple(a.answer_codes), a.declined, a.value)
            for a in request.answers
        ),
        screened_at=from_timestamp(request.screened_at) if request.HasField("screened_at") else None,
        site_id=request.site_id,
        language=request.language or "en",
        screener_user_id=request.screened_by.user_id,
        consent_id=request.consent_id,
        demographics=demographics_of(request.demographics),
    )
