"""gRPC API of the measurement service: translate and delegate to the publications."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from ach.measurement.v1 import measurement_pb2, measurement_pb2_grpc
from ach_platform.clock import to_timestamp
from ach_platform.errors import InvalidArgument, NotFound, too_long
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_measurement import exports, mappers, scorecards
from ach_measurement.catalog import ScorecardDefinition
from ach_measurement.domain import funnel
from ach_measurement.domain.definitions import Measure
from ach_measurement.domain.periods import Period, is_period_label, parse_period
from ach_measurement.domain.publication import MeasureFigures, PeriodFigures, Publication
from ach_measurement.publications import Publications
from ach_measurement.store import funnel_counts

MAX_ID = 200
MAX_MEASURES = 200


def _bounded(checks: list[tuple[str, str, int]]) -> None:
    problems = too_long(checks)
    if problems:
        raise InvalidArgument(problems)


def _period(field: str, label: str, figures: MeasureFigures) -> Period | None:
    if not label:
        return None
    try:
        return parse_period(label, figures.measure.period)
    except ValueError as exc:
        raise InvalidArgument.of(field, str(exc)) from None


class MeasurementApi(measurement_pb2_grpc.MeasurementServiceServicer):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        publications: Publications,
        scorecards: Sequence[ScorecardDefinition] = (),
    ) -> None:
        self._sessions = sessions
        self._publications = publications
        self._scorecards = {c.id: c for c in scorecards}

    async def GetReferralFunnel(
        self, request: measurement_pb2.GetReferralFunnelRequest, context: grpc.aio.ServicerContext
    ) -> measurement_pb2.ReferralFunnel:
        _bounded([("need_domain", request.need_domain, 100)])
        async with self._sessions() as session:
            counts = await funnel_counts(session, request.need_domain)
        return measurement_pb2.ReferralFunnel(
            need_domain=request.need_domain, **{m: counts.get(m, 0) for m in funnel.FUNNEL}
        )

    async def ListMeasures(
        self, request: measurement_pb2.ListMeasuresRequest, context: grpc.aio.ServicerContext
    ) -> measurement_pb2.ListMeasuresResponse:
        return measurement_pb2.ListMeasuresResponse(
            measures=[mappers.definition(m) for m in self._publications.measures],
            scorecards=[mappers.scorecard_definition(c) for c in self._scorecards.values()],
        )

    async def _selected(
        self,
        measure_id: str,
        dimension: str,
        from_period: str,
        to_period: str,
        partner_id: str,
        geography: str = "",
    ) -> tuple[Measure, list[PeriodFigures], Publication]:
        _bounded(
            [
                ("measure_id", measure_id, MAX_ID),
                ("dimension", dimension, 40),
                ("from_period", from_period, 10),
                ("to_period", to_period, 10),
                ("partner_id", partner_id, MAX_ID),
                ("geography", geography, 100),
            ]
        )
        if measure_id not in self._publications.by_id:
            raise NotFound(f"no measure {measure_id[:80]!r}")
        measure = self._publications.by_id[measure_id]
        if dimension and dimension not in measure.breakdowns:
            raise InvalidArgument.of(
                "dimension", f"is not a breakdown of {measure.id} ({', '.join(measure.breakdowns)})"
            )
        if measure.imported and not geography:
            raise InvalidArgument.of("geography", f"{measure.id} is a population indicator: name the place")
        if not measure.imported and geography:
            raise InvalidArgument.of(
                "geography", f"{measure.id} is counted over the network's events, not by place"
            )
        publication = await self._publications.current(partner_id)
        figures = (
            publication.indicators.get((measure.id, geography), MeasureFigures(measure, ()))
            if measure.imported
            else publication.measures[measure.id]
        )
        first = _period("from_period", from_period, figures)
        last = _period("to_period", to_period, figures)
        periods = [
            p
            for p in figures.periods
            if (first is None or p.period >= first) and (last is None or p.period <= last)
        ]
        return measure, periods, publication

    async def GetMeasureFigures(
        self, request: measurement_pb2.GetMeasureFiguresRequest, context: grpc.aio.ServicerContext
    ) -> measurement_pb2.MeasureFigures:
        measure, periods, publication = await self._selected(
            request.measure_id,
            request.dimension,
            request.from_period,
            request.to_period,
            request.partner_id,
            request.geography,
        )
        return measurement_pb2.MeasureFigures(
            measure=mappers.definition(measure),
            periods=[mappers.period_figures(p, request.dimension) for p in periods],
            as_of=to_timestamp(publication.as_of),
        )

    async def ExportMeasure(
        self, request: measurement_pb2.ExportMeasureRequest, context: grpc.aio.ServicerContext
    ) -> measurement_pb2.MeasureExport:
        if request.format == measurement_pb2.EXPORT_FORMAT_UNSPECIFIED:
            raise InvalidArgument.of("format", "is required (CSV, JSON or FHIR)")
        measure, periods, publication = await self._selected(
            request.measure_id,
            "",
            request.from_period,
            request.to_period,
            request.partner_id,
            request.geography,
        )
        name = f"{measure.id}-v{measure.version}" + (f"-{request.geography}" if request.geography else "")
        if request.format == measurement_pb2.EXPORT_FORMAT_CSV:
            return measurement_pb2.MeasureExport(
                content_type="text/csv; charset=utf-8",
                filename=f"{name}.csv",
                content=exports.as_csv(measure, periods).encode(),
            )
        if request.format == measurement_pb2.EXPORT_FORMAT_JSON:
            content = exports.as_json(measure, periods, publication.as_of)
            return measurement_pb2.MeasureExport(
                content_type="application/json", filename=f"{name}.json", content=content.encode()
            )
        content = exports.as_fhir(measure, periods, publication.as_of, self._publications.zone)
        return measurement_pb2.MeasureExport(
            content_type="application/fhir+json", filename=f"{name}.fhir.json", content=content.encode()
        )

    async def GetScorecard(
        self, request: measurement_pb2.GetScorecardRequest, context: grpc.aio.ServicerContext
    ) -> measurement_pb2.Scorecard:
        if len(request.measure_ids) > MAX_MEASURES:
            raise InvalidArgument.of("measure_ids", f"lists more than {MAX_MEASURES} measures")
        _bounded(
            [(f"measure_ids[{i}]", m, MAX_ID) for i, m in enumerate(request.measure_ids)]
            + [
                ("period", request.period, 10),
                ("partner_id", request.partner_id, MAX_ID),
                ("dimension", request.dimension, 40),
                ("group", request.group, MAX_ID),
                ("scorecard_id", request.scorecard_id, MAX_ID),
            ]
        )
        unknown = [m for m in request.measure_ids if m not in self._publications.by_id]
        if unknown:
            raise InvalidArgument.of("measure_ids", f"{unknown[0][:80]!r} is not a measure")
        if request.period and not is_period_label(request.period):
            raise InvalidArgument.of(
                "period", "is not a month (YYYY-MM), a quarter (YYYY-Qn) or a year (YYYY)"
            )
        if bool(request.dimension) != bool(request.group):
            raise InvalidArgument.of("group", "a group's scorecard names both dimension and group")
        card = None
        if request.scorecard_id:
            card = self._scorecards.get(request.scorecard_id)
            if card is None:
                raise NotFound(f"no scorecard {request.scorecard_id[:80]!r}")
            if request.measure_ids:
                raise InvalidArgument.of(
                    "measure_ids", "a scorecard names its own measures: leave this empty"
                )
        ids, geography = scorecards.measure_ids(self._publications.measures, card, request.measure_ids)
        publication = await self._publications.current(request.partner_id)
        rows = [
            mappers.scorecard_row(r)
            for r in scorecards.rows(
                publication,
                self._publications.by_id,
                ids,
                geography,
                request.period,
                request.dimension,
                request.group,
            )
        ]
        return measurement_pb2.Scorecard(rows=rows, as_of=to_timestamp(publication.as_of))
